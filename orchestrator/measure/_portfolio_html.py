"""The portfolio (``orchestrator report --all``) as one self-contained HTML page, or an email-safe fragment.

The page (inline CSS and SVG, no script, nothing fetched), top to bottom: the whole program's lift (the
global holdout against everyone else: the groups, each metric's lift with its interval and call, a
dot-whisker chart), a forest plot of every journey's absolute lift with its own 95% interval (the whisker)
and its false-coverage-adjusted interval (the light bar behind), the table of every journey's figures, the
method and the notes.

``render_portfolio_html(portfolio, email=True)`` gives the same figures as a fragment for the body of an
email: a ``<div>`` of headings, paragraphs and tables with inline styles only, no SVG (mail clients drop
it), no class, no ``<style>``, nothing fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from orchestrator.clock import from_us
from orchestrator.measure._analysis import RATE, MetricComparison
from orchestrator.measure._formats import (
    Formatter,
    axis_label,
    interval_text,
    lift_formatter,
    metric_formatters,
    money_formatter,
    p_value,
    percent,
    points,
    points_span,
    signed_percent,
)
from orchestrator.measure._html import CSS, PALETTE, _Row, dot_whisker_svg, interval_marks
from orchestrator.measure._portfolio import Portfolio, PortfolioRow, adjusted_level
from orchestrator.measure._program import CONVERTED, MEAN_SPEC, ProgramLift, program_call_text
from orchestrator.measure._svg import fit_axis
from orchestrator.measure._verdict import HARMFUL, SHIP

#: The dot of a journey by its call: ship green, harmful red, anything else the treatment blue.
CALL_COLOURS = {SHIP: "#059669", HARMFUL: "#dc2626"}
DEFAULT_COLOUR = PALETTE[1]
_TONES = {SHIP: "ok", HARMFUL: "bad"}
#: Inline styles of the email fragment (the page uses the classes of ``_html.CSS`` instead).
_INLINE = {
    "wrap": "font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.45;color:#111827;",
    "h2": "font-size:18px;margin:20px 0 6px;",
    "meta": "color:#4b5563;margin:2px 0;",
    "note": "color:#6b7280;font-size:12px;margin:4px 0;",
    "table": "border-collapse:collapse;margin:8px 0 16px;",
    "th": "border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:right;background:#f9fafb;",
    "td": "border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:right;",
    "first": "text-align:left;",
    "ok": "background:#ecfdf5;border:1px solid #a7f3d0;padding:8px 12px;margin:10px 0;",
    "bad": "background:#fef2f2;border:1px solid #fca5a5;padding:8px 12px;margin:10px 0;",
    "warn": "background:#fffbeb;border:1px solid #fcd34d;padding:8px 12px;margin:10px 0;",
    "call-ok": "background:#ecfdf5;padding:1px 6px;white-space:nowrap;",
    "call-bad": "background:#fef2f2;padding:1px 6px;white-space:nowrap;",
    "call-warn": "background:#fffbeb;padding:1px 6px;white-space:nowrap;",
}


@dataclass(frozen=True)
class _Style:
    """How an element is styled: by class on the page, inline in the email fragment."""

    email: bool

    def __call__(self, name: str) -> str:
        if self.email:
            return f' style="{_INLINE[name]}"'
        return {"h2": "", "table": "", "th": "", "td": "", "first": ""}.get(name, f" class='{name}'")

    def banner(self, tone: str) -> str:
        return self(tone) if self.email else f" class='banner {tone}'"

    def call(self, tone: str) -> str:
        return self(f"call-{tone}") if self.email else f" class='call {tone}'"

    def cell(self, tag: str, text: str, first: bool = False) -> str:
        if not self.email:
            return f"<{tag}>{text}</{tag}>"
        extra = _INLINE["first"] if first else ""
        return f'<{tag} style="{_INLINE[tag]}{extra}">{text}</{tag}>'

    def table(self, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        """A table of escaped-already cells, the first column left-aligned."""
        out = [f"<table{self('table')}><tr>"]
        out += [self.cell("th", h, i == 0) for i, h in enumerate(head)]
        out.append("</tr>")
        for row in rows:
            out.append("<tr>" + "".join(self.cell("td", c, i == 0) for i, c in enumerate(row)) + "</tr>")
        out.append("</table>")
        return "".join(out)


def _number(x: float | None, spec: str = ",.1f") -> str:
    return "n/a" if x is None else format(x, spec)


def _call_html(words: str | None, call: str | None, st: _Style) -> str:
    if not call:
        return escape(words or "n/a")
    return f"<span{st.call(_TONES.get(call, 'warn'))}><b>{escape(call)}</b></span>"


# -------------------------------------------------------------------------------------------- program


def _program_section(program: ProgramLift | None, st: _Style, charts: bool, currency: str | None) -> str:
    head = f"<h2{st('h2')}>The whole program: the global holdout against everyone else</h2>"
    if program is None:
        return ""
    if program.analysis is None:
        return head + f"<div{st.banner('warn')}>{escape(program.note)}</div>"
    parts = [
        head,
        f"<p{st('meta')}>{program.customers:,} customers of the store, {escape(program.period_words)}: "
        f"{program.held_out:,} in the {program.percent:g}% global holdout (messaged by no journey), "
        f"{program.everyone_else:,} everyone else. Converted: at least one "
        f"<b>{escape(program.goal_event or '')}</b> in the period ({escape(program.goal_source)})"
        + (f"; revenue from <b>{escape(program.revenue_property)}</b>" if program.revenue_property else "")
        + ".</p>",
    ]
    headline = program.comparison(CONVERTED)
    if headline is not None and headline.verdict is not None:
        lfmt = lift_formatter("rate", MEAN_SPEC)
        tone = _TONES.get(headline.verdict.call, "warn")
        parts.append(
            f"<div{st.banner(tone)}>Program call on the share converting: "
            f"{escape(program_call_text(headline, lfmt))}</div>"
        )
    srm = program.analysis.srm
    if srm is not None and srm.flagged:
        parts.append(
            f"<div{st.banner('bad')}><b>Sample ratio mismatch</b> (p {p_value(srm.p_value)}): the groups' "
            f"sizes do not fit {escape(srm.declared)}. Do not trust the lift until it is explained.</div>"
        )
    entered = {"global holdout": program.entered_held_out, "everyone else": program.entered_everyone_else}
    group_rows = []
    metrics = program.analysis.metrics
    for i, (name, n) in enumerate(program.analysis.arms):
        cells = [escape(name), f"{n:,}", f"{entered.get(name, 0):,}"]
        for metric in metrics:
            arm = metric.arms[i]
            fmt = metric_formatters(metric.kind, MEAN_SPEC, currency, money=metric.name != CONVERTED)[0]
            cells += [f"{int(arm.total):,}", fmt(arm.mean)] if metric.name == CONVERTED else [fmt(arm.mean)]
        group_rows.append(cells)
    group_head = ["group", "customers", "entered a journey"]
    for metric in metrics:
        group_head += (
            ["converted", "share converting"]
            if metric.name == CONVERTED
            else [f"{escape(program.revenue_property or 'revenue')} per customer"]
        )
    parts.append(st.table(group_head, group_rows))
    lift_rows = []
    chart_rows = []
    for metric in metrics:
        lfmt = metric_formatters(metric.kind, MEAN_SPEC, currency, money=metric.name != CONVERTED)[1]
        label = "share converting" if metric.name == CONVERTED else "revenue per customer"
        for c in metric.comparisons:
            lift_rows.append(_program_lift_row(label, c, lfmt, st))
            if metric.name == CONVERTED and c.lift is not None:
                chart_rows.append(
                    _Row("everyone else", c.lift.absolute, c.lift.absolute_ci, c.always_valid_ci, PALETTE[1])
                )
    parts.append(
        st.table(
            ["metric", "lift", "95% interval", "p-value", "relative lift", "always-valid interval", "call"],
            lift_rows,
        )
    )
    if charts and chart_rows:
        parts.append(
            "<div class='charts'>"
            + dot_whisker_svg(
                "program: share converting, everyone else over the global holdout",
                chart_rows,
                lift_formatter(RATE, MEAN_SPEC),
                zero_line=True,
                axis_label=axis_label(RATE, signed=True),
                limits=(-1.0, 1.0),
            )
            + "</div>"
        )
    parts += [f"<p{st('note')}>{escape(note)}</p>" for note in program.notes]
    return "".join(parts)


def _program_lift_row(label: str, c: MetricComparison, lfmt: Formatter, st: _Style) -> list[str]:
    lift = c.lift
    words = None if c.verdict is None else c.verdict.call
    return [
        escape(label),
        lfmt(None if lift is None else lift.absolute),
        interval_text(None if lift is None else lift.absolute_ci, lfmt),
        p_value(None if lift is None else lift.p_value),
        signed_percent(None if lift is None else lift.relative),
        interval_text(c.always_valid_ci, lfmt),
        _call_html(words, words, st) + ("" if c.verdict is None else f" {escape(c.verdict.reason)}"),
    ]


# --------------------------------------------------------------------------------------------- forest


def forest_svg(rows: Sequence[PortfolioRow], level: float | None) -> str:
    """Every journey's absolute lift (points): the dot at the estimate, coloured by the call, the whisker
    its own 95% interval, the light bar behind it the adjusted interval; the zero line dashed."""
    width, left, right, top, row_h = 1040, 190, 30, 40, 32
    height = top + row_h * max(len(rows), 1) + 56
    core: list[float] = []
    wide: list[float] = []
    for row in rows:
        if row.interval is not None:
            core += [row.interval.low, row.interval.high]
        if row.adjusted_interval is not None:
            wide += [row.adjusted_interval.low, row.adjusted_interval.high]
        if row.lift is not None:
            core.append(row.lift)
    # A difference of rates lies within +-100 points; a much wider adjusted interval is cut at the edge.
    axis = fit_axis(core, wide, limits=(-1.0, 1.0), include_zero=True, count=8)
    low, high = axis.low, axis.high
    tick_text = axis_label(RATE, signed=True)

    def x(v: float) -> float:
        return left + (axis.clamp(v) - low) / (high - low) * (width - left - right)

    adjusted = "n/a" if level is None else f"{level:.1%}"
    title = "absolute lift of the conversion rate by journey (points)"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="12" y="20" style="font-weight:600">{escape(title)}</text>',
    ]
    axis_y = top + row_h * max(len(rows), 1) + 4
    for tick in axis.ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 8}" x2="{x(tick):.1f}" y2="{axis_y}" stroke="#f3f4f6"/>'
            f'<text x="{x(tick):.1f}" y="{axis_y + 16}" text-anchor="middle">'
            f"{escape(tick_text(tick, axis.step))}</text>"
        )
    if low < 0 < high:
        parts.append(
            f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#9ca3af" '
            'stroke-dasharray="4 3"/>'
        )
    for i, row in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        colour = CALL_COLOURS.get(row.call or "", DEFAULT_COLOUR)
        parts.append(f'<text x="{left - 10}" y="{cy + 4:.1f}" text-anchor="end">{escape(row.journey)}</text>')
        if row.lift is None:
            note = escape(row.note or "n/a")
            parts.append(f'<text x="{left + 8}" y="{cy + 4:.1f}" style="fill:#9ca3af">{note}</text>')
            continue
        parts += interval_marks(
            x,
            axis,
            cy,
            colour,
            row.interval,
            row.adjusted_interval,
            row.lift,
            wide_title=f"adjusted {adjusted} interval: {points_span(row.adjusted_interval)}",
            dot_title=f"{row.journey}: {points(row.lift)} pts (95% {points_span(row.interval)}); "
            f"{row.call or ''}",
            wide_opacity=0.18,
        )
    legend_y = height - 10
    parts.append(
        f'<line x1="{left}" y1="{legend_y - 5}" x2="{left + 24}" y2="{legend_y - 5}" '
        f'stroke="{DEFAULT_COLOUR}" stroke-width="2.5"/>'
        f'<text x="{left + 30}" y="{legend_y}">the journey\'s own 95% interval</text>'
        f'<rect x="{left + 250}" y="{legend_y - 11}" width="24" height="12" fill="{DEFAULT_COLOUR}" '
        f'opacity="0.18"/><text x="{left + 280}" y="{legend_y}">adjusted {adjusted} interval '
        "(Benjamini-Yekutieli)</text>"
        f'<circle cx="{left + 680}" cy="{legend_y - 5}" r="5" fill="{CALL_COLOURS[SHIP]}"/>'
        f'<text x="{left + 690}" y="{legend_y}">ship</text>'
        f'<circle cx="{left + 740}" cy="{legend_y - 5}" r="5" fill="{CALL_COLOURS[HARMFUL]}"/>'
        f'<text x="{left + 750}" y="{legend_y}">harmful</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------- table


def _journey_table(report: Portfolio, st: _Style) -> str:
    level = adjusted_level(report.alpha, report.selected, report.compared)
    revenue = money_formatter(report.currency, plain=",.2f")
    head = [
        "journey", "treated", "held out", "rate", "held-out rate", "lift pts", "95% interval",
        f"adjusted {'n/a' if level is None else f'{level:.1%}'} interval", "q-value", "call",
        "guardrail alarms", "sent", "incr. conv. / 1,000 msgs", "incr. revenue / 1,000 msgs",
    ]  # fmt: skip
    rows = [
        [
            escape(r.journey),
            f"{r.treated:,}",
            f"{r.held_out:,}",
            percent(r.treated_rate),
            percent(r.held_out_rate),
            points(r.lift),
            points_span(r.interval),
            points_span(r.adjusted_interval),
            _number(r.q_value, ".3f"),
            _call_html(r.note, r.call, st),
            _alarms_html(r.guardrail_alarms, r.guardrail_reasons, st),
            f"{r.sent:,}",
            _number(r.conversions_per_1000),
            revenue(r.revenue_per_1000),
        ]
        for r in report.rows
    ]
    return st.table(head, rows)


def _alarms_html(alarms: Sequence[str], reasons: Sequence[str], st: _Style) -> str:
    """The guardrails that alarm, marked as harm, with each alarm's figures as the cell's title."""
    if not alarms:
        return "none"
    title = escape("; ".join(reasons), quote=True)
    return f'<span{st.call("bad")} title="{title}">ALARM: {escape(", ".join(alarms))}</span>'


def _method(report: Portfolio, st: _Style) -> str:
    level = adjusted_level(report.alpha, report.selected, report.compared)
    items = [
        f"Corrected for reading {report.compared} journeys at once: Benjamini-Hochberg q-values of the "
        f"journeys' conversion p-values ({report.selected} with q &lt; {report.alpha:g}, selected with a "
        f"false discovery rate of at most {report.alpha:g}).",
        f"Adjusted intervals: Benjamini-Yekutieli false coverage rate, each journey's Newcombe interval at "
        f"level 1 - max(R, 1) alpha / m = {'n/a' if level is None else f'{level:.2%}'} "
        f"(R = {report.selected}, m = {report.compared}).",
        "Each journey's call is its own report's, read off its always-valid interval: ship, harmful, no "
        "detectable effect, or not enough data yet.",
        "Incremental conversions = the lift times the treated entries (revenue likewise, from the "
        "revenue-per-entry lift), per 1,000 messages the journey sent.",
        "The program's lift compares every customer of the store by the global holdout's hash, whether or "
        "not they entered a journey (Newcombe interval and z-test for the share converting, Welch for "
        "revenue per customer, the always-valid interval for the call).",
    ]
    notes = [f"{escape(r.journey)}: {escape(r.note)}" for r in report.rows if r.note]
    body = "".join(f"<li>{item}</li>" for item in items + notes)
    return f"<h2{st('h2')}>Method</h2><ul{st('note')}>{body}</ul>"


# ---------------------------------------------------------------------------------------------- pages


def render_portfolio_html(portfolio: Portfolio, email: bool = False) -> str:
    """The portfolio as a self-contained page, or with ``email`` as a fragment for an email's body (tables
    and inline styles only, no SVG; see the module docstring)."""
    st = _Style(email)
    instant = portfolio.as_of_us
    if instant is None and portfolio.program is not None:
        instant = portfolio.program.as_of_us  # the last tick's, as every journey's report reads it
    as_of = "the last tick" if instant is None else from_us(instant).isoformat()
    title = "Every journey side by side"
    body = [
        f"<h1{st('h2') if email else ''}>{escape(title)}</h1>",
        f"<p{st('meta')}>As of {escape(as_of)}; {len(portfolio.rows)} journeys, {portfolio.compared} "
        f"compared.</p>",
        _program_section(portfolio.program, st, charts=not email, currency=portfolio.currency),
        f"<h2{st('h2')}>Lift by journey</h2>",
    ]
    if not email:
        level = adjusted_level(portfolio.alpha, portfolio.selected, portfolio.compared)
        body.append(f"<div class='charts'>{forest_svg(portfolio.rows, level)}</div>")
    body += [_journey_table(portfolio, st), _method(portfolio, st)]
    if email:
        return f'<div style="{_INLINE["wrap"]}">{"".join(body)}</div>\n'
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
