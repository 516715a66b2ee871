"""Which send step each entrant would reach first, judged now, for all entrants at once.

Entrants start at the journey's first step and move through its transition table (``plan.table``) as sets,
as the stepper moves instances, until each reaches a send step (its first message) or leaves without one.
What cannot be known before it happens is decided the same way for everyone and said in a note:

- waits (``wait``, ``wait_until`` a time) are passed as if their time had come; a ``wait_until`` a date
  attribute (or its anniversary) too, said in words in a note, and takes its ``missing`` path for
  customers without a readable date;
- a ``branch`` on a condition over customers is judged on today's data; one that reads the entry event or
  an event captured by a ``wait_for``, or an event branch, takes its ``no`` path (nothing seen yet);
- a ``wait_for`` takes its timeout path (the event did not come);
- a ``split`` assigns arms with the engine's hash, as if the customer entered now.
"""

from __future__ import annotations

import numpy as np

from orchestrator.engine._localtime import readable_dates
from orchestrator.holdout import split_arms
from orchestrator.language import JourneyPlan, StepKind, split_trigger, until_words
from orchestrator.signals import Evaluator

#: Where an entrant ends up when no send step comes before the journey ends.
NO_SEND = -1


def first_sends(
    plan: JourneyPlan, evaluator: Evaluator, keys: np.ndarray, ids: np.ndarray, now_us: int
) -> tuple[np.ndarray, list[str]]:
    """Per entrant (``keys``, with their business ``ids``): the code of the first send step it reaches, or
    ``NO_SEND``; and the notes on what was assumed (see the module docstring)."""
    n_steps = len(plan.steps)
    at = np.zeros(len(keys), np.int64)  # every entrant starts at the first step
    out = np.full(len(keys), NO_SEND, np.int64)
    moving = np.ones(len(keys), bool)
    notes: dict[str, None] = {}
    steps = dict(zip(plan.journey.step_ids(), plan.journey.steps, strict=True))
    for _ in range(2 * n_steps + 2):
        if not moving.any():
            break
        for code in np.unique(at[moving]).tolist():
            sel = np.flatnonzero(moving & (at == code))
            if code >= n_steps:  # finished without a send
                moving[sel] = False
                continue
            step = plan.steps[code]
            trigger: str | np.ndarray = "next"
            if step.kind == StepKind.SEND:
                out[sel] = code
                moving[sel] = False
                continue
            if step.kind == StepKind.WAIT_UNTIL and step.attribute is not None:
                readable = readable_dates(evaluator.customers.column(step.attribute)[keys[sel]])
                trigger = np.where(readable, "next", "no")
                wait = steps[step.id].wait_until
                assert wait is not None
                until = until_words(wait)
                notes[
                    f"{step.id}: the wait until {until} is taken to have come "
                    f"(customers without a readable {step.attribute}: its missing path)"
                ] = None
            elif step.kind == StepKind.WAIT_FOR:
                trigger = "no"
                notes[f"{step.id}: the wait for {step.event} is taken to time out"] = None
            elif step.kind == StepKind.BRANCH:
                if step.condition is not None and not step.instance_names:
                    holds = evaluator.condition(step.condition)[keys[sel]]
                    trigger = np.where(holds, "yes", "no")
                else:
                    trigger = "no"
                    notes[
                        f"{step.id}: the branch is taken to say no (it reads what has not happened yet)"
                    ] = None
            elif step.kind == StepKind.SPLIT:
                percents = [percent for _, percent in step.split]
                arm = split_arms(plan.id, step.id, ids[sel], np.full(len(sel), now_us), percents)
                trigger = np.array([split_trigger(a) for a in range(len(percents))], dtype=object)[arm]
            _move(plan, at, sel, code, trigger)
    return out, list(notes)


def _move(plan: JourneyPlan, at: np.ndarray, sel: np.ndarray, code: int, trigger: str | np.ndarray) -> None:
    """Move the entrants ``sel`` at step ``code`` along ``trigger`` (one for all, or one each)."""
    if isinstance(trigger, str):
        at[sel] = plan.table[code, plan.trigger(trigger)]
        return
    for name in np.unique(trigger.astype(str)).tolist():
        at[sel[trigger == name]] = plan.table[code, plan.trigger(name)]
