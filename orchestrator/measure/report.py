"""The lift report of a journey, read from the store alone.

The unit is an entry (a journey instance). Its arm was fixed when it entered; it converted when the
journey's goal event happened within the goal window after entry, recorded the same way for both arms.
Only entries whose goal window has closed by the report instant are counted: an entry still inside its
window has not had its full chance to convert, and counting it would bias rates towards zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import text

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND, format_duration
from orchestrator.measure.stats import LiftResult, compare_arms
from orchestrator.spec import SpecError, load_journey_text
from orchestrator.store import Store

TREATMENT, HOLDOUT = "treatment", "holdout"


@dataclass(frozen=True)
class JourneyReport:
    journey_id: str
    version: int
    as_of_us: int
    goal_event: str | None
    goal_window: timedelta | None
    revenue_property: str | None
    entries: int
    matured: int
    lift: LiftResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "version": self.version,
            "as_of": from_us(self.as_of_us).isoformat(),
            "goal": None
            if self.goal_event is None
            else {
                "event": self.goal_event,
                "within": format_duration(self.goal_window) if self.goal_window else None,
                "revenue": self.revenue_property,
            },
            "entries": self.entries,
            "matured_entries": self.matured,
            "still_in_window": self.entries - self.matured,
            "unit": "entry (journey instance); arm fixed at entry",
            **({"lift": self.lift.to_dict()} if self.lift is not None else {"lift": None}),
        }


def journey_report(
    store: Store, journey_id: str, as_of_us: int | None = None, alpha: float = 0.05
) -> JourneyReport:
    """Build the report of ``journey_id`` as of ``as_of_us`` (default: the last tick's instant).

    Raises ``KeyError`` with a readable message when the journey never ran in this store.
    """
    with store.connect() as conn:
        version_row = conn.execute(
            text("SELECT version, source FROM journey_versions WHERE journey_id = :j ORDER BY version DESC"),
            {"j": journey_id},
        ).first()
        if version_row is None:
            known = [
                r[0] for r in conn.execute(text("SELECT DISTINCT journey_id FROM journey_versions")).all()
            ]
            raise KeyError(
                f"journey {journey_id!r} has not run in this store (known: {', '.join(known) or 'none'})"
            )
        if as_of_us is None:
            last = conn.execute(text("SELECT MAX(now_us) FROM ticks")).scalar()
            as_of_us = int(last) if last is not None else 0
        rows = conn.execute(
            text(
                "SELECT i.id, i.holdout, i.entered_us, c.instance_id IS NOT NULL, COALESCE(c.revenue, 0), "
                "c.converted_us FROM journey_instances i LEFT JOIN conversions c ON c.instance_id = i.id "
                "WHERE i.journey_id = :j AND i.entered_us <= :t"
            ),
            {"j": journey_id, "t": as_of_us},
        ).all()
    try:
        goal = load_journey_text(version_row[1], f"<stored {journey_id} v{version_row[0]}>").journey.goal
    except SpecError:
        goal = None
    entries = len(rows)
    if goal is None:
        return JourneyReport(journey_id, version_row[0], as_of_us, None, None, None, entries, 0, None)

    window_us = round(goal.within.total_seconds() * US_PER_SECOND)
    held = np.array([bool(r[1]) for r in rows], dtype=bool)
    entered = np.array([r[2] for r in rows], dtype=np.int64)
    converted_at = np.array([r[5] if r[5] is not None else -1 for r in rows], dtype=np.int64)
    # A conversion recorded after the report instant did not exist yet as of that instant.
    converted = np.array([bool(r[3]) for r in rows], dtype=bool) & (converted_at < as_of_us)
    revenue = np.where(converted, np.array([float(r[4]) for r in rows], dtype=float), 0.0)
    matured = entered + window_us <= as_of_us
    arms = np.where(held, HOLDOUT, TREATMENT)[matured]
    lift = compare_arms(arms, converted[matured], revenue[matured], HOLDOUT, alpha) if matured.any() else None
    return JourneyReport(
        journey_id,
        version_row[0],
        as_of_us,
        goal.event,
        goal.within,
        goal.revenue,
        entries,
        int(matured.sum()),
        lift,
    )


# ---------------------------------------------------------------------------------------------- table


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f} pts"


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_table(report: JourneyReport) -> str:
    """The report as plain text for a terminal."""
    when = from_us(report.as_of_us).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Lift report: {report.journey_id} (version {report.version}), as of {when}"]
    if report.goal_event is None:
        lines.append(f"  this journey declares no goal; {report.entries} entries, nothing to measure")
        return "\n".join(lines)
    revenue = f", revenue from {report.revenue_property}" if report.revenue_property else ""
    assert report.goal_window is not None
    lines.append(
        f"  goal: {report.goal_event} within {format_duration(report.goal_window)} of entry{revenue}"
    )
    lines.append(
        f"  entries counted: {report.matured} whose goal window has closed "
        f"({report.entries - report.matured} still inside it are left out)"
    )
    lift = report.lift
    if lift is None:
        lines.append("  no entry has completed its goal window yet")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"  {'arm':10s} {'entries':>8s} {'converted':>10s} {'rate':>8s} {'revenue/entry':>14s}")
    for arm in sorted(lift.arms, key=lambda a: a.name != TREATMENT):
        lines.append(
            f"  {arm.name:10s} {arm.n:8d} {arm.conversions:10d} {_pct(arm.rate):>8s} "
            f"{_num(arm.revenue_per_customer):>14s}"
        )
    lines.append("")
    comparison = lift.comparisons[0] if lift.comparisons else None
    level = f"{(1 - lift.alpha) * 100:.0f}%"
    if comparison is None or comparison.rate is None:
        lines.append("  lift: not enough entries in both arms to compare (at least 2 in each)")
        return "\n".join(lines)
    r = comparison.rate
    rel = (
        f"relative {_pct(r.relative, True)} ({level} CI {_pct(r.relative_ci.low, True)} to "
        f"{_pct(r.relative_ci.high, True)})"
        if r.relative is not None and r.relative_ci
        else "relative n/a"
    )
    lines.append(
        f"  conversion rate lift: {_pts(r.absolute)} ({level} CI {_pts(r.absolute_ci.low)} to "
        f"{_pts(r.absolute_ci.high)}), {rel}, {_p(r.p_value)}"
    )
    m = comparison.revenue
    if m is not None and report.revenue_property:
        ci = (
            f" ({level} CI {_num(m.absolute_ci.low, True)} to {_num(m.absolute_ci.high, True)})"
            if m.absolute_ci
            else ""
        )
        mrel = f", relative {_pct(m.relative, True)}" if m.relative is not None else ""
        lines.append(f"  revenue per entry lift: {_num(m.absolute, True)}{ci}{mrel}, {_p(m.p_value)}")
    significant = r.p_value is not None and r.p_value < lift.alpha
    lines.append(
        "  "
        + (
            "the difference in conversion rate is statistically significant at this level"
            if significant
            else "the difference in conversion rate is not statistically significant at this level"
        )
    )
    return "\n".join(lines)
