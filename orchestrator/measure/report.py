"""The lift report of a journey, read from the store alone.

The unit is an entry (a journey instance). Its arm was fixed when the customer first entered; it converted
when the journey's goal event happened within the goal window after entry, recorded the same way for both
arms. Only entries whose goal window has closed by the report instant are counted: an entry still inside
its window has not had its full chance to convert, and counting it would bias rates towards zero.

Arms: ``treatment`` and ``holdout`` (the journey's own holdout) are compared; entries of customers in the
global holdout (``layer = 'global'`` in ``holdout_assignments``) are shown apart and left out of the
comparison, because the global layer is not part of the journey's declared split.

Everything is computed by ``stats.analyze`` over the per-entry columns of ``EntryRows``, and
``export_entries`` writes those same columns, so an analyst can reproduce every number from the export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, inspect, text

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND, format_duration
from orchestrator.measure.holdout import GLOBAL_LAYER, HOLDOUT, TREATMENT
from orchestrator.measure.stats import (
    DEFAULT_SEQUENTIAL_TAU,
    ArmSummary,
    Interval,
    LiftAnalysis,
    MeanLift,
    MetricComparison,
    RateLift,
    always_valid_bounds,
    analyze,
    rate_lift,
    summarize_arm,
)
from orchestrator.spec import SpecError, load_journey_text
from orchestrator.store import Store
from orchestrator.store.customers import load_customer_frame

GLOBAL_HOLDOUT = "global holdout"
"""The arm name of entries whose customer is in the global holdout (not compared)."""
CONVERSION, REVENUE = "conversion", "revenue"
"""Metric names of the journey report."""
DEFAULT_PRE_PERIOD = timedelta(days=28)
"""How far before entry the pre-entry covariates (goal events and their revenue) look."""
DAY_US = 86400 * US_PER_SECOND


# ---------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class EntryRows:
    """One row per entry of the journey up to the report instant, as aligned numpy columns.

    ``converted`` and ``revenue`` are as of the report instant; ``counted`` marks entries whose goal window
    has closed (the ones the statistics use). ``pre_conversions`` / ``pre_revenue`` count the goal event
    and sum its revenue in the pre-period before entry (the CUPED covariates). Missing values: -1 for
    instants, NaN for numbers, None for strings.
    """

    instance_id: np.ndarray
    customer_key: np.ndarray
    customer_id: np.ndarray
    arm: np.ndarray
    layer: np.ndarray
    assigned_us: np.ndarray
    holdout_percent: np.ndarray
    reason: np.ndarray
    entered_us: np.ndarray
    counted: np.ndarray
    converted: np.ndarray
    converted_us: np.ndarray
    revenue: np.ndarray
    pre_conversions: np.ndarray
    pre_revenue: np.ndarray
    segment_column: str | None = None
    segment: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.instance_id.shape[0])

    def select(self, mask: np.ndarray) -> EntryRows:
        """The rows where ``mask`` is true."""
        columns = {
            name: getattr(self, name)[mask] for name in _ARRAY_COLUMNS if getattr(self, name) is not None
        }
        return EntryRows(
            **columns,
            segment_column=self.segment_column,
            segment=None if self.segment is None else self.segment[mask],
        )


_ARRAY_COLUMNS = (
    "instance_id",
    "customer_key",
    "customer_id",
    "arm",
    "layer",
    "assigned_us",
    "holdout_percent",
    "reason",
    "entered_us",
    "counted",
    "converted",
    "converted_us",
    "revenue",
    "pre_conversions",
    "pre_revenue",
)


def _has_column(conn: Connection, table: str, column: str) -> bool:
    return any(c["name"] == column for c in inspect(conn).get_columns(table))


def load_entries(
    conn: Connection,
    journey_id: str,
    as_of_us: int,
    window_us: int,
    goal_event: str | None,
    revenue_property: str | None,
    pre_period_us: int,
    segment_attribute: str | None = None,
) -> EntryRows:
    """Every entry of ``journey_id`` with ``entered_us <= as_of_us``, in instance order (set-based reads)."""
    layer_sql = "h.layer" if _has_column(conn, "holdout_assignments", "layer") else "NULL"
    rows = conn.execute(
        text(
            "SELECT i.id, i.customer_key, i.holdout, i.entered_us, c.converted_us, COALESCE(c.revenue, 0), "
            f"h.arm, {layer_sql}, h.assigned_us, h.percent, h.reason FROM journey_instances i "
            "LEFT JOIN conversions c ON c.instance_id = i.id "
            "LEFT JOIN holdout_assignments h "
            "ON h.journey_id = i.journey_id AND h.customer_key = i.customer_key "
            "WHERE i.journey_id = :j AND i.entered_us <= :t ORDER BY i.id"
        ),
        {"j": journey_id, "t": as_of_us},
    ).all()
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [() for _ in range(11)]
    instance_id = np.array(cols[0], dtype=np.int64)
    keys = np.array(cols[1], dtype=np.int64)
    held = np.array([bool(v) for v in cols[2]], dtype=bool)
    entered = np.array(cols[3], dtype=np.int64)
    converted_at = np.array([-1 if v is None else int(v) for v in cols[4]], dtype=np.int64)
    # A conversion recorded after the report instant did not exist yet as of that instant.
    converted = (converted_at >= 0) & (converted_at < as_of_us)
    revenue = np.where(converted, np.array(cols[5], dtype=np.float64), 0.0)
    layer = np.array([v or "journey" for v in cols[7]], dtype=object)
    in_global = layer == GLOBAL_LAYER
    arm = np.where(in_global, GLOBAL_HOLDOUT, np.where(held, HOLDOUT, TREATMENT)).astype(object)
    assigned = np.array([-1 if v is None else int(v) for v in cols[8]], dtype=np.int64)
    percent = np.array([np.nan if v is None else float(v) for v in cols[9]], dtype=np.float64)
    reason = np.array(cols[10], dtype=object) if n else np.zeros(0, dtype=object)
    counted = entered + window_us <= as_of_us

    names = ["id", *([segment_attribute] if segment_attribute else [])]
    frame = load_customer_frame(conn, names)
    in_frame = keys < frame.n
    customer_id = np.full(n, None, dtype=object)
    customer_id[in_frame] = frame.column("id")[keys[in_frame]]
    segment = None
    if segment_attribute:
        segment = np.full(n, None, dtype=object)
        segment[in_frame] = frame.column(segment_attribute)[keys[in_frame]]

    pre_conversions = np.zeros(n)
    pre_revenue = np.zeros(n)
    if goal_event is not None and n:
        pre_conversions, pre_revenue = _pre_entry(
            conn, goal_event, revenue_property, keys, entered, pre_period_us
        )
    return EntryRows(
        instance_id=instance_id,
        customer_key=keys,
        customer_id=customer_id,
        arm=arm,
        layer=layer,
        assigned_us=assigned,
        holdout_percent=percent,
        reason=reason,
        entered_us=entered,
        counted=counted,
        converted=converted,
        converted_us=np.where(converted, converted_at, -1),
        revenue=revenue,
        pre_conversions=pre_conversions,
        pre_revenue=pre_revenue,
        segment_column=segment_attribute,
        segment=segment,
    )


def _pre_entry(
    conn: Connection,
    goal_event: str,
    revenue_property: str | None,
    keys: np.ndarray,
    entered: np.ndarray,
    pre_period_us: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Count of the goal event and sum of its revenue in ``[entered - pre_period, entered)`` per entry.

    One query for the goal events of the whole period, then one sort: events and window bounds are ranked on
    a common time axis so ``(customer, time)`` fits one int64 key, and each window is two searchsorted calls.
    """
    n = len(keys)
    type_id = conn.execute(text("SELECT id FROM event_types WHERE name = :n"), {"n": goal_event}).scalar()
    if type_id is None:
        return np.zeros(n), np.zeros(n)
    rows = conn.execute(
        text(
            "SELECT customer_key, ts_us, properties FROM events "
            "WHERE type_id = :t AND ts_us >= :a AND ts_us < :b"
        ),
        {"t": type_id, "a": int(entered.min()) - pre_period_us, "b": int(entered.max())},
    ).all()
    if not rows:
        return np.zeros(n), np.zeros(n)
    ev_key = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    ev_ts = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    ev_value = np.zeros(len(rows))
    if revenue_property:
        ev_value = np.array([_number(orjson.loads(r[2] or "{}"), revenue_property) for r in rows])
    lo, hi = entered - pre_period_us, entered
    axis = np.unique(np.concatenate([ev_ts, lo, hi]))
    span = np.int64(len(axis) + 1)
    ev_comp = ev_key * span + np.searchsorted(axis, ev_ts)
    order = np.argsort(ev_comp, kind="stable")
    ev_comp = ev_comp[order]
    cum_value = np.concatenate([[0.0], np.cumsum(ev_value[order])])
    start = np.searchsorted(ev_comp, keys * span + np.searchsorted(axis, lo), side="left")
    stop = np.searchsorted(ev_comp, keys * span + np.searchsorted(axis, hi), side="left")
    return (stop - start).astype(np.float64), cum_value[stop] - cum_value[start]


def _number(doc: Any, name: str) -> float:
    value = doc.get(name) if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if np.isfinite(value) else 0.0


# ------------------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class TimelinePoint:
    """The conversion-rate lift over entries up to the end of one entry day (UTC), cumulative."""

    day: str
    n_treatment: int
    n_holdout: int
    rate_treatment: float | None
    rate_holdout: float | None
    absolute: float | None
    ci: Interval | None
    always_valid_ci: Interval | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "n_treatment": self.n_treatment,
            "n_holdout": self.n_holdout,
            "rate_treatment": self.rate_treatment,
            "rate_holdout": self.rate_holdout,
            "absolute": self.absolute,
            "ci": None if self.ci is None else self.ci.to_dict(),
            "always_valid_ci": None if self.always_valid_ci is None else self.always_valid_ci.to_dict(),
        }


def cumulative_lift(
    entered_us: np.ndarray,
    arm_of: np.ndarray,
    converted: np.ndarray,
    treatment: str = TREATMENT,
    control: str = HOLDOUT,
    alpha: float = 0.05,
    sequential_tau: float = DEFAULT_SEQUENTIAL_TAU,
) -> tuple[TimelinePoint, ...]:
    """Lift of ``treatment`` over ``control`` on entries up to the end of each UTC entry day.

    Counts are cumulated with one sort; the interval of each day comes from ``rate_lift`` and the
    always-valid interval from ``always_valid_bounds`` (the one to read when looking every day).
    """
    labels = np.asarray(arm_of).astype(str)
    keep = (labels == treatment) | (labels == control)
    entered = np.asarray(entered_us, dtype=np.int64)[keep]
    is_t = labels[keep] == treatment
    conv = np.asarray(converted, dtype=bool)[keep]
    if not entered.size:
        return ()
    order = np.argsort(entered, kind="stable")
    entered, is_t, conv = entered[order], is_t[order], conv[order]
    days = np.unique(entered // DAY_US)
    ends = np.searchsorted(entered, (days + 1) * DAY_US, side="left")
    cum = {
        "n_t": np.cumsum(is_t)[ends - 1],
        "n_c": np.cumsum(~is_t)[ends - 1],
        "x_t": np.cumsum(is_t & conv)[ends - 1],
        "x_c": np.cumsum(~is_t & conv)[ends - 1],
    }
    points = []
    for i, day in enumerate(days.tolist()):
        n_t, n_c = int(cum["n_t"][i]), int(cum["n_c"][i])
        x_t, x_c = int(cum["x_t"][i]), int(cum["x_c"][i])
        p_t = x_t / n_t if n_t else None
        p_c = x_c / n_c if n_c else None
        lift = rate_lift(_counts(treatment, x_t, n_t), _counts(control, x_c, n_c), alpha)
        always_valid = None
        if lift is not None and p_t is not None and p_c is not None:
            variance = p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c
            # The sample standard deviation of the 0/1 outcome over both arms, as ``compare_metric`` uses.
            n = n_t + n_c
            pooled = (x_t + x_c) / n
            sd = np.sqrt(pooled * (1 - pooled) * n / (n - 1))
            low, high = always_valid_bounds(lift.absolute, variance, sequential_tau * sd, alpha)
            if np.isfinite(low) and np.isfinite(high):
                always_valid = Interval(float(low), float(high))
        points.append(
            TimelinePoint(
                day=from_us(day * DAY_US).date().isoformat(),
                n_treatment=n_t,
                n_holdout=n_c,
                rate_treatment=p_t,
                rate_holdout=p_c,
                absolute=None if lift is None else lift.absolute,
                ci=None if lift is None else lift.absolute_ci,
                always_valid_ci=always_valid,
            )
        )
    return tuple(points)


def _counts(name: str, conversions: int, n: int) -> ArmSummary:
    return ArmSummary(name, n, conversions, conversions / n if n else None, 0.0, None, None)


# -------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class JourneyLift:
    """Per-arm totals (``arms``: treatment and holdout, in journey units) and the full analysis."""

    arms: tuple[ArmSummary, ...]
    analysis: LiftAnalysis
    global_holdout: ArmSummary | None

    def comparison(self, metric: str = CONVERSION) -> MetricComparison | None:
        """The treatment-against-holdout comparison on ``metric`` (None when an arm is missing)."""
        result = self.analysis.metric(metric)
        return next(iter(result.comparisons), None)

    def to_dict(self) -> dict[str, Any]:
        out = self.analysis.to_dict()
        out["arms"] = [arm.to_dict() for arm in self.arms]
        out["global_holdout"] = None if self.global_holdout is None else self.global_holdout.to_dict()
        return out


@dataclass(frozen=True)
class JourneyReport:
    journey_id: str
    version: int
    as_of_us: int
    goal_event: str | None
    goal_window: timedelta | None
    revenue_property: str | None
    entries: int
    matured: int
    lift: JourneyLift | None
    rows: EntryRows | None = None
    timeline: tuple[TimelinePoint, ...] = ()
    declared_holdout: float | None = None
    pre_period: timedelta = DEFAULT_PRE_PERIOD
    cuped: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "version": self.version,
            "as_of": from_us(self.as_of_us).isoformat(),
            "goal": None
            if self.goal_event is None
            else {
                "event": self.goal_event,
                "within": format_duration(self.goal_window) if self.goal_window else None,
                "revenue": self.revenue_property,
            },
            "declared_holdout_percent": self.declared_holdout,
            "entries": self.entries,
            "matured_entries": self.matured,
            "still_in_window": self.entries - self.matured,
            "unit": "entry (journey instance); arm fixed at the customer's first entry",
            "cuped": {
                "enabled": self.cuped,
                "covariates": {
                    CONVERSION: f"{self.goal_event} events in the {format_duration(self.pre_period)} "
                    "before entry",
                    REVENUE: f"{self.revenue_property} of those events",
                },
            }
            if self.goal_event is not None
            else None,
            "warnings": list(self.warnings),
            "lift": None if self.lift is None else self.lift.to_dict(),
            "timeline": [point.to_dict() for point in self.timeline],
        }


def journey_report(
    store: Store,
    journey_id: str,
    as_of_us: int | None = None,
    alpha: float = 0.05,
    *,
    power: float = 0.8,
    sequential_tau: float = DEFAULT_SEQUENTIAL_TAU,
    cuped: bool = False,
    pre_period: timedelta = DEFAULT_PRE_PERIOD,
    segment_attribute: str | None = None,
) -> JourneyReport:
    """Build the report of ``journey_id`` as of ``as_of_us`` (default: the last tick's instant).

    Raises ``KeyError`` with a readable message when the journey never ran in this store.
    """
    with store.connect() as conn:
        version_row = conn.execute(
            text("SELECT version, source FROM journey_versions WHERE journey_id = :j ORDER BY version DESC"),
            {"j": journey_id},
        ).first()
        if version_row is None:
            known = [
                r[0] for r in conn.execute(text("SELECT DISTINCT journey_id FROM journey_versions")).all()
            ]
            raise KeyError(
                f"journey {journey_id!r} has not run in this store (known: {', '.join(known) or 'none'})"
            )
        if as_of_us is None:
            last = conn.execute(text("SELECT MAX(now_us) FROM ticks")).scalar()
            as_of_us = int(last) if last is not None else 0
        try:
            journey = load_journey_text(version_row[1], f"<stored {journey_id} v{version_row[0]}>").journey
        except SpecError:
            journey = None
        goal = None if journey is None else journey.goal
        window_us = round(goal.within.total_seconds() * US_PER_SECOND) if goal else 0
        rows = load_entries(
            conn,
            journey_id,
            as_of_us,
            window_us,
            goal.event if goal else None,
            goal.revenue if goal else None,
            round(pre_period.total_seconds() * US_PER_SECOND),
            segment_attribute,
        )
    declared = None if journey is None else float(journey.holdout)
    base = {
        "journey_id": journey_id,
        "version": version_row[0],
        "as_of_us": as_of_us,
        "entries": len(rows),
        "rows": rows,
        "declared_holdout": declared,
        "pre_period": pre_period,
        "cuped": cuped,
    }
    if goal is None:
        return JourneyReport(
            goal_event=None, goal_window=None, revenue_property=None, matured=0, lift=None, **base
        )
    counted = rows.select(rows.counted)
    lift = _journey_lift(counted, declared, goal.revenue, alpha, power, sequential_tau, cuped)
    compared = counted.arm != GLOBAL_HOLDOUT
    timeline = cumulative_lift(
        counted.entered_us[compared],
        counted.arm[compared],
        counted.converted[compared],
        alpha=alpha,
        sequential_tau=sequential_tau,
    )
    return JourneyReport(
        goal_event=goal.event,
        goal_window=goal.within,
        revenue_property=goal.revenue,
        matured=len(counted),
        lift=lift,
        timeline=timeline,
        warnings=tuple(_warnings(counted)),
        **base,
    )


def _journey_lift(
    counted: EntryRows,
    declared: float | None,
    revenue_property: str | None,
    alpha: float,
    power: float,
    sequential_tau: float,
    cuped: bool,
) -> JourneyLift | None:
    if not len(counted):
        return None
    compared = counted.select(counted.arm != GLOBAL_HOLDOUT)
    arms = tuple(
        summarize_arm(name, compared.converted[compared.arm == name], compared.revenue[compared.arm == name])
        for name in (TREATMENT, HOLDOUT)
    )
    global_mask = counted.arm == GLOBAL_HOLDOUT
    global_arm = (
        summarize_arm(GLOBAL_HOLDOUT, counted.converted[global_mask], counted.revenue[global_mask])
        if global_mask.any()
        else None
    )
    metrics = {CONVERSION: compared.converted.astype(np.float64)}
    kinds = {CONVERSION: "rate"}
    covariates = {CONVERSION: ("pre_conversions", compared.pre_conversions)}
    if revenue_property:
        metrics[REVENUE] = compared.revenue
        kinds[REVENUE] = "mean"
        covariates[REVENUE] = ("pre_revenue", compared.pre_revenue)
    shares, split = _declared_split(compared, declared)
    analysis = analyze(
        compared.arm,
        HOLDOUT,
        metrics,
        kinds=kinds,
        expected_shares=shares,
        split_declared=split,
        covariates=covariates if cuped else None,
        segments=None
        if compared.segment is None or compared.segment_column is None
        else (compared.segment_column, compared.segment),
        alpha=alpha,
        power=power,
        sequential_tau=sequential_tau,
    )
    return JourneyLift(arms=arms, analysis=analysis, global_holdout=global_arm)


def _declared_split(compared: EntryRows, declared: float | None) -> tuple[dict[str, float] | None, str]:
    """Expected arm weights: each customer adds the holdout share in force when they were assigned.

    With an unchanged percent this is the plain declared split; after a ramp each period weighs in with its
    own percent, so a ramp does not look like a sample-ratio mismatch. Entries without an assignment row use
    the journey's declared percent.
    """
    if declared is None and np.isnan(compared.holdout_percent).all():
        return None, ""
    fallback = declared if declared is not None else float(np.nanmean(compared.holdout_percent))
    percent = np.where(np.isnan(compared.holdout_percent), fallback, compared.holdout_percent) / 100.0
    distinct = sorted({float(p) for p in np.unique(percent * 100.0)})
    if len(distinct) <= 1:
        value = distinct[0] if distinct else fallback
        split = f"holdout {value:g}% of entrants (journey layer)"
    else:
        split = (
            f"holdout percent changed over time ({', '.join(f'{p:g}%' for p in distinct)}): expected counts "
            "use the percent in force at each assignment"
        )
    return {TREATMENT: float((1.0 - percent).sum()), HOLDOUT: float(percent.sum())}, split


def _warnings(counted: EntryRows) -> list[str]:
    out = []
    compared = counted.arm != GLOBAL_HOLDOUT
    customers = np.unique(counted.customer_key[compared]).size
    if customers < int(compared.sum()):
        out.append(
            f"{int(compared.sum()) - customers} entries are re-entries of the same customers: entries of one "
            "customer are correlated, so intervals treat more information as independent than there is"
        )
    percents = np.unique(counted.holdout_percent[compared & ~np.isnan(counted.holdout_percent)])
    if percents.size > 1:
        out.append(
            "the holdout percent changed while entries were counted; if conversion rates also drifted over "
            "time, the pooled comparison can be biased (compare the timeline)"
        )
    return out


# ---------------------------------------------------------------------------------------------- export


def export_entries(rows: EntryRows, path: Path) -> int:
    """Write the per-entry rows to ``path`` (``.parquet`` or ``.csv``); returns the number of rows.

    Columns: customer_id, customer_key, instance_id, arm, layer, assigned_at, holdout_percent, reason,
    entered_at, counted, converted, converted_at, revenue, pre_conversions, pre_revenue and the segment
    attribute when one was asked for. Instants are UTC timestamps (empty when there is none).
    """
    import pyarrow as pa

    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"{path}: the export format follows the extension, .parquet or .csv")

    def instants(values: np.ndarray) -> pa.Array:
        return pa.array(
            np.where(values >= 0, values, 0).astype("datetime64[us]"),
            type=pa.timestamp("us", tz="UTC"),
            mask=values < 0,
        )

    columns: dict[str, pa.Array] = {
        "customer_id": pa.array(rows.customer_id.tolist(), type=pa.string()),
        "customer_key": pa.array(rows.customer_key),
        "instance_id": pa.array(rows.instance_id),
        "arm": pa.array(rows.arm.tolist(), type=pa.string()),
        "layer": pa.array(rows.layer.tolist(), type=pa.string()),
        "assigned_at": instants(rows.assigned_us),
        "holdout_percent": pa.array(rows.holdout_percent, mask=np.isnan(rows.holdout_percent)),
        "reason": pa.array(rows.reason.tolist(), type=pa.string()),
        "entered_at": instants(rows.entered_us),
        "counted": pa.array(rows.counted),
        "converted": pa.array(rows.converted),
        "converted_at": instants(rows.converted_us),
        "revenue": pa.array(rows.revenue),
        "pre_conversions": pa.array(rows.pre_conversions),
        "pre_revenue": pa.array(rows.pre_revenue),
    }
    if rows.segment_column is not None and rows.segment is not None:
        columns[rows.segment_column] = pa.array(
            [None if v is None else str(v) for v in rows.segment.tolist()], type=pa.string()
        )
    table = pa.table(columns)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    return table.num_rows


# ---------------------------------------------------------------------------------------------- table


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f} pts"


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_table(report: JourneyReport) -> str:
    """The report as plain text for a terminal."""
    when = from_us(report.as_of_us).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Lift report: {report.journey_id} (version {report.version}), as of {when}"]
    if report.goal_event is None:
        lines.append(f"  this journey declares no goal; {report.entries} entries, nothing to measure")
        return "\n".join(lines)
    revenue = f", revenue from {report.revenue_property}" if report.revenue_property else ""
    assert report.goal_window is not None
    lines.append(
        f"  goal: {report.goal_event} within {format_duration(report.goal_window)} of entry{revenue}"
    )
    lines.append(
        f"  entries counted: {report.matured} whose goal window has closed "
        f"({report.entries - report.matured} still inside it are left out)"
    )
    lift = report.lift
    if lift is None:
        lines.append("  no entry has completed its goal window yet")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"  {'arm':15s} {'entries':>8s} {'converted':>10s} {'rate':>8s} {'revenue/entry':>14s}")
    shown = [*lift.arms, *([lift.global_holdout] if lift.global_holdout else [])]
    for arm in shown:
        lines.append(
            f"  {arm.name:15s} {arm.n:8d} {arm.conversions:10d} {_pct(arm.rate):>8s} "
            f"{_num(arm.revenue_per_customer):>14s}"
        )
    if lift.global_holdout is not None:
        lines.append("  (the global holdout is shown for reference and not compared)")
    lines.append("")
    level = f"{(1 - lift.analysis.alpha) * 100:.0f}%"
    comparison = lift.comparison(CONVERSION)
    rate = None if comparison is None else comparison.lift
    if comparison is None or not isinstance(rate, RateLift):
        lines.append("  lift: not enough entries in both arms to compare (at least 2 in each)")
        lines.extend(_srm_lines(lift.analysis))
        return "\n".join(lines)
    lines.append(f"  conversion rate lift: {_lift_line(rate, level, _pts, _pct)}")
    lines.extend(_extra_lines(comparison, level, _pts))
    if report.revenue_property:
        revenue_comparison = lift.comparison(REVENUE)
        mean = None if revenue_comparison is None else revenue_comparison.lift
        if revenue_comparison is not None and isinstance(mean, MeanLift):
            lines.append(f"  revenue per entry lift: {_lift_line(mean, level, _signed_num, _pct)}")
            lines.extend(_extra_lines(revenue_comparison, level, _signed_num))
    lines.extend(_srm_lines(lift.analysis))
    significant = rate.p_value is not None and rate.p_value < lift.analysis.alpha
    lines.append(
        "  "
        + (
            "the difference in conversion rate is statistically significant at this level"
            if significant
            else "the difference in conversion rate is not statistically significant at this level"
        )
    )
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
            lines.append(f"    {segment.value}: {sizes}; {_lift_line(sub_cmp.lift, level, _pts, _pct)}")
    return "\n".join(lines)


def _signed_num(x: float | None) -> str:
    return _num(x, True)


def _lift_line(lift: RateLift | MeanLift, level: str, absolute: Any, relative: Any) -> str:
    ci = (
        f" ({level} CI {absolute(lift.absolute_ci.low)} to {absolute(lift.absolute_ci.high)})"
        if lift.absolute_ci is not None
        else ""
    )
    rel = (
        f", relative {relative(lift.relative, True)}"
        + (
            f" ({level} CI {relative(lift.relative_ci.low, True)} to {relative(lift.relative_ci.high, True)})"
            if lift.relative_ci is not None
            else ""
        )
        if lift.relative is not None
        else ", relative n/a"
    )
    return f"{absolute(lift.absolute)}{ci}{rel}, {_p(lift.p_value)}"


def _extra_lines(comparison: MetricComparison, level: str, absolute: Any) -> list[str]:
    lines = []
    if comparison.always_valid_ci is not None:
        av = comparison.always_valid_ci
        lines.append(
            f"    always-valid {level} interval (safe to check daily): "
            f"{absolute(av.low)} to {absolute(av.high)}"
        )
    if comparison.mde is not None:
        rel = f" ({_pct(comparison.mde.relative, True)})" if comparison.mde.relative is not None else ""
        lines.append(
            f"    minimum detectable effect at {comparison.mde.power:.0%} power: "
            f"{absolute(comparison.mde.absolute)}{rel}"
        )
    if comparison.cuped is not None:
        c = comparison.cuped
        lines.append(
            f"    with CUPED on {c.covariate} (variance -{c.variance_reduction:.1%}): "
            f"{_lift_line(c.lift, level, absolute, _pct)}"
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
    return [f"  split check ({srm.declared}): {_p(srm.p_value)}; {verdict}"]
