"""Every journey's lift side by side (``orchestrator report --all``), corrected for looking at many at once.

Each journey's figures are its own report's (``journey_report``: entries whose goal window closed, treated
against its holdout, on the conversion rate), plus what the journey cost and bought:

- **messages sent** (the ledger's ``sent`` rows, test sends left out);
- **incremental conversions** = the absolute lift times the treated entries: the conversions the messages
  added over what the treated customers would have done held out; and **per 1,000 messages sent**;
- **incremental revenue** = the revenue-per-entry lift times the treated entries, and per 1,000 messages
  (journeys with a revenue property).

Reading many journeys at once, some will look like winners by chance. The portfolio therefore states two
corrections across the ``m`` journeys that have a comparison:

- **Benjamini-Hochberg q-values** of the conversion p-values (statsmodels ``multipletests``,
  ``fdr_bh``): a journey with ``q < alpha`` is selected with a false discovery rate of at most ``alpha``;
- **false-coverage-adjusted intervals** (Benjamini and Yekutieli 2005): with ``R`` journeys selected,
  every journey's interval of the absolute lift is the report's own (Newcombe) at level
  ``1 - max(R, 1) * alpha / m`` (``1 - alpha / m`` when none is selected), so the intervals of the selected
  journeys cover their true lifts with a false coverage rate of at most ``alpha``.

Each journey's call is its own report's (``_verdict``), read off its always-valid interval, and its
guardrail alarms its own report's (``_guardrails``: unsubscribes, complaints or bounces worse in the treated
arm, or complaints or hard bounces per message above their limits), named per journey.

With the journeys comes the whole program's lift (``_program``): the customers of the global holdout,
whom no journey messages, against everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from orchestrator.measure._formats import money_formatter, percent, points, points_span
from orchestrator.measure._journey import CONVERSION, REVENUE, JourneyReport, journey_report
from orchestrator.measure._numbers import Interval, interval_dict
from orchestrator.measure._program import ProgramLift, program_lift, program_lines
from orchestrator.measure._rates import ArmSummary, RateLift, rate_lift
from orchestrator.store import Store, journey_ids, sent_by_journey

METHOD = (
    "q-values: Benjamini-Hochberg across the journeys compared (statsmodels fdr_bh); adjusted intervals: "
    "Benjamini-Yekutieli false coverage rate, each journey's Newcombe interval at level "
    "1 - max(R, 1) alpha / m"
)


@dataclass(frozen=True)
class PortfolioRow:
    journey: str
    version: int
    treated: int
    held_out: int
    treated_rate: float | None
    held_out_rate: float | None
    lift: float | None  # absolute, on the conversion rate
    interval: Interval | None  # the journey's own fixed interval
    p_value: float | None
    q_value: float | None = None
    adjusted_interval: Interval | None = None
    call: str | None = None
    sent: int = 0
    incremental_conversions: float | None = None
    conversions_per_1000: float | None = None
    incremental_revenue: float | None = None
    revenue_per_1000: float | None = None
    note: str = ""  # why a journey has no comparison
    guardrail_alarms: tuple[str, ...] = ()  # the report's guardrails that alarm (``_guardrails``)
    guardrail_reasons: tuple[str, ...] = ()  # each alarm in words, with its figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "version": self.version,
            "treated": self.treated,
            "held_out": self.held_out,
            "treated_rate": self.treated_rate,
            "held_out_rate": self.held_out_rate,
            "lift": self.lift,
            "interval": interval_dict(self.interval),
            "p_value": self.p_value,
            "q_value": self.q_value,
            "adjusted_interval": interval_dict(self.adjusted_interval),
            "call": self.call,
            "sent": self.sent,
            "incremental_conversions": self.incremental_conversions,
            "incremental_conversions_per_1000_messages": self.conversions_per_1000,
            "incremental_revenue": self.incremental_revenue,
            "incremental_revenue_per_1000_messages": self.revenue_per_1000,
            "note": self.note,
            "guardrail_alarms": list(self.guardrail_alarms),
            "guardrail_reasons": list(self.guardrail_reasons),
        }


@dataclass(frozen=True)
class Portfolio:
    as_of_us: int | None
    alpha: float
    compared: int  # m: journeys with a conversion comparison and a p-value
    selected: int  # R: of those, with q < alpha
    rows: tuple[PortfolioRow, ...]
    method: str = METHOD
    currency: str | None = None  # ISO 4217: the currency revenue is written in (None: plain numbers)
    program: ProgramLift | None = None  # the global holdout against everyone else

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of_us": self.as_of_us,
            "alpha": self.alpha,
            "compared": self.compared,
            "selected": self.selected,
            "adjusted_level": adjusted_level(self.alpha, self.selected, self.compared),
            "method": self.method,
            "currency": self.currency,
            "journeys": [row.to_dict() for row in self.rows],
            "program": None if self.program is None else self.program.to_dict(),
        }


def adjusted_level(alpha: float, selected: int, compared: int) -> float | None:
    """The confidence level of the false-coverage-adjusted intervals: ``1 - R alpha / m``."""
    if compared == 0:
        return None
    return 1.0 - max(selected, 1) * alpha / compared


def portfolio(
    store: Store,
    as_of_us: int | None = None,
    alpha: float = 0.05,
    *,
    program_goal: str | None = None,
    program_since_us: int | None = None,
    global_percent: float = 0.0,
    currency: str | None = None,
) -> Portfolio:
    """Every journey that ran in the store, its report's figures side by side (see the module docstring),
    and the program's lift over ``program_since_us`` (default: the first tick) to the report instant, on
    ``program_goal`` (default: the goal event most journeys use), with ``global_percent`` the global
    holdout configured now (``_program.program_lift``)."""
    with store.connect() as conn:
        ids = sorted(journey_ids(conn))
        sent = sent_by_journey(conn)
    reports = [journey_report(store, j, as_of_us, alpha, currency=currency) for j in ids]
    rows = [_row(report, sent.get(report.journey_id, 0)) for report in reports]
    tested = [i for i, row in enumerate(rows) if row.p_value is not None]
    selected = 0
    if tested:
        from statsmodels.stats.multitest import multipletests

        p_values = [rows[i].p_value for i in tested]
        reject, q_values, _, _ = multipletests(p_values, alpha=alpha, method="fdr_bh")
        selected = int(np.count_nonzero(reject))
        level = adjusted_level(alpha, selected, len(tested))
        assert level is not None
        for i, q in zip(tested, q_values, strict=True):
            rows[i] = _adjusted(rows[i], reports[i], float(q), 1.0 - level)
    program = program_lift(
        store,
        as_of_us,
        since_us=program_since_us,
        goals=[(report.goal_event, report.revenue_property) for report in reports],
        goal_event=program_goal,
        configured_percent=global_percent,
        alpha=alpha,
    )
    return Portfolio(
        as_of_us=as_of_us,
        alpha=alpha,
        compared=len(tested),
        selected=selected,
        rows=tuple(rows),
        currency=currency,
        program=program,
    )


def _row(report: JourneyReport, sent: int) -> PortfolioRow:
    base: dict[str, Any] = {
        "journey": report.journey_id,
        "version": report.version,
        "sent": sent,
        "guardrail_alarms": report.guardrail_alarms,
        "guardrail_reasons": tuple(alarm for g in report.guardrails for alarm in g.alarms),
    }
    empty: dict[str, Any] = {"treated": 0, "held_out": 0, "treated_rate": None, "held_out_rate": None,
                             "lift": None, "interval": None, "p_value": None}  # fmt: skip
    lift = report.lift
    if not report.has_goal:
        return PortfolioRow(**base, **empty, note="no goal: nothing to measure")
    if lift is None:
        return PortfolioRow(**base, **empty, note="no entry has completed its goal window")
    arms = {arm.name: arm for arm in lift.arms}
    treat, held = arms.get("treatment"), arms.get("holdout")
    comparison = lift.comparison(CONVERSION)
    rate = None if comparison is None else comparison.lift
    n_t = 0 if treat is None else treat.n
    row = PortfolioRow(
        **base,
        treated=n_t,
        held_out=0 if held is None else held.n,
        treated_rate=None if treat is None else treat.rate,
        held_out_rate=None if held is None else held.rate,
        lift=None if rate is None else rate.absolute,
        interval=None if rate is None else rate.absolute_ci,
        p_value=None if not isinstance(rate, RateLift) else rate.p_value,
        call=None if comparison is None or comparison.verdict is None else comparison.verdict.call,
        note="" if rate is not None else "not enough entries in both arms to compare",
    )
    if rate is None:
        return row
    incremental = rate.absolute * n_t
    revenue = None
    revenue_comparison = lift.comparison(REVENUE) if report.revenue_property else None
    if revenue_comparison is not None and revenue_comparison.lift is not None:
        revenue = revenue_comparison.lift.absolute * n_t
    return replace(
        row,
        incremental_conversions=incremental,
        conversions_per_1000=1000.0 * incremental / sent if sent else None,
        incremental_revenue=revenue,
        revenue_per_1000=None if revenue is None or not sent else 1000.0 * revenue / sent,
    )


def _adjusted(row: PortfolioRow, report: JourneyReport, q_value: float, alpha: float) -> PortfolioRow:
    """The row with its q-value and its interval at the adjusted level (the report's own method)."""
    assert report.lift is not None
    arms = {arm.name: arm for arm in report.lift.arms}
    treat, held = arms["treatment"], arms["holdout"]
    adjusted = rate_lift(
        ArmSummary.from_counts("treatment", treat.conversions, treat.n),
        ArmSummary.from_counts("holdout", held.conversions, held.n),
        alpha,
    )
    interval = None if adjusted is None else adjusted.absolute_ci
    return replace(row, q_value=q_value, adjusted_interval=interval)


def portfolio_lines(report: Portfolio) -> list[str]:
    """The portfolio as aligned text: one row per journey, then the corrections stated."""

    def number(value: float | None, spec: str = ",.1f") -> str:
        return "n/a" if value is None else format(value, spec)

    revenue = money_formatter(report.currency, plain=",.2f")
    level = adjusted_level(report.alpha, report.selected, report.compared)
    head = (
        "journey", "treated", "held out", "rate", "held-out rate", "lift pts", "95% interval", "q",
        f"adjusted {'n/a' if level is None else f'{level:.1%}'} interval", "call",
        "guardrail alarms", "sent", "incr. conv. / 1,000 msgs", "incr. revenue / 1,000 msgs",
    )  # fmt: skip
    rows = [
        (
            r.journey,
            str(r.treated),
            str(r.held_out),
            percent(r.treated_rate),
            percent(r.held_out_rate),
            points(r.lift),
            points_span(r.interval),
            number(r.q_value, ".3f"),
            points_span(r.adjusted_interval),
            r.call or r.note or "n/a",
            ", ".join(r.guardrail_alarms) or "none",
            f"{r.sent:,}",
            number(r.conversions_per_1000),
            revenue(r.revenue_per_1000),
        )
        for r in report.rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [f"Journeys side by side: {len(report.rows)} journeys, {report.compared} compared"]
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    for row in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    alarms = [(r.journey, reason) for r in report.rows for reason in r.guardrail_reasons]
    if alarms:
        lines.append("")
        lines.extend(f"  GUARDRAIL ALARM in {journey}: {reason}" for journey, reason in alarms)
    lines.append("")
    lines.append(
        f"  corrected for reading {report.compared} journeys at once: Benjamini-Hochberg q-values "
        f"({report.selected} with q < {report.alpha:g}); adjusted intervals at level 1 - max(R, 1) alpha / m "
        f"= {'n/a' if level is None else f'{level:.2%}'} (Benjamini-Yekutieli false coverage rate, "
        f"R = {report.selected}, m = {report.compared})"
    )
    lines.append(
        "  incremental conversions = lift x treated entries (revenue likewise, from the revenue-per-entry "
        "lift); per 1,000 messages sent by the journey"
    )
    if report.program is not None:
        lines += ["", *program_lines(report.program, report.currency)]
    return lines
