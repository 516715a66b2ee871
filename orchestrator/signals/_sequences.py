"""Ordered sequences of events and sessions, for every customer at once.

``sequence(e1, ..., en, within=W)`` is true where a customer has events of types e1, ..., en at strictly
increasing instants inside the window (optionally each step at most ``gap`` after the one before, and
optionally "not followed by" an event of type x). ``sessions(...)`` counts the distinct values of a
session property among a customer's events, optionally only the sessions with (or without) an event of
some type; ``count(e, by=e.p)`` counts distinct values the same way.

Both are vectorised: one sort of the window's events by (customer, time), then a pass per step with a
running maximum of positions (``sequence_matches``); one ``np.unique`` over (customer, value) keys
(``distinct_pairs``). ``docs/metrics.md`` ("Sequences", "Sessions") states every rule.
"""

from __future__ import annotations

import numpy as np

from orchestrator.signals._frame import NULL_CODE, Categorical


def sequence_matches(
    customer: np.ndarray,
    ts: np.ndarray,
    steps: list[np.ndarray],
    n: int,
    *,
    gap_us: int | None = None,
    follow: np.ndarray | None = None,
    end_us: int = 0,
    for_us: int | None = None,
) -> np.ndarray:
    """Per customer slot, whether the events form the sequence.

    The events (``customer``, ``ts``) are those of the window that are of a listed type; ``steps[k]``
    marks the events of step k's type and ``follow`` those of the "not followed by" type. An event of
    step k is *reached* when some reached event of step k-1 of the same customer is strictly earlier
    (within ``gap_us`` of it, when given): the latest such one decides, found with a running maximum of
    positions that stops before the event's own instant. A reached last step counts when no ``follow``
    event comes strictly after it (before ``end_us``); with ``for_us``, when it is more than ``for_us``
    before ``end_us`` and no ``follow`` event is in ``(t, t + for_us]``.
    """
    out = np.zeros(n, bool)
    m = len(ts)
    if m == 0:
        return out
    order = np.lexsort((ts, customer))
    cust, times = customer[order], ts[order]
    # Events at one instant of one customer form a group: none of them is earlier than another.
    new_group = np.empty(m, bool)
    new_group[0] = True
    np.not_equal(cust[1:], cust[:-1], out=new_group[1:])
    new_group[1:] |= times[1:] != times[:-1]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    group_start = starts[group]
    positions = np.arange(m)

    reached = steps[0][order]
    for step in steps[1:]:
        if not reached.any():
            return out
        latest = np.maximum.accumulate(np.where(reached, positions, -1))
        # The latest reached event before this event's instant (position -1: none).
        before = np.where(group_start > 0, latest[np.maximum(group_start - 1, 0)], -1)
        safe = np.maximum(before, 0)
        ok = (before >= 0) & (cust[safe] == cust)
        if gap_us is not None:
            ok &= times - times[safe] <= gap_us
        reached = step[order] & ok

    if follow is not None:
        ends = np.append(starts[1:], m)
        group_end = ends[group]  # first position after this event's instant
        nearest = np.minimum.accumulate(np.where(follow[order], positions, m)[::-1])[::-1]
        nearest = np.append(nearest, m)[group_end]  # the first follow event after this instant
        safe = np.minimum(nearest, m - 1)
        followed = (nearest < m) & (cust[safe] == cust)
        if for_us is None:
            reached &= ~followed
        else:
            reached &= times < end_us - for_us
            reached &= ~followed | (times[safe] > times + for_us)
    out[cust[reached]] = True
    return out


def distinct_pairs(
    customer: np.ndarray,
    codes: np.ndarray,
    n: int,
    *,
    required: np.ndarray | None = None,
    refused: np.ndarray | None = None,
) -> np.ndarray:
    """Per customer slot, how many distinct ``codes`` (non-negative) its events carry, as float64.

    With ``required``, only the codes (of that customer) that some event marked ``required`` carries;
    with ``refused``, only those that no event marked ``refused`` carries.
    """
    if not len(codes):
        return np.zeros(n)
    width = int(codes.max()) + 1
    keys = customer.astype(np.int64) * width + codes
    if required is None and refused is None:
        pairs = np.unique(keys)
    else:
        pairs, inverse = np.unique(keys, return_inverse=True)
        keep = np.ones(len(pairs), bool)
        if required is not None:
            keep &= np.bincount(inverse[required], minlength=len(pairs)) > 0
        if refused is not None:
            keep &= np.bincount(inverse[refused], minlength=len(pairs)) == 0
        pairs = pairs[keep]
    return np.bincount(pairs // width, minlength=n).astype(np.float64)


def text_codes(column: Categorical) -> np.ndarray:
    """The column's codes with values of different types (``7`` and ``"7"``) read as the same text, so
    that one session id written as a number by one source and as text by another is one session. Codes
    are unchanged when every value has one type."""
    values = column.values
    if len({type(v) for v in values.tolist()}) <= 1:
        return column.codes
    _, remap = np.unique(np.array([str(v) for v in values.tolist()], dtype=str), return_inverse=True)
    remap = np.append(remap.astype(np.int32), np.int32(NULL_CODE))  # code -1 reads the last slot
    return remap[column.codes]
