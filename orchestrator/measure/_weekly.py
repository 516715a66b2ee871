"""The weekly report the daemon emails (``reports: {weekly: ...}`` in ``orchestrator.yaml``), and what
``orchestrator weekly-report`` writes: the portfolio of journeys and a summary of the week's engagement.

``weekly_report`` reads the store only, as of an instant:

- **the journeys to date**: the portfolio (``_portfolio.portfolio``) as of the instant: every journey's
  treated and held-out entries whose goal window has closed, its lift with its interval, the
  Benjamini-Hochberg q-value and Benjamini-Yekutieli adjusted interval, the call, messages sent, under the
  whole program's lift against the global holdout;
- **the journeys over the last 7 days**: the entries whose goal window closed in the 7 days before the
  instant, which is the portfolio as of the instant less the portfolio as of 7 days before (an entry is
  counted once its goal window closes, and its conversion is settled by then), with each journey's lift
  and its own interval on those entries alone;
- **engagement** (``_analytics.engagement_analytics`` over the two whole weeks, Monday to Sunday UTC,
  before the instant): the last week beside the week before: mean DAU, WAU (the customers active in the
  week) and MAU on the week's last day, stickiness (mean DAU/MAU over the days whose month is whole), the
  conversion rate (active customers who converted) and the churn rate (active the week before, not this
  week), as ``docs/metrics.md`` defines them.

``weekly_email`` renders it as a subject, plain text and HTML for mail clients: tables and inline styles
only, no SVG, no image, no stylesheet, no script and no link but the console's when one is given. The
portfolio's part is ``portfolio_table_html``: the portfolio's own email fragment
(``_portfolio_html.render_portfolio_html`` with ``email=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, timedelta
from html import escape
from typing import Any

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.errors import UsageError
from orchestrator.measure._analytics import AnalyticsSettings, engagement_analytics
from orchestrator.measure._formats import percent, points, points_span
from orchestrator.measure._numbers import Interval
from orchestrator.measure._portfolio import (
    Portfolio,
    PortfolioRow,
    portfolio,
    portfolio_lines,
)
from orchestrator.measure._rates import ArmSummary, rate_lift
from orchestrator.store import Store

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class WeekRow:
    """One journey's entries whose goal window closed in the last 7 days, and their lift."""

    journey: str
    treated: int
    held_out: int
    treated_conversions: int
    held_out_conversions: int
    lift: float | None
    interval: Interval | None

    @property
    def treated_rate(self) -> float | None:
        return self.treated_conversions / self.treated if self.treated else None

    @property
    def held_out_rate(self) -> float | None:
        return self.held_out_conversions / self.held_out if self.held_out else None


@dataclass(frozen=True)
class Figure:
    """One engagement figure: the last week's value and the week before's; ``kind`` ``count``, ``rate``
    (a share) or ``mean``."""

    name: str
    kind: str
    week: float | None
    before: float | None


@dataclass(frozen=True)
class WeeklyReport:
    as_of_us: int
    week_from: date  # the engagement week, Monday (UTC), included
    week_to: date  # the Monday after, not included
    to_date: Portfolio
    last_7_days: tuple[WeekRow, ...]
    figures: tuple[Figure, ...]
    note: str = ""  # why there are no engagement figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": from_us(self.as_of_us).isoformat(),
            "week": {"from": self.week_from.isoformat(), "to": self.week_to.isoformat()},
            "portfolio": self.to_date.to_dict(),
            "last_7_days": [
                {**vars(row), "interval": None if row.interval is None else row.interval.to_dict()}
                for row in self.last_7_days
            ],
            "engagement": [vars(f) for f in self.figures],
            "note": self.note,
        }


@dataclass(frozen=True)
class WeeklyEmail:
    """The report as an email: its subject, the plain-text part and the HTML part."""

    subject: str
    text: str
    html: str


def weekly_report(
    store: Store,
    as_of_us: int,
    *,
    alpha: float = 0.05,
    settings: AnalyticsSettings | None = None,
    currency: str | None = None,
    global_percent: float = 0.0,
) -> WeeklyReport:
    """The weekly report as of ``as_of_us`` (see the module docstring); revenue in ``currency`` (ISO 4217,
    None: plain numbers); ``global_percent`` the workspace's global holdout, for the program's lift."""
    now = portfolio(store, as_of_us, alpha, global_percent=global_percent, currency=currency)
    before = portfolio(store, as_of_us - int(WEEK.total_seconds() * US_PER_SECOND), alpha, currency=currency)
    earlier = {row.journey: row for row in before.rows}
    week_rows = tuple(_week_row(row, earlier.get(row.journey), alpha) for row in now.rows)
    day = from_us(as_of_us).astimezone(UTC).date()
    week_to = day - timedelta(days=day.weekday())  # the Monday of the instant's week: the weeks before it
    week_from = week_to - WEEK
    figures: tuple[Figure, ...] = ()
    note = ""
    try:
        analytics = engagement_analytics(store, week_from - WEEK, week_to, settings)
    except UsageError as exc:
        note = f"no engagement figures: {exc}"
    else:
        figures = _figures(analytics.data, week_from)
    return WeeklyReport(as_of_us, week_from, week_to, now, week_rows, figures, note)


def _conversions(row: PortfolioRow | None) -> tuple[int, int, int, int]:
    if row is None:
        return 0, 0, 0, 0
    treated_conv = round((row.treated_rate or 0.0) * row.treated)
    held_conv = round((row.held_out_rate or 0.0) * row.held_out)
    return row.treated, row.held_out, treated_conv, held_conv


def _week_row(now: PortfolioRow, before: PortfolioRow | None, alpha: float) -> WeekRow:
    n_t, n_h, c_t, c_h = (a - b for a, b in zip(_conversions(now), _conversions(before), strict=True))
    lift = rate_lift(
        ArmSummary.from_counts("treatment", c_t, n_t), ArmSummary.from_counts("holdout", c_h, n_h), alpha
    )
    return WeekRow(
        journey=now.journey,
        treated=n_t,
        held_out=n_h,
        treated_conversions=c_t,
        held_out_conversions=c_h,
        lift=None if lift is None else lift.absolute,
        interval=None if lift is None else lift.absolute_ci,
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _figures(data: dict[str, Any], week_from: date) -> tuple[Figure, ...]:
    days = data["active"]["days"]
    this, prior = days[7:], days[:7]
    periods = {row["period"]: row for row in data["periods"]}
    week, earlier = periods.get(week_from.isoformat(), {}), periods.get((week_from - WEEK).isoformat(), {})

    def stickiness(rows: list[dict[str, Any]]) -> float | None:
        return _mean([r["stickiness"] for r in rows if r["stickiness"] is not None and r["full_month"]])

    def last(rows: list[dict[str, Any]], key: str) -> float | None:
        return float(rows[-1][key]) if rows else None

    return (
        Figure("daily active customers (mean)", "mean", _mean([r["dau"] for r in this]),
               _mean([r["dau"] for r in prior])),
        Figure("weekly active customers (WAU)", "count", last(this, "wau"), last(prior, "wau")),
        Figure("monthly active customers (on Sunday)", "count", last(this, "mau"), last(prior, "mau")),
        Figure("stickiness (mean DAU/MAU)", "rate", stickiness(this), stickiness(prior)),
        Figure("conversion rate (active customers who converted)", "rate", week.get("conversion_rate"),
               earlier.get("conversion_rate")),
        Figure("churn rate (active the week before, not this week)", "rate", week.get("churn_rate"),
               earlier.get("churn_rate")),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ rendering


def _value(kind: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if kind == "rate":
        return percent(value)
    if kind == "mean":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def _change(figure: Figure) -> str:
    if figure.week is None or figure.before is None:
        return "n/a"
    delta = figure.week - figure.before
    if figure.kind == "rate":
        return f"{100 * delta:+.1f} pts"
    return f"{delta:+,.1f}" if figure.kind == "mean" else f"{delta:+,.0f}"


def default_subject(report: WeeklyReport) -> str:
    return f"Journeys weekly report: {from_us(report.as_of_us).date().isoformat()}"


def weekly_text(report: WeeklyReport, console_url: str | None = None) -> str:
    """The report as plain text (the email's text part)."""
    lines = [
        f"Journeys weekly report, as of {from_us(report.as_of_us).isoformat()}",
        "",
        f"Engagement: the week of {report.week_from} to {report.week_to - timedelta(days=1)} (UTC), "
        "beside the week before",
    ]
    if report.figures:
        for figure in report.figures:
            lines.append(
                f"  {figure.name}: {_value(figure.kind, figure.week)} "
                f"(week before {_value(figure.kind, figure.before)}; {_change(figure)})"
            )
    else:
        lines.append(f"  {report.note}")
    lines += ["", "Journeys, entries whose goal window closed in the last 7 days"]
    for row in report.last_7_days:
        lines.append(
            f"  {row.journey}: treated {row.treated} at {percent(row.treated_rate)}, "
            f"held out {row.held_out} at {percent(row.held_out_rate)}; "
            f"lift {points(row.lift)} pts (95% interval {points_span(row.interval)})"
        )
    if not report.last_7_days:
        lines.append("  no journey has run")
    lines += ["", "Journeys to date", *portfolio_lines(report.to_date)]
    if console_url:
        lines += ["", f"The console: {console_url}"]
    return "\n".join(lines) + "\n"


# Inline styles only: mail clients drop <style> blocks and SVG, and block remote content.
_TABLE = 'style="border-collapse:collapse;font-size:13px;margin:6px 0 18px 0"'
_TH = 'style="text-align:left;padding:4px 8px;border-bottom:2px solid #444;background:#f2f2f2"'
_TD = 'style="padding:4px 8px;border-bottom:1px solid #ddd"'
_NUM = 'style="padding:4px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap"'
_H2 = 'style="font-size:16px;margin:18px 0 4px 0"'
_NOTE = 'style="color:#555;font-size:12px;margin:4px 0"'


def _table(head: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """A table: ``rows`` of (text, right-aligned) cells, escaped here."""
    out = [f"<table {_TABLE}><tr>", *(f"<th {_TH}>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = "".join(f"<td {_NUM if right else _TD}>{escape(text)}</td>" for text, right in row)
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def portfolio_table_html(report: Portfolio) -> str:
    """The portfolio's own email fragment (``_portfolio_html.render_portfolio_html``, ``email=True``): the
    program's lift, the table of every journey and the method, in tables and inline styles only."""
    from orchestrator.measure._portfolio_html import render_portfolio_html

    return render_portfolio_html(report, email=True)


def weekly_html(report: WeeklyReport, console_url: str | None = None) -> str:
    """The report as one self-contained HTML document for mail clients (see the module docstring)."""
    as_of = from_us(report.as_of_us).isoformat()
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>Journeys weekly report</title></head>',
        '<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#222">',
        '<h1 style="font-size:20px;margin:0 0 4px 0">Journeys weekly report</h1>',
        f"<p {_NOTE}>As of {escape(as_of)}</p>",
        f"<h2 {_H2}>Engagement: {report.week_from} to {report.week_to - timedelta(days=1)} (UTC)</h2>",
    ]
    if report.figures:
        rows = [
            [(f.name, False), (_value(f.kind, f.week), True), (_value(f.kind, f.before), True),
             (_change(f), True)]
            for f in report.figures
        ]  # fmt: skip
        parts.append(_table(["figure", "this week", "week before", "change"], rows))
    else:
        parts.append(f"<p {_NOTE}>{escape(report.note)}</p>")
    parts.append(f"<h2 {_H2}>Journeys: entries whose goal window closed in the last 7 days</h2>")
    if report.last_7_days:
        rows = [
            [(r.journey, False), (f"{r.treated:,}", True), (f"{r.held_out:,}", True),
             (percent(r.treated_rate), True), (percent(r.held_out_rate), True), (points(r.lift), True),
             (points_span(r.interval), True)]
            for r in report.last_7_days
        ]  # fmt: skip
        head = ["journey", "treated", "held out", "rate", "held-out rate", "lift pts", "95% interval"]
        parts.append(_table(head, rows))
    else:
        parts.append(f"<p {_NOTE}>No journey has run.</p>")
    parts.append(portfolio_table_html(report.to_date))
    if console_url:
        parts.append(f'<p style="margin:18px 0 0 0"><a href="{escape(console_url)}">Open the console</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def weekly_email(
    store: Store,
    as_of_us: int,
    *,
    subject: str | None = None,
    console_url: str | None = None,
    currency: str | None = None,
    global_percent: float = 0.0,
) -> WeeklyEmail:
    """The weekly report as of ``as_of_us`` as an email (``subject`` default: one naming the day; revenue
    in ``currency``; ``global_percent``: the workspace's global holdout)."""
    report = weekly_report(store, as_of_us, currency=currency, global_percent=global_percent)
    return WeeklyEmail(
        subject=subject or default_subject(report),
        text=weekly_text(report, console_url),
        html=weekly_html(report, console_url),
    )
