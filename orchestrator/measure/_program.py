"""The whole program's lift (``program_lift``): the customers of the global holdout, whom no journey
messages, against everyone else, over a period.

The unit is a customer of the store, not an entry: every known customer is in the global holdout or not by
the global layer's hash (``holdout.buckets(GLOBAL_SEED, id)`` against the percent), whether or not they ever
entered a journey, so the two groups are random halves of the same base and differ only in whether the
journeys could message them. Over the period (from the first tick the store recorded, or a given instant,
to the report instant, not included) each customer counts:

- **converted**: at least one event of the conversion event (the goal event most journeys use, or the one
  named) in the period;
- **revenue**: the sum of that event's revenue property in the period (when the journeys that count it
  name one), so the mean is revenue per customer.

Both groups are compared with the report's own statistics (``analysis.analyze``: Newcombe interval and
z-test for the share converting, Welch for revenue per customer, the always-valid interval, the call and
the small-sample warnings), with a split check of the groups' sizes against the percent.

**The percent.** The store records, on every assignment the global layer decided, the percent in force;
the workspace config (or ``$ORCHESTRATOR_GLOBAL_HOLDOUT``) says the percent the engine runs with now. Both
are read: the percents in force over time are the recorded ones and the configured one (0 configured means
none set, not a ramp to zero, when the store recorded one). Because the layer is a threshold on a fixed
bucket, the customers under the smallest percent were held out all along and those at or above the largest
were never held out; customers in between were held out for part of the time and are left out of both
groups (counted in ``left_out``). With no percent at all (none configured, no assignment in the layer) the
program cannot be measured, and the result says so. A configured percent the engine did not run with shows
in the store: customers of the holdout group that a journey assigned to its treatment arm are counted
(``treated_in_holdout``) and warned about.

Customers who never entered a journey in the period were messaged by nothing in either group: they dilute
both groups alike, so the lift is the program's effect per customer of the whole base (smaller than per
customer reached, never biased by who was reached).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.clock import from_us
from orchestrator.holdout import GLOBAL_SEED, buckets
from orchestrator.measure._analysis import MEAN, RATE, LiftAnalysis, MetricComparison, analyze
from orchestrator.measure._formats import Formatter, interval_text, metric_formatters, p_clause
from orchestrator.measure._text import call_text
from orchestrator.store import (
    Store,
    TextColumn,
    entered_customer_keys,
    first_tick_us,
    global_layer_percents,
    load_customer_values,
    load_events,
    max_tick_us,
    treated_customer_keys,
)

HELD_OUT, EVERYONE_ELSE = "global holdout", "everyone else"
"""The two groups the program's lift compares (the control first)."""
CONVERTED, REVENUE_PER_CUSTOMER = "converted", "revenue"
"""Metric names of the program's lift."""
NO_GLOBAL_HOLDOUT = "no global holdout: set global_holdout in orchestrator.yaml to measure the program"
MEAN_SPEC = ".2f"


@dataclass(frozen=True)
class ProgramLift:
    """The global holdout against everyone else over ``[since_us, as_of_us)``; ``analysis`` is None with
    ``note`` saying why when there is nothing to compare (no global holdout, no conversion event, an empty
    period)."""

    as_of_us: int | None
    since_us: int | None
    goal_event: str | None
    goal_source: str
    revenue_property: str | None
    percent: float | None  # the smallest percent in force: the holdout group's threshold
    top_percent: float | None  # the largest: everyone else's threshold
    recorded_percents: dict[float, int]
    configured_percent: float
    customers: int = 0
    held_out: int = 0
    everyone_else: int = 0
    left_out: int = 0
    entered_held_out: int = 0
    entered_everyone_else: int = 0
    treated_in_holdout: int = 0  # customers of the holdout group a journey assigned to treatment
    analysis: LiftAnalysis | None = None
    note: str = ""
    notes: tuple[str, ...] = ()

    def comparison(self, metric: str = CONVERTED) -> MetricComparison | None:
        """Everyone else against the global holdout on ``metric`` (None without an analysis or metric)."""
        if self.analysis is None:
            return None
        try:
            return next(iter(self.analysis.metric(metric).comparisons), None)
        except KeyError:
            return None

    @property
    def period_words(self) -> str:
        if self.since_us is None or self.as_of_us is None:
            return "no period"
        return f"{_instant(self.since_us)} to {_instant(self.as_of_us)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": None if self.as_of_us is None else from_us(self.as_of_us).isoformat(),
            "from": None if self.since_us is None else from_us(self.since_us).isoformat(),
            "unit": "customer of the store; the global layer's hash decides the group",
            "goal": {
                "event": self.goal_event,
                "chosen": self.goal_source,
                "revenue": self.revenue_property,
                "converted": "at least one goal event in the period",
            },
            "global_holdout": {
                "percent": self.percent,
                "largest_percent": self.top_percent,
                "recorded_percents": [
                    {"percent": p, "assignments": n} for p, n in self.recorded_percents.items()
                ],
                "configured_percent": self.configured_percent,
            },
            "customers": self.customers,
            "held_out": self.held_out,
            "everyone_else": self.everyone_else,
            "left_out": self.left_out,
            "entered_a_journey": {HELD_OUT: self.entered_held_out, EVERYONE_ELSE: self.entered_everyone_else},
            "treated_in_holdout": self.treated_in_holdout,
            "lift": None if self.analysis is None else self.analysis.to_dict(),
            "note": self.note,
            "notes": list(self.notes),
        }


def _instant(us: int) -> str:
    return from_us(us).strftime("%Y-%m-%d %H:%M UTC")


def program_goal(goals: Sequence[tuple[str | None, str | None]]) -> tuple[str | None, str | None, str]:
    """The conversion event the most journeys use as their goal (ties: the first by name), the revenue
    property the most of those name, and the choice in words. ``goals`` holds each journey's (goal event,
    revenue property); journeys with a condition goal or none hold (None, None)."""
    events = Counter(event for event, _ in goals if event)
    if not events:
        return None, None, "no journey has a goal event"
    event, count = min(events.items(), key=lambda item: (-item[1], item[0]))
    return event, _revenue_of(goals, event), f"the goal of {count} of {len(goals)} journeys"


def _revenue_of(goals: Sequence[tuple[str | None, str | None]], event: str) -> str | None:
    revenues = Counter(revenue for e, revenue in goals if e == event and revenue)
    if not revenues:
        return None
    return min(revenues.items(), key=lambda item: (-item[1], item[0]))[0]


def program_lift(
    store: Store,
    as_of_us: int | None = None,
    *,
    since_us: int | None = None,
    goals: Sequence[tuple[str | None, str | None]] = (),
    goal_event: str | None = None,
    configured_percent: float = 0.0,
    alpha: float = 0.05,
) -> ProgramLift:
    """The program's lift (see the module docstring). ``as_of_us`` defaults to the last tick's instant,
    ``since_us`` to the first tick's; ``goals`` are the journeys' (goal event, revenue property), from which
    the conversion event is chosen unless ``goal_event`` names one; ``configured_percent`` is the global
    holdout the engine runs with now (0: none configured)."""
    if not 0.0 <= configured_percent <= 100.0:
        raise ValueError(f"the global holdout is a percent between 0 and 100, not {configured_percent:g}")
    event: str | None
    if goal_event is not None:
        event, revenue, source = goal_event, _revenue_of(goals, goal_event), "as asked"
    else:
        event, revenue, source = program_goal(goals)
    with store.connect() as conn:
        recorded = global_layer_percents(conn)
        as_of = as_of_us if as_of_us is not None else max_tick_us(conn)
        since = since_us if since_us is not None else first_tick_us(conn)
        base = ProgramLift(
            as_of_us=as_of, since_us=since, goal_event=event, goal_source=source, revenue_property=revenue,
            percent=None, top_percent=None, recorded_percents=recorded, configured_percent=configured_percent,
        )  # fmt: skip
        percents = sorted(set(recorded) | ({configured_percent} if configured_percent > 0.0 else set()))
        if not percents:
            return _with(base, note=NO_GLOBAL_HOLDOUT)
        base = _with(base, percent=percents[0], top_percent=percents[-1])
        if event is None:
            return _with(base, note="no journey has a goal event to count: name the conversion event")
        if as_of is None or since is None:
            return _with(base, note="no tick recorded yet: the period has no start or end")
        if since >= as_of:
            return _with(base, note=f"the period is empty: {_instant(since)} is not before {_instant(as_of)}")
        customers = load_customer_values(conn, ["id"])
        events = load_events(
            conn, until_us=as_of, since_us=since, properties=[revenue] if revenue else [], only=[event],
            n_customers=customers.n,
        )  # fmt: skip
        entered = entered_customer_keys(conn, since, as_of)
        treated = treated_customer_keys(conn)
    keys = customers.keys
    ids = np.array([str(v) for v in customers.values["id"]], dtype=object)
    bucket = buckets(GLOBAL_SEED, ids) if len(ids) else np.zeros(0)
    held = bucket < percents[0] / 100.0
    rest = bucket >= percents[-1] / 100.0
    n = events.n_customers
    counts = np.bincount(events.customer, minlength=n)
    converted = (counts[keys] > 0).astype(np.float64)
    metrics: dict[str, np.ndarray] = {CONVERTED: converted}
    if revenue:
        amounts = _numbers(events.properties[revenue], len(events.customer))
        spent = np.bincount(events.customer, weights=np.nan_to_num(amounts, nan=0.0), minlength=n)
        metrics[REVENUE_PER_CUSTOMER] = spent[keys]
    in_journey = np.isin(keys, entered)
    chosen = held | rest
    labels = np.where(held, HELD_OUT, EVERYONE_ELSE).astype(object)[chosen]
    low, high = percents[0], percents[-1]
    declared = f"{low:g}% in the global holdout" + (
        "" if low == high else f", everyone else above {high:g}% (the percent changed)"
    )
    analysis = analyze(
        labels,
        HELD_OUT,
        {name: values[chosen] for name, values in metrics.items()},
        kinds={CONVERTED: RATE, REVENUE_PER_CUSTOMER: MEAN},
        expected_shares={HELD_OUT: low, EVERYONE_ELSE: 100.0 - high},
        split_declared=declared,
        alpha=alpha,
    )
    result = _with(
        base,
        customers=len(keys),
        held_out=int(held.sum()),
        everyone_else=int(rest.sum()),
        left_out=int((~chosen).sum()),
        entered_held_out=int((in_journey & held).sum()),
        entered_everyone_else=int((in_journey & rest).sum()),
        treated_in_holdout=int((held & np.isin(keys, treated)).sum()),
        analysis=analysis,
    )
    return _with(result, notes=_notes(result))


def _with(program: ProgramLift, **changes: Any) -> ProgramLift:
    from dataclasses import replace

    return replace(program, **changes)


def _numbers(column: Any, n: int) -> np.ndarray:
    """A property column as float64 (text that is not a number, and missing values, read as NaN)."""
    if isinstance(column, TextColumn):
        table = np.array(
            [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
             for v in column.values.tolist()] + [np.nan],
            np.float64,
        )  # fmt: skip
        return table[np.where(column.codes >= 0, column.codes, len(table) - 1)]
    return np.asarray(column, np.float64).reshape(n)


def _notes(program: ProgramLift) -> tuple[str, ...]:
    notes = []
    not_entered = (
        program.held_out - program.entered_held_out,
        program.everyone_else - program.entered_everyone_else,
    )
    notes.append(
        f"customers who never entered a journey in the period ({not_entered[0]:,} of the holdout, "
        f"{not_entered[1]:,} of everyone else) dilute both groups alike: the lift is per customer of the "
        "whole base, not per customer reached"
    )
    configured, recorded = program.configured_percent, sorted(program.recorded_percents)
    if recorded and configured > 0.0 and recorded != [configured]:
        notes.append(
            f"the workspace config sets {configured:g}%, the store recorded "
            f"{', '.join(f'{p:g}%' for p in recorded)} on past assignments"
        )
    elif recorded and configured == 0.0:
        notes.append(
            f"percent as the store recorded it ({', '.join(f'{p:g}%' for p in recorded)}); the workspace "
            "config sets none now"
        )
    if program.treated_in_holdout:
        notes.append(
            f"WARNING: {program.treated_in_holdout:,} customers of the holdout group were assigned to a "
            "journey's treatment arm, so the global holdout was not in force for them (the engine ran with a "
            "smaller percent than the one read here): the lift understates the program's"
        )
    if program.left_out:
        notes.append(
            f"{program.left_out:,} customers between {program.percent:g}% and {program.top_percent:g}% were "
            "held out for part of the time and are left out of both groups"
        )
    return tuple(notes)


def program_call_text(comparison: MetricComparison, absolute: Formatter) -> str:
    """The call on one of the program's comparisons in words (its unit is a customer, not an entry)."""
    if comparison.verdict is None:
        return "n/a"
    return call_text(comparison.verdict, absolute).replace(" more entries", " more customers")


def program_lines(program: ProgramLift, currency: str | None = None) -> list[str]:
    """The program's lift as text: one line of what is compared, then per metric the groups, the lift and
    the call, then the notes; revenue in ``currency``."""
    head = "The whole program: the global holdout (messaged by no journey) against everyone else"
    if program.analysis is None:
        return [head, f"  {program.note}"]
    lines = [
        f"{head}, {program.period_words}",
        f"  {program.customers:,} customers: {program.held_out:,} in the {program.percent:g}% global "
        f"holdout, {program.everyone_else:,} everyone else; converted = at least one {program.goal_event} "
        f"({program.goal_source})",
    ]
    for metric in program.analysis.metrics:
        kind = metric.kind
        fmt, lfmt = metric_formatters(kind, MEAN_SPEC, currency, money=metric.name != CONVERTED)
        what = "share converting" if metric.name == CONVERTED else f"{program.revenue_property} per customer"
        arms = ", ".join(f"{arm.name} {fmt(arm.mean)} (n {arm.n:,})" for arm in metric.arms)
        lines.append(f"  {what}: {arms}")
        for c in metric.comparisons:
            lift = c.lift
            lines.append(
                f"    lift {lfmt(None if lift is None else lift.absolute)} (95% interval "
                f"{interval_text(None if lift is None else lift.absolute_ci, lfmt)}, "
                f"{p_clause(None if lift is None else lift.p_value)}); always-valid "
                f"{interval_text(c.always_valid_ci, lfmt)}"
            )
            if c.verdict is not None:
                lines.append(f"    call: {program_call_text(c, lfmt)}")
    srm = program.analysis.srm
    if srm is not None and srm.flagged:
        lines.append(
            f"  SAMPLE RATIO MISMATCH (p {srm.p_value:.2g}): the groups' sizes do not fit {srm.declared}"
        )
    lines += [f"  note: {note}" for note in program.notes]
    return lines
