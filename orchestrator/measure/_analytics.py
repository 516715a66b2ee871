"""Engagement analytics over the store's events (``engagement_analytics``), as ``orchestrator analytics``
prints, draws and exports them.

One read of the events before the window's end (``store.load_events``), then the formulas of
``_analytics_formulas`` over whole columns: active customers per day (DAU, WAU, MAU) and stickiness,
retention of first-seen (birth) and active (compounded) weekly cohorts at 30, 60 and 90 days, churn and
conversion per week or month, NPS, CSAT and CES per period. The lifecycle tiers and the RFM grid are the
language's own built-ins (``lifecycle_tier``, ``quintile``, ``rfm_segment``) run by the signals
``Evaluator`` at the window's two ends. ``docs/metrics.md`` ("Engagement analytics") states every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import UsageError
from orchestrator.measure import _analytics_formulas as f
from orchestrator.signals import (
    CustomerFrame,
    Evaluator,
    EventFrame,
    ExpressionError,
    Node,
    free_names,
    lang,
    parse,
)
from orchestrator.signals._builtin_values import RFM_GRID, quintile
from orchestrator.store import Store, TextColumn, load_customer_values, load_events

PERIODS = ("week", "month")
NOT_SEEN = "(not yet seen)"
NO_VALUE = "(none)"


@dataclass(frozen=True)
class AnalyticsSettings:
    """What counts as what. ``activity``: the event types that make a customer active (empty: any
    event); ``conversion``: the conversion event and ``revenue`` its value property; ``period``: ``week``
    (Monday to Sunday, UTC) or ``month`` for churn, conversion and the surveys; the surveys as
    ``event.property``; ``tier``: the expression whose values the transition matrix compares (default:
    ``lifecycle_tier`` over the activity events); ``currency``: the ISO 4217 code revenue is written in
    (None: plain numbers)."""

    activity: tuple[str, ...] = ()
    conversion: str = "purchase"
    revenue: str = "amount"
    period: str = "week"
    nps: str = "nps_response.score"
    csat: str = "csat_response.score"
    ces: str = "ces_response.score"
    tier: str | None = None
    currency: str | None = None

    def survey(self, name: str) -> tuple[str, str]:
        text = getattr(self, name)
        event, dot, prop = text.partition(".")
        if not dot or not event or not prop or "." in prop:
            raise UsageError(
                f"--{name} {text!r}: give the survey as EVENT.PROPERTY, e.g. {name}_response.score"
            )
        return event, prop


@dataclass
class Table:
    """One exported table: its name and its columns, in order, as plain Python lists."""

    name: str
    columns: dict[str, list[Any]]

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()), []))


@dataclass
class Analytics:
    """The figures of one window, as plain data (``data``, the JSON output) and as tables (``tables``)."""

    data: dict[str, Any]
    tables: list[Table] = field(default_factory=list)


def _day_text(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=int(day))).isoformat()


def _day_number(when: date) -> int:
    return (when - date(1970, 1, 1)).days


def _code_values(column: Any, n: int) -> np.ndarray:
    """A property column as float64 numbers (text that is not a number reads as null)."""
    if isinstance(column, TextColumn):
        table = np.array([_number(v) for v in column.values.tolist()], np.float64)
        out = np.full(n, np.nan)
        present = column.codes >= 0
        out[present] = table[column.codes[present]]
        return out
    return np.asarray(column, np.float64)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float("nan")
    if isinstance(value, int | float):
        return float(value)
    return float("nan")


def _rate(numerator: int, denominator: int) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _parse_tier(text: str) -> Node:
    try:
        return parse(text)
    except ExpressionError as exc:
        raise UsageError(f"--tier {text!r}: {exc}") from None


def _default_tier(activity: Sequence[str]) -> str:
    """``lifecycle_tier`` over the activity events that the language can name."""
    if not activity:
        raise UsageError("no activity event has a name an expression can use: give the tier with --tier")
    events = ", ".join(activity)
    return f"lifecycle_tier(recency({events}), frequency({events}, within=30d))"


def _labels(values: np.ndarray) -> np.ndarray:
    """Evaluator values as text labels, null as ``NO_VALUE`` (numpy's own loops, no Python per value)."""
    if values.dtype == object:
        missing = np.equal(values, np.array(None, dtype=object))
        out = values.astype(str).astype(object)
        out[missing] = NO_VALUE
        return out
    floats = np.asarray(values, np.float64)
    out = np.char.mod("%g", floats).astype(object)
    out[np.isnan(floats)] = NO_VALUE
    return out


def engagement_analytics(
    store: Store, start: date | None, end: date | None, settings: AnalyticsSettings | None = None
) -> Analytics:
    """The analytics of the UTC days ``start <= day < end`` (``end`` not included; default: the day after
    the latest event; ``start`` default: the first event's day)."""
    settings = settings or AnalyticsSettings()
    if settings.period not in PERIODS:
        raise UsageError(f"--period {settings.period!r}: use week or month")
    surveys = {name: settings.survey(name) for name in ("nps", "csat", "ces")}
    if start is not None and end is not None and start >= end:
        raise UsageError(f"--from {start} is not before --to {end}")
    given_tier = None if settings.tier is None else _parse_tier(settings.tier)
    # A tier of one's own may read customer attributes (``plan == "pro"``) and event properties.
    attributes = sorted(
        {n.parts[0] for n in free_names(given_tier) if len(n.parts) == 1} if given_tier is not None else set()
    )
    until_us = None if end is None else _day_number(end) * f.DAY_US
    properties = sorted(
        {
            settings.revenue,
            *(prop for _, prop in surveys.values()),
            *(lang.event_properties(given_tier) if given_tier is not None else ()),
        }
    )
    with store.connect() as conn:
        events = load_events(conn, until_us=until_us, properties=properties)
        n_slots, keys, values = load_customer_values(conn, attributes)
    if not len(events.ts):
        raise UsageError(
            "the store holds no events" + ("" if end is None else f" before {end}") + ": ingest events first"
        )
    day = f.days_of(events.ts)
    end_day = int(day.max()) + 1 if end is None else _day_number(end)
    start_day = int(day.min()) if start is None else _day_number(start)
    if start_day >= end_day:
        raise UsageError(
            f"--from {_day_text(start_day)} is not before the end of the data {_day_text(end_day)}"
        )
    unknown = [name for name in settings.activity if name not in events.type_names]
    if unknown:
        raise UsageError(f"--activity {unknown[0]}: the store has no {unknown[0]} event")
    names = np.asarray(events.type_names, object)
    activity = list(settings.activity) or sorted(
        set(names[np.unique(events.type[events.type >= 0])].tolist())
    )
    active_codes = [i for i, name in enumerate(events.type_names) if name in set(activity)]
    is_active = np.isin(events.type, active_codes)
    act_customer, act_day = events.customer[is_active], day[is_active]
    pair_customer, pair_day = f.active_pairs(act_customer, act_day)

    data: dict[str, Any] = {
        "window": {"from": _day_text(start_day), "to": _day_text(end_day), "days": end_day - start_day},
        "settings": {
            "activity": list(settings.activity) or "any event",
            "conversion": settings.conversion,
            "revenue": f"{settings.conversion}.{settings.revenue}",
            "period": settings.period,
            "currency": settings.currency,
            "nps": settings.nps,
            "csat": settings.csat,
            "ces": settings.ces,
        },
    }
    tables: list[Table] = []
    first_day = int(act_day.min()) if len(act_day) else start_day
    _active_section(data, tables, pair_customer, pair_day, start_day, end_day, first_day)
    _retention_section(data, tables, pair_customer, pair_day, start_day, end_day)
    conv_code = (
        events.type_names.index(settings.conversion) if settings.conversion in events.type_names else -2
    )
    is_conversion = events.type == conv_code
    survey_columns = {}
    for name, (event, prop) in surveys.items():
        code = events.type_names.index(event) if event in events.type_names else -2
        rows = events.type == code
        survey_columns[name] = (day[rows], _code_values(events.properties[prop], len(day))[rows])
    _period_section(
        data,
        tables,
        settings.period,
        start_day,
        end_day,
        (act_customer, act_day),
        (events.customer[is_conversion], day[is_conversion]),
        survey_columns,
    )
    # The tiers and the RFM grid: the language's built-ins, evaluated for every customer at once.
    n = max(int(n_slots), int(events.n_customers))
    customers = CustomerFrame.from_values(n, keys, values)
    customers.exists[events.customer] = True
    tier_text = settings.tier or _default_tier([name for name in activity if name.isidentifier()])
    tier_node = given_tier if given_tier is not None else _parse_tier(tier_text)
    seen_from = np.zeros(n, bool)
    seen_from[act_customer[act_day < start_day]] = True
    seen_to = np.zeros(n, bool)
    seen_to[act_customer] = True

    def frame_until(day_number: int) -> EventFrame:
        keep = day < day_number
        props = {
            name: (column.codes[keep], column.values) if isinstance(column, TextColumn) else column[keep]
            for name, column in events.properties.items()
        }
        return EventFrame.from_columns(
            events.customer[keep], events.ts[keep], events.type[keep], events.type_names, n, props
        )

    before = Evaluator(frame_until(start_day), customers, start_day * f.DAY_US).values(tier_node)
    at_end = frame_until(end_day)
    after = Evaluator(at_end, customers, end_day * f.DAY_US).values(tier_node)
    _tier_section(
        data, tables, tier_text, start_day, end_day, _labels(before), _labels(after), seen_from, seen_to
    )
    conversion, revenue = settings.conversion, f"{settings.conversion}.{settings.revenue}"
    metrics = {
        "r": parse(f"quintile(-recency({conversion}))"),
        "bought": parse(f"present(recency({conversion}))"),
        "frequency": parse(f"frequency({conversion}, within=365d)"),
        "revenue": parse(f"monetary({revenue}, within=365d)"),
    }
    rfm = Evaluator(at_end, customers, end_day * f.DAY_US, metrics)
    # F ranks the buyers only: ranked among everyone, the many customers who never bought (frequency 0)
    # would push every buyer into the top scores.
    buyers = customers.exists & rfm.metric("bought").astype(bool)
    f_score = quintile(rfm.metric("frequency"), buyers)
    _rfm_section(data, tables, end_day, rfm.metric("r"), f_score, rfm.metric("revenue"), customers.exists)
    return Analytics(data, tables)


def _active_section(
    data: dict[str, Any],
    tables: list[Table],
    pair_customer: np.ndarray,
    pair_day: np.ndarray,
    start_day: int,
    end_day: int,
    first_day: int,
) -> None:
    """DAU, WAU, MAU and DAU/MAU per day. A day whose 30-day window reaches before the first activity in
    the store has a MAU that is not yet full: it is shown (``full_month`` false) and left out of the
    period's stickiness, the mean of DAU/MAU over the other days."""
    n_days = end_day - start_day
    dau = f.trailing_from_pairs(pair_customer, pair_day, start_day, n_days, 1)
    wau = f.trailing_from_pairs(pair_customer, pair_day, start_day, n_days, f.WEEK_DAYS)
    mau = f.trailing_from_pairs(pair_customer, pair_day, start_day, n_days, f.MONTH_DAYS)
    ratio = [_rate(int(d), int(m)) for d, m in zip(dau, mau, strict=True)]
    dates = [_day_text(start_day + i) for i in range(n_days)]
    full = [start_day + i - f.MONTH_DAYS + 1 >= first_day for i in range(n_days)]
    known = [r for r, whole in zip(ratio, full, strict=True) if r is not None and whole]
    data["active"] = {
        "days": [
            {"date": d, "dau": int(a), "wau": int(w), "mau": int(m), "stickiness": r, "full_month": u}
            for d, a, w, m, r, u in zip(dates, dau, wau, mau, ratio, full, strict=True)
        ],
        "full_month_days": sum(full),
        "mean_dau": float(dau.mean()) if n_days else None,
        "mean_wau": float(wau.mean()) if n_days else None,
        "mean_mau": float(mau.mean()) if n_days else None,
        "stickiness": float(np.mean(known)) if known else None,
    }
    tables.append(
        Table(
            "daily_active",
            {
                "date": dates,
                "dau": dau.tolist(),
                "wau": wau.tolist(),
                "mau": mau.tolist(),
                "stickiness": ratio,
                "full_month": full,
            },
        )
    )


def _retention_section(
    data: dict[str, Any],
    tables: list[Table],
    pair_customer: np.ndarray,
    pair_day: np.ndarray,
    start_day: int,
    end_day: int,
) -> None:
    first_week = int(f.week_start(start_day))
    weeks = np.arange(first_week, end_day, 7, dtype=np.int64)
    kinds = {
        "birth": f.birth_anchors(pair_customer, pair_day),
        "compounded": f.recurring_anchors(pair_customer, pair_day),
    }
    out: dict[str, Any] = {"marks": list(f.RETENTION_DAYS), "width": f.RETENTION_WIDTH}
    rows: dict[str, list[Any]] = {
        "kind": [],
        "cohort_week": [],
        "customers": [],
        "day": [],
        "retained": [],
        "rate": [],
        "measurable": [],
    }
    for kind, (anchor_customer, anchor_day) in kinds.items():
        cohorts = f.cohort_retention(anchor_customer, anchor_day, pair_customer, pair_day, weeks, end_day)
        rates = [cohorts.rate(k) for k in range(len(f.RETENTION_DAYS))]
        out[kind] = [
            {
                "cohort": _day_text(int(week)),
                "customers": int(cohorts.size[i]),
                **{
                    f"d{mark}": {
                        "retained": int(cohorts.retained[k][i]) if cohorts.measurable[k][i] else None,
                        "rate": rates[k][i],
                        "measurable": bool(cohorts.measurable[k][i]),
                    }
                    for k, mark in enumerate(f.RETENTION_DAYS)
                },
            }
            for i, week in enumerate(weeks)
        ]
        for i, week in enumerate(weeks):
            for k, mark in enumerate(f.RETENTION_DAYS):
                measurable = bool(cohorts.measurable[k][i])
                rows["kind"].append(kind)
                rows["cohort_week"].append(_day_text(int(week)))
                rows["customers"].append(int(cohorts.size[i]))
                rows["day"].append(mark)
                rows["retained"].append(int(cohorts.retained[k][i]) if measurable else None)
                rows["rate"].append(rates[k][i])
                rows["measurable"].append(measurable)
    data["retention"] = out
    tables.append(Table("retention", rows))


def _period_index(day: np.ndarray, period: str, base: int) -> np.ndarray:
    """Index of each day's period counted from the period that starts on ``base``."""
    start = f.period_start(day, period)
    if period == "week":
        return (start - base) // 7
    months = np.asarray(start).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return months - np.int64(np.datetime64(_day_text(base), "M").astype(np.int64))


def _period_section(
    data: dict[str, Any],
    tables: list[Table],
    period: str,
    start_day: int,
    end_day: int,
    active: tuple[np.ndarray, np.ndarray],
    conversions: tuple[np.ndarray, np.ndarray],
    surveys: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    # Index 0 is the period before the first one shown: churn in the first period needs it.
    first = int(f.period_start(start_day, period))
    base = int(f.period_start(first - 1, period))
    starts = [base]
    while starts[-1] < end_day:
        starts.append(int(f.period_end(starts[-1], period)))
    starts = starts[:-1]
    n_periods = len(starts)

    def members(customer: np.ndarray, day: np.ndarray) -> np.ndarray:
        keep = day >= base
        return f.period_members(customer[keep], _period_index(day[keep], period, base))

    active_members = members(*active)
    converted = members(*conversions)
    n_active, n_previous, churned = f.churn_counts(active_members, n_periods)
    converters = f.count_by_period(active_members[f.members_in(active_members, converted)], n_periods)

    def indexed(name: str) -> tuple[np.ndarray, np.ndarray]:
        survey_day, score = surveys[name]
        return _period_index(survey_day, period, base), score

    figures = f.survey_figures(indexed("nps"), indexed("csat"), indexed("ces"), n_periods)
    nps, csat, ces = figures.nps(), figures.csat(), figures.ces()
    rows = []
    for p in range(1, n_periods):
        start, stop = starts[p], int(f.period_end(starts[p], period))
        complete = stop <= end_day
        rows.append(
            {
                "period": _day_text(start),
                "end": _day_text(stop),
                "complete": complete,
                "active": int(n_active[p]),
                "previous_active": int(n_previous[p]),
                "churned": int(churned[p]) if complete else None,
                "churn_rate": _rate(int(churned[p]), int(n_previous[p])) if complete else None,
                "converters": int(converters[p]),
                "conversion_rate": _rate(int(converters[p]), int(n_active[p])),
                "nps_responses": int(figures.nps_responses[p]),
                "promoters": int(figures.promoters[p]),
                "detractors": int(figures.detractors[p]),
                "nps": nps[p],
                "csat_responses": int(figures.csat_responses[p]),
                "csat": csat[p],
                "ces_responses": int(figures.ces_responses[p]),
                "ces": ces[p],
            }
        )
    data["periods"] = rows
    columns = list(rows[0]) if rows else ["period"]
    tables.append(Table("periods", {name: [row[name] for row in rows] for name in columns}))


def _tier_section(
    data: dict[str, Any],
    tables: list[Table],
    expression: str,
    start_day: int,
    end_day: int,
    before: np.ndarray,
    after: np.ndarray,
    seen_before: np.ndarray,
    seen_after: np.ndarray,
) -> None:
    """Customers seen by the end, by their tier at the start (``NOT_SEEN`` if first seen later) and at
    the end."""
    before = np.where(seen_before, before, NOT_SEEN)[seen_after]
    after = after[seen_after]
    distinct, codes = np.unique(np.concatenate([before, after]).astype(str), return_inverse=True)
    order = _tier_order(distinct.tolist())
    index = {label: i for i, label in enumerate(order)}
    position = np.array([index[label] for label in distinct.tolist()], np.int64)  # one per distinct label
    rows_at, cols_at = position[codes[: len(before)]], position[codes[len(before) :]]
    k = len(order)
    matrix = np.bincount(rows_at * k + cols_at, minlength=k * k).reshape(k, k) if k else np.zeros((0, 0), int)
    from_labels = [label for i, label in enumerate(order) if matrix[i].sum()]
    to_labels = [label for i, label in enumerate(order) if matrix[:, i].sum()]
    data["tiers"] = {
        "expression": expression,
        "from": _day_text(start_day),
        "to": _day_text(end_day),
        "customers": int(seen_after.sum()),
        "from_labels": from_labels,
        "to_labels": to_labels,
        "matrix": [[int(matrix[index[a], index[b]]) for b in to_labels] for a in from_labels],
    }
    table: dict[str, list[Any]] = {"from_tier": [], "to_tier": [], "customers": []}
    for a in from_labels:
        for b in to_labels:
            table["from_tier"].append(a)
            table["to_tier"].append(b)
            table["customers"].append(int(matrix[index[a], index[b]]))
    tables.append(Table("tier_transitions", table))


def _tier_order(labels: list[str]) -> list[str]:
    """The lifecycle tiers in their own order, other values sorted, then no value and not yet seen."""
    from orchestrator.signals._builtins import LAPSED, TIERS

    known = [*TIERS, LAPSED]
    present = set(labels)
    other = sorted(present - {*known, NO_VALUE, NOT_SEEN})
    return [*(t for t in known if t in present), *other, *(t for t in (NO_VALUE, NOT_SEEN) if t in present)]


def _rfm_section(
    data: dict[str, Any],
    tables: list[Table],
    end_day: int,
    r: np.ndarray,
    fq: np.ndarray,
    revenue: np.ndarray,
    exists: np.ndarray,
) -> None:
    scored = exists & np.isfinite(r) & np.isfinite(fq)
    cell = (r[scored].astype(np.int64) - 1) * 5 + (fq[scored].astype(np.int64) - 1)
    counts = np.bincount(cell, minlength=25)
    money = np.bincount(cell, weights=np.nan_to_num(revenue[scored]), minlength=25)
    cells = []
    for rs in range(5, 0, -1):
        for fs in range(1, 6):
            i = (rs - 1) * 5 + fs - 1
            cells.append(
                {
                    "r": rs,
                    "f": fs,
                    "segment": RFM_GRID[rs - 1][fs - 1],
                    "customers": int(counts[i]),
                    "revenue": round(float(money[i]), 6),
                }
            )
    data["rfm"] = {
        "at": _day_text(end_day),
        "customers": int(scored.sum()),
        "without_conversion": int((exists & ~scored).sum()),
        "cells": cells,
    }
    tables.append(
        Table(
            "rfm", {name: [c[name] for c in cells] for name in ("r", "f", "segment", "customers", "revenue")}
        )
    )


def export_analytics(analytics: Analytics, path: Path) -> list[Path]:
    """Write every table: into the folder ``path`` as ``<table>.parquet``, or, for ``name.csv`` or
    ``name.parquet``, beside it as ``name_<table>.csv`` (``.parquet``). The files written."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        folder, stem = path.parent, f"{path.stem}_"
    elif suffix:
        raise UsageError(f"--export {path}: give a folder, or a file name ending in .csv or .parquet")
    else:
        folder, stem, suffix = path, "", ".parquet"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table in analytics.tables:
        arrow = pa.table({name: pa.array(values) for name, values in table.columns.items()})
        target = folder / f"{stem}{table.name}{suffix}"
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(arrow, target)
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(arrow, target)
        written.append(target)
    return written
