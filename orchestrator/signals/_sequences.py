"""Ordered sequences of events and sessions, for every customer at once.

``sequence(e1, ..., en, within=W)`` is true where a customer has events of types e1, ..., en at strictly
increasing instants inside the window (optionally each step at most ``gap`` after the one before, and
optionally "not followed by" an event of type x). ``sessions(...)`` counts the distinct values of a
session property among a customer's events, optionally only the sessions with (or without) an event of
some type; ``count(e, by=e.p)`` counts distinct values the same way.

Both are vectorised, with no per-customer Python: the steps of a sequence are followed with
``np.minimum.at`` (earliest reached event per customer) or, with a gap, one sort of the window's events by
(customer, time) and a running maximum of positions (``sequence_matches``); sessions are counted with
``bincount`` over the session codes; the events of codes several customers share (session counters
numbered per customer) are counted in a (customer, code) table when it is small, by sorting otherwise
(``distinct_pairs``). ``docs/metrics.md`` ("Sequences", "Sessions") states every rule.
"""

from __future__ import annotations

import numpy as np

from orchestrator.signals._frame import NULL_CODE, Categorical

NONE = np.iinfo(np.int64).max  # "no such event" for an earliest time


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

    The events (``customer``, ``ts``, any order) are those of the window that are of a listed type;
    ``steps[k]`` marks the events of step k's type and ``follow`` those of the "not followed by" type.
    An event of step k is *reached* when some reached event of step k-1 of the same customer is strictly
    earlier (within ``gap_us`` of it, when given). A reached last step counts when no ``follow`` event
    comes strictly after it (before ``end_us``); with ``for_us``, when it is more than ``for_us`` before
    ``end_us`` and no ``follow`` event is in ``(t, t + for_us]``.

    Without a gap, the earliest reached event of each step is the only one that matters for the next
    (any later event of the next step follows it), so the steps before the last cost one
    ``np.minimum.at`` each and only the last step's events meet the ``follow`` events in a sort. With a
    gap, every reached event matters: ``_chains`` sorts the events and follows the steps through them.
    """
    if gap_us is None and len(steps) > 1:
        earliest = np.full(n, NONE, np.int64)
        np.minimum.at(earliest, customer[steps[0]], ts[steps[0]])
        for step in steps[1:-1]:
            chosen = step & (ts > earliest[customer])
            earliest = np.full(n, NONE, np.int64)
            np.minimum.at(earliest, customer[chosen], ts[chosen])
        last = steps[-1] & (ts > earliest[customer])
        keep = last if follow is None else last | follow
        customer, ts, steps = customer[keep], ts[keep], [last[keep]]
        follow = None if follow is None else follow[keep]
    if len(steps) == 1 and follow is None:
        out = np.zeros(n, bool)
        out[customer[steps[0]]] = True
        return out
    return _chains(customer, ts, steps, n, gap_us, follow, end_us, for_us)


def _chains(
    customer: np.ndarray,
    ts: np.ndarray,
    steps: list[np.ndarray],
    n: int,
    gap_us: int | None,
    follow: np.ndarray | None,
    end_us: int,
    for_us: int | None,
) -> np.ndarray:
    """``sequence_matches`` over events sorted by (customer, time): for each step, the latest reached
    event of the step before, strictly before an event's instant, is found with a running maximum of
    positions that stops before the event's own instant; the next ``follow`` event after a reached last
    step with a running minimum from the end."""
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

    A session id usually belongs to one customer, so codes are counted by owner with ``bincount`` over
    the codes (no sort); only the events of codes that several customers share are sorted.
    """
    out = np.zeros(n)
    if not len(codes):
        return out
    width = int(codes.max()) + 1
    owner = np.empty(width, np.int64)
    owner[codes] = customer  # one of the code's customers
    shared = np.zeros(width, bool)
    shared[codes[owner[codes] != customer]] = True
    keep = np.zeros(width, bool)
    keep[codes] = True
    if required is not None:
        marked = np.zeros(width, bool)
        marked[codes[required]] = True
        keep &= marked
    if refused is not None:
        marked = np.zeros(width, bool)
        marked[codes[refused]] = True
        keep &= ~marked
    out += np.bincount(owner[keep & ~shared], minlength=n)
    if shared.any():
        rows = shared[codes]
        parts = (
            customer[rows],
            codes[rows],
            n,
            None if required is None else required[rows],
            None if refused is None else refused[rows],
        )
        dense = _dense_pairs(*parts)
        out += dense if dense is not None else _sorted_pairs(*parts, width=width)
    return out


#: ``distinct_pairs`` marks (customer, code) cells in a table of one byte a cell, each customer's row as
#: wide as the span of its codes, when the table has at most this many cells per event (codes numbered
#: per customer, as session counters are): no sort.
DENSE_CELLS_PER_EVENT = 4


def _dense_pairs(
    customer: np.ndarray,
    codes: np.ndarray,
    n: int,
    required: np.ndarray | None,
    refused: np.ndarray | None,
) -> np.ndarray | None:
    """``distinct_pairs`` through a table of one byte per (customer, code) cell, from the customer's
    smallest code to its largest: bit 1 seen, bit 2 some event marked ``required``, bit 4 some event
    marked ``refused``. None when that table would be too large."""
    codes = codes.astype(np.int64, copy=False)  # ufunc.at is fast only when the dtypes agree
    customer = customer.astype(np.intp, copy=False)
    low = np.full(n, np.iinfo(np.int64).max, np.int64)
    high = np.full(n, -1, np.int64)
    np.minimum.at(low, customer, codes)
    np.maximum.at(high, customer, codes)
    span = np.maximum(high - low + 1, 0)  # 0 for a customer without events here
    if int(span.sum()) > DENSE_CELLS_PER_EVENT * len(codes):
        return None
    start = np.cumsum(span) - span
    cells = start[customer] + (codes - low[customer])
    flags = np.zeros(int(span.sum()), np.uint8)
    flags[cells] = 1
    for marked, bit in ((required, 2), (refused, 4)):
        if marked is not None:
            hit = cells[marked]
            flags[hit] = flags[hit] | bit  # every copy of a cell writes the same value
    wanted = 1 | (2 if required is not None else 0)  # seen, with a required event, without a refused one
    good = (flags & (wanted | 4)) == wanted
    owner = np.repeat(np.arange(n), span)
    return np.bincount(owner[good], minlength=n).astype(np.float64)


def _sorted_pairs(
    customer: np.ndarray,
    codes: np.ndarray,
    n: int,
    required: np.ndarray | None,
    refused: np.ndarray | None,
    *,
    width: int,
) -> np.ndarray:
    """``distinct_pairs`` by sorting (customer, code) keys."""
    keys = customer.astype(np.int64) * width + codes
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.empty(len(keys), bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    pair = np.cumsum(first) - 1
    keep = np.ones(int(pair[-1]) + 1, bool)
    if required is not None:
        keep &= np.bincount(pair[required[order]], minlength=len(keep)) > 0
    if refused is not None:
        keep &= np.bincount(pair[refused[order]], minlength=len(keep)) == 0
    return np.bincount(keys[first][keep] // width, minlength=n).astype(np.float64)


def integer_codes(column: np.ndarray) -> np.ndarray | None:
    """Codes for a number column whose values are whole numbers in a span no wider than the column is
    long (session counters, numeric ids): each value minus the smallest, -1 for a missing one (NaN); no
    sort. None for any other column (the caller encodes it by sorting its distinct values)."""
    present = ~np.isnan(column)
    values = column[present]
    if not len(values):
        return np.full(len(column), NULL_CODE, np.int32)
    low, high = float(values.min()), float(values.max())
    if high - low >= min(len(column) + 1, np.iinfo(np.int32).max) or not np.array_equal(
        np.floor(values), values
    ):
        return None
    codes = np.full(len(column), NULL_CODE, np.int32)
    codes[present] = (values - low).astype(np.int32)
    return codes


def text_codes(column: Categorical) -> np.ndarray:
    """The column's codes with values of different types (``7`` and ``"7"``) read as the same text, so
    that one session id written as a number by one source and as text by another is one session. Codes
    are unchanged when every value has one type."""
    values = column.values
    if len(set(map(type, values.tolist()))) <= 1:
        return column.codes
    _, remap = np.unique(np.array([str(v) for v in values.tolist()], dtype=str), return_inverse=True)
    remap = np.append(remap.astype(np.int32), np.int32(NULL_CODE))  # code -1 reads the last slot
    return remap[column.codes]
