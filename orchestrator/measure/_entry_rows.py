"""A journey's entries as aligned numpy columns, read from the store in set-based queries, and their export.

Contract: ``load_entries`` reads only the store (instances, conversions, holdout assignments, customers and
goal events, through ``store.entry_outcomes``, ``store.load_customer_frame`` and ``store.events_between``)
and returns one row per entry up to the report instant; ``export_entries`` writes exactly those
columns, so an analyst can reproduce every figure of the report from the file. ``entry_attributes`` reads
the customer attributes of the entries (the features of the uplift view).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from orchestrator.holdout import GLOBAL_LAYER, HOLDOUT, TREATMENT
from orchestrator.signals import CustomerFrame
from orchestrator.store import (
    Connection,
    customer_attribute_names,
    entry_outcomes,
    events_between,
    load_customer_values,
)

GLOBAL_HOLDOUT = "global holdout"
"""The arm name of entries whose customer is in the global holdout (not compared)."""


@dataclass(frozen=True)
class EntryRows:
    """One row per entry of the journey up to the report instant, as aligned numpy columns.

    ``converted`` and ``revenue`` are as of the report instant; ``counted`` marks entries whose goal window
    has closed (the ones the statistics use). ``first_send_us`` is when the entry passed its first send step
    (in either arm); for a goal window from the first send, an entry without one has no window: it is not
    counted, and ``no_window`` marks those that left the journey before any send. ``pre_conversions`` /
    ``pre_revenue`` count the goal event and sum its revenue in the pre-period before entry (the CUPED
    covariates; zero for a condition goal). Missing values: -1 for instants, NaN for numbers, None for
    strings.
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
    first_send_us: np.ndarray
    no_window: np.ndarray
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
    "first_send_us",
    "no_window",
)


def load_entries(
    conn: Connection,
    journey_id: str,
    as_of_us: int,
    window_us: int,
    goal_event: str | None,
    revenue_property: str | None,
    pre_period_us: int,
    segment_attribute: str | None = None,
    *,
    from_first_send: bool = False,
) -> EntryRows:
    """Every entry of ``journey_id`` with ``entered_us <= as_of_us``, in instance order (set-based reads).
    With ``from_first_send`` the goal window of each entry starts at its first send, not at entry."""
    stored = entry_outcomes(conn, journey_id, as_of_us)
    n = len(stored.instance_id)
    keys, entered, converted_at = stored.customer_key, stored.entered_us, stored.converted_us
    # A conversion recorded after the report instant did not exist yet as of that instant.
    converted = (converted_at >= 0) & (converted_at < as_of_us)
    revenue = np.where(converted, stored.revenue, 0.0)
    layer = np.array([v or "journey" for v in stored.layer], dtype=object)
    in_global = layer == GLOBAL_LAYER
    arm = np.where(in_global, GLOBAL_HOLDOUT, np.where(stored.held_out, HOLDOUT, TREATMENT)).astype(object)
    # A first send after the report instant had not happened yet as of that instant.
    first_send = np.where(stored.first_send_us <= as_of_us, stored.first_send_us, -1)
    if from_first_send:
        counted = (first_send >= 0) & (first_send + window_us <= as_of_us)
        no_window = (first_send < 0) & (stored.exited_us >= 0) & (stored.exited_us <= as_of_us)
    else:
        counted = entered + window_us <= as_of_us
        no_window = np.zeros(n, bool)

    names = ["id", *([segment_attribute] if segment_attribute else [])]
    frame = CustomerFrame.from_values(*load_customer_values(conn, names))
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
        instance_id=stored.instance_id,
        customer_key=keys,
        customer_id=customer_id,
        arm=arm,
        layer=layer,
        assigned_us=stored.assigned_us,
        holdout_percent=stored.holdout_percent,
        reason=stored.reason,
        entered_us=entered,
        counted=counted,
        converted=converted,
        converted_us=np.where(converted, converted_at, -1),
        revenue=revenue,
        pre_conversions=pre_conversions,
        pre_revenue=pre_revenue,
        first_send_us=first_send,
        no_window=no_window,
        segment_column=segment_attribute,
        segment=segment,
    )


def stored_attribute_names(conn: Connection) -> list[str]:
    """The customer attributes the store holds beyond the standard columns (contact addresses, time zone
    and consents, which identify a customer or change with the messages), sorted."""
    return sorted(customer_attribute_names(conn, standard=False))


def entry_attributes(conn: Connection, keys: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Each attribute in ``names`` of the customers ``keys`` (aligned with them), as the store holds it:
    a column of numbers is float (NaN where unset), of booleans bool, anything else an object column
    (None where unset). One read of the customers, whatever the number of entries."""
    frame = CustomerFrame.from_values(*load_customer_values(conn, names))
    keys = np.asarray(keys, dtype=np.int64)
    known = (keys >= 0) & (keys < frame.n)
    out: dict[str, np.ndarray] = {}
    for name in names:
        column = frame.column(name)
        if column.dtype.kind == "f":
            values = np.full(len(keys), np.nan)
        elif column.dtype.kind == "b":
            values = np.zeros(len(keys), bool)
        else:
            values = np.full(len(keys), None, dtype=object)
        values[known] = column[keys[known]]
        out[name] = values
    return out


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
    events = events_between(conn, goal_event, int(entered.min()) - pre_period_us, int(entered.max()))
    if not len(events):
        return np.zeros(n), np.zeros(n)
    ev_key, ev_ts = events.customer_key, events.ts_us
    ev_value = np.zeros(len(events))
    if revenue_property:
        ev_value = np.array([_number(orjson.loads(p or "{}"), revenue_property) for p in events.properties])
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


def export_entries(rows: EntryRows, path: Path) -> int:
    """Write the per-entry rows to ``path`` (``.parquet`` or ``.csv``); returns the number of rows.

    Columns: customer_id, customer_key, instance_id, arm, layer, assigned_at, holdout_percent, reason,
    entered_at, counted, converted, converted_at, revenue, pre_conversions, pre_revenue, first_send_at and
    the segment attribute when one was asked for. Instants are UTC timestamps (empty when there is none).
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
        "first_send_at": instants(rows.first_send_us),
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
