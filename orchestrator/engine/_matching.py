"""Matching instances to later events (optionally to events with the same correlation value), for all
instances at once.

``first_at_or_after`` answers "for each (customer, instant) query, which is the first event of that
customer at or after the instant?" with one sort instead of a loop: queries and events are sorted
together by (customer, time, queries first), and each query looks forward to the nearest event row.
"""

from __future__ import annotations

import numpy as np

from orchestrator.signals import Categorical, EventFrame


def first_at_or_after(
    event_customer: np.ndarray, event_ts: np.ndarray, query_customer: np.ndarray, query_ts: np.ndarray
) -> np.ndarray:
    """Index into the event arrays of each query's first event with the same customer and
    ``ts >= query_ts``, or -1 where there is none."""
    n_events, n_queries = len(event_ts), len(query_ts)
    if n_queries == 0:
        return np.zeros(0, np.int64)
    if n_events == 0:
        return np.full(n_queries, -1, np.int64)
    customer = np.concatenate([event_customer, query_customer]).astype(np.int64)
    ts = np.concatenate([event_ts, query_ts]).astype(np.int64)
    is_event = np.concatenate([np.ones(n_events, np.int8), np.zeros(n_queries, np.int8)])
    # lexsort: last key is primary. Queries (0) sort before events (1) at the same instant, so an event
    # at exactly the query's instant counts as "at or after".
    order = np.lexsort((is_event, ts, customer))
    sorted_is_event = is_event[order].astype(bool)
    positions = np.arange(len(order))
    # For each position, the nearest event position at or after it (len(order) when none).
    next_event = np.where(sorted_is_event, positions, len(order))
    next_event = np.minimum.accumulate(next_event[::-1])[::-1]
    query_positions = np.flatnonzero(~sorted_is_event)
    found = next_event[query_positions]
    result = np.full(n_queries, -1, np.int64)
    valid = found < len(order)
    candidate = order[np.where(valid, found, 0)]
    same_customer = valid & (customer[candidate] == customer[order[query_positions]])
    query_index = order[query_positions] - n_events
    result[query_index[same_customer]] = candidate[same_customer]
    return result


def normalise(value: object) -> str | None:
    """The text a property value is compared as: ``12``, ``12.0`` and ``"12"`` are equal; None stays None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value if value else None
    return str(value)


def first_matching_after(
    event_customer: np.ndarray,
    event_ts: np.ndarray,
    event_values: np.ndarray | None,
    query_customer: np.ndarray,
    query_after_us: np.ndarray,
    query_values: np.ndarray | None,
) -> np.ndarray:
    """Index of each query's first event of the same customer with ``ts > query_after_us`` and, when values
    are given, the same value (object arrays of text; None never matches), or -1.

    Customers and values are folded into one integer key, so the search is one ``first_at_or_after``.
    """
    if event_values is None or query_values is None:
        return first_at_or_after(event_customer, event_ts, query_customer, query_after_us + 1)
    ev_ok = np.array([v is not None for v in event_values], dtype=bool)
    q_ok = np.array([v is not None for v in query_values], dtype=bool)
    pool = np.concatenate([event_values[ev_ok], query_values[q_ok]]).astype(str)
    if not len(pool):
        return np.full(len(query_customer), -1, np.int64)
    _, codes = np.unique(pool, return_inverse=True)
    width = int(codes.max()) + 1
    ev_codes, q_codes = codes[: int(ev_ok.sum())], codes[int(ev_ok.sum()) :]
    ev_index = np.flatnonzero(ev_ok)
    ev_key = event_customer[ev_ok].astype(np.int64) * width + ev_codes
    q_key = query_customer[q_ok].astype(np.int64) * width + q_codes
    found = first_at_or_after(ev_key, event_ts[ev_ok], q_key, query_after_us[q_ok] + 1)
    out = np.full(len(query_customer), -1, np.int64)
    if len(ev_index):
        out[q_ok] = np.where(found >= 0, ev_index[np.maximum(found, 0)], -1)
    return out


def joined(columns: list[list[str | None]], n: int) -> np.ndarray:
    """Per row, several matched values joined into one text (None when any of them is missing)."""
    out = np.empty(n, dtype=object)
    if len(columns) == 1:
        out[:] = columns[0]
        return out
    out[:] = [
        None if None in row else "\x1f".join(v or "" for v in row) for row in zip(*columns, strict=True)
    ]
    return out


def values_at(events: EventFrame, prop: str, rows: np.ndarray) -> np.ndarray:
    """A property's values at some rows of a frame, decoding only those rows (None where missing)."""
    column = events.properties.get(prop)
    if column is None:
        return np.full(len(rows), None, dtype=object)
    if isinstance(column, Categorical):
        codes = column.codes[rows]
        out = np.full(len(rows), None, dtype=object)
        present = codes >= 0
        out[present] = column.values[codes[present]]
        return out
    return np.asarray(column)[rows]
