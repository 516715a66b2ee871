"""The uplift view as a section of a lift report page: per result, the Qini curve as an inline SVG (the
model's ordering against the random line), the curve and the quadrants as tables, written with the text's
own figures (``_uplift_text``). No script, nothing fetched."""

from __future__ import annotations

from html import escape

from orchestrator.measure._svg import bounds, ticks
from orchestrator.measure._uplift import MODEL_ESTIMATE, UpliftResult, UpliftView
from orchestrator.measure._uplift_text import (
    curve_rows,
    figure_words,
    heading,
    quadrant_rows,
    quadrant_rule,
    summary_words,
)

_L = " style='text-align:left'"  # a text column (the page's tables align figures right)


def qini_svg(result: UpliftResult) -> str:
    """The Qini curve (incremental outcomes by share targeted, highest predicted uplift first) as a line,
    with the random line dashed from (0, 0) to its end."""
    width, height, left, right, top, bottom = 640, 340, 70, 20, 34, 46
    title = f"Qini curve: incremental {result.metric}, {result.treatment} vs {result.control}"
    points = result.curve
    low, high = bounds([v for p in points for v in (p.qini, p.random)], True)

    def x(share: float) -> float:
        return left + share * (width - left - right)

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="12" y="20" style="font-weight:600">{escape(title)}</text>',
    ]
    for tick in ticks(low, high):
        parts.append(
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" stroke="#f3f4f6"/>'
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        anchor = "start" if share == 0.0 else ("end" if share == 1.0 else "middle")
        parts.append(
            f'<text x="{x(share):.1f}" y="{height - bottom + 18}" text-anchor="{anchor}">{share:.0%}</text>'
        )
    if low < 0 < high:
        parts.append(
            f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#9ca3af"/>'
        )
    end = points[-1]
    parts.append(
        f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(end.random):.1f}" stroke="#6b7280" '
        'stroke-width="2" stroke-dasharray="6 4"><title>random targeting</title></line>'
    )
    line = " ".join(f"{x(p.share):.1f},{y(p.qini):.1f}" for p in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2.5"/>')
    for i, p in enumerate(points):
        if i % 10 == 0:
            parts.append(
                f'<circle cx="{x(p.share):.1f}" cy="{y(p.qini):.1f}" r="3" fill="#1d4ed8">'
                f"<title>top {p.share:.0%} ({p.targeted:.0f} rows): {p.qini:+.1f} incremental, random "
                f"{p.random:+.1f}</title></circle>"
            )
    legend_y = height - 8
    parts.append(
        f'<line x1="{left}" y1="{legend_y - 4}" x2="{left + 18}" y2="{legend_y - 4}" stroke="#2563eb" '
        f'stroke-width="2.5"/><text x="{left + 24}" y="{legend_y}">model ordering (out of fold)</text>'
        f'<line x1="{left + 230}" y1="{legend_y - 4}" x2="{left + 248}" y2="{legend_y - 4}" stroke="#6b7280" '
        f'stroke-width="2" stroke-dasharray="6 4"/><text x="{left + 254}" y="{legend_y}">random targeting'
        "</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _result(result: UpliftResult) -> str:
    out = [f"<h3>{escape(heading(result))}</h3>"]
    out += [f"<p class='meta'>{escape(line)}</p>" for line in summary_words(result)]
    out.append(f"<p class='meta'><b>{escape(figure_words(result))}</b></p>")
    out.append(f"<div class='charts'>{qini_svg(result)}</div>")
    out.append("<table><tr><th>targeted</th><th>rows</th><th>incremental</th><th>random</th></tr>")
    for row in curve_rows(result):
        out.append("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    out.append("</table>")
    out.append(f"<p class='note'>Quadrants: {escape(quadrant_rule(result))}.</p>")
    out.append(
        f"<table><tr><th>quadrant</th><th{_L}>rule</th><th>rows</th><th>share</th><th>treated rate (n)</th>"
        "<th>control rate (n)</th><th>observed difference</th><th>predicted uplift</th></tr>"
    )
    for row in quadrant_rows(result):
        cells = "".join(f"<td{_L if i == 1 else ''}>{escape(cell)}</td>" for i, cell in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def uplift_section(view: UpliftView | None) -> str:
    """The section (empty when the view was not asked for)."""
    if view is None:
        return ""
    parts = [
        "<h2>Uplift: who the message moves <span class='note'>(model estimate)</span></h2>",
        f"<div class='banner warn'>A {escape(MODEL_ESTIMATE)}. The observed rates inside each group are "
        "measured; the grouping is the model's.</div>",
    ]
    parts += [_result(result) for result in view.results]
    parts += [f"<p class='meta'>{escape(note)}</p>" for note in view.notes]
    parts.append(
        "<ul class='note'><li>Qini curve: incremental outcomes among the top share by predicted uplift, "
        "treated outcomes minus control outcomes scaled to the treated count.</li>"
        "<li>Qini coefficient and AUUC: the area between the Qini (uplift) curve and the random line, "
        "divided by that of the perfect ordering.</li></ul>"
    )
    return "".join(parts)
