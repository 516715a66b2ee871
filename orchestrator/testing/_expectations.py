"""Checking a test case's expectations against what the engine stored, in words a marketer reads.

Each check returns ``None`` (met) or one line: what was expected, then what was found, e.g.
``ann: expected a message at step 'reminder' (email) at +2h ±1h containing "Ann"; found: email at step
'reminder' at +3h ("Hi Ann, your cart ...")``. When nothing at all was found, the line says why when the
store knows: the customer did not enter, was held out, or the message was suppressed (with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.clock import from_us
from orchestrator.language import JourneyPlan, StepKind
from orchestrator.store import ConversionRow, LedgerRow
from orchestrator.testing._test_files import Expectation, format_offset, format_span
from orchestrator.testing.world import Instance

#: How many found items a failure lists before "and N more".
SHOWN = 4


@dataclass
class Observed:
    """What one test case left in its store, and the journeys it ran."""

    start: datetime
    plans: dict[str, JourneyPlan]
    instances: list[Instance]
    messages: list[LedgerRow]
    conversions: list[ConversionRow]

    def when(self, instant: datetime) -> str:
        return format_offset(instant, self.start)


def step_problems(expectation: Expectation, plans: dict[str, JourneyPlan]) -> list[str]:
    """Names in the expectation that the journeys do not have (a step, a journey), as messages."""
    spec = expectation.spec
    chosen = [plans[expectation.journey]] if expectation.journey in plans else list(plans.values())
    if expectation.journey is not None and expectation.journey not in plans:
        return [f"journey {expectation.journey!r} is not run by this test ({', '.join(plans)})"]
    step = spec.get("step")
    if step is None:
        return []
    steps = {s.id: s for p in chosen for s in p.steps}
    if step not in steps:
        import difflib

        close = difflib.get_close_matches(step, list(steps), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f" (steps: {', '.join(steps)})"
        return [f"no step {step!r} in {', '.join(p.id for p in chosen)}{hint}"]
    kind = steps[step].kind
    if expectation.kind in ("sent", "suppressed") and kind != StepKind.SEND:
        return [f"step {step!r} is a {kind} step, not a send step"]
    leaves = (StepKind.BRANCH, StepKind.WAIT_FOR, StepKind.WAIT_UNTIL, StepKind.SPLIT, StepKind.EXIT)
    if expectation.kind == "exits" and kind not in leaves:
        return [f"step {step!r} is a {kind} step: customers leave at a branch, a wait_for or an exit step"]
    return []


def check(expectation: Expectation, seen: Observed) -> str | None:
    """``None`` when the expectation is met, else the line saying what was expected and what was found."""
    journeys = {expectation.journey} if expectation.journey else set(seen.plans)
    who = expectation.customer
    instances = [i for i in seen.instances if i.customer == who and i.journey in journeys]
    messages = [m for m in seen.messages if m.customer_id == who and m.journey_id in journeys]
    conversions = [c for c in seen.conversions if c.customer_id == who and c.journey_id in journeys]
    kind = expectation.kind
    if kind == "enters":
        result = _enters(expectation.spec, instances, seen)
    elif kind in ("sent", "suppressed"):
        result = _messages(kind, expectation.spec, messages, instances, seen)
    elif kind in ("exits", "still_in"):
        result = _exits(kind, expectation.spec, instances, seen)
    else:
        result = _converted(expectation.spec, conversions, instances, seen)
    return None if result is None else f"{who}: {result}"


# ---------------------------------------------------------------------------------------------- words


def _timing(spec: dict[str, Any], seen: Observed) -> str:
    if spec.get("at") is None:
        return ""
    within = spec.get("within") or timedelta(0)
    tolerance = f" ±{format_span(within)}" if within > timedelta(0) else ""
    return f" at {seen.when(spec['at'])}{tolerance}"


def _in_time(spec: dict[str, Any], instant: datetime | None) -> bool:
    if spec.get("at") is None:
        return True
    if instant is None:
        return False
    return abs(instant - spec["at"]) <= (spec.get("within") or timedelta(0))


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _snippet(text: str | None, size: int = 40) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= size else flat[: size - 3].rstrip() + "..."


def _arm(instance: Instance) -> str:
    return "holdout" if instance.holdout else "treatment"


def _entries(instances: list[Instance], seen: Observed) -> str:
    return _listing([f"entered at {seen.when(i.entered)} ({_arm(i)} arm)" for i in instances])


def _why_nothing(instances: list[Instance], messages: list[LedgerRow], seen: Observed) -> str:
    """Why a customer got no message: not entered, held out, or the ledger's statuses and reasons."""
    if not instances:
        return "the customer never entered the journey"
    if all(i.holdout for i in instances):
        return (
            "the customer is in the holdout arm (decided by the published holdout hash of the id): "
            "choose another id, or set holdout: 0 for the test"
        )
    others = [m for m in messages if m.status != "sent"]
    if others:
        return "no message was sent; " + _listing([_message(m, seen) for m in others])
    return "no message was sent; the customer " + _listing([_outcome(i, seen) for i in instances])


def _message(m: LedgerRow, seen: Observed) -> str:
    instant = from_us(m.sent_us if m.status == "sent" and m.sent_us else m.created_us)
    what = f"{m.channel} at step {m.step!r} at {seen.when(instant)}"
    if m.status == "sent":
        text = m.body or m.title or m.subject
        return f'{what} ("{_snippet(text)}")' if text else what
    return f"{what} {m.status}" + (f" ({m.reason})" if m.reason else "")


# ---------------------------------------------------------------------------------------------- checks


def _enters(spec: dict[str, Any], instances: list[Instance], seen: Observed) -> str | None:
    if not spec["enters"]:
        return None if not instances else f"expected not to enter; found: {_entries(instances, seen)}"
    arm = spec.get("arm")
    times = spec.get("times")
    matching = [i for i in instances if _in_time(spec, i.entered) and (arm is None or _arm(i) == arm)]
    ok = len(matching) == times if times is not None else bool(matching)
    if ok:
        return None
    wanted = "to enter" + (f" {times} time(s)" if times is not None else "")
    wanted += _timing(spec, seen) + (f" in the {arm} arm" if arm else "")
    found = _entries(instances, seen) if instances else "did not enter"
    if arm == "treatment" and instances and all(i.holdout for i in instances):
        found += " (the published holdout hash holds this id out: choose another id, or set holdout: 0)"
    return f"expected {wanted}; found: {found}"


def _messages(
    kind: str, spec: dict[str, Any], messages: list[LedgerRow], instances: list[Instance], seen: Observed
) -> str | None:
    status = "sent" if kind == "sent" else "suppressed"
    rows = [m for m in messages if m.status == status]

    def instant(m: LedgerRow) -> datetime:
        return from_us(m.sent_us if status == "sent" and m.sent_us else m.created_us)

    def fits(m: LedgerRow) -> bool:
        if spec.get("step") not in (None, m.step) or spec.get("channel") not in (None, m.channel):
            return False
        if not _in_time(spec, instant(m)):
            return False
        if "reason" in spec and spec["reason"].lower() not in (m.reason or "").lower():
            return False
        if "subject" in spec and spec["subject"] not in (m.subject or ""):
            return False
        texts = " ".join(t for t in (m.subject, m.body, m.html, m.title, m.link) if t)
        return all(part in texts for part in spec.get("contains", ()))

    matching = [m for m in rows if fits(m)]
    count = spec.get("count")
    if (count is None and matching) or (count is not None and len(matching) == count):
        return None
    noun = "message" if kind == "sent" else "suppressed message"
    if count == 0:
        wanted = f"no {noun}"
    elif count is None:
        wanted = f"a {noun}"
    else:
        wanted = f"{count} {noun}(s)"
    if spec.get("step"):
        wanted += f" at step {spec['step']!r}"
    if spec.get("channel"):
        wanted += f" ({spec['channel']})"
    wanted += _timing(spec, seen)
    if spec.get("subject"):
        wanted += f" with the subject containing {spec['subject']!r}"
    if spec.get("contains"):
        wanted += " containing " + " and ".join(f'"{c}"' for c in spec["contains"])
    if spec.get("reason"):
        wanted += f" for a reason containing {spec['reason']!r}"
    shown = matching if count is not None and matching else rows
    if shown:
        found = _listing([_message(m, seen) for m in shown])
        if count is not None and matching:
            found = f"{len(matching)}: {found}"
    elif kind == "sent":
        found = _why_nothing(instances, messages, seen)
    else:
        others = [_message(m, seen) for m in messages]
        found = "nothing suppressed" + (f"; {_listing(others)}" if others else "")
    return f"expected {wanted}; found: {found}"


def _outcome(i: Instance, seen: Observed) -> str:
    if i.status == "active":
        return f"still inside at step {i.state!r}"
    when = f" at {seen.when(i.exited)}" if i.exited is not None else ""
    if i.status == "completed":
        return f"completed the journey{when}"
    if i.status == "converted":
        return f"left on reaching the goal{when} ({i.reason})"
    return f"exited{when} ({i.reason})"


def _left_at(spec: dict[str, Any], i: Instance, seen: Observed) -> bool:
    how = spec.get("how")
    if how == "goal" and i.status != "converted":
        return False
    if how == "exit_when" and not (i.status == "exited" and i.reason == "exit_when"):
        return False
    if how == "completed" and i.status != "completed":
        return False
    if i.status == "active":
        return False
    reason = i.reason or ""
    if "reason" in spec and spec["reason"].lower() not in reason.lower():
        return False
    step_id = spec.get("step")
    if step_id is not None:
        step = next((s for p in seen.plans.values() for s in p.steps if s.id == step_id), None)
        if step is None:
            return False
        if step.kind == StepKind.EXIT:
            left, answer = reason == step.exit_reason, None
        elif step.kind == StepKind.WAIT_UNTIL and reason == f"no {step.attribute} to wait for":
            left, answer = True, "no"
        else:
            prefix = f"{step.kind} {step_id}: "
            left, answer = reason.startswith(prefix), reason.removeprefix(prefix)
        if not left or spec.get("answer") not in (None, answer):
            return False
    return _in_time(spec, i.exited)


def _exits(kind: str, spec: dict[str, Any], instances: list[Instance], seen: Observed) -> str | None:
    if not instances:
        return f"expected {'to be inside' if kind == 'still_in' else 'an exit'}; found: did not enter"
    if kind == "still_in" or spec.get("inside"):
        step = spec.get("step")
        if any(i.status == "active" and step in (None, i.state) for i in instances):
            return None
        where = f" at step {step!r}" if step else ""
        return (
            f"expected to be still inside{where}; found: {_listing([_outcome(i, seen) for i in instances])}"
        )
    if any(_left_at(spec, i, seen) for i in instances):
        return None
    how = spec.get("how")
    words = {"goal": "to leave on reaching the goal", "exit_when": "to leave by exit_when"}
    wanted = words.get(how or "", "to complete the journey" if how == "completed" else "to leave")
    if spec.get("step"):
        wanted += f" at step {spec['step']!r}" + (f" (answer {spec['answer']})" if "answer" in spec else "")
    if spec.get("reason"):
        wanted += f" for a reason containing {spec['reason']!r}"
    wanted += _timing(spec, seen)
    return f"expected {wanted}; found: {_listing([_outcome(i, seen) for i in instances])}"


def _converted(
    spec: dict[str, Any], conversions: list[ConversionRow], instances: list[Instance], seen: Observed
) -> str | None:
    def fits(c: ConversionRow) -> bool:
        revenue = spec.get("revenue")
        return _in_time(spec, from_us(c.converted_us)) and (
            revenue is None or abs(c.revenue - revenue) < 1e-9
        )

    found = [
        f"converted at {seen.when(from_us(c.converted_us))} (revenue {c.revenue:g})" for c in conversions
    ]
    if not spec["converted"]:
        return None if not conversions else f"expected no conversion; found: {_listing(found)}"
    if any(fits(c) for c in conversions):
        return None
    wanted = "a conversion" + _timing(spec, seen)
    if spec.get("revenue") is not None:
        wanted += f" with revenue {spec['revenue']:g}"
    if not found:
        found = ["no conversion" + ("" if instances else " (the customer never entered the journey)")]
    return f"expected {wanted}; found: {_listing(found)}"
