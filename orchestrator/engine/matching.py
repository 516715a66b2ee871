"""Matching instances to later events, for all instances at once.

``first_at_or_after`` answers "for each (customer, instant) query, which is the first event of that
customer at or after the instant?" with one sort instead of a loop: queries and events are sorted
together by (customer, time, queries first), and each query looks forward to the nearest event row.
"""

from __future__ import annotations

import numpy as np


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
