"""What a changed journey file would do to the customers inside, before it runs (``orchestrator plan``).

``plan_report`` compares a journey's plan with the versions that ran in the store: a new journey, the
version that runs now, a new version (new entrants follow it at the next tick) or a refused one (the same
version number with a changed content). For each step of each older version with active customers it says
their fate: they run on this version, move to a step of it or leave (its ``migrate:``), or finish on their
version. It only reads the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.channels import ChannelRouter
from orchestrator.clock import Clock
from orchestrator.engine._tick import Engine, migration_problems
from orchestrator.engine._workspace import Workspace
from orchestrator.language import JourneyPlan
from orchestrator.store import Store, migration_applied, state_counts, stored_version, stored_versions

#: What the plan is to the store: never ran here, runs now, runs from the next tick, or may not run.
PlanStatus = Literal["new journey", "unchanged", "new version", "refused"]


@dataclass(frozen=True)
class Fate:
    """What happens to the active customers at one step of one version."""

    version: int
    state: str
    customers: int
    outcome: str  # current | migrate | exit | stay
    to: str | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class PlanReport:
    """What running the plan would change. ``problems`` (a refused version, a migration naming a step its
    version lacks) are what must be fixed before it runs."""

    journey: str
    file: str
    version: int
    stored_versions: list[int] = field(default_factory=list)
    status: PlanStatus = "new journey"
    fates: list[Fate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As plain data (what ``plan --format json`` prints)."""
        return {
            "journey": self.journey,
            "file": self.file,
            "version": self.version,
            "stored_versions": self.stored_versions,
            "status": self.status,
            "fates": [f.to_dict() for f in self.fates],
            "problems": self.problems,
        }


def plan_report(store: Store | None, workspace: Workspace, plan: JourneyPlan, clock: Clock) -> PlanReport:
    """What running ``plan`` (of ``workspace``) would change in ``store`` (None: no store yet, so a new
    journey)."""
    out = PlanReport(plan.id, plan.file, plan.version)
    if store is None:
        return out
    engine = Engine(store, workspace, ChannelRouter(), clock)
    with store.connect() as conn:
        stored = stored_version(conn, plan.id, plan.version)
        out.stored_versions = stored_versions(conn, plan.id)
        counts = [c for c in state_counts(conn, plan.id) if c.status == "active"]
        out.problems = migration_problems(engine, conn, plan)
        applied = {
            m.from_version
            for m in plan.migrations
            if migration_applied(conn, plan.id, plan.version, m.from_version)
        }
    if stored is not None and stored.digest != plan.digest:
        out.status = "refused"
        out.problems.insert(
            0,
            f"{plan.file}: version {plan.version} has changed since it first ran; give the changed journey "
            f"version {plan.version + 1}",
        )
    elif stored is not None:
        out.status = "unchanged"
    elif out.stored_versions:
        out.status = "new version"
    migrations = {m.from_version: m for m in plan.migrations}
    steps = {s.id for s in plan.steps}
    for count in counts:
        if count.version == plan.version:
            fate = Fate(count.version, count.state, count.count, "current", None, "runs on this version")
        elif count.version in applied:
            note = f"finish on version {count.version} (the migration from it was applied at its first tick)"
            fate = Fate(count.version, count.state, count.count, "stay", None, note)
        elif count.version in migrations and count.state in migrations[count.version].states:
            target = migrations[count.version].states[count.state]
            if target == "exit":
                fate = Fate(
                    count.version, count.state, count.count, "exit", None, "leave the journey (migrate)"
                )
            else:
                fate = Fate(
                    count.version,
                    count.state,
                    count.count,
                    "migrate",
                    target,
                    f"move to step {target} of version {plan.version} (migrate)",
                )
        else:
            why = "no migrate entry for this step" if count.version in migrations else "no migrate from it"
            note = f"finish on version {count.version} ({why})"
            if count.state in steps:
                note += f"; version {plan.version} also has a step {count.state!r}"
            fate = Fate(count.version, count.state, count.count, "stay", None, note)
        out.fates.append(fate)
    return out
