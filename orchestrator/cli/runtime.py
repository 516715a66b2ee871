"""``orchestrator plan`` (what a changed journey file would do to the customers inside) and
``orchestrator status`` (what the engine holds: instances, due waits, the outbox backlog, the last tick).

Both only read the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import store as sj
from orchestrator.channels.base import ChannelRouter
from orchestrator.cli.errors import Failure, UsageError
from orchestrator.cli.settings import Args
from orchestrator.clock import SystemClock, from_us, parse_instant, to_us
from orchestrator.durations import US_PER_SECOND, parse_duration
from orchestrator.engine.health import judge_health
from orchestrator.engine.tick import Engine, migration_problems
from orchestrator.engine.workspace import Workspace, load_workspace
from orchestrator.language import JourneyPlan, SpecError
from orchestrator.store import Store, health, open_store

HOUR_US = 3600 * US_PER_SECOND


def _open(url: str | None) -> Store | None:
    try:
        store = open_store(url, create=False)
    except FileNotFoundError:
        return None
    if not store.is_initialised():
        store.dispose()
        return None
    return store


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class Fate:
    version: int
    state: str
    customers: int
    outcome: str  # current | migrate | exit | stay
    to: str | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _workspace(args: Args) -> tuple[Workspace, JourneyPlan]:
    paths = list(args.journeys)
    as_file = Path(args.journey)
    if as_file.suffix in (".yaml", ".yml") and as_file.is_file():
        paths = [str(as_file)]
    try:
        workspace = load_workspace(paths, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    if len(workspace.plans) == 1 and paths == [str(as_file)]:
        return workspace, workspace.plans[0]
    try:
        return workspace, workspace.plan(args.journey)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def plan_report(store: Store | None, workspace: Workspace, plan: JourneyPlan) -> dict[str, Any]:
    """What running ``plan`` would change, as plain data (see ``run_plan``)."""
    out: dict[str, Any] = {
        "journey": plan.id,
        "file": plan.file,
        "version": plan.version,
        "stored_versions": [],
        "status": "new journey",
        "fates": [],
        "problems": [],
    }
    if store is None:
        return out
    engine = Engine(store, workspace, ChannelRouter(), SystemClock())
    with store.connect() as conn:
        stored = sj.stored_version(conn, plan.id, plan.version)
        out["stored_versions"] = sj.stored_versions(conn, plan.id)
        counts = [c for c in sj.state_counts(conn, plan.id) if c.status == "active"]
        out["problems"] = migration_problems(engine, conn, plan)
        applied = {
            m.from_version
            for m in plan.migrations
            if sj.migration_applied(conn, plan.id, plan.version, m.from_version)
        }
    if stored is not None and stored.digest != plan.digest:
        out["status"] = "refused"
        out["problems"].insert(
            0,
            f"{plan.file}: version {plan.version} has changed since it first ran; give the changed journey "
            f"version {plan.version + 1}",
        )
    elif stored is not None:
        out["status"] = "unchanged"
    elif out["stored_versions"]:
        out["status"] = "new version"
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
        out["fates"].append(fate.to_dict())
    return out


def run_plan(args: Args) -> int:
    workspace, plan = _workspace(args)
    store = _open(args.db)
    try:
        report = plan_report(store, workspace, plan)
    finally:
        if store is not None:
            store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print_plan(report)
    return 1 if report["problems"] else 0


def _print_plan(report: dict[str, Any]) -> None:
    from orchestrator.cli.output import print_table

    stored = ", ".join(str(v) for v in report["stored_versions"]) or "none"
    lines = [
        f"journey {report['journey']}: version {report['version']} in {report['file']}; versions that ran "
        f"here: {stored}",
    ]
    status = report["status"]
    if status == "new journey":
        lines.append("  it has not run in this store: nobody is inside yet")
    elif status == "unchanged":
        lines.append(f"  version {report['version']} is what runs now; nothing changes")
    elif status == "new version":
        lines.append(f"  at the next tick, new entrants follow version {report['version']}")
    for problem in report["problems"]:
        lines.append(f"  problem: {problem}")
    fates = report["fates"]
    if fates:
        lines.append("  customers inside:")
    elif status != "new journey":
        lines.append("  nobody is inside the journey")
    print("\n".join(lines))
    if fates:
        print_table(
            [("version", "right"), ("step", "left"), ("customers", "right"), ("what happens", "left")],
            [(f["version"], f["state"], f["customers"], f["note"]) for f in fates],
            indent=4,
        )


# ---------------------------------------------------------------------------------------------- status


def status_report(
    store: Store, now_us: int | None, *, clock_us: int | None = None, stale_after_us: int | None = None
) -> dict[str, Any]:
    """Instances, due waits, backlog, the last tick's timings, and the engine's health (journeys marked
    failed; whether the last tick is older than ``stale_after_us`` at ``clock_us``), as plain data."""
    with store.connect() as conn:
        failed = health.failed_journeys(conn)
        instants = sj.recent_tick_instants(conn)
        tick = sj.last_tick(conn)
        if now_us is None:
            now_us = tick[0] if tick is not None else to_us(SystemClock().now())
        counts = sj.state_counts(conn)
        due = sj.due_counts(conn, now_us, HOUR_US)
        backlog = sj.outbox_backlog(conn)
    journeys: dict[str, dict[str, Any]] = {}
    for c in counts:
        j = journeys.setdefault(
            c.journey_id, {"active": {}, "finished": {}, "due_now": 0, "due_next_hour": 0}
        )
        if c.status == "active":
            j["active"].setdefault(str(c.version), {})[c.state] = c.count
        else:
            j["finished"][c.status] = j["finished"].get(c.status, 0) + c.count
    for journey_id, (now_count, soon) in due.items():
        journeys[journey_id]["due_now"] = now_count
        journeys[journey_id]["due_next_hour"] = soon
    last: dict[str, Any] | None = None
    if tick is not None:
        summary = json.loads(tick[2])
        last = {"at": from_us(tick[0]).isoformat(), "seconds": round(tick[1], 4), **summary}
    return {
        "as_of": from_us(now_us).isoformat(),
        "journeys": journeys,
        "outbox": [
            {
                "channel": b.channel,
                "queued": b.queued,
                "sending": b.sending,
                "uncertain": b.uncertain,
                "oldest": from_us(b.oldest_us).isoformat() if b.queued or b.sending else None,
            }
            for b in backlog
        ],
        "last_tick": last,
        "health": judge_health(failed, instants, clock_us, stale_after_us).to_dict(),
    }


def run_status(args: Args) -> int:
    store = _open(args.db)
    if store is None:
        raise Failure("no store with engine tables here; ingest data and run the engine first")
    now_us = None
    if args.now is not None:
        try:
            now_us = to_us(parse_instant(args.now))
        except ValueError as exc:
            raise UsageError(
                f"--now {args.now!r} is not an ISO-8601 instant with a time zone: {exc}"
            ) from None
    stale_after = None
    if args.stale_after is not None:
        try:
            stale_after = round(parse_duration(args.stale_after).total_seconds() * US_PER_SECOND)
        except (ValueError, OverflowError) as exc:
            raise UsageError(f"--stale-after {args.stale_after!r}: {exc}") from None
    clock_us = now_us if now_us is not None else to_us(SystemClock().now())
    try:
        report = status_report(store, now_us, clock_us=clock_us, stale_after_us=stale_after)
    finally:
        store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print_status(report)
    return 0 if report["health"]["ok"] else 1  # for monitoring: a failed journey, or no recent tick


def _print_status(report: dict[str, Any]) -> None:
    from orchestrator.cli.output import print_table

    lines = [f"as of {report['as_of']}"]
    state = report["health"]
    for f in state["failed_journeys"]:
        lines.append(
            f"FAILED {f['journey']} since {f['since']} (again at the tick of {f['last_seen']}): {f['error']}"
        )
    if state["last_tick_stale"]:
        lines.append(
            f"STALE: no tick for {_seconds(state['last_tick_age_seconds'])} (more than "
            f"{_seconds(state['stale_after_seconds'])}): is the engine running?"
        )
    if not report["journeys"]:
        lines.append("no journey has entered anyone yet")
    print("\n".join(lines))
    journeys = report["journeys"]
    if journeys:
        print()
        print_table(
            [("journey", "left"), ("due now", "right"), ("due in 1h", "right"), ("finished", "left")],
            [
                (
                    journey_id,
                    j["due_now"],
                    j["due_next_hour"],
                    ", ".join(f"{k} {v}" for k, v in sorted(j["finished"].items())) or "none",
                )
                for journey_id, j in journeys.items()
            ],
        )
        active = [
            (journey_id, f"v{version}", state, n)
            for journey_id, j in journeys.items()
            for version, states in j["active"].items()
            for state, n in states.items()
        ]
        if active:
            print("\nactive instances:")
            print_table(
                [("journey", "left"), ("version", "left"), ("step", "left"), ("active", "right")],
                active,
                indent=2,
            )
    backlog = [b for b in report["outbox"] if b["queued"] or b["sending"] or b["uncertain"]]
    if backlog:
        print("\noutbox backlog (queued, not yet delivered):")
        print_table(
            [
                ("channel", "left"),
                ("queued", "right"),
                ("in flight", "right"),
                ("uncertain", "right"),
                ("oldest", "left"),
            ],
            [(b["channel"], b["queued"], b["sending"], b["uncertain"], b["oldest"]) for b in backlog],
            indent=2,
        )
        if any(b["uncertain"] for b in backlog):
            print(
                "  uncertain: in flight when a dispatcher stopped, not sent again (at_most_once); "
                "see orchestrator why"
            )
    else:
        print("\noutbox backlog: empty")
    last = report["last_tick"]
    if last is None:
        print("\nno tick has run yet")
    else:
        timings = ", ".join(f"{k} {v:.3f}s" for k, v in last.get("timings", {}).items())
        print(f"\nlast tick at {last['at']}: {timings}")


def _seconds(value: float) -> str:
    """A number of seconds for people: 42s, 17m, 5.0h, 3.2d."""
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"
