"""Self-contained HTML lift reports: one page, inline CSS and SVG charts drawn here, no script, no network.

Charts: per metric, each arm's rate (or mean) with its interval as a whisker; each arm's lift over the
control with its fixed-horizon interval and, behind it, the wider always-valid interval; for a journey,
the cumulative conversion-rate lift by entry day with both intervals as bands, then its per-step funnel
(``_funnel_html``); when asked, the uplift view with its Qini curve (``_uplift_html``). Tables under the
charts hold every figure of the JSON output, so the page can be read without the charts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from orchestrator.measure._analysis import RATE, LiftAnalysis, MetricComparison, MetricResult
from orchestrator.measure._formats import (
    AxisLabel,
    Formatter,
    amount_formatters,
    arm_figures,
    axis_label,
    interval_text,
    lift_formatter,
    p_value,
    signed_percent,
    value_formatter,
)
from orchestrator.measure._funnel_html import funnel_section
from orchestrator.measure._guardrails_html import guardrail_banner, guardrail_section
from orchestrator.measure._journey import CONVERSION, JourneyReport, SendPolicyLift
from orchestrator.measure._numbers import Interval
from orchestrator.measure._svg import Axis, fit_axis
from orchestrator.measure._text import bayes_text, call_text
from orchestrator.measure._timeline import TimelinePoint
from orchestrator.measure._uplift import UpliftView
from orchestrator.measure._uplift_html import uplift_section
from orchestrator.measure._verdict import HARMFUL, SHIP

PALETTE = ("#6b7280", "#2563eb", "#ea580c", "#059669", "#9333ea", "#dc2626", "#0891b2", "#ca8a04")
"""Arm colours: the control is grey, the other arms follow in order."""
MEAN_SPEC = ".4g"
"""How the pages write means and their lifts (rates are percentages, see ``formats``)."""

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827;
       margin: 24px auto; max-width: 1100px; padding: 0 16px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #4b5563; margin: 2px 0; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 12px 0; }
.ok { background: #ecfdf5; border: 1px solid #a7f3d0; }
.bad { background: #fef2f2; border: 1px solid #fca5a5; }
.warn { background: #fffbeb; border: 1px solid #fcd34d; }
.call { padding: 1px 6px; border-radius: 4px; white-space: nowrap; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f9fafb; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; }
svg text { font: 12px system-ui, sans-serif; fill: #374151; }
.note { color: #6b7280; font-size: 12px; }
"""


# ------------------------------------------------------------------------------------------------ SVG


@dataclass(frozen=True)
class _Row:
    label: str
    value: float | None
    interval: Interval | None
    wide: Interval | None
    colour: str


def dot_whisker_svg(
    title: str,
    rows: Sequence[_Row],
    fmt: Formatter,
    zero_line: bool = False,
    *,
    axis_label: AxisLabel | None = None,
    limits: tuple[float, float] = (-math.inf, math.inf),
) -> str:
    """Horizontal dot-and-whisker chart: one row per arm, the dot at the estimate, whiskers at the interval
    and, when given, a light bar for the wider (always-valid) interval behind it.

    The axis fits the estimates and their intervals within ``limits`` (``_svg.fit_axis``); a wide bar
    reaching further is cut at the edge, with an open end and a note under the chart. Ticks are labelled by
    ``axis_label(value, step)`` (default: ``fmt``)."""
    width, left, right, top, row_h = 520, 150, 24, 34, 34
    core: list[float] = []
    wide: list[float] = []
    for row in rows:
        if row.interval is not None:
            core += [row.interval.low, row.interval.high]
        if row.value is not None:
            core.append(row.value)
        if row.wide is not None:
            wide += [row.wide.low, row.wide.high]
    axis = fit_axis(core, wide, limits=limits, include_zero=zero_line)
    label = axis_label or (lambda v, _step: fmt(v))
    height = top + row_h * max(len(rows), 1) + (56 if axis.clipped else 40)

    def x(v: float) -> float:
        return left + (axis.clamp(v) - axis.low) / (axis.high - axis.low) * (width - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="12" y="20" style="font-weight:600">{escape(title)}</text>',
    ]
    axis_y = top + row_h * max(len(rows), 1) + 6
    for tick in axis.ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{axis_y}" stroke="#f3f4f6"/>'
        )
        parts.append(
            f'<text x="{x(tick):.1f}" y="{axis_y + 16}" text-anchor="middle">'
            f"{escape(label(tick, axis.step))}</text>"
        )
    if zero_line and axis.low < 0 < axis.high:
        parts.append(
            f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#9ca3af" '
            'stroke-dasharray="4 3"/>'
        )
    for i, row in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        parts.append(f'<text x="{left - 10}" y="{cy + 4:.1f}" text-anchor="end">{escape(row.label)}</text>')
        parts += interval_marks(
            x,
            axis,
            cy,
            row.colour,
            row.interval,
            row.wide,
            row.value,
            wide_title=f"always-valid interval: {interval_text(row.wide, fmt)}",
            dot_title=f"{row.label}: {fmt(row.value)} ({interval_text(row.interval, fmt)})",
        )
    if axis.clipped:
        parts.append(
            f'<text x="{left}" y="{axis_y + 36}" class="note" style="fill:#6b7280">light bars cut at the '
            "edge run on: their ends are in the table</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def interval_marks(
    x: Callable[[float], float],
    axis: Axis,
    cy: float,
    colour: str,
    interval: Interval | None,
    wide: Interval | None,
    value: float | None,
    *,
    wide_title: str,
    dot_title: str,
    wide_opacity: float = 0.15,
) -> list[str]:
    """One row of a dot-and-whisker chart at height ``cy``: a light bar for the ``wide`` interval (with an
    open end where the axis cuts it), whiskers at ``interval`` and the dot at ``value``."""
    parts = []
    if wide is not None:
        lo, hi = x(wide.low), x(wide.high)
        parts.append(
            f'<rect x="{lo:.1f}" y="{cy - 8:.1f}" width="{max(hi - lo, 1.0):.1f}" height="16" '
            f'fill="{colour}" opacity="{wide_opacity}" rx="3"><title>{escape(wide_title)}</title></rect>'
        )
        for end, beyond in ((wide.low, -1), (wide.high, 1)):
            if axis.cut(end):  # an open end: the interval goes on past the edge
                tip = x(end) + 7 * beyond
                parts.append(
                    f'<polygon points="{x(end):.1f},{cy - 8:.1f} {tip:.1f},{cy:.1f} '
                    f'{x(end):.1f},{cy + 8:.1f}" fill="{colour}" opacity="0.35"/>'
                )
    if interval is not None:
        x1, x2 = x(interval.low), x(interval.high)
        parts.append(
            f'<line x1="{x1:.1f}" y1="{cy:.1f}" x2="{x2:.1f}" y2="{cy:.1f}" stroke="{colour}" '
            'stroke-width="2.5"/>'
        )
        for xe in (x1, x2):
            parts.append(
                f'<line x1="{xe:.1f}" y1="{cy - 6:.1f}" x2="{xe:.1f}" y2="{cy + 6:.1f}" '
                f'stroke="{colour}" stroke-width="2.5"/>'
            )
    if value is not None:
        parts.append(
            f'<circle cx="{x(value):.1f}" cy="{cy:.1f}" r="5.5" fill="{colour}">'
            f"<title>{escape(dot_title)}</title></circle>"
        )
    return parts


def timeline_svg(points: Sequence[TimelinePoint], title: str) -> str:
    """Cumulative conversion-rate lift by entry day: the estimate as a line, the fixed-horizon interval
    as a dark band and the always-valid interval as a light band, with the zero line dashed."""
    width, height, left, right, top, bottom = 1040, 340, 70, 20, 34, 46
    usable = [p for p in points if p.absolute is not None]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="12" y="20" style="font-weight:600">{escape(title)}</text>',
    ]
    if not usable:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">not enough entries yet</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    core: list[float] = []
    wide: list[float] = []
    for p in usable:
        core.append(p.absolute or 0.0)
        if p.ci is not None:
            core += [p.ci.low, p.ci.high]
        if p.always_valid_ci is not None:
            wide += [p.always_valid_ci.low, p.always_valid_ci.high]
    # A difference of two rates lies between -100 and +100 points.
    axis = fit_axis(core, wide, limits=(-1.0, 1.0), include_zero=True)
    low, high = axis.low, axis.high
    n = len(usable)

    def x(i: int) -> float:
        return left + (i / max(n - 1, 1)) * (width - left - right)

    def y(v: float) -> float:
        return top + (high - axis.clamp(v)) / (high - low) * (height - top - bottom)

    for tick in axis.ticks:
        parts.append(
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" stroke="#f3f4f6"/>'
        )
        parts.append(
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">'
            f"{escape(axis_label(RATE, signed=True)(tick, axis.step))}</text>"
        )

    def band(
        get: Callable[[TimelinePoint], Interval | None], colour: str, opacity: float, label: str
    ) -> None:
        idx = [i for i, p in enumerate(usable) if get(p) is not None]
        if not idx:
            return
        upper = [f"{x(i):.1f},{y(get(usable[i]).high):.1f}" for i in idx]  # type: ignore[union-attr]
        lower = [f"{x(i):.1f},{y(get(usable[i]).low):.1f}" for i in reversed(idx)]  # type: ignore[union-attr]
        parts.append(
            f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" opacity="{opacity}">'
            f"<title>{escape(label)}</title></polygon>"
        )

    band(lambda p: p.always_valid_ci, "#2563eb", 0.12, "always-valid interval")
    band(lambda p: p.ci, "#2563eb", 0.28, "95% interval")
    if low < 0 < high:
        parts.append(
            f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#6b7280" '
            'stroke-dasharray="5 4"/>'
        )
    line = " ".join(f"{x(i):.1f},{y(p.absolute or 0.0):.1f}" for i, p in enumerate(usable))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1d4ed8" stroke-width="2.5"/>')
    for i, p in enumerate(usable):
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p.absolute or 0.0):.1f}" r="3" fill="#1d4ed8">'
            f"<title>{escape(p.day)}: {(p.absolute or 0.0) * 100:+.2f} pts, n = {p.n_treatment} / "
            f"{p.n_holdout}</title></circle>"
        )
    # A date label is about 70 px wide: label every k-th day so that labels stand 90 px apart, and the last
    # day always, dropping the regular label before it when the two would touch.
    spacing = (width - left - right) / max(n - 1, 1)
    label_every = max(1, math.ceil(90 / spacing)) if n > 1 else 1
    for i, p in enumerate(usable):
        last = i == n - 1
        if not last and (i % label_every or (n - 1 - i) * spacing < 90):
            continue
        anchor = "end" if last and n > 1 else ("start" if i == 0 else "middle")
        label_y = height - bottom + 18
        parts.append(f'<text x="{x(i):.1f}" y="{label_y}" text-anchor="{anchor}">{escape(p.day)}</text>')
    legend_y = height - 8
    cut_note = "; cut at the chart's edge where it runs further" if axis.clipped else ""
    parts.append(
        f'<rect x="{left}" y="{legend_y - 10}" width="14" height="10" fill="#2563eb" opacity="0.28"/>'
        f'<text x="{left + 20}" y="{legend_y}">95% interval</text>'
        f'<rect x="{left + 130}" y="{legend_y - 10}" width="14" height="10" fill="#2563eb" opacity="0.12"/>'
        f'<text x="{left + 150}" y="{legend_y}">always-valid interval (safe to check daily){cut_note}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------- sections


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _metric_section(
    metric: MetricResult,
    colours: dict[str, str],
    label: str | None = None,
    formatters: tuple[Formatter, Formatter] | None = None,
) -> str:
    """A metric's charts and tables; ``formatters`` (value, lift) write its figures (default: by kind)."""
    fmt, lfmt = formatters or (
        value_formatter(metric.kind, MEAN_SPEC),
        lift_formatter(metric.kind, MEAN_SPEC),
    )
    what = "rate" if metric.kind == RATE else "mean"
    name = label or metric.name
    arm_rows = [_Row(a.name, a.mean, a.ci, None, colours.get(a.name, PALETTE[0])) for a in metric.arms]
    lift_rows = [
        _Row(
            c.arm,
            None if c.lift is None else c.lift.absolute,
            None if c.lift is None else c.lift.absolute_ci,
            c.always_valid_ci,
            colours.get(c.arm, PALETTE[1]),
        )
        for c in metric.comparisons
    ]
    rate = metric.kind == RATE
    charts = [
        dot_whisker_svg(
            f"{name}: {what} per arm with 95% interval",
            arm_rows,
            fmt,
            axis_label=axis_label(metric.kind),
            limits=(0.0, 1.0) if rate else (-math.inf, math.inf),
        ),
        dot_whisker_svg(
            f"{name}: lift over {metric.arms[0].name}",
            lift_rows,
            lfmt,
            zero_line=True,
            axis_label=axis_label(metric.kind, signed=True),
            limits=(-1.0, 1.0) if rate else (-math.inf, math.inf),
        ),
    ]
    arm_table = [
        f"<tr><th>arm</th><th>n</th><th>{'conversions' if metric.kind == RATE else 'total'}</th>"
        f"<th>{what}</th><th>sd</th><th>95% interval</th></tr>"
    ]
    for a in metric.arms:
        total, sd = arm_figures(a, metric.kind, ".6g", ".4g")
        arm_table.append(
            f"<tr><td>{escape(a.name)}</td><td>{a.n}</td><td>{total}</td><td>{fmt(a.mean)}</td>"
            f"<td>{sd}</td><td>{interval_text(a.ci, fmt)}</td></tr>"
        )
    cmp_table = [
        "<tr><th>arm</th><th>absolute lift</th><th>95% interval</th><th>p-value</th><th>relative lift</th>"
        "<th>relative interval</th><th>always-valid interval</th><th>MDE (abs / rel)</th><th>CUPED</th>"
        "<th>call (from the always-valid interval)</th></tr>"
    ]
    for c in metric.comparisons:
        lift = c.lift
        mde = "n/a" if c.mde is None else f"{lfmt(c.mde.absolute)} / {signed_percent(c.mde.relative)}"
        cuped = "off"
        if c.cuped is not None:
            cuped = (
                f"{lfmt(c.cuped.lift.absolute)} ({interval_text(c.cuped.lift.absolute_ci, lfmt)}), variance "
                f"-{c.cuped.variance_reduction:.1%}"
            )
        cmp_table.append(
            f"<tr><td>{escape(c.arm)}</td><td>{lfmt(None if lift is None else lift.absolute)}</td>"
            f"<td>{interval_text(None if lift is None else lift.absolute_ci, lfmt)}</td>"
            f"<td>{p_value(None if lift is None else lift.p_value)}</td>"
            f"<td>{signed_percent(None if lift is None else lift.relative)}</td>"
            f"<td>{interval_text(None if lift is None else lift.relative_ci, signed_percent)}</td>"
            f"<td>{interval_text(c.always_valid_ci, lfmt)}</td><td>{mde}</td><td>{escape(cuped)}</td>"
            f"<td>{_call_cell(c, lfmt)}</td></tr>"
        )
    bayes = "".join(
        f"<p class='note'>{escape(c.arm)}: {escape(bayes_text(c.bayes, c.control))}</p>"
        for c in metric.comparisons
        if c.bayes is not None
    )
    return (
        f"<h2>{escape(name)} <span class='note'>({what})</span></h2>"
        f"<div class='charts'>{''.join(charts)}</div>"
        f"<table>{''.join(arm_table)}</table><table>{''.join(cmp_table)}</table>{bayes}"
    )


def _call_cell(comparison: MetricComparison, lfmt: Formatter) -> str:
    if comparison.verdict is None:
        return "n/a"
    tone = {SHIP: "ok", HARMFUL: "bad"}.get(comparison.verdict.call, "warn")
    words = call_text(comparison.verdict, lfmt)
    head, _, rest = words.partition(": ")
    return f"<span class='call {tone}'><b>{escape(head)}</b></span> {escape(rest)}"


def _srm_banner(analysis: LiftAnalysis) -> str:
    srm = analysis.srm
    if srm is None:
        return "<div class='banner warn'>Split check: not enough arms or customers to test.</div>"
    sizes = ", ".join(
        f"{escape(a)} {o} (expected {e:.0f})"
        for a, o, e in zip(srm.arms, srm.observed, srm.expected, strict=True)
    )
    if srm.flagged:
        return (
            f"<div class='banner bad'><b>Sample ratio mismatch</b> "
            f"(p {p_value(srm.p_value)} &lt; {srm.threshold:g}): "
            f"{sizes}. Declared split: {escape(srm.declared)}. Do not trust the lift until the assignment is "
            "explained.</div>"
        )
    return (
        f"<div class='banner ok'>Split check passed (chi-square p {p_value(srm.p_value)}): {sizes}. "
        f"Declared split: {escape(srm.declared)}.</div>"
    )


def _segments(analysis: LiftAnalysis) -> str:
    if not analysis.segments:
        return ""
    out = [
        f"<h2>By {escape(analysis.segment_column or '')}</h2><p class='note'>Descriptive: many comparisons, "
        "no multiplicity correction.</p><table><tr><th>segment</th><th>metric</th><th>arm</th><th>n</th>"
        "<th>absolute lift</th><th>95% interval</th><th>p-value</th><th>relative lift</th>"
        "<th>split p</th><th>warnings</th></tr>"
    ]
    for segment in analysis.segments:
        sub = segment.analysis
        sizes = dict(sub.arms)
        for metric in sub.metrics:
            lfmt = lift_formatter(metric.kind, MEAN_SPEC)
            for c in metric.comparisons:
                lift = c.lift
                out.append(
                    f"<tr><td>{escape(segment.value)}</td><td>{escape(metric.name)}</td><td>{escape(c.arm)}</td>"
                    f"<td>{sizes.get(c.arm, 0)} / {sizes.get(c.control, 0)}</td>"
                    f"<td>{lfmt(None if lift is None else lift.absolute)}</td>"
                    f"<td>{interval_text(None if lift is None else lift.absolute_ci, lfmt)}</td>"
                    f"<td>{p_value(None if lift is None else lift.p_value)}</td>"
                    f"<td>{signed_percent(None if lift is None else lift.relative)}</td>"
                    f"<td>{p_value(None if sub.srm is None else sub.srm.p_value)}</td>"
                    f"<td>{escape('; '.join(c.verdict.warnings) if c.verdict else '')}</td></tr>"
                )
    out.append("</table>")
    return "".join(out)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def _methods(analysis: LiftAnalysis) -> str:
    return (
        "<h2>Methods</h2><ul class='note'>"
        "<li>Rates: Newcombe hybrid-score interval for the difference, pooled two-proportion z-test, "
        "Wilson interval per arm.</li>"
        "<li>Means: Welch t-test and interval for the difference, Student t interval per arm.</li>"
        "<li>Relative lift: interval on the log of the ratio (never below -100%).</li>"
        f"<li>Always-valid interval: normal-mixture SPRT confidence sequence, mixing sd tau = "
        f"{analysis.sequential_tau:g} standard deviations of the metric; valid however often it is "
        "checked.</li>"
        f"<li>MDE: smallest increase detected with {analysis.power:.0%} power at alpha {analysis.alpha:g} "
        "(statsmodels power solvers).</li>"
        "<li>Split check: chi-square goodness of fit of arm sizes to the declared split, flagged below "
        "0.001.</li>"
        "</ul>"
    )


def render_analysis_html(
    analysis: LiftAnalysis, title: str, subtitle: str = "", uplift: UpliftView | None = None
) -> str:
    """A page for an experiment table (``orchestrator lift``): every metric's charts and tables, then the
    uplift view when one was asked for."""
    colours = _colours([name for name, _ in analysis.arms])
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p class='meta'>{escape(subtitle)}</p>" if subtitle else "",
        f"<p class='meta'>Control: <b>{escape(analysis.control)}</b>; arms: "
        + ", ".join(f"{escape(name)} ({n})" for name, n in analysis.arms)
        + "</p>",
        _srm_banner(analysis),
        *(_metric_section(metric, colours) for metric in analysis.metrics),
        _segments(analysis),
        uplift_section(uplift),
        _methods(analysis),
    ]
    return _page(title, "".join(body))


def render_journey_html(report: JourneyReport) -> str:
    """A page for a journey report: arms, lift, cumulative lift by entry day."""
    data = report.to_dict()
    title = f"Lift report: {report.journey_id} (version {report.version})"
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p class='meta'>As of {escape(data['as_of'])}. Unit: {escape(data['unit'])}.</p>",
    ]
    from orchestrator.measure._splits_html import messages_section, split_section

    if not report.has_goal:
        body.append("<p>This journey declares no goal: nothing to measure.</p>")
        body.append(messages_section(report.messages))
        return _page(title, "".join(body) + funnel_section(report.funnels))
    goal = data["goal"]
    revenue = f", revenue from <code>{escape(goal['revenue'])}</code>" if goal["revenue"] else ""
    body.append(
        f"<p class='meta'>Goal: <code>{escape(goal['event'] or goal['condition'])}</code> within "
        f"{escape(goal['within'])} of {'the first send' if goal['from'] == 'first_send' else 'entry'}"
        f"{revenue}. Entries counted: {report.matured} whose goal window has closed "
        f"({escape(report.left_out_words)}).</p>"
    )
    body.append(guardrail_banner(report.guardrails))
    for warning in report.warnings:
        body.append(f"<div class='banner warn'>{escape(warning)}</div>")
    lift = report.lift
    if lift is None:
        body.append("<p>No entry has completed its goal window yet.</p>")
        body.append(messages_section(report.messages))
        body.append(uplift_section(report.uplift))
        return _page(title, "".join(body) + funnel_section(report.funnels))
    if lift.global_holdout is not None:
        g = lift.global_holdout
        body.append(
            f"<p class='meta'>Global holdout (shown for reference, not compared): {g.n} entries, "
            f"{g.conversions} converted.</p>"
        )
    body.append(_srm_banner(lift.analysis))
    colours = _colours([name for name, _ in lift.analysis.arms])
    amounts = amount_formatters(report.currency, MEAN_SPEC)
    for metric in lift.analysis.metrics:
        if metric.name == CONVERSION:
            body.append(_metric_section(metric, colours, "conversion rate"))
        else:
            body.append(_metric_section(metric, colours, "revenue per entry", amounts))
    body.append(guardrail_section(report.guardrails))
    body.append("<h2>Cumulative lift by entry day</h2>")
    body.append(
        "<p class='note'>Each point uses every counted entry up to the end of that day. Read the light band "
        "if you look every day: the dark one is only valid for a single look decided in advance.</p>"
    )
    body.append(timeline_svg(report.timeline, "conversion rate lift (treatment - holdout), cumulative"))
    body.append(_segments(lift.analysis))
    for policy in report.send_policies:
        body.append(_send_policy_section(policy))
    for split in report.splits:
        body.append(split_section(split, report.revenue_property is not None, report.currency))
    body.append(messages_section(report.messages))
    body.append(uplift_section(report.uplift))
    body.append(_methods(lift.analysis))
    return _page(title, "".join(body) + funnel_section(report.funnels))


def _send_policy_section(policy: SendPolicyLift) -> str:
    """A send step's comparison by policy (best time against the share sent at once)."""
    colours = _colours([name for name, _ in policy.analysis.arms])
    parts = [
        f"<h2>Send policy at step {escape(policy.step)}</h2>",
        f"<p class='note'>Treated entries counted, by the policy they got at the step; "
        f"{policy.compare_percent:g}% were sent "
        f"{'at once' if policy.choice == 'time' else escape(policy.control)} for comparison.</p>",
        _srm_banner(policy.analysis),
    ]
    for metric in policy.analysis.metrics:
        parts.append(_metric_section(metric, colours, f"conversion rate by send policy at {policy.step}"))
    return "".join(parts)
