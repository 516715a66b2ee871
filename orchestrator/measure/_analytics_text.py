"""Engagement analytics laid out as titled tables (``analytics_sections``), for the command line and the
HTML page alike, from the plain data of ``engagement_analytics`` (or its JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.measure._backtest import BacktestSection
from orchestrator.money import money

NOT_YET = "not yet"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _mean(values: Sequence[float]) -> str:
    return "-" if not values else f"{sum(values) / len(values):,.1f}"


def analytics_heading(data: Mapping[str, Any]) -> list[str]:
    window, settings = data["window"], data["settings"]
    activity = settings["activity"]
    active = activity if isinstance(activity, str) else ", ".join(activity)
    period = "weeks (Monday to Sunday)" if settings["period"] == "week" else "calendar months"
    return [
        f"Engagement analytics {window['from']} to {window['to']} ({window['days']} UTC days, the last one "
        "not included)",
        f"active: {active}; conversion: {settings['conversion']}; periods: {period}",
    ]


def _active_rows(data: Mapping[str, Any]) -> list[list[Any]]:
    """Mean DAU, WAU and MAU over each period's days in the window, and its stickiness."""
    days = data["active"]["days"]
    rows = []
    for period in data["periods"]:
        inside = [d for d in days if period["period"] <= d["date"] < period["end"]]
        ratios = [d["stickiness"] for d in inside if d["full_month"] and d["stickiness"] is not None]
        rows.append(
            [
                period["period"],
                len(inside),
                _mean([d["dau"] for d in inside]),
                _mean([d["wau"] for d in inside]),
                _mean([d["mau"] for d in inside]),
                _percent(sum(ratios) / len(ratios)) if ratios else "-",
            ]
        )
    return rows


def _retention(rows: Sequence[Mapping[str, Any]], marks: Sequence[int]) -> list[list[Any]]:
    out = []
    for row in rows:
        cells: list[Any] = [row["cohort"], _n(row["customers"])]
        for mark in marks:
            cell = row[f"d{mark}"]
            if not cell["measurable"]:
                cells.append(NOT_YET)
            elif cell["rate"] is None:
                cells.append("-")
            else:
                cells.append(f"{_percent(cell['rate'])} ({cell['retained']:,})")
        out.append(cells)
    return out


def _mark_columns(marks: Sequence[int]) -> list[tuple[str, Any]]:
    return [(f"{mark}d", "right") for mark in marks]


def analytics_sections(data: Mapping[str, Any]) -> list[BacktestSection]:
    settings = data["settings"]
    currency = settings.get("currency")
    period_word = settings["period"]
    active = data["active"]
    retention = data["retention"]
    marks = retention["marks"]
    width = retention["width"]
    sections = [
        BacktestSection(
            f"Active customers per {period_word} (means of the daily counts)",
            [
                (period_word, "left"),
                ("days", "right"),
                ("DAU", "right"),
                ("WAU", "right"),
                ("MAU", "right"),
                ("DAU/MAU", "right"),
            ],
            _active_rows(data),
            [
                f"stickiness over the window: {_percent(active['stickiness'])}, the mean of DAU/MAU over the "
                f"{active['full_month_days']} days with 30 days of data behind them"
            ],
        ),
        BacktestSection(
            "Retention by first-seen week (birth)",
            [("cohort week", "left"), ("customers", "right"), *_mark_columns(marks)],
            _retention(retention["birth"], marks),
            [
                f"N days: came back on a day in [N, N + {width}) after the first-seen day; "
                f"{NOT_YET!r}: that window had not ended for every customer of the week"
            ],
        ),
        BacktestSection(
            "Retention of the customers active each week (compounded)",
            [("active week", "left"), ("customers", "right"), *_mark_columns(marks)],
            _retention(retention["compounded"], marks),
            [f"N days: came back on a day in [N, N + {width}) after their first active day of that week"],
        ),
        BacktestSection(
            f"Churn and conversion per {period_word}",
            [
                (period_word, "left"),
                ("active", "right"),
                ("active before", "right"),
                ("churned", "right"),
                ("churn rate", "right"),
                ("converters", "right"),
                ("conversion rate", "right"),
            ],
            [
                [
                    p["period"] + ("" if p["complete"] else " (part)"),
                    _n(p["active"]),
                    _n(p["previous_active"]),
                    _n(p["churned"]),
                    _percent(p["churn_rate"]),
                    _n(p["converters"]),
                    _percent(p["conversion_rate"]),
                ]
                for p in data["periods"]
            ],
            [
                f"churned: active in the {period_word} before and not in this one (a {period_word} that "
                "has not ended has none yet); conversion: active customers with a "
                f"{data['settings']['conversion']} event in the {period_word}"
            ],
        ),
        BacktestSection(
            f"Surveys per {period_word}",
            [
                (period_word, "left"),
                ("NPS", "right"),
                ("answers", "right"),
                ("CSAT", "right"),
                ("answers", "right"),
                ("CES", "right"),
                ("answers", "right"),
            ],
            [
                [
                    p["period"],
                    "-" if p["nps"] is None else f"{p['nps']:+.1f}",
                    _n(p["nps_responses"]),
                    _percent(p["csat"]),
                    _n(p["csat_responses"]),
                    "-" if p["ces"] is None else f"{p['ces']:.2f}",
                    _n(p["ces_responses"]),
                ]
                for p in data["periods"]
            ],
            [
                f"NPS from {settings['nps']} (0-10): % promoters (9-10) - % detractors (0-6); CSAT from "
                f"{settings['csat']} (1-5): share of 4 and 5; CES from {settings['ces']} (1-7): the mean; "
                "every answer counts"
            ],
        ),
    ]
    tiers = data["tiers"]
    sections.append(
        BacktestSection(
            f"Lifecycle tiers from {tiers['from']} (rows) to {tiers['to']} (columns)",
            [("from \\ to", "left"), *((label, "right") for label in tiers["to_labels"]), ("total", "right")],
            [
                [label, *(_n(v) for v in row), _n(sum(row))]
                for label, row in zip(tiers["from_labels"], tiers["matrix"], strict=True)
            ],
            [f"{tiers['customers']:,} customers seen before {tiers['to']}; tier: {tiers['expression']}"],
        )
    )
    rfm = data["rfm"]
    cells = {(c["r"], c["f"]): c for c in rfm["cells"]}
    columns: list[tuple[str, Any]] = [("R \\ F", "left"), *((f"F{fs}", "right") for fs in range(1, 6))]
    sections.append(
        BacktestSection(
            f"RFM grid at {rfm['at']}: customers (segment)",
            columns,
            [
                [
                    f"R{rs}",
                    *(f"{cells[rs, fs]['customers']:,} {cells[rs, fs]['segment']}" for fs in range(1, 6)),
                ]
                for rs in range(5, 0, -1)
            ],
            [
                f"{rfm['customers']:,} customers with a {data['settings']['conversion']}; "
                f"{rfm['without_conversion']:,} without one are not scored. R: quintile(-recency), "
                "F: quintile(frequency within 365d)"
            ],
        )
    )
    sections.append(
        BacktestSection(
            f"RFM grid at {rfm['at']}: revenue in the last 365 days ({data['settings']['revenue']})",
            columns,
            [
                [
                    f"R{rs}",
                    *(money(cells[rs, fs]["revenue"], currency, plain=",.2f") for fs in range(1, 6)),
                ]
                for rs in range(5, 0, -1)
            ],
        )
    )
    return sections
