"""The per-step funnel of a journey version, per arm, read from the store alone (``journey_funnel``).

The engine counts every transition an instance takes as it happens (``store._funnel``): entries, each
step's triggers (``next``, ``yes``, ``no``, ``split-<n>``, ``goal``), ``exit_when``, retirement and migrations
between versions. From those counts, per version and arm (``treatment``, ``holdout``; the holdout arm
includes the global holdout):

- **entered**: instances that entered this version; **moved in**: instances a newer version's ``migrate:``
  brought over from an older one;
- per step, in step order: **reached** (arrivals at the step; an instance a loop brings back is counted at
  each visit), **inside** (there now: reached less left), the triggers taken from it, for a ``split`` how
  many each arm sent where, and for a ``send`` the ledger's outcomes (sent, suppressed by reason, failed,
  queued; read from the ``messages`` table, written as steps happen already);
- **exits** by kind and reason: completed, a step's branch to ``exit``, an ``exit:`` step (its reason), the
  goal (converted), ``exit_when``, retired, left or moved by a migration;
- **converted**: goal conversions recorded for the arm (in or after the journey, whether or not the goal
  ends it).

The counts always add up: ``entered + moved in = every exit + inside``. A store that ran before the counts
existed was back-filled once from its instances (where each was, how each finished): the funnel says so in
``notes``, since the steps those instances passed before are not known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.holdout import HOLDOUT, TREATMENT
from orchestrator.language import Journey, SpecError, load_journey_text, step_words
from orchestrator.store import (
    BEFORE_COUNTING,
    ENTRY_TRIGGER,
    EXIT_WHEN,
    MIGRATED,
    MOVED,
    RETIRED,
    Connection,
    FunnelCount,
    StepMessages,
    Store,
    conversion_counts,
    funnel_counts,
    journey_ids,
    step_message_counts,
    stored_version,
    stored_versions,
)

ARMS = (TREATMENT, HOLDOUT)
TERMINAL = ("completed", "exited", "converted")
#: The machine's triggers (``language._machine``); the others are moves made outside the steps.
_STEP_TRIGGERS = ("next", "yes", "no", "goal")
#: Ledger statuses counted as queued: not yet handed over, or handed over with no answer yet.
_QUEUED = ("queued", "sending")


@dataclass(frozen=True)
class SplitArm:
    """One arm of a ``split`` step: its target, its percent and how many instances it sent there."""

    index: int
    target: str
    percent: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.index + 1, "target": self.target, "percent": self.percent, "n": self.n}


@dataclass(frozen=True)
class StepFunnel:
    """One step of one arm. ``taken`` counts the triggers taken from the step (and ``targets`` where each
    led); ``messages`` the ledger's rows of a send step by status, ``suppressed`` by reason."""

    step: str
    kind: str
    label: str
    channel: str | None
    reached: int
    inside: int
    taken: dict[str, int] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    split: tuple[SplitArm, ...] = ()

    @property
    def sent(self) -> int:
        return self.messages.get("sent", 0)

    @property
    def failed(self) -> int:
        return self.messages.get("failed", 0)

    @property
    def queued(self) -> int:
        return sum(self.messages.get(s, 0) for s in _QUEUED)

    @property
    def other_messages(self) -> dict[str, int]:
        """Ledger rows neither sent, suppressed, failed nor queued (cancelled, refused, uncertain)."""
        known = ("sent", "suppressed", "failed", *_QUEUED)
        return {k: v for k, v in self.messages.items() if k not in known}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "kind": self.kind,
            "label": self.label,
            "reached": self.reached,
            "inside": self.inside,
            "taken": [{"trigger": t, "to": self.targets.get(t), "n": n} for t, n in self.taken.items()],
        }
        if self.kind == "send":
            out["channel"] = self.channel
            out["messages"] = {
                "sent": self.sent,
                "suppressed": sum(self.suppressed.values()),
                "suppressed_by_reason": dict(self.suppressed),
                "failed": self.failed,
                "queued": self.queued,
                **self.other_messages,
            }
        if self.split:
            out["split"] = [arm.to_dict() for arm in self.split]
        return out


@dataclass(frozen=True)
class ExitCount:
    """Instances that left by one path: ``kind`` (completed, branch, exit step, goal, exit_when, retired,
    migration, moved, before counting), ``reason`` in words and the step they left from ('' if none)."""

    kind: str
    reason: str
    step: str
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "step": self.step or None, "n": self.n}


_EXIT_ORDER = (
    "completed",
    "exit step",
    "branch",
    "goal",
    "exit_when",
    "retired",
    "migration",
    "moved",
    "before counting",
)


@dataclass(frozen=True)
class ArmFunnel:
    """The funnel of one arm of one version (see the module docstring)."""

    arm: str
    entered: int
    moved_in: int
    before_counting: int  # of ``entered``: instances stored before the counts began (back-filled)
    converted: int
    steps: tuple[StepFunnel, ...]
    exits: tuple[ExitCount, ...]

    @property
    def inside(self) -> int:
        return sum(s.inside for s in self.steps)

    @property
    def exited(self) -> int:
        return sum(e.n for e in self.exits)

    def finished(self, kind: str) -> int:
        return sum(e.n for e in self.exits if e.kind == kind)

    @property
    def adds_up(self) -> bool:
        """``entered + moved in = every exit + inside``."""
        return self.entered + self.moved_in == self.exited + self.inside

    def step(self, step_id: str) -> StepFunnel:
        return next(s for s in self.steps if s.step == step_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "entered": self.entered,
            "moved_in": self.moved_in,
            "entered_before_counting": self.before_counting,
            "inside": self.inside,
            "finished": self.exited,
            "converted": self.converted,
            "adds_up": self.adds_up,
            "steps": [s.to_dict() for s in self.steps],
            "exits": [e.to_dict() for e in self.exits],
        }


@dataclass(frozen=True)
class JourneyFunnel:
    """The funnel of one journey version: per arm, and the raw transition counts it is made of."""

    journey_id: str
    version: int
    versions: tuple[int, ...]  # every version of the journey that ran here
    arms: tuple[ArmFunnel, ...]
    counts: tuple[FunnelCount, ...]
    step_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()
    messages: tuple[StepMessages, ...] = ()  # the ledger's rows of the version by step, arm, status, reason

    def arm(self, name: str) -> ArmFunnel:
        """The funnel of one arm (all zeros when nobody entered it)."""
        return next(a for a in self.arms if a.arm == name)

    @property
    def adds_up(self) -> bool:
        return all(a.adds_up for a in self.arms)

    def diagram_nodes(self) -> dict[str, int]:
        """State name (a step id, or ``completed``, ``exited``, ``converted``) -> arrivals there, both arms
        together (for a diagram of the version's machine)."""
        nodes = dict.fromkeys((*self.step_ids, *TERMINAL), 0)
        for c in self.counts:
            if c.dest in nodes:
                nodes[c.dest] += c.n
        return nodes

    def diagram_edges(self) -> dict[tuple[str, str], int]:
        """(source state, trigger) -> times taken, both arms together, for the machine's transitions
        (``next``, ``yes``, ``no``, ``split-<n>``, ``goal``)."""
        edges: dict[tuple[str, str], int] = {}
        for c in self.counts:
            if c.source in self.step_ids and _is_step_trigger(c.trigger):
                edges[(c.source, c.trigger)] = edges.get((c.source, c.trigger), 0) + c.n
        return edges

    def rows(self) -> list[dict[str, Any]]:
        """The transition counts as plain rows (journey, version, arm, source, trigger, dest, n): what the
        funnel is computed from, and what ``report --export`` writes."""
        return [
            {
                "journey": c.journey_id,
                "version": c.version,
                "arm": c.arm,
                "source": c.source,
                "trigger": c.trigger,
                "dest": c.dest,
                "n": c.n,
            }
            for c in self.counts
        ]

    def message_rows(self) -> list[dict[str, Any]]:
        """The ledger's messages of the version as plain rows (version, step, arm, status, reason, n)."""
        return [
            {
                "journey": self.journey_id,
                "version": m.version,
                "step": m.step,
                "arm": m.arm,
                "status": m.status,
                "reason": m.reason,
                "n": m.n,
            }
            for m in self.messages
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "version": self.version,
            "versions": list(self.versions),
            "adds_up": self.adds_up,
            "equation": "entered + moved_in = finished + inside",
            "notes": list(self.notes),
            "arms": [a.to_dict() for a in self.arms],
            "transitions": self.rows(),
        }


# ---------------------------------------------------------------------------------------------- reading


def journey_funnel(source: Store | Connection, journey_id: str, version: int | None = None) -> JourneyFunnel:
    """The funnel of one version of ``journey_id`` (None: the latest version that ran here).

    Raises ``KeyError`` with a readable message when the journey (or that version) never ran here."""
    with _connection(source) as conn:
        versions = stored_versions(conn, journey_id)
        _check(conn, journey_id, versions, version)
        chosen = versions[-1] if version is None else version
        return _read(conn, journey_id, chosen, versions)


def journey_funnels(source: Store | Connection, journey_id: str) -> list[JourneyFunnel]:
    """The funnel of every version of ``journey_id`` that ran here, oldest first (``KeyError`` as
    ``journey_funnel``)."""
    with _connection(source) as conn:
        versions = stored_versions(conn, journey_id)
        _check(conn, journey_id, versions, None)
        return [_read(conn, journey_id, v, versions) for v in versions]


@contextmanager
def _connection(source: Store | Connection) -> Iterator[Connection]:
    if isinstance(source, Store):
        with source.connect() as conn:
            yield conn
    else:
        yield source


def _check(conn: Connection, journey_id: str, versions: list[int], version: int | None) -> None:
    if not versions:
        known = ", ".join(sorted(journey_ids(conn))) or "none"
        raise KeyError(f"journey {journey_id!r} has not run in this store (known: {known})")
    if version is not None and version not in versions:
        raise KeyError(
            f"journey {journey_id!r} has no version {version} here (versions that ran: "
            f"{', '.join(map(str, versions))})"
        )


def _read(conn: Connection, journey_id: str, version: int, versions: list[int]) -> JourneyFunnel:
    counts = funnel_counts(conn, journey_id, version)
    messages = step_message_counts(conn, journey_id, version)
    converted = {(c.arm): c.n for c in conversion_counts(conn, journey_id) if c.version == version}
    stored = stored_version(conn, journey_id, version)
    journey = None
    if stored is not None:
        try:
            journey = load_journey_text(stored.source, f"<stored {journey_id} v{version}>").journey
        except SpecError:
            journey = None
    step_ids = _step_ids(journey, counts)
    arms = tuple(
        _arm(
            arm,
            journey,
            step_ids,
            [c for c in counts if c.arm == arm],
            [m for m in messages if m.arm == arm],
            converted.get(arm, 0),
        )
        for arm in ARMS
    )
    notes = []
    before = sum(a.before_counting for a in arms)
    if before:
        notes.append(
            f"{before} instances were in the store before per-step counting began (the store was upgraded "
            "then): where each was, or how it had finished, is counted; the steps they passed before that "
            "are not known, so reached counts of earlier steps miss them"
        )
    if journey is None:
        notes.append("the version's journey file could not be read back: steps are shown as counted")
    return JourneyFunnel(
        journey_id, version, tuple(versions), arms, tuple(counts), step_ids, tuple(notes), tuple(messages)
    )


def _step_ids(journey: Journey | None, counts: list[FunnelCount]) -> tuple[str, ...]:
    """The version's steps in order; states seen in the counts but not in the file come after."""
    ids = list(journey.step_ids()) if journey is not None else []
    for c in counts:
        for state in (c.dest,) if _arrives(c) else (c.source, c.dest):
            if state and state not in ids and state not in TERMINAL and state != MOVED:
                ids.append(state)
    return tuple(ids)


def _arrives(c: FunnelCount) -> bool:
    """Whether a count brings instances into the version from outside (an entry, the back-fill, or a
    migration from an older version, whose source is ``v<version>``), rather than moving them in it."""
    return c.trigger in (ENTRY_TRIGGER, BEFORE_COUNTING) or (
        c.trigger == MIGRATED and c.dest not in (MOVED, "exited")
    )


def _arm(
    arm: str,
    journey: Journey | None,
    step_ids: tuple[str, ...],
    counts: list[FunnelCount],
    messages: list[StepMessages],
    converted: int,
) -> ArmFunnel:
    steps = dict(zip(journey.step_ids(), journey.steps, strict=True)) if journey is not None else {}
    reached = dict.fromkeys(step_ids, 0)
    left = dict.fromkeys(step_ids, 0)
    taken: dict[str, dict[str, int]] = {s: {} for s in step_ids}
    targets: dict[str, dict[str, str]] = {s: {} for s in step_ids}
    entered = moved_in = before = 0
    exits: dict[tuple[str, str, str], int] = {}
    for c in counts:
        arriving_from_outside = _arrives(c)
        if arriving_from_outside:
            if c.trigger == MIGRATED:
                moved_in += c.n
            else:
                entered += c.n
                before += c.n if c.trigger == BEFORE_COUNTING else 0
        else:
            left[c.source] = left.get(c.source, 0) + c.n
            by_trigger = taken.setdefault(c.source, {})
            by_trigger[c.trigger] = by_trigger.get(c.trigger, 0) + c.n
            targets.setdefault(c.source, {})[c.trigger] = c.dest
        if c.dest in reached:
            reached[c.dest] += c.n
        elif c.dest in TERMINAL or c.dest == MOVED:
            kind, reason = _exit_path(c, steps, journey)
            step = "" if arriving_from_outside else c.source
            exits[(kind, reason, step)] = exits.get((kind, reason, step), 0) + c.n
    by_step: dict[str, list[StepMessages]] = {}
    for m in messages:
        by_step.setdefault(m.step, []).append(m)
    return ArmFunnel(
        arm=arm,
        entered=entered,
        moved_in=moved_in,
        before_counting=before,
        converted=converted,
        steps=tuple(
            _step(
                sid, steps.get(sid), reached[sid], left[sid], taken[sid], targets[sid], by_step.get(sid, [])
            )
            for sid in step_ids
        ),
        exits=tuple(
            ExitCount(kind, reason, step, n)
            for (kind, reason, step), n in sorted(
                exits.items(), key=lambda kv: (_EXIT_ORDER.index(kv[0][0]), -kv[1], kv[0][2], kv[0][1])
            )
        ),
    )


def _step(
    sid: str,
    step: Any,
    reached: int,
    left: int,
    taken: dict[str, int],
    targets: dict[str, str],
    messages: list[StepMessages],
) -> StepFunnel:
    kind = step.kind if step is not None else ""
    by_status: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for m in messages:
        by_status[m.status] = by_status.get(m.status, 0) + m.n
        if m.status == "suppressed":
            reason = m.reason or "no reason recorded"
            suppressed[reason] = suppressed.get(reason, 0) + m.n
    split: tuple[SplitArm, ...] = ()
    if step is not None and step.split is not None:
        split = tuple(
            SplitArm(i, target, float(percent), taken.get(f"split-{i}", 0))
            for i, (target, percent) in enumerate(step.split.items())
        )
    return StepFunnel(
        step=sid,
        kind=kind,
        label=_label(step),
        channel=step.send.channel if step is not None and step.send is not None else None,
        reached=reached,
        inside=reached - left,
        taken=dict(sorted(taken.items(), key=lambda kv: _trigger_order(kv[0]))),
        targets=targets,
        messages=by_status,
        suppressed=dict(sorted(suppressed.items(), key=lambda kv: (-kv[1], kv[0]))),
        split=split,
    )


def _label(step: Any) -> str:
    """What a step does, in a few words: ``send email``, ``wait 3d``, ``wait for purchase``."""
    return "?" if step is None else step_words(step)


def _exit_path(c: FunnelCount, steps: dict[str, Any], journey: Journey | None) -> tuple[str, str]:
    """(kind, reason in words) of a count that ends in a terminal state (see ``ExitCount``)."""
    if c.trigger == BEFORE_COUNTING:
        return "before counting", f"{c.dest} before counting began"
    if c.dest == MOVED:
        return "moved", "moved to a newer version (its migrate:)"
    if c.trigger == MIGRATED:
        return "migration", "exited by a newer version's migrate:"
    if c.trigger == EXIT_WHEN:
        return "exit_when", "exit_when became true"
    if c.trigger == RETIRED:
        return "retired", "journey retired"
    if c.dest == "completed":
        return "completed", "completed (the last step done)"
    if c.dest == "converted":
        goal = journey.goal.event if journey is not None and journey.goal is not None else "the goal"
        return "goal", f"converted: {goal} (the goal ends the journey)"
    step = steps.get(c.source)
    if step is not None and step.exit is not None:
        return "exit step", f"exit: {step.exit}"
    if step is not None and step.wait_until is not None and c.trigger == "no":
        return "branch", f"no {step.wait_until.attribute} to wait for -> exit"
    kind = step.kind.replace("_", " ") if step is not None else "step"
    return "branch", f"{kind} {c.trigger} -> exit"


def _is_step_trigger(trigger: str) -> bool:
    return trigger in _STEP_TRIGGERS or trigger.startswith("split-")


def _trigger_order(trigger: str) -> tuple[int, str]:
    order = (*_STEP_TRIGGERS, EXIT_WHEN, RETIRED, MIGRATED)
    if trigger.startswith("split-"):
        return (0, f"{int(trigger.split('-', 1)[1]):04d}")
    return (order.index(trigger) + 1 if trigger in order else len(order) + 1, trigger)


def export_funnel(funnels: Sequence[JourneyFunnel], path: Path) -> int:
    """Write the funnels' rows to ``path`` (``.parquet`` or ``.csv``); returns the number of rows.

    One row per transition count (``record`` = ``transition``: version, arm, source, trigger, dest, n) and
    per ledger count of a send step (``record`` = ``message``: version, arm, source = the step, status,
    reason, n): everything the funnel is computed from, beside the conversions of the entries export."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"{path}: the export format follows the extension, .parquet or .csv")
    rows: list[dict[str, Any]] = []
    for funnel in funnels:
        rows.extend({"record": "transition", **r, "status": None, "reason": None} for r in funnel.rows())
        rows.extend(
            {
                "record": "message",
                "journey": r["journey"],
                "version": r["version"],
                "arm": r["arm"],
                "source": r["step"],
                "trigger": None,
                "dest": None,
                "status": r["status"],
                "reason": r["reason"],
                "n": r["n"],
            }
            for r in funnel.message_rows()
        )
    names = ("record", "journey", "version", "arm", "source", "trigger", "dest", "status", "reason", "n")
    types = {"version": pa.int64(), "n": pa.int64()}
    table = pa.table({k: pa.array([r[k] for r in rows], type=types.get(k, pa.string())) for k in names})
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    return table.num_rows
