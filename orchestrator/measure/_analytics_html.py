"""Engagement analytics as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Charts first (active customers per day, stickiness, churn and conversion, NPS, CSAT and CES per period),
then the retention cohorts, the tier transitions and the RFM grid as shaded tables, then every table the
command line prints (``_analytics_text.analytics_sections``), so the page can be read without the charts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from orchestrator.measure._analytics import Analytics
from orchestrator.measure._analytics_text import NOT_YET, analytics_heading, analytics_sections
from orchestrator.measure._backtest_html import _page, _table
from orchestrator.measure._formats import AxisLabel
from orchestrator.measure._html import PALETTE
from orchestrator.measure._svg import fit_axis, tick_label
from orchestrator.money import money

_WIDTH, _HEIGHT, _LEFT, _RIGHT, _BOTTOM, _TOP = 1040, 240, 64, 24, 28, 30
#: The shade of a cell at its table's largest value (blue, as the treatment arm's colour).
_SHADE = (37, 99, 235)


def _line_svg(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: AxisLabel,
    limits: tuple[float, float] = (0.0, math.inf),
    from_zero: bool = True,
) -> str:
    """A line per series over ``labels`` (dates), with gaps where a value is None. The vertical axis fits
    the values within ``limits`` (what the figure can take), from zero when ``from_zero`` (counts and
    shares), else around the values (NPS, CES). Ticks are labelled ``fmt(value, step)``."""
    values = [v for vs in series.values() for v in vs if v is not None]
    axis = fit_axis(values, limits=limits, include_zero=from_zero, count=4)
    bottom, top = axis.low, axis.high
    ticks = axis.ticks
    n = max(len(labels), 1)
    inner_w, inner_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return _TOP + inner_h * (1 - (v - bottom) / (top - bottom))

    out = [
        f"<svg role='img' aria-label='{escape(title)}' width='{_WIDTH}' height='{_HEIGHT}' "
        f"viewBox='0 0 {_WIDTH} {_HEIGHT}' xmlns='http://www.w3.org/2000/svg'>",
        f"<text x='{_LEFT}' y='18' font-weight='bold'>{escape(title)}</text>",
    ]
    if not values:
        out.append(
            f"<text x='{_LEFT + inner_w / 2:.1f}' y='{_TOP + inner_h / 2:.1f}' text-anchor='middle'>"
            "no data in the window</text>"
        )
    for value in ticks:
        out.append(
            f"<line x1='{_LEFT}' x2='{_WIDTH - _RIGHT}' y1='{y(value):.1f}' y2='{y(value):.1f}' "
            "stroke='#e5e7eb'/>"
            f"<text x='{_LEFT - 6}' y='{y(value) + 4:.1f}' text-anchor='end'>"
            f"{escape(fmt(value, axis.step))}</text>"
        )
    step = max(1, -(-n // 10))
    for i in range(0, n, step):
        out.append(
            f"<text x='{x(i):.1f}' y='{_HEIGHT - 8}' text-anchor='middle'>{escape(labels[i][5:])}</text>"
        )
    legend_x = _LEFT + 16 + 7 * len(title)
    for k, (name, vs) in enumerate(series.items()):
        colour = PALETTE[(k + 1) % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) > 1:
                out.append(
                    f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(run)}'/>"
                )
            for point in run:
                px, py = point.split(",")
                out.append(f"<circle cx='{px}' cy='{py}' r='2.5' fill='{colour}'/>")
        out.append(
            f"<rect x='{legend_x}' y='9' width='10' height='10' fill='{colour}'/>"
            f"<text x='{legend_x + 14}' y='18'>{escape(name)}</text>"
        )
        legend_x += 30 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def _share(value: float, step: float) -> str:
    return tick_label(value, step, scale=100.0, suffix="%")


def _count(value: float, step: float) -> str:
    return tick_label(value, step)


def _cell(text: str, share: float | None) -> str:
    """A table cell shaded by ``share`` (0 to 1) of the table's largest value, light enough that the dark
    text stays readable on the darkest cell."""
    if share is None:
        return f"<td class='muted'>{escape(text)}</td>"
    alpha = 0.05 + 0.4 * max(0.0, min(1.0, share))
    r, g, b = _SHADE
    return f"<td style='background: rgba({r},{g},{b},{alpha:.2f})'>{escape(text)}</td>"


def _retention_table(title: str, rows: Sequence[Mapping[str, Any]], marks: Sequence[int], note: str) -> str:
    head = "".join(f"<th>{m} days</th>" for m in marks)
    body = []
    for row in rows:
        cells = [f"<td>{escape(row['cohort'])}</td><td>{row['customers']:,}</td>"]
        for mark in marks:
            cell = row[f"d{mark}"]
            if not cell["measurable"]:
                cells.append(_cell(NOT_YET, None))
            elif cell["rate"] is None:
                cells.append(_cell("-", None))
            else:
                cells.append(_cell(f"{100 * cell['rate']:.1f}% ({cell['retained']:,})", cell["rate"]))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<h2>{escape(title)}</h2><table><tr><th>week</th><th>customers</th>{head}</tr>{''.join(body)}</table>"
        f"<p class='note'>{escape(note)}</p>"
    )


def _tier_table(tiers: Mapping[str, Any]) -> str:
    top = max([1, *(v for row in tiers["matrix"] for v in row)])
    head = "".join(f"<th>{escape(label)}</th>" for label in tiers["to_labels"])
    body = "".join(
        f"<tr><td>{escape(label)}</td>" + "".join(_cell(f"{v:,}", v / top) for v in row) + "</tr>"
        for label, row in zip(tiers["from_labels"], tiers["matrix"], strict=True)
    )
    return (
        f"<h2>Movement between lifecycle tiers, {escape(tiers['from'])} to {escape(tiers['to'])}</h2>"
        f"<table><tr><th>{escape(tiers['from'])} \\ {escape(tiers['to'])}</th>{head}</tr>{body}</table>"
        f"<p class='note'>{tiers['customers']:,} customers seen before {escape(tiers['to'])}; rows: the tier "
        f"at the start, columns: at the end. Tier: {escape(tiers['expression'])}</p>"
    )


def _rfm_table(rfm: Mapping[str, Any], currency: str | None) -> str:
    cells = {(c["r"], c["f"]): c for c in rfm["cells"]}
    top = max([1, *(c["customers"] for c in rfm["cells"])])
    head = "".join(f"<th>F{fs}</th>" for fs in range(1, 6))
    body = []
    for rs in range(5, 0, -1):
        row = [f"<td>R{rs}</td>"]
        for fs in range(1, 6):
            c = cells[rs, fs]
            row.append(
                _cell(
                    f"{c['customers']:,} {c['segment']} · {money(c['revenue'], currency, plain=',.0f')}",
                    c["customers"] / top,
                )
            )
        body.append("<tr>" + "".join(row) + "</tr>")
    return (
        f"<h2>RFM grid at {escape(rfm['at'])}</h2><table class='grid'><tr><th>R \\ F</th>{head}</tr>"
        f"{''.join(body)}</table><p class='note'>Each cell: customers, their segment and their revenue over "
        f"the last 365 days. {rfm['without_conversion']:,} customers without a conversion are not scored.</p>"
    )


def analytics_html(analytics: Analytics | Mapping[str, Any]) -> str:
    """The analytics (or their JSON) as one self-contained HTML page."""
    data = analytics.data if isinstance(analytics, Analytics) else analytics
    heading = analytics_heading(data)
    days = data["active"]["days"]
    dates = [d["date"] for d in days]
    periods = data["periods"]
    starts = [p["period"] for p in periods]
    word = data["settings"]["period"]
    retention = data["retention"]
    width = retention["width"]
    charts = [
        _line_svg(
            "Active customers per day",
            dates,
            {k.upper(): [d[k] for d in days] for k in ("dau", "wau", "mau")},
            _count,
        ),
        _line_svg(
            "Stickiness (DAU/MAU)",
            dates,
            {"DAU/MAU": [d["stickiness"] if d["full_month"] else None for d in days]},
            _share,
            (0.0, 1.0),
        ),
        _line_svg(
            f"Churn and conversion per {word}",
            starts,
            {
                "churn rate": [p["churn_rate"] for p in periods],
                "conversion rate": [p["conversion_rate"] for p in periods],
            },
            _share,
            (0.0, 1.0),
        ),
        _line_svg(
            f"NPS per {word}",
            starts,
            {"NPS": [p["nps"] for p in periods]},
            lambda v, step: tick_label(v, step, signed=True),
            (-100.0, 100.0),
            from_zero=False,
        ),
        _line_svg(
            f"CSAT per {word} (share of 4 and 5)",
            starts,
            {"CSAT": [p["csat"] for p in periods]},
            _share,
            (0.0, 1.0),
            from_zero=False,
        ),
        _line_svg(
            f"CES per {word} (mean, 1 to 7)",
            starts,
            {"CES": [p["ces"] for p in periods]},
            lambda v, step: tick_label(v, step),
            (1.0, 7.0),
            from_zero=False,
        ),
    ]
    body = [
        f"<h1>{escape(heading[0])}</h1>",
        *(f"<p class='meta'>{escape(line)}</p>" for line in heading[1:]),
        "<div class='charts'>",
        *charts,
        "</div>",
        _retention_table(
            "Retention by first-seen week (birth)",
            retention["birth"],
            retention["marks"],
            f"N days: came back on a day in [N, N + {width}) after the first-seen day. '{NOT_YET}': that "
            "window had not ended for every customer of the week by the end of the data.",
        ),
        _retention_table(
            "Retention of the customers active each week (compounded)",
            retention["compounded"],
            retention["marks"],
            f"N days: came back on a day in [N, N + {width}) after their first active day of that week.",
        ),
        _tier_table(data["tiers"]),
        _rfm_table(data["rfm"], data["settings"].get("currency")),
        "<h2>All figures</h2>",
        *(_table(section) for section in analytics_sections(data)),
    ]
    title = f"Engagement analytics {data['window']['from']} to {data['window']['to']}"
    return _page(title, "".join(body)).replace(
        "</style>", " .muted { color: #6b7280; } table.grid td { white-space: normal; }</style>", 1
    )
