"""Why an instance entered and why it finished, in words, from the journey's own definition.

The store keeps short reason codes (``exit_reason``): ``branch came_back: yes``, ``wait_for step-3: no``,
``exit_when``, ``goal: purchase``, an ``exit:`` step's own text, ``journey retired``, ``left by migration to
version 2``, ``completed``. Here each is read back against the journey version the instance ran (its
stored source) and said as a reader would: which step, and what happened there, with the branch's
condition, the event waited for or the timeout written out. The transition words come from the journey's
state machine (``language.transition_words``), which also labels the diagram's edges, so both say the same.
What ``why`` prints and the console shows is made here once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.language import Journey, transition_words
from orchestrator.signals import (
    CustomerFrame,
    Evaluator,
    EventFrame,
    column_from_values,
    free_names,
    lang,
    parse,
)

#: How a stored reason is classed (``finish_code`` in ``why --format json``).
EXIT_CODES = (
    "completed",  # went through every step
    "goal",  # reached the goal (and the goal ends the journey)
    "exit_when",  # the journey's exit_when became true
    "branch",  # a branch led to exit
    "wait_for",  # a wait for an event led to exit (the event came, or the timeout)
    "wait_until",  # a wait for a date attribute the customer does not have
    "split",  # a split arm led to exit
    "exit_step",  # an ``exit:`` step
    "retired",  # the journey was retired
    "migrated",  # a new version's ``migrate:`` sent the step to exit
    "other",  # a reason this version does not explain
)

_STEP_MOVE = re.compile(r"^(branch|wait_for|wait_until|split|wait|send) (\S+): (\S+)$")
_NO_ATTRIBUTE = re.compile(r"^no (\S+) to wait for$")
_MIGRATED = re.compile(r"^left by migration to version (\d+)$")


@dataclass(frozen=True)
class Reason:
    """A finish reason: its class (one of ``EXIT_CODES``) and the sentence that says it."""

    code: str
    words: str


def finish_reason(
    journey: Journey | None,
    status: str,
    stored: str | None,
    conversion: tuple[str | None, float] | None = None,
) -> Reason:
    """The words for an instance that finished with ``status`` and the stored reason ``stored``; ``journey``
    is the version it ran (None when its source is not stored: the code is said as it is);
    ``conversion`` (when, revenue) completes a goal's sentence."""
    reason = stored or status
    if status == "converted" or reason.startswith("goal: "):
        event = reason.removeprefix("goal: ") if reason.startswith("goal: ") else _goal_event(journey)
        words = f"reached the goal: {event}"
        if conversion is not None:
            at, revenue = conversion
            words += f" of {revenue:.2f}" if revenue else ""
            words += f" on {at[:10]}" if at else ""
        if journey is not None and journey.goal is not None and journey.goal.start == "first_send":
            words += f" ({journey.goal.window_words})"
        return Reason("goal", words)
    if status == "completed" or reason == "completed":
        return Reason("completed", "went through every step")
    if reason == "exit_when":
        condition = journey.exit_when if journey is not None else None
        return Reason(
            "exit_when",
            f"left because exit_when held: {condition}" if condition else "left because exit_when held",
        )
    if reason == "journey retired":
        return Reason("retired", "left when the journey was retired")
    migrated = _MIGRATED.match(reason)
    if migrated:
        return Reason(
            "migrated", f"left when version {migrated.group(1)} of the journey moved this step to exit"
        )
    steps = _steps(journey)
    move = _STEP_MOVE.match(reason)
    if move and journey is not None and move.group(2) in steps:
        kind, step_id, trigger = move.groups()
        said = transition_words(steps[step_id], trigger, journey)
        return Reason(kind if kind in EXIT_CODES else "other", f"left at {step_id} because {said}")
    missing = _NO_ATTRIBUTE.match(reason)
    if missing:
        where = next(
            (
                sid
                for sid, s in steps.items()
                if s.wait_until is not None and s.wait_until.attribute == missing[1]
            ),
            None,
        )
        at = f" at {where}" if where else ""
        return Reason("wait_until", f"left{at} because the customer has no {missing.group(1)} to wait for")
    exits = [sid for sid, s in steps.items() if s.exit is not None and s.exit == reason]
    if exits:
        return Reason("exit_step", f"left at {exits[0]}: {reason}")
    return Reason("other", reason)


def entry_reason(journey: Journey | None, values: dict[str, Any] | None, recorded: bool) -> str:
    """Why the instance entered: the entry condition as written, then the recorded values of the names it
    reads (``days_quiet = 34.2``); for an entry before values were recorded, that they were not."""
    if journey is None:
        return "entered (the journey version's source is not stored)"
    entry = journey.effective_entry
    parts = []
    if entry.event is not None:
        parts.append(f"a {entry.event} event came")
    if entry.signal:
        part = held_part(entry.signal, values or {})
        parts.append(f"the signal held by its part {part}" if part else f"the signal held: {entry.signal}")
    if entry.segment:
        parts.append(f"the segment held: {entry.segment}")
    said = (
        "entered because " + " and ".join(parts) if parts else "entered (the journey lets every customer in)"
    )
    if values:
        said += " (" + ", ".join(f"{name} = {format_value(v)}" for name, v in values.items()) + ")"
    elif not recorded and _names_read(entry.signal, entry.segment):
        said += " (metric values not recorded for this entry)"
    return said


def format_value(value: Any) -> str:
    """A recorded value as a reader writes it: 34.2, 3, true, "shoes", none."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def held_part(condition: str, values: dict[str, Any]) -> str | None:
    """Which of the ``or`` alternatives of ``condition`` held for these recorded values (the first that
    did), when the condition has several and that one reads only recorded values (no event aggregate);
    else None."""
    tokens = lang.tokenize(condition)
    depth, start, parts = 0, 0, []
    for token in tokens:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif (token.kind == "or" and depth == 0) or token.kind == "end":
            parts.append(condition[start : token.pos].strip())
            start = token.pos + len(token.text)
    if len(parts) < 2:
        return None
    for part in parts:
        node = parse(part)
        names = {n.parts[0] for n in free_names(node) if len(n.parts) == 1}
        if lang.aggregates(node) or not names <= values.keys():
            continue
        columns = {name: column_from_values([values[name]]) for name in names}
        frame = CustomerFrame(1, np.ones(1, bool), columns)
        if bool(Evaluator(EventFrame.empty(1), frame, 0).condition(node)[0]):
            return part
    return None


def _names_read(*conditions: str | None) -> bool:
    """Whether the conditions name any metric or customer attribute (values an entry records)."""
    return any(
        bool(text) and any(len(n.parts) == 1 for n in free_names(parse(text or ""))) for text in conditions
    )


def _steps(journey: Journey | None) -> dict[str, Any]:
    if journey is None:
        return {}
    return dict(zip(journey.step_ids(), journey.steps, strict=True))


def _goal_event(journey: Journey | None) -> str:
    return journey.goal.what if journey is not None and journey.goal is not None else "the goal"
