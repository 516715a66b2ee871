"""Plain text for a terminal: any ``LiftAnalysis`` (``orchestrator lift --format table``) and a journey's
report (``orchestrator report``, the default format).

Contract: pure functions from results to text; every figure is written by the shared formatters of
``formats`` (the HTML pages use the same ones), so text and HTML cannot disagree on a figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.clock import from_us
from orchestrator.measure._analysis import RATE, LiftAnalysis, MetricComparison, MetricResult
from orchestrator.measure._bayes import BayesView
from orchestrator.measure._formats import (
    Formatter,
    arm_figures,
    interval_text,
    lift_formatter,
    money_formatter,
    p_clause,
    percent,
    signed_percent,
    value_formatter,
)
from orchestrator.measure._funnel_text import funnel_lines
from orchestrator.measure._guardrails_text import guardrail_alarm_lines, guardrail_lines
from orchestrator.measure._journey import CONVERSION, REVENUE, JourneyReport, SendPolicyLift
from orchestrator.measure._means import MeanLift
from orchestrator.measure._numbers import Interval
from orchestrator.measure._rates import RateLift
from orchestrator.measure._uplift import UpliftView
from orchestrator.measure._uplift_text import uplift_lines
from orchestrator.measure._verdict import NO_EFFECT, NOT_ENOUGH, Verdict

MEAN_SPEC = ".4f"
"""How an analysis writes means and their lifts."""


def _ci(interval: Interval | None, fmt: Formatter) -> str:
    return interval_text(interval, fmt, "[{low}, {high}]")


def format_metric(metric: MetricResult, level: str, indent: str = "  ") -> list[str]:
    """Lines for one metric: a per-arm table, then each arm's lift over the control."""
    value, lift_fmt = value_formatter(metric.kind, MEAN_SPEC), lift_formatter(metric.kind, MEAN_SPEC)
    total_name, value_name = ("conversions", "rate") if metric.kind == RATE else ("total", "mean")
    lines = [
        f"{indent}{metric.name} ({metric.kind})",
        f"{indent}  {'arm':24s} {'n':>8s} {total_name:>12s} {value_name:>10s} {'sd':>10s}  {level} CI",
    ]
    for arm in metric.arms:
        total, sd = arm_figures(arm, metric.kind, ".2f", ".4f")
        lines.append(
            f"{indent}  {arm.name:24s} {arm.n:8d} {total:>12s} {value(arm.mean):>10s} {sd:>10s}  "
            f"{_ci(arm.ci, value)}"
        )
    for c in metric.comparisons:
        if c.lift is None:
            lines.append(f"{indent}  {c.arm} vs {c.control}: not enough customers to compare")
            continue
        lines.append(
            f"{indent}  {c.arm} vs {c.control}: {lift_fmt(c.lift.absolute)} {level} CI "
            f"{_ci(c.lift.absolute_ci, lift_fmt)}, {p_clause(c.lift.p_value)}; "
            f"relative {signed_percent(c.lift.relative)} {_ci(c.lift.relative_ci, signed_percent)}"
        )
        extras = []
        if c.always_valid_ci is not None:
            extras.append(f"always-valid {_ci(c.always_valid_ci, lift_fmt)}")
        if c.mde is not None:
            mde_relative = signed_percent(c.mde.relative)
            extras.append(f"MDE at {c.mde.power:.0%} power {lift_fmt(c.mde.absolute)} ({mde_relative})")
        if extras:
            lines.append(f"{indent}    " + "; ".join(extras))
        if c.verdict is not None:
            lines.append(f"{indent}    call: {call_text(c.verdict, lift_fmt)}")
        if c.bayes is not None:
            lines.append(f"{indent}    {bayes_text(c.bayes, c.control)}")
        if c.cuped is not None:
            cl = c.cuped.lift
            lines.append(
                f"{indent}    CUPED on {c.cuped.covariate} (variance -{c.cuped.variance_reduction:.1%}): "
                f"{lift_fmt(cl.absolute)} {_ci(cl.absolute_ci, lift_fmt)}, {p_clause(cl.p_value)}"
            )
    return lines


def format_analysis(analysis: LiftAnalysis, title: str = "", uplift: UpliftView | None = None) -> str:
    """The whole analysis as text: split check, every metric, segments, then the uplift view if given."""
    level = f"{(1 - analysis.alpha) * 100:.0f}%"
    lines = [title] if title else []
    lines.append(
        f"control: {analysis.control}; arms: " + ", ".join(f"{name} ({n})" for name, n in analysis.arms)
    )
    srm = analysis.srm
    if srm is not None:
        verdict = "SAMPLE RATIO MISMATCH, do not trust the lift" if srm.flagged else "ok"
        lines.append(f"split check against {srm.declared}: {p_clause(srm.p_value)} ({verdict})")
    for metric in analysis.metrics:
        lines.append("")
        lines.extend(format_metric(metric, level))
    if analysis.segments:
        lines.append("")
        lines.append(f"by {analysis.segment_column} (descriptive, no multiplicity correction):")
        for segment in analysis.segments:
            lines.append(f"  {analysis.segment_column} = {segment.value}")
            for metric in segment.analysis.metrics:
                lines.extend(format_metric(metric, level, indent="    "))
    if uplift is not None:
        lines.append("")
        lines.extend(uplift_lines(uplift))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- journey report

_points = lift_formatter(RATE, MEAN_SPEC)


@dataclass(frozen=True)
class ReportText:
    """A journey's report as text in three parts, so a terminal face can draw the arms as a table of its
    own: the lines before the arms table, the table (column headers with their alignment, rows of cells;
    no rows when there is nothing to compare) and the lines after it."""

    head: list[str]
    columns: list[tuple[str, Literal["left", "right"]]]
    rows: list[list[str]]
    tail: list[str]


REPORT_COLUMNS: list[tuple[str, Literal["left", "right"]]] = [
    ("arm", "left"),
    ("entries", "right"),
    ("converted", "right"),
    ("rate", "right"),
    ("revenue/entry", "right"),
]
_WIDTHS = (15, 8, 10, 8, 14)


def format_table(report: JourneyReport) -> str:
    """The report as plain text for a terminal."""
    parts = report_text(report)
    lines = list(parts.head)
    if parts.rows:
        lines.append("")
        for row in [[header for header, _ in parts.columns], *parts.rows]:
            cells = [
                f"{cell:{'<' if justify == 'left' else '>'}{width}s}"
                for cell, (_, justify), width in zip(row, parts.columns, _WIDTHS, strict=True)
            ]
            lines.append("  " + " ".join(cells))
    return "\n".join([*lines, *parts.tail])


def report_text(report: JourneyReport) -> ReportText:
    """The report's text in parts (see ``ReportText``); ``format_table`` joins them. The uplift view, when
    asked for, and the per-step funnel of each version (the latest first) close the tail."""
    parts = _lift_text(report)
    # A guardrail alarm goes right under the title, where an analyst cannot miss it.
    head = [*parts.head[:1], *guardrail_alarm_lines(report.guardrails), *parts.head[1:]]
    tail = list(parts.tail)
    if report.guardrails:
        tail.extend(["", *guardrail_lines(report.guardrails)])
    for policy in report.send_policies:
        tail.extend(["", *send_policy_lines(policy)])
    from orchestrator.measure._splits_text import message_lines, split_lines

    for split in report.splits:
        tail.extend(["", *split_lines(split, report.revenue_property is not None, report.currency)])
    if report.messages:
        tail.extend(["", *message_lines(report.messages)])
    if report.uplift is not None:
        tail.extend(["", *uplift_lines(report.uplift, "  ")])
    for funnel in reversed(report.funnels):
        tail.extend(["", *funnel_lines(funnel, "  ")])
    return ReportText(head, parts.columns, parts.rows, tail)


def send_policy_lines(policy: SendPolicyLift) -> list[str]:
    """A send step's comparison by policy: the split check, then conversion by policy and the lift over the
    comparison share."""
    analysis = policy.analysis
    level = f"{(1 - analysis.alpha) * 100:.0f}%"
    share = "sent at once" if policy.choice == "time" else f"sent {policy.control}"
    lines = [
        f"Send policy at step {policy.step} (treated entries counted; {policy.compare_percent:g}% {share} "
        "for comparison):"
    ]
    srm = analysis.srm
    if srm is not None:
        verdict = "SAMPLE RATIO MISMATCH, do not trust the lift" if srm.flagged else "ok"
        lines.append(f"  split check against {srm.declared}: {p_clause(srm.p_value)} ({verdict})")
    for metric in analysis.metrics:
        lines.extend(format_metric(metric, level))
    return lines


def _lift_text(report: JourneyReport) -> ReportText:
    when = from_us(report.as_of_us).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Lift report: {report.journey_id} (version {report.version}), as of {when}"]
    if not report.has_goal:
        lines.append(f"  this journey declares no goal; {report.entries} entries, nothing to measure")
        return ReportText(lines, REPORT_COLUMNS, [], [])
    revenue = f", revenue from {report.revenue_property}" if report.revenue_property else ""
    lines.append(f"  goal: {report.goal_words}{revenue}")
    lines.append(
        f"  entries counted: {report.matured} whose goal window has closed ({report.left_out_words})"
    )
    lift = report.lift
    if lift is None:
        lines.append("  no entry has completed its goal window yet")
        return ReportText(lines, REPORT_COLUMNS, [], [])
    amount = money_formatter(report.currency)
    signed_amount = money_formatter(report.currency, signed=True)
    head = lines
    shown = [*lift.arms, *([lift.global_holdout] if lift.global_holdout else [])]
    rows = [
        [arm.name, str(arm.n), str(arm.conversions), percent(arm.rate), amount(arm.revenue_per_customer)]
        for arm in shown
    ]
    lines = []
    if lift.global_holdout is not None:
        lines.append("  (the global holdout is shown for reference and not compared)")
    lines.append("")
    level = f"{(1 - lift.analysis.alpha) * 100:.0f}%"
    comparison = lift.comparison(CONVERSION)
    rate = None if comparison is None else comparison.lift
    if comparison is None or not isinstance(rate, RateLift):
        lines.append("  lift: not enough entries in both arms to compare (at least 2 in each)")
        lines.extend(_srm_lines(lift.analysis))
        return ReportText(head, REPORT_COLUMNS, rows, lines)
    lines.append(f"  conversion rate lift: {_lift_line(rate, level, _points)}")
    lines.extend(_extra_lines(comparison, level, _points))
    if report.revenue_property:
        revenue_comparison = lift.comparison(REVENUE)
        mean = None if revenue_comparison is None else revenue_comparison.lift
        if revenue_comparison is not None and isinstance(mean, MeanLift):
            lines.append(f"  revenue per entry lift: {_lift_line(mean, level, signed_amount)}")
            lines.extend(_extra_lines(revenue_comparison, level, signed_amount))
    lines.extend(_srm_lines(lift.analysis))
    lines.extend(_call_lines("conversion rate", comparison, _points))
    if report.revenue_property:
        revenue_comparison = lift.comparison(REVENUE)
        if revenue_comparison is not None:
            lines.extend(_call_lines("revenue per entry", revenue_comparison, signed_amount))
    for warning in report.warnings:
        lines.append(f"  warning: {warning}")
    if lift.analysis.segments:
        lines.append("")
        lines.append(f"  by {lift.analysis.segment_column} (descriptive):")
        for segment in lift.analysis.segments:
            sub = segment.analysis.metric(CONVERSION)
            sub_cmp = next(iter(sub.comparisons), None)
            sizes = ", ".join(f"{name} {n}" for name, n in segment.analysis.arms)
            if sub_cmp is None or sub_cmp.lift is None:
                lines.append(f"    {segment.value}: {sizes}; not enough entries to compare")
                continue
            small = "".join(f"; {w}" for w in (sub_cmp.verdict.warnings if sub_cmp.verdict else ()))
            lines.append(f"    {segment.value}: {sizes}; {_lift_line(sub_cmp.lift, level, _points)}{small}")
    return ReportText(head, REPORT_COLUMNS, rows, lines)


def call_text(verdict: Verdict, absolute: Formatter) -> str:
    """A call in words: the call, its rule, and while data is missing how much more (``verdict``)."""
    text = f"{verdict.call.upper()}: {verdict.reason}"
    if verdict.target is not None and verdict.call in (NO_EFFECT, NOT_ENOUGH) and not verdict.warnings:
        text += f" (target +/-{absolute(verdict.target).lstrip('+')})"
    if verdict.entries_needed is not None:
        text += f"; about {verdict.entries_needed:,} more entries"
        if verdict.days_needed is not None:
            text += f" (about {verdict.days_needed:,.0f} days at the current rate)"
    return text


def bayes_text(view: BayesView, control: str) -> str:
    """The Bayesian view in words (``_bayes``)."""
    return (
        f"Bayesian view (Beta(1, 1) priors): chance to beat {control} {view.chance_to_beat:.1%}; expected "
        f"loss if kept {100 * view.expected_loss_ship:.2f} pts, "
        f"if dropped {100 * view.expected_loss_drop:.2f} pts"
    )


def _call_lines(what: str, comparison: MetricComparison, absolute: Formatter) -> list[str]:
    lines = []
    if comparison.verdict is not None:
        lines.append(f"  call on {what}: {call_text(comparison.verdict, absolute)}")
    if comparison.bayes is not None:
        lines.append(f"    {bayes_text(comparison.bayes, comparison.control)}")
    return lines


def _lift_line(lift: RateLift | MeanLift, level: str, absolute: Formatter) -> str:
    ci = (
        f" ({level} CI {absolute(lift.absolute_ci.low)} to {absolute(lift.absolute_ci.high)})"
        if lift.absolute_ci is not None
        else ""
    )
    rel = (
        f", relative {signed_percent(lift.relative)}"
        + (
            f" ({level} CI {signed_percent(lift.relative_ci.low)} to {signed_percent(lift.relative_ci.high)})"
            if lift.relative_ci is not None
            else ""
        )
        if lift.relative is not None
        else ", relative n/a"
    )
    return f"{absolute(lift.absolute)}{ci}{rel}, {p_clause(lift.p_value)}"


def _extra_lines(comparison: MetricComparison, level: str, absolute: Formatter) -> list[str]:
    lines = []
    if comparison.always_valid_ci is not None:
        av = comparison.always_valid_ci
        lines.append(
            f"    always-valid {level} interval (safe to check daily): "
            f"{absolute(av.low)} to {absolute(av.high)}"
        )
    if comparison.mde is not None:
        rel = f" ({signed_percent(comparison.mde.relative)})" if comparison.mde.relative is not None else ""
        lines.append(
            f"    minimum detectable effect at {comparison.mde.power:.0%} power: "
            f"{absolute(comparison.mde.absolute)}{rel}"
        )
    if comparison.cuped is not None:
        c = comparison.cuped
        lines.append(
            f"    with CUPED on {c.covariate} (variance -{c.variance_reduction:.1%}): "
            f"{_lift_line(c.lift, level, absolute)}"
        )
    return lines


def _srm_lines(analysis: LiftAnalysis) -> list[str]:
    srm = analysis.srm
    if srm is None:
        return []
    verdict = (
        "SAMPLE RATIO MISMATCH: the arms do not match the declared split; do not trust the lift until "
        "the assignment is explained"
        if srm.flagged
        else "arm sizes match the declared split"
    )
    return [f"  split check ({srm.declared}): {p_clause(srm.p_value)}; {verdict}"]
