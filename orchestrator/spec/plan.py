"""Compiling a journey into the plan the engine runs.

Each journey version becomes one ``transitions.Machine`` whose states are the step ids plus the terminal
states, and whose triggers are ``next`` (a step is done), ``yes``/``no`` (a branch) and ``goal`` (the
conversion goal was reached). The machine checks the graph; the engine never binds customers to it. It
reads the machine's transitions once into an integer table, ``table[state, trigger] -> state``, and moves
whole arrays of instances with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from transitions import Machine

from orchestrator.durations import US_PER_SECOND
from orchestrator.signals import lang
from orchestrator.spec.models import Cooldown, Journey, Send

TERMINAL = ("completed", "exited", "converted")
TRIGGERS = ("next", "yes", "no", "goal")
NO_STATE = -1


@dataclass(frozen=True)
class StepPlan:
    id: str
    code: int
    kind: str  # send | wait | branch | exit
    send: Send | None = None
    wait_us: int | None = None
    condition: lang.Node | None = None
    exit_reason: str | None = None


@dataclass
class JourneyPlan:
    """Everything the engine needs to run one journey version, decided before the first tick."""

    journey: Journey
    digest: str
    file: str
    signal: lang.Node
    segment: lang.Node | None
    metrics: dict[str, lang.Node]
    steps: list[StepPlan]
    states: list[str]
    table: np.ndarray  # int16 [state code, trigger code] -> state code, NO_STATE where undefined
    machine: Machine = field(repr=False)

    @property
    def id(self) -> str:
        return self.journey.id

    @property
    def version(self) -> int:
        return self.journey.version

    def code(self, state: str) -> int:
        return self.states.index(state)

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
        """Every expression of the journey (signal, segment, metrics, branch conditions)."""
        nodes = [self.signal, *self.metrics.values()]
        if self.segment is not None:
            nodes.append(self.segment)
        nodes.extend(s.condition for s in self.steps if s.condition is not None)
        return nodes


def _us(delta: timedelta) -> int:
    return round(delta.total_seconds() * US_PER_SECOND)


def digest_of(journey: Journey) -> str:
    """A fingerprint of what the journey means (not of its comments or layout)."""
    canonical = json.dumps(journey.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _targets(journey: Journey) -> dict[str, dict[str, str]]:
    """For each step, trigger -> destination state name."""
    ids = journey.step_ids()
    following = {sid: (ids[i + 1] if i + 1 < len(ids) else "completed") for i, sid in enumerate(ids)}

    def resolve(target: str, sid: str) -> str:
        if target == "next":
            return following[sid]
        if target == "exit":
            return "exited"
        return target

    out: dict[str, dict[str, str]] = {}
    for sid, step in zip(ids, journey.steps, strict=True):
        if step.branch is not None:
            out[sid] = {"yes": resolve(step.branch.then, sid), "no": resolve(step.branch.otherwise, sid)}
        elif step.exit is not None:
            out[sid] = {"next": "exited"}
        else:
            out[sid] = {"next": following[sid]}
        out[sid]["goal"] = "converted"
    return out


def instant_cycle(journey: Journey) -> list[str]:
    """A loop of steps that passes no wait (it would spin forever within one tick), or []."""
    targets = _targets(journey)
    kinds = dict(zip(journey.step_ids(), (s.kind for s in journey.steps), strict=True))
    state: dict[str, int] = {}

    def visit(sid: str, trail: list[str]) -> list[str]:
        if sid not in kinds or kinds[sid] == "wait":
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

    for sid in kinds:
        found = visit(sid, [])
        if found:
            return found
    return []


def compile_journey(journey: Journey, file: str = "<journey>") -> JourneyPlan:
    """Build the plan of a validated journey (see ``spec.load`` for validation)."""
    ids = journey.step_ids()
    states = [*ids, *TERMINAL]
    targets = _targets(journey)
    machine = Machine(
        model=None,
        states=states,
        initial=ids[0],
        auto_transitions=False,
        transitions=[
            {"trigger": trigger, "source": sid, "dest": dest}
            for sid, by_trigger in targets.items()
            for trigger, dest in by_trigger.items()
        ],
    )
    table = np.full((len(states), len(TRIGGERS)), NO_STATE, dtype=np.int16)
    for trigger_code, trigger in enumerate(TRIGGERS):
        event = machine.events.get(trigger)
        if event is None:
            continue
        for source, transitions in event.transitions.items():
            dest = transitions[0].dest
            assert dest is not None, "every journey transition has a destination"
            table[states.index(source), trigger_code] = states.index(dest)

    steps = []
    for code, (sid, step) in enumerate(zip(ids, journey.steps, strict=True)):
        steps.append(
            StepPlan(
                id=sid,
                code=code,
                kind=step.kind,
                send=step.send,
                wait_us=_us(step.wait) if step.wait is not None else None,
                condition=lang.parse(step.branch.condition) if step.branch is not None else None,
                exit_reason=step.exit,
            )
        )
    return JourneyPlan(
        journey=journey,
        digest=digest_of(journey),
        file=file,
        signal=lang.parse(journey.signal),
        segment=lang.parse(journey.segment) if journey.segment else None,
        metrics={name: lang.parse(text) for name, text in journey.metrics.items()},
        steps=steps,
        states=states,
        table=table,
        machine=machine,
    )


def trigger_code(trigger: str) -> int:
    return TRIGGERS.index(trigger)
