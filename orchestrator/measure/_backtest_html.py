"""A backtest's report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

The page draws the entries and the messages sent per day, one line per journey, then holds the same
tables the command line prints (``_backtest.backtest_sections``) and the messages per day, step and
channel. It renders a report or its JSON (a saved report), so a saved backtest looks as it did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from orchestrator.measure._backtest import (
    BacktestReport,
    BacktestSection,
    as_report,
    backtest_heading,
    backtest_sections,
    comparison_sections,
)
from orchestrator.measure._html import CSS, PALETTE

_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP = 1040, 220, 56, 28, 26


def _daily_svg(title: str, dates: Sequence[str], series: Mapping[str, Sequence[int]]) -> str:
    """A line per journey of a count per day, with the journey names as a legend."""
    top = max([1, *(v for values in series.values() for v in values)])
    n = max(len(dates), 1)
    inner_w, inner_h = _WIDTH - _LEFT - 36, _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return _TOP + inner_h * (1 - v / top)

    out = [
        f"<svg role='img' aria-label='{escape(title)}' width='{_WIDTH}' height='{_HEIGHT}' "
        f"viewBox='0 0 {_WIDTH} {_HEIGHT}' xmlns='http://www.w3.org/2000/svg'>",
        f"<text x='{_LEFT}' y='16' font-weight='bold'>{escape(title)}</text>",
    ]
    for frac in (0, 0.5, 1):
        value = top * frac
        out.append(
            f"<line x1='{_LEFT}' x2='{_WIDTH - 12}' y1='{y(value):.1f}' y2='{y(value):.1f}' "
            "stroke='#e5e7eb'/>"
            f"<text x='{_LEFT - 6}' y='{y(value) + 4:.1f}' text-anchor='end'>{value:,.0f}</text>"
        )
    step = max(1, n // 8)
    for i in range(0, n, step):
        out.append(
            f"<text x='{x(i):.1f}' y='{_HEIGHT - 8}' text-anchor='middle'>{escape(dates[i][5:])}</text>"
        )
    legend_x = _LEFT + 200
    for k, (name, values) in enumerate(series.items()):
        colour = PALETTE[(k + 1) % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{points}'/>")
        out.append(
            f"<rect x='{legend_x}' y='7' width='10' height='10' fill='{colour}'/>"
            f"<text x='{legend_x + 14}' y='16'>{escape(name)}</text>"
        )
        legend_x += 24 + 8 * len(name)
    out.append("</svg>")
    return "".join(out)


def _table(section: BacktestSection) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h, _ in section.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape('-' if c is None or c == '' else str(c))}</td>" for c in row) + "</tr>"
        for row in section.rows
    )
    notes = "".join(f"<p class='note'>{escape(n)}</p>" for n in section.notes)
    return f"<h2>{escape(section.title)}</h2><table><tr>{head}</tr>{rows}</table>{notes}"


def _by_day_step(data: Mapping[str, Any]) -> str:
    rows = data["messages_by_day"]
    if not rows:
        return ""
    section = BacktestSection(
        "Messages per day, journey, step and channel",
        [
            ("day", "left"),
            ("journey", "left"),
            ("step", "left"),
            ("channel", "left"),
            ("sent", "right"),
            ("suppressed", "right"),
            ("failed", "right"),
            ("queued at end", "right"),
        ],
        [
            [
                r["date"],
                r["journey"],
                r["step"],
                r["channel"],
                f"{r['sent']:,}",
                f"{r['suppressed']:,}",
                f"{r['failed']:,}",
                f"{r['queued']:,}",
            ]
            for r in rows
        ],
    )
    return _table(section)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS} td {{ white-space: nowrap; }}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _report_body(data: Mapping[str, Any]) -> str:
    dates = [d["date"] for d in data["days"]]
    entries = {j: [d["entries"].get(j, 0) for d in data["days"]] for j in data["journeys"]}
    sent = {j: [d["sent"].get(j, 0) for d in data["days"]] for j in data["journeys"]}
    heading = backtest_heading(data)
    return "".join(
        [
            f"<h1>{escape(heading[0])}</h1>",
            *(f"<p class='meta'>{escape(line)}</p>" for line in heading[1:]),
            "<p class='banner warn'>Conversions here are observed, not caused: the customers' behaviour is "
            "the recorded past, which never saw these messages.</p>",
            "<div class='charts'>",
            _daily_svg("Entries per day", dates, entries),
            _daily_svg("Messages sent per day", dates, sent),
            "</div>",
            *(_table(section) for section in backtest_sections(data)),
            _by_day_step(data),
        ]
    )


def backtest_html(report: BacktestReport | Mapping[str, Any]) -> str:
    """A backtest's report (or its JSON, as saved) as one self-contained HTML page."""
    data = as_report(report)
    return _page(f"Backtest {data['window']['from']} to {data['window']['to']}", _report_body(data))


def comparison_html(comparison: Mapping[str, Any]) -> str:
    """Two backtests of one window (``compare_backtests``) as one page: the differences, then each report."""
    a, b = comparison["a"], comparison["b"]
    body = [
        f"<h1>Backtests compared: {escape(a.get('label') or 'a')} and {escape(b.get('label') or 'b')}</h1>",
        f"<p class='meta'>{escape(a['window']['from'])} to {escape(a['window']['to'])}</p>",
        *(_table(section) for section in comparison_sections(comparison)),
        "<hr>",
        _report_body(a),
        "<hr>",
        _report_body(b),
    ]
    return _page("Backtests compared", "".join(body))
