"""Compiling a journey into the plan the engine runs.

Each journey version becomes one ``transitions`` machine (``language._machine``) whose states are the step
ids plus the terminal states, and whose triggers are ``next`` (a step is done), ``yes``/``no`` (a branch,
or a wait for an event that came / timed out, or a date attribute that is missing), ``split-<n>`` (the
n-th arm of a random split) and ``goal`` (the conversion goal was reached). The machine checks the graph
and draws the journey's diagram; the engine never binds customers to it. The plan reads the machine's
transitions once into an integer table, ``table[state, trigger] -> state``, and the engine moves whole
arrays of instances with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.language._machine import NO_STATE as NO_STATE
from orchestrator.language._machine import (
    DiagramCounts,
    DiagramFormat,
    JourneyMachine,
    build_machine,
    draw,
    transition_table,
)
from orchestrator.language._models import WEEKDAYS, Cooldown, Journey, MatchValue, Send
from orchestrator.signals import _lang as lang

TERMINAL = ("completed", "exited", "converted")
TRIGGERS = ("next", "yes", "no", "goal")
ENTRY = "entry"
METRICS = "metrics"
#: Event entry: events older than this when they reach the engine start nothing (``entry.within``).
DEFAULT_ENTRY_WITHIN = timedelta(days=1)


class StepKind(StrEnum):
    """What a step does: the seven step forms of the language (``models.STEP_KINDS``)."""

    SEND = "send"
    WAIT = "wait"
    WAIT_UNTIL = "wait_until"
    WAIT_FOR = "wait_for"
    BRANCH = "branch"
    SPLIT = "split"
    EXIT = "exit"


#: Step kinds that always move an instance's clock forward before it can come back to the same step.
_CLOCK_ADVANCING = (StepKind.WAIT, StepKind.WAIT_FOR)
#: Step kinds where instances can stay between ticks.
_PARKING = (StepKind.WAIT, StepKind.WAIT_UNTIL, StepKind.WAIT_FOR)


def split_trigger(arm: int) -> str:
    return f"split-{arm}"


@dataclass(frozen=True)
class MatchTerm:
    """One ``match:`` pair: the event's ``prop`` equals the entry event's ``entry_prop``, the customer's
    value of the journey metric ``metric``, or ``literal``."""

    prop: str
    entry_prop: str | None = None
    metric: str | None = None
    literal: Any = None


@dataclass(frozen=True)
class StepPlan:
    id: str
    code: int
    kind: StepKind
    send: Send | None = None
    wait_us: int | None = None
    condition: lang.Node | None = None
    instance_names: frozenset[str] = frozenset()  # "entry.x" / "<wait_for id>.x" read by the condition
    event: str | None = None  # event branch and wait_for
    match: tuple[MatchTerm, ...] = ()
    within_us: int | None = None  # event branch: look back this long (None: since entry)
    timeout_us: int | None = None
    time_of_day_s: int | None = None
    weekdays: tuple[int, ...] = ()  # 0 = Monday
    default_timezone: str = "UTC"
    attribute: str | None = None  # wait_until a date attribute (time_of_day_s: at that local time on it)
    offset_us: int = 0
    every: str | None = None  # "year" | "month": the date's next anniversary (or monthly day)
    split: tuple[tuple[str, float], ...] = ()  # (target, percent)
    exit_reason: str | None = None
    in_cycle: bool = False  # a loop of steps can bring an instance back here

    @property
    def parks(self) -> bool:
        """Whether instances can stay at this step between ticks (a wait of some kind)."""
        return self.kind in _PARKING


@dataclass(frozen=True)
class EntryPlan:
    kind: str  # "condition" (signal and/or segment) | "event"
    event: str | None = None
    key: str | None = None
    within_us: int = 0


@dataclass(frozen=True)
class MigrationPlan:
    from_version: int
    states: dict[str, str]  # old step id -> step id of this version, or "exit"
    where: dict[str, tuple[int, int]] = field(default_factory=dict)  # old step id -> (line, column)
    line: int = 1
    column: int = 1


@dataclass
class JourneyPlan:
    """Everything the engine needs to run one journey version, decided before the first tick."""

    journey: Journey
    digest: str
    file: str
    entry: EntryPlan
    signal: lang.Node | None
    segment: lang.Node | None
    exit_when: lang.Node | None
    metrics: dict[str, lang.Node]
    steps: list[StepPlan]
    states: list[str]
    triggers: tuple[str, ...]
    table: np.ndarray  # int16 [state code, trigger code] -> state code, NO_STATE where undefined
    machine: JourneyMachine = field(repr=False)
    goal_match: tuple[MatchTerm, ...] = ()
    migrations: list[MigrationPlan] = field(default_factory=list)
    captures: dict[str, set[str]] = field(default_factory=dict)  # wait_for id -> properties to keep

    @property
    def id(self) -> str:
        return self.journey.id

    @property
    def version(self) -> int:
        return self.journey.version

    @property
    def priority(self) -> int:
        return self.journey.priority

    def code(self, state: str) -> int:
        return self.states.index(state)

    def trigger(self, name: str) -> int:
        return self.triggers.index(name)

    def step(self, state_code: int) -> StepPlan | None:
        return self.steps[state_code] if state_code < len(self.steps) else None

    def is_terminal(self, state_code: int) -> bool:
        return state_code >= len(self.steps)

    def reentry_cooldown_us(self) -> int | None:
        reentry = self.journey.reentry
        if isinstance(reentry, Cooldown):
            return _us(reentry.cooldown)
        return None

    def expressions(self) -> list[lang.Node]:
        """Every expression evaluated per customer (signal, segment, metrics, exit criteria, branch
        conditions); names of instance values inside branch conditions are plain names here."""
        nodes = [*self.metrics.values()]
        nodes.extend(n for n in (self.signal, self.segment, self.exit_when) if n is not None)
        nodes.extend(s.condition for s in self.steps if s.condition is not None)
        return nodes

    def event_properties(self) -> set[str]:
        """Event properties the engine reads beyond expressions: matched ones and captured ones."""
        props = {t.prop for t in self.goal_match}
        for step in self.steps:
            props.update(t.prop for t in step.match)
        for captured in self.captures.values():
            props |= captured
        return props

    def diagram(self, format: DiagramFormat = "mermaid", counts: DiagramCounts | None = None) -> str:
        """The journey's diagram, drawn from its machine: Mermaid or Graphviz DOT text, or an SVG image;
        with ``counts`` written on the steps and the transitions they give numbers for."""
        return draw(self.machine, TERMINAL, format, counts)

    def wait_for_states(self) -> list[str]:
        return [s.id for s in self.steps if s.kind == StepKind.WAIT_FOR]


def _us(delta: timedelta) -> int:
    return round(delta.total_seconds() * US_PER_SECOND)


def digest_of(journey: Journey) -> str:
    """A fingerprint of what the journey means (not of its comments or layout)."""
    canonical = json.dumps(journey.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def digest_with(digest: str, parts: Iterable[tuple[str, str]]) -> str:
    """A digest that also covers ``parts`` (name, text pairs, e.g. the shared metrics a journey reads)."""
    canonical = json.dumps([digest, [list(p) for p in parts]], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resolve_target(journey: Journey, target: str, step_id: str) -> str:
    """The state a target (a step id, ``next`` or ``exit``) written at step ``step_id`` leads to."""
    ids = journey.step_ids()
    if target == "next":
        i = ids.index(step_id)
        return ids[i + 1] if i + 1 < len(ids) else "completed"
    if target == "exit":
        return "exited"
    return target


def _targets(journey: Journey) -> dict[str, dict[str, str]]:
    """For each step, trigger -> destination state name."""
    out: dict[str, dict[str, str]] = {}
    for sid, step in zip(journey.step_ids(), journey.steps, strict=True):

        def to(target: str, sid: str = sid) -> str:
            return resolve_target(journey, target, sid)

        if step.branch is not None:
            out[sid] = {"yes": to(step.branch.then), "no": to(step.branch.otherwise)}
        elif step.wait_for is not None:
            out[sid] = {"yes": to(step.wait_for.then), "no": to(step.wait_for.otherwise)}
        elif step.split is not None:
            out[sid] = {split_trigger(i): to(target) for i, target in enumerate(step.split)}
        elif step.exit is not None:
            out[sid] = {"next": "exited"}
        elif step.wait_until is not None and step.wait_until.attribute is not None:
            out[sid] = {"next": to("next"), "no": to(step.wait_until.missing)}
        else:
            out[sid] = {"next": to("next")}
        out[sid]["goal"] = "converted"
    return out


def _advances_clock(step: Any) -> bool:
    """Whether passing this step always moves the instance's time forward (so a loop through it waits)."""
    if step.kind in _CLOCK_ADVANCING:
        return True
    if step.kind != StepKind.WAIT_UNTIL:
        return False
    until = step.wait_until
    return until.every is not None or (until.time is not None and until.attribute is None)


def instant_cycle(journey: Journey) -> list[str]:
    """A loop of steps that passes no wait (it would spin forever within one tick), or [].

    Waits for a duration, for a local time of day, for an event and for the next anniversary of a date
    (``every:``) count as waits; a wait for a date attribute alone does not, because a date in the past
    lets instances through at once.
    """
    targets = _targets(journey)
    steps = dict(zip(journey.step_ids(), journey.steps, strict=True))
    state: dict[str, int] = {}

    def visit(sid: str, trail: list[str]) -> list[str]:
        if sid not in steps or _advances_clock(steps[sid]):
            return []
        if state.get(sid) == 1:
            return [*trail[trail.index(sid) :], sid]
        if state.get(sid) == 2:
            return []
        state[sid] = 1
        for trigger, dest in targets[sid].items():
            if trigger != "goal":
                found = visit(dest, [*trail, sid])
                if found:
                    return found
        state[sid] = 2
        return []

    for sid in steps:
        found = visit(sid, [])
        if found:
            return found
    return []


def _steps_in_cycles(journey: Journey) -> set[str]:
    """Steps from which the journey can come back to the same step."""
    targets = _targets(journey)
    out: set[str] = set()
    for start in targets:
        seen: set[str] = set()
        stack = [d for t, d in targets[start].items() if t != "goal"]
        while stack:
            sid = stack.pop()
            if sid == start:
                out.add(start)
                break
            if sid in seen or sid not in targets:
                continue
            seen.add(sid)
            stack.extend(d for t, d in targets[sid].items() if t != "goal")
    return out


# ---------------------------------------------------------------------------------------------- names


def instance_roots(journey: Journey) -> set[str]:
    """First parts of dotted names that read an instance's own values: ``entry`` (journeys entered by an
    event) and the ids of ``wait_for`` steps (the event that ended the wait)."""
    roots = {s.id for s in journey.steps if s.wait_for is not None and s.id}
    if journey.effective_entry.event is not None:
        roots.add(ENTRY)
    return roots


def rewrite_instance_names(node: lang.Node, roots: set[str]) -> tuple[lang.Node, frozenset[str]]:
    """``node`` with each ``root.prop`` read outside aggregates turned into the single name ``"root.prop"``,
    and the set of those names. The evaluator then reads them as columns, one value per instance."""
    used: set[str] = set()

    def rewrite(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(rewrite(v) for v in value)
        if not isinstance(value, lang.Node):
            return value
        if isinstance(value, lang.Name):
            if len(value.parts) == 2 and value.parts[0] in roots:
                used.add(value.dotted)
                return lang.Name(value.pos, (value.dotted,))
            return value
        if isinstance(value, lang.Call) and is_aggregate(value):
            return value
        changes = {f.name: rewrite(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)

    return rewrite(node), frozenset(used)


def is_aggregate(call: lang.Call) -> bool:
    return lang.FUNCTIONS[call.func].kind == "events" or lang.is_property_aggregate(call)


def match_terms(match: dict[str, MatchValue] | None) -> tuple[MatchTerm, ...]:
    terms = []
    for prop, value in (match or {}).items():
        if isinstance(value, str) and value.startswith(ENTRY + "."):
            terms.append(MatchTerm(prop, entry_prop=value[len(ENTRY) + 1 :]))
        elif isinstance(value, str) and value.startswith(METRICS + "."):
            terms.append(MatchTerm(prop, metric=value[len(METRICS) + 1 :]))
        else:
            terms.append(MatchTerm(prop, literal=value))
    return tuple(terms)


# ---------------------------------------------------------------------------------------------- compile


def compile_journey(
    journey: Journey, file: str = "<journey>", migration_places: dict[int, Any] | None = None
) -> JourneyPlan:
    """Build the plan of a validated journey (see ``language._journey_file`` for validation).

    ``migration_places`` maps each migration's position to ``((line, column), {old state: (line,
    column)})`` so the engine can point at the file when an old state does not exist.
    """
    ids = journey.step_ids()
    states = [*ids, *TERMINAL]
    targets = _targets(journey)
    n_arms = max((len(s.split) for s in journey.steps if s.split is not None), default=0)
    triggers = (*TRIGGERS, *(split_trigger(i) for i in range(n_arms)))
    machine = build_machine(journey, states, targets)
    table = transition_table(machine, states, triggers)

    roots = instance_roots(journey)
    cycles = _steps_in_cycles(journey)
    captures: dict[str, set[str]] = {s.id: set() for s in journey.steps if s.wait_for is not None and s.id}
    steps = [
        _step_plan(code, sid, step, roots, sid in cycles)
        for code, (sid, step) in enumerate(zip(ids, journey.steps, strict=True))
    ]
    for step in steps:
        for name in step.instance_names:
            root, prop = name.split(".", 1)
            if root in captures:
                captures[root].add(prop)

    entry = journey.effective_entry
    entry_plan = (
        EntryPlan("event", entry.event, entry.key, _us(entry.within or DEFAULT_ENTRY_WITHIN))
        if entry.event is not None
        else EntryPlan("condition")
    )
    places = migration_places or {}
    migrations = []
    for i, m in enumerate(journey.migrate):
        (line, column), where = places.get(i, ((1, 1), {}))
        migrations.append(MigrationPlan(m.from_version, dict(m.states), dict(where), line, column))
    return JourneyPlan(
        journey=journey,
        digest=digest_of(journey),
        file=file,
        entry=entry_plan,
        signal=lang.parse(entry.signal) if entry.signal else None,
        segment=lang.parse(entry.segment) if entry.segment else None,
        exit_when=lang.parse(journey.exit_when) if journey.exit_when else None,
        metrics={name: lang.parse(text) for name, text in journey.metrics.items()},
        steps=steps,
        states=states,
        triggers=triggers,
        table=table,
        machine=machine,
        goal_match=match_terms(journey.goal.match) if journey.goal is not None else (),
        migrations=migrations,
        captures=captures,
    )


def _step_plan(code: int, sid: str, step: Any, roots: set[str], in_cycle: bool) -> StepPlan:
    kind = StepKind(step.kind)
    base: dict[str, Any] = {"id": sid, "code": code, "kind": kind, "in_cycle": in_cycle}
    if kind == StepKind.SEND:
        return StepPlan(**base, send=step.send)
    if kind == StepKind.WAIT:
        return StepPlan(**base, wait_us=_us(step.wait))
    if kind == StepKind.EXIT:
        return StepPlan(**base, exit_reason=step.exit)
    if kind == StepKind.SPLIT:
        return StepPlan(**base, split=tuple(step.split.items()))
    if kind == StepKind.WAIT_FOR:
        w = step.wait_for
        return StepPlan(**base, event=w.event, match=match_terms(w.match), timeout_us=_us(w.timeout))
    if kind == StepKind.WAIT_UNTIL:
        u = step.wait_until
        if u.attribute is None:
            days = tuple(WEEKDAYS.index(d) for d in (u.weekdays or WEEKDAYS))
            return StepPlan(
                **base,
                time_of_day_s=u.seconds_of_day,
                weekdays=tuple(sorted(days)),
                default_timezone=u.default_timezone or "UTC",
            )
        return StepPlan(
            **base,
            attribute=u.attribute,
            offset_us=_us(u.offset),
            time_of_day_s=u.seconds_of_day if u.time is not None or u.every is not None else None,
            default_timezone=u.default_timezone or "UTC",
            every=u.every,
        )
    b = step.branch
    if b.condition is not None:
        condition, names = rewrite_instance_names(lang.parse(b.condition), roots)
        return StepPlan(**base, condition=condition, instance_names=names)
    return StepPlan(
        **base,
        event=b.event,
        match=match_terms(b.match),
        within_us=_us(b.within) if b.within is not None else None,
    )


def trigger_code(trigger: str) -> int:
    """The column of one of the fixed triggers (``next``, ``yes``, ``no``, ``goal``) in every plan's table."""
    return TRIGGERS.index(trigger)
