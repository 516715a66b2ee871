"""Aggregates kept up to date from tick to tick.

Each aggregate of the journeys (``count(session_start, within=14d)``, ``since(purchase)``, ...) rests on a
*base*: per-customer state over the events of a time window ``[now - before - within, now - before)``.
When the clock moves from one tick to the next, a base adds the events that entered its window (newly
ingested ones, and older ones the window's end passed over) and removes those its start passed over.
A tick therefore costs what changed, not all history. The results equal a from-scratch evaluation
exactly (counts are integers, sums are re-based whenever the window is rebuilt); the tests check that.

Every base follows one event type, so it reads that type's run of the log with no mask over other
events; an aggregate over several types combines the bases of each (``count(a, b)`` adds two counters,
``since(a, b)`` takes the later of two latest times, ``distinct_events`` counts the nonzero counters),
and aggregates that share a type and window share its base.

Bases:

- ``Counter``: events per customer (optionally only those with a property present);
- ``Summer``: sum of a numeric property;
- ``Latest``: the latest event time (windows only cut it off, so it never needs removal);
- ``Earliest``: the earliest event time (``since_first``; events never leave an unbounded window);
- ``LastValue``: the latest event time with a property, and that property's value, a number or the code
  of a text (``last``);
- ``Pairs``: a customer-by-value count matrix of a text property, from which ``distinct``,
  ``top_count`` and ``top_value`` read;
- anything not maintained incrementally (min/max, ``median_gap``, ``sequence``, ``sessions``,
  ``count(..., by=)``, very wide value sets, calendar periods such as ``within=this_week``, whose bounds
  differ by customer and jump at local midnights, and ``since_first`` over a bounded window) is recomputed
  each tick from the window's events.

An aggregate with a *static* ``where=`` filter (one that reads only the events' own properties:
``count(view, where=view.category == "shoes")``) rests on bases of its own, which fold only the events
the filter keeps; the filter is part of their key, so aggregates with the same filter share them. A
filter that reads the customer's values (a metric, an attribute, another aggregate) gives each event a
verdict that changes when those values do, so such an aggregate is recomputed from its window's events
each tick, with the customer's values handed over by the evaluator that reads it (``filtered``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.signals import _lang as lang
from orchestrator.signals import _where as where_filter
from orchestrator.signals._calendar import zone_codes, zone_table
from orchestrator.signals._clv import Fit
from orchestrator.signals._evaluate import (
    MATRIX_CELLS,
    MICROS,
    NO_RANK,
    AggregateCache,
    Evaluator,
    column_evaluator,
    last_column,
    text_values,
    to_micros,
    value_rank,
)
from orchestrator.signals._frame import NULL_CODE, Categorical, CustomerFrame, EventFrame
from orchestrator.signals._lang import Call, Name, Node
from orchestrator.signals._log import EventLog, Segment
from orchestrator.signals._lookup import ValueCodes, lookup_shape

NEVER = np.iinfo(np.int64).min
FOREVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Window:
    within_us: int | None
    before_us: int

    def bounds(self, now_us: int) -> tuple[int | None, int]:
        end = now_us - self.before_us
        return (None if self.within_us is None else end - self.within_us), end


def _window(call: Call) -> Window:
    within = call.kwarg("within")
    before = call.kwarg("before")
    if isinstance(within, lang.Period):
        return Window(None, 0)  # differs by customer: such calls are recomputed at each tick
    return Window(
        None if within is None else round(within.seconds * US_PER_SECOND),  # type: ignore[attr-defined]
        0 if before is None else round(before.seconds * US_PER_SECOND),  # type: ignore[attr-defined]
    )


def _events(call: Call) -> tuple[str, ...]:
    if lang.FUNCTIONS[call.func].kind == "events":
        return tuple(
            sorted({a.parts[0] for a in [*call.args, *lang.kwarg_events(call)] if isinstance(a, Name)})
        )
    arg = call.args[0]
    assert isinstance(arg, Name)
    return (arg.parts[0],)


def _static_where(call: Call) -> Node | None:
    """The call's ``where=`` when the bases can keep it (it reads only the events' properties)."""
    where = call.kwarg("where")
    return where if where is not None and not lang.where_split(where)[1] else None


class SegmentFilter:
    """A static ``where=`` evaluated over the log's segments: which of a segment's events it keeps."""

    def __init__(self, where: Node, log: EventLog) -> None:
        self.where, self.log = where, log
        self._tables: dict[Any, Any] = {}
        self._dictionaries: dict[str, np.ndarray] = {}

    def __call__(self, events: Segment) -> np.ndarray:
        def column(prop: str) -> Categorical | np.ndarray:
            if prop not in events.codes:
                return events.numbers_of(prop)  # read only as a number (``lang.where_numbers``)
            return Categorical(events.codes[prop].astype(np.int32, copy=False), self._dictionary(prop))

        return where_filter.event_mask(
            self.where, column, events.customer, {}, column_evaluator, self._tables
        )

    def _dictionary(self, prop: str) -> np.ndarray:
        """The log's values of ``prop``, as one array until the dictionary grows (the per-value results
        worked out over it are then worked out again)."""
        known = self._dictionaries.get(prop)
        if known is None or len(known) != len(self.log.values[prop]):
            known = self._dictionaries[prop] = self.log.value_array(prop)
            self._tables.clear()
        return known


def _prop(call: Call) -> str | None:
    if lang.FUNCTIONS[call.func].kind == "events":
        return None
    arg = call.args[0]
    assert isinstance(arg, Name)
    return arg.parts[1]


class _Tick:
    """Per-tick memo of the log's parts for (type, range), shared by every base."""

    def __init__(self, log: EventLog, new: list[Segment], now_us: int) -> None:
        self.log, self.new, self.now_us = log, new, now_us
        self.n = log.n_customers
        self._parts: dict[tuple[Any, ...], list[Segment]] = {}
        # Per base, the customers whose state it changed: their values may differ from the last tick's.
        # A base rebuilt from scratch is in ``rebuilt`` instead (possibly every customer changed).
        self.touched: dict[Base, list[np.ndarray]] = {}
        self.rebuilt: set[Base] = set()
        self._local: dict[tuple[tuple[int, int], ...], Segment] = {}

    def old(self, event: str, start: int | None, end: int | None) -> list[Segment]:
        """Events of type ``event`` that were in the log before this tick, in ``[start, end)``, in
        customer order (see ``local``)."""
        if start is not None and end is not None and end <= start:
            return []
        key = ("old", event, start, end)
        if key not in self._parts:
            self._parts[key] = self.local(self.log.parts(start, end, self._codes(event), exclude=self.new))
        return self._parts[key]

    def new_in(self, event: str, start: int | None, end: int) -> list[Segment]:
        """Events of type ``event`` appended since the last tick, in ``[start, end)``, in customer order."""
        key = ("new", event, start, end)
        if key not in self._parts:
            code = self.log.type_code(event)
            parts = [] if code == NULL_CODE else [segment.window(code, start, end) for segment in self.new]
            self._parts[key] = self.local([part for part in parts if len(part)])
        return self._parts[key]

    def local(self, parts: list[Segment]) -> list[Segment]:
        """A few events (a tick's worth) as one part, reordered by block of customers.

        Their customers are scattered over arrays far larger than the processor's caches, and a tick
        finds those arrays cold, so folding events in time order costs a trip to memory per event and
        base. In customer order the same updates sweep each array once (at 1M customers, folding a tick's
        80,000 sessions into one base took 0.9 ms instead of 5.4 ms); the parts of several appended
        segments (one per ingested chunk) are joined first, so that each array is swept once, not once
        per chunk. The ordering is paid once for every base that reads the same events. Blocks of 4,096
        customers are local enough, and their 16-bit keys sort in linear time."""
        total = sum(len(part) for part in parts)
        if total * 2 >= self.n or total < 2:
            return parts  # many events: the bases count them with a full-width bincount instead
        # The same views serve several windows (every new event is inside a 14-day and a 30-day window).
        key = tuple((part.customer.__array_interface__["data"][0], len(part)) for part in parts)
        if key not in self._local:
            joined = Segment.concat(parts, self.log.numeric, self.log.categorical)
            shift = max(12, (self.n >> 15).bit_length() + 12)  # block numbers fit in int16
            order = np.argsort((joined.customer >> shift).astype(np.int16), kind="stable")
            self._local[key] = joined.take(order)
        return [self._local[key]]

    def everything(self, event: str, start: int | None, end: int) -> list[Segment]:
        key = ("all", event, start, end)
        if key not in self._parts:
            self._parts[key] = self.log.parts(start, end, self._codes(event))
        return self._parts[key]

    def _codes(self, event: str) -> list[int]:
        code = self.log.type_code(event)
        return [] if code == NULL_CODE else [code]


class Base:
    """Per-customer state over one event type and window; ``delta`` folds events in (sign +1) or out."""

    additive = True

    def __init__(self, window: Window, event: str) -> None:
        self.window, self.event = window, event
        self.bounds: tuple[int | None, int] | None = None
        self.keep: SegmentFilter | None = None  # a static where=: only the events it keeps are folded

    def _kept(self, events: Segment) -> Segment:
        if self.keep is None or not len(events):
            return events
        keep = self.keep(events)
        return events if bool(keep.all()) else events.take(keep)

    def reset(self, n: int) -> None:
        raise NotImplementedError

    def grow(self, n: int) -> None:
        raise NotImplementedError

    def delta(self, events: Segment, sign: int) -> None:
        raise NotImplementedError

    def advance(self, tick: _Tick, keep: bool = True) -> None:
        """Move the window to the tick's instant, adding the events that entered it and subtracting those
        that left, and tell the tick whose values that changed. Without ``keep`` no values are kept
        (they are read from the window's events when asked): only who changed is told."""
        start1, end1 = self.window.bounds(tick.now_us)
        if self.bounds is not None:
            start0, end0 = self.bounds
            backwards = end1 < end0 or (start1 is not None and start0 is not None and start1 < start0)
        if self.bounds is None or backwards or not self.additive:
            tick.rebuilt.add(self)
            if keep:
                self.reset(tick.n)
                for part in tick.everything(self.event, start1, end1):
                    self.delta(self._kept(part), +1)
        else:
            if keep:
                self.grow(tick.n)
            changes: list[tuple[Segment, int]] = []
            if start1 is not None and start0 is not None and start1 > start0:
                changes += [(part, -1) for part in tick.old(self.event, start0, min(start1, end0))]
            enter_from = end0 if start1 is None else max(end0, start1)
            if end1 > enter_from:
                changes += [(part, +1) for part in tick.old(self.event, enter_from, end1)]
            changes += [(part, +1) for part in tick.new_in(self.event, start1, end1)]
            touched = tick.touched.setdefault(self, [])
            for part, sign in changes:
                part = self._kept(part)
                if keep:
                    self.delta(part, sign)
                touched.append(part.customer)
        self.bounds = (start1, end1)


def _grown(values: np.ndarray, n: int, fill: Any) -> np.ndarray:
    if n <= len(values):
        return values
    return np.concatenate([values, np.full(_capacity(n, len(values)) - len(values), fill, values.dtype)])


class Counter(Base):
    """Events per customer, as float64 (exact for whole numbers) so readers need no conversion."""

    def __init__(self, window: Window, event: str, prop: str | None) -> None:
        super().__init__(window, event)
        self.prop = prop
        self.counts = np.zeros(0)

    def reset(self, n: int) -> None:
        self.counts = np.zeros(n)

    def grow(self, n: int) -> None:
        self.counts = _grown(self.counts, n, 0.0)

    def delta(self, events: Segment, sign: int) -> None:
        customers = events.customer
        if self.prop is not None:
            customers = customers[~np.isnan(events.numbers_of(self.prop))]
        if len(customers) * 2 < len(self.counts):
            # Few events: touch only their customers. (ufunc.at is fast only with an array of values of
            # the target's type; a scalar takes a path some thirty times slower.)
            np.add.at(self.counts, customers, np.full(len(customers), float(sign)))
            return
        counted = np.bincount(customers, minlength=len(self.counts))
        if sign > 0:
            self.counts += counted
        else:
            self.counts -= counted


class Summer(Base):
    """Sums in millionths of a unit, held as exactly representable whole numbers, so adding and removing
    values never drifts and the result equals a from-scratch sum bit for bit."""

    def __init__(self, window: Window, event: str, prop: str) -> None:
        super().__init__(window, event)
        self.prop = prop
        self.micros = np.zeros(0)

    def reset(self, n: int) -> None:
        self.micros = np.zeros(n)

    def grow(self, n: int) -> None:
        self.micros = _grown(self.micros, n, 0.0)

    def delta(self, events: Segment, sign: int) -> None:
        values = events.numbers_of(self.prop)
        present = ~np.isnan(values)
        micros = to_micros(values[present])
        customers = events.customer[present]
        if len(customers) * 2 < len(self.micros):
            np.add.at(self.micros, customers, sign * micros)
            return
        self.micros += sign * np.bincount(customers, weights=micros, minlength=len(self.micros))


class Latest(Base):
    """The latest event time before the window's end; the window's start is applied when read."""

    def __init__(self, before_us: int, event: str) -> None:
        super().__init__(Window(None, before_us), event)
        self.last = np.zeros(0, np.int64)

    def reset(self, n: int) -> None:
        self.last = np.full(n, NEVER, np.int64)

    def grow(self, n: int) -> None:
        self.last = _grown(self.last, n, NEVER)

    def delta(self, events: Segment, sign: int) -> None:
        assert sign > 0, "events never leave an unbounded window"
        np.maximum.at(self.last, events.customer, events.ts)


class Earliest(Base):
    """The earliest event time before the window's end (``since_first`` without ``within=``): events
    only ever join such a window, and one ingested late, stamped before the earliest known, lowers it."""

    def __init__(self, before_us: int, event: str) -> None:
        super().__init__(Window(None, before_us), event)
        self.first = np.zeros(0, np.int64)

    def reset(self, n: int) -> None:
        self.first = np.full(n, FOREVER, np.int64)

    def grow(self, n: int) -> None:
        self.first = _grown(self.first, n, FOREVER)

    def delta(self, events: Segment, sign: int) -> None:
        assert sign > 0, "events never leave an unbounded window"
        np.minimum.at(self.first, events.customer, events.ts)


class Pairs(Base):
    """Counts per (value, customer) of a text property, from which ``distinct``, ``top_count`` and
    ``top_value`` read.

    The matrix is value-major (a row per value, a column per customer), so a batch of events grouped by
    value is one ``bincount`` per row, each writing a customer-sized row that stays in cache. Rows are
    kept in value order (the rank of each value), so the first maximum of a column is the most frequent
    value with ties going to the smallest, as ``top_value`` defines it, with no reordering.

    What readers want is derived only when asked, then kept: the most frequent value as one sortable
    key per customer (its count, then its rank reversed, so a larger key is a higher count or an earlier
    value on a tie), and the number of distinct values. Events that arrive only raise counts, so they
    update the key in place; events that leave a window, and any change to the distinct count, mark
    their customers to be derived again from their columns when next read.
    """

    def __init__(self, window: Window, event: str, prop: str, log: EventLog) -> None:
        super().__init__(window, event)
        self.prop, self.log = prop, log
        self.matrix = np.zeros((0, 0), np.int32)
        self.row_of = np.zeros(0, np.int64)  # code -> row (the value's rank)
        self.wide = False  # too many cells for a matrix: such aggregates are read from scratch
        self._top: np.ndarray | None = None  # int64 keys (see ``_top_keys``)
        self._distinct: np.ndarray | None = None  # float64
        self._stale_top: list[np.ndarray] = []
        self._stale_distinct: list[np.ndarray] = []

    def width_now(self) -> int:
        return len(self.log.values[self.prop])

    def reset(self, n: int) -> None:
        self.row_of = value_rank(self.log.value_array(self.prop))
        self.matrix = np.zeros((max(len(self.row_of), 1), n), np.int32)
        self._forget()

    def grow(self, n: int) -> None:
        capacity = self.matrix.shape[1]
        width = self.width_now()
        if width <= len(self.row_of) and n <= capacity:
            return
        ranking = value_rank(self.log.value_array(self.prop)) if width > len(self.row_of) else self.row_of
        grown = np.zeros((max(len(ranking), 1), _capacity(n, capacity)), np.int32)
        # New values change the ranking: every existing row moves to its value's new place.
        grown[ranking[: len(self.row_of)], :capacity] = self.matrix[self.row_of]
        self.matrix, self.row_of = grown, ranking
        self._forget()

    def drop(self) -> None:
        """Let the counts go (a wide base keeps none)."""
        self.matrix = np.zeros((0, 0), np.int32)
        self.row_of = np.zeros(0, np.int64)
        self._forget()

    def _forget(self) -> None:
        self._top = self._distinct = None
        self._stale_top, self._stale_distinct = [], []

    def delta(self, events: Segment, sign: int) -> None:
        rows, capacity = self.matrix.shape
        values = events.codes[self.prop]
        present = values >= 0
        customers, row = events.customer[present], self.row_of[values[present]]
        if len(customers) * 2 < capacity:
            # Few events (a tick's worth): touch only their cells, through the flat matrix with an array
            # of values (numpy's fast path; a tuple index or a scalar is many times slower). The tick
            # hands them over in customer order, so the cells they touch are near one another.
            cells = row * capacity + customers
            flat = self.matrix.reshape(-1)
            np.add.at(flat, cells, np.full(len(cells), sign, np.int32))
            if self._top is not None:
                if sign > 0:  # counts only rose: the top is the old one or one of these cells now
                    np.maximum.at(self._top, customers, _top_keys(flat[cells], row))
                else:
                    self._stale_top.append(customers)
            if self._distinct is not None:
                self._stale_distinct.append(customers)
            return
        order = np.argsort(row.astype(np.int16 if rows < np.iinfo(np.int16).max else np.int64), kind="stable")
        customers, row = customers[order], row[order]
        bounds = np.searchsorted(row, np.arange(rows + 1), side="left")
        for r in range(rows):
            if bounds[r + 1] > bounds[r]:
                counted = np.bincount(customers[bounds[r] : bounds[r + 1]], minlength=capacity)
                if sign > 0:
                    self.matrix[r] += counted.astype(np.int32)
                else:
                    self.matrix[r] -= counted.astype(np.int32)
        self._forget()

    def derived(self, what: str, rows: Rows) -> np.ndarray:
        """``distinct``, ``top_count`` or ``top_row`` for the customer slots ``rows`` covers."""
        if what == "distinct":
            if self._distinct is None:
                self._distinct, self._stale_distinct = _distinct(self.matrix), []
            self._refresh(self._distinct, self._stale_distinct, _distinct)
            return rows.take(self._distinct)
        if self._top is None:
            self._top, self._stale_top = _top(self.matrix), []
        self._refresh(self._top, self._stale_top, _top)
        keys = rows.take(self._top)
        if what == "top_count":
            return (keys >> 32).astype(np.float64)
        return _ROW_MASK - (keys & _ROW_MASK)  # top_row: the first maximum, the smallest value on ties

    def _refresh(self, derived: np.ndarray, stale: list[np.ndarray], derive: Any) -> None:
        """Derive again, from their columns, the customers marked stale."""
        if not stale:
            return
        marked = np.zeros(len(derived), bool)  # marking beats sorting the customers to dedupe them
        for customers in stale:
            marked[customers] = True
        customers = np.flatnonzero(marked)
        derived[customers] = derive(self.matrix[:, customers])
        stale.clear()


_ROW_MASK = (1 << 32) - 1


def _top_keys(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One int64 per (count, row) that orders by count, then by row reversed (so that on a tie the
    earlier value, the smaller row, has the larger key)."""
    return (counts.astype(np.int64) << 32) | (_ROW_MASK - rows.astype(np.int64))


def _top(matrix: np.ndarray) -> np.ndarray:
    """The key of each column's most frequent value (the first one on a tie)."""
    return _top_keys(matrix.max(axis=0), matrix.argmax(axis=0))


def _distinct(matrix: np.ndarray) -> np.ndarray:
    return (matrix > 0).sum(axis=0).astype(np.float64)


def _capacity(n: int, capacity: int) -> int:
    """Room for ``n`` customer slots, growing by a quarter at a time so that a trickle of new customers
    does not copy every array at every tick."""
    return capacity if n <= capacity else max(n, capacity + capacity // 4)


class IncrementalAggregates:
    """The aggregates of a set of expressions, advanced tick by tick over an ``EventLog``."""

    def __init__(self, calls: Iterable[Call], log: EventLog) -> None:
        self.log = log
        self.calls = list(dict.fromkeys(calls))
        self.bases: dict[tuple[Any, ...], Base] = {}
        self._rebuilt: list[Call] = []
        self._values: dict[Call, np.ndarray] = {}
        self.zones: np.ndarray = np.zeros(0, object)  # ``timezone`` by customer slot (``set_time_zones``)
        self._zone_codes: tuple[list[str], np.ndarray] | None = None
        self.now_us, self.n = 0, 0
        # Counts advances; ``touched_by`` tells which customers' values the last advance may have changed.
        self.generation = 0
        self._bases_of: dict[Call, list[Base]] = {}
        self._touched: dict[Base, list[np.ndarray]] = {}
        self._rebuilt_bases: set[Base] = set()
        self._touched_memo: dict[tuple[Call, ...], np.ndarray | None] = {}
        self._n_before = 0
        self.fits: dict[tuple[str, str], Fit] = {}  # see ``set_fits``
        self._filters: dict[Node, SegmentFilter] = {}  # by static filter, shared by the bases using it
        # ``count(e, where=e.p == X)`` with X the customer's value: (p, X), read from a Pairs base.
        self._lookups: dict[Call, tuple[str, Node]] = {}
        self._value_codes: dict[tuple[str, int], ValueCodes | None] = {}
        self._looked_up_memo: dict[Call, np.ndarray] = {}  # values of those calls this tick
        for call in self.calls:
            self._bases_for(call, self._call_events(call))

    def _call_events(self, call: Call) -> tuple[str, ...]:
        events = _events(call)
        if call.func in ("distinct_events", "since_first") and not events:
            return tuple(self.log.type_names)  # every type seen so far; more join as they appear
        return events

    def _base(self, key: tuple[Any, ...], make: Any) -> Base:
        base = self.bases.get(key)
        if base is None:
            base = self.bases[key] = make()
            where = key[-1]
            if where is not None:
                if where not in self._filters:
                    self._filters[where] = SegmentFilter(where, self.log)
                base.keep = self._filters[where]
        return base

    def _bases_for(self, call: Call, events: tuple[str, ...]) -> None:
        """Make (or share) the bases ``call`` reads, and remember which they are. Every key ends with the
        static filter (None: none) its base folds events through."""
        w, prop, f, k = _window(call), _prop(call), call.func, _static_where(call)
        made: list[Base] = []
        if lang.where_parts(call):
            self._rebuilt.append(call)  # its filter reads the customer's values, which may change
            shape = lookup_shape(call)
            if shape is not None:  # its value is read from a Pairs base (``_looked_up``), still untracked
                self._lookups[call] = shape
                prop = shape[0]
                self._base(("pairs", w, events[0], prop, None), lambda: Pairs(w, events[0], prop, self.log))
        elif lang.period_of(call) is not None:
            self._rebuilt.append(call)  # bounds per customer's time zone, moving at local midnights
        elif f in lang.PREDICTIONS:
            self._rebuilt.append(call)  # read from a fit and the customer's age, which grows every day
        elif f in ("sequence", "sessions") or (f == "count" and call.kwarg("by") is not None):
            self._rebuilt.append(call)  # an order, or distinct values, is not kept by adding and removing
        elif f == "since_first" and w.within_us is not None:
            self._rebuilt.append(call)  # the earliest event leaves the window: not kept by a minimum
        elif f == "since_first":
            for e in events:
                made.append(self._base(("earliest", w.before_us, e, k), lambda e=e: Earliest(w.before_us, e)))
        elif f in ("count", "distinct_events"):
            for e in events:
                made.append(self._base(("count", w, e, None, k), lambda e=e: Counter(w, e, None)))
        elif f == "since":
            for e in events:
                made.append(self._base(("latest", w.before_us, e, k), lambda e=e: Latest(w.before_us, e)))
        elif f == "median_gap":
            self._rebuilt.append(call)  # a median is not kept by adding and removing events
        elif prop is None:
            raise AssertionError(f"{f} reads a property")
        elif f == "sum":
            made.append(self._base(("sum", w, events[0], prop, k), lambda: Summer(w, events[0], prop)))
        elif f == "mean":
            made.append(self._base(("sum", w, events[0], prop, k), lambda: Summer(w, events[0], prop)))
            made.append(self._base(("count", w, events[0], prop, k), lambda: Counter(w, events[0], prop)))
        elif f in ("distinct", "top_count", "top_value"):
            made.append(
                self._base(("pairs", w, events[0], prop, k), lambda: Pairs(w, events[0], prop, self.log))
            )
        elif f == "last":
            key = ("last", w.before_us, events[0], prop, k)
            made.append(self._base(key, lambda: LastValue(w.before_us, events[0], prop, self.log)))
        else:
            self._rebuilt.append(call)  # min / max of a property
        self._bases_of[call] = made

    def advance(self, now_us: int) -> None:
        """Bring every aggregate to ``now_us``, folding in the segments appended to the log since the
        last advance. Values are then read on demand (``value``), for every customer or a few."""
        for call in self.calls:
            if (
                call.func in ("distinct_events", "since_first")
                and not call.args
                and call not in self._rebuilt
            ):
                self._bases_for(call, self._call_events(call))  # event types that appeared since
        n_before = self.n
        tick = _Tick(self.log, self.log.settle(), now_us)
        for base in self.bases.values():
            if isinstance(base, Pairs):
                wide = tick.n * max(base.width_now(), 1) > MATRIX_CELLS
                if wide != base.wide:  # a matrix is built from scratch when the counts become narrow
                    base.wide = wide
                    base.bounds = None
                    base.drop()
                # Too wide for a matrix: read from the window's events when asked, but still telling
                # whose values the events entering and leaving the window change, so that a tick
                # re-evaluates those customers only (as for every other aggregate).
                base.advance(tick, keep=not wide)
                continue
            base.advance(tick)
        self.now_us, self.n = now_us, tick.n
        self.generation += 1
        self._touched, self._rebuilt_bases, self._n_before = tick.touched, tick.rebuilt, n_before
        self._touched_memo = {}
        self._values = {}
        self._looked_up_memo = {}

    def touched_by(self, calls: Iterable[Call]) -> np.ndarray | None:
        """A mask over customer slots of those whose values of ``calls`` the last advance may have
        changed: events entered or left the windows of the bases they read, or the customer is new.
        None when that is not known (a base was rebuilt, or a call is recomputed from scratch)."""
        key = tuple(calls)
        if key in self._touched_memo:
            return self._touched_memo[key]
        bases = {base for call in key for base in self._bases_of.get(call, ())}
        mask: np.ndarray | None = None
        if not any(call in self._rebuilt for call in key) and not bases & self._rebuilt_bases:
            mask = np.zeros(self.n, bool)
            for base in bases:
                for customers in self._touched.get(base, ()):
                    mask[customers] = True  # marking beats sorting and deduplicating the customers
            mask[self._n_before :] = True
        self._touched_memo[key] = mask
        return mask

    @property
    def values(self) -> dict[Call, np.ndarray]:
        """Every aggregate's value for every customer slot (computed once per advance), but those whose
        filter reads metrics or attributes: an evaluator reads them, handing those values over."""
        return {call: self.value(call) for call in self.calls if not _reads_names(call)}

    def filtered(self, call: Call, parts: Mapping[Node, np.ndarray]) -> np.ndarray:
        """An aggregate whose ``where=`` reads the customer's values, from its window's events, given those
        values (each part of ``lang.where_parts(call)`` for every customer slot): what an evaluator calls
        through ``AggregateCache.compute``."""
        return self._from_scratch(call, parts)

    def value(self, call: Call, rows: np.ndarray | Rows | None = None) -> np.ndarray:
        """The aggregate's value for every customer slot (read-only; cached until the next advance), or
        for the customer keys ``rows`` only (pass one ``Rows`` to several reads to gather each base
        once)."""
        if rows is None:
            cached = self._values.get(call)
            if cached is None:
                cached = self._values[call] = _read_only(self._read(call, Rows.every(self.n)))
            return cached
        rows = rows if isinstance(rows, Rows) else Rows(rows)
        if call in self._values:
            return rows.take(self._values[call])
        return self._read(call, rows)

    def fill(self, cache: AggregateCache) -> None:
        """Put every aggregate's current value where an ``Evaluator`` looks first."""
        cache.values.update(self.values)
        cache.compute = self.filtered

    def tracks(self, call: Call) -> bool:
        """Whether ``touched_by`` covers every change to this aggregate's value (not so for aggregates
        recomputed from the window's events at each tick, nor for one these aggregates do not keep)."""
        # Wide counts (``Pairs.wide``) are read from scratch but still tell whose values changed.
        return call not in self._rebuilt and call in self._bases_of

    def last_times(self, call: Call, rows: np.ndarray | Rows | None = None) -> tuple[np.ndarray, int | None]:
        """For ``since`` and ``last``: the latest event time before the window's end, per customer slot
        (or for the customer keys ``rows``), and the window's start (None: unbounded), which cuts it off
        when read. Time alone changes these values; everything else changes only through events entering
        or leaving windows."""
        w, events, k = _window(call), self._call_events(call), _static_where(call)
        pick = Rows.every(self.n) if rows is None else rows if isinstance(rows, Rows) else Rows(rows)
        if call.func == "since":
            last = self._latest_of(w, events, pick, k)
        else:
            prop = _prop(call)
            assert call.func == "last" and prop is not None
            base = self.bases[("last", w.before_us, events[0], prop, k)]
            assert isinstance(base, LastValue)
            last = pick.take(base.last)
        return last, w.bounds(self.now_us)[0]

    def _read(self, call: Call, rows: Rows) -> np.ndarray:
        """The value of ``call`` for the customer slots ``rows`` covers."""
        if call in self._rebuilt:
            return rows.take(self._from_scratch(call))
        w, prop, f, k = _window(call), _prop(call), call.func, _static_where(call)
        events = self._call_events(call)
        if f == "count":
            return _total([rows.take(self._counter(w, e, None, k).counts) for e in events], len(rows))
        if f == "distinct_events":
            seen: np.ndarray = np.zeros(len(rows), np.int64)
            for e in events:
                seen += rows.take(self._counter(w, e, None, k).counts) > 0
            return seen.astype(np.float64)
        if f == "since":
            last = self._latest_of(w, events, rows, k)
            start, _ = w.bounds(self.now_us)
            absent = last == NEVER if start is None else last < start
            out = np.subtract(self.now_us, last, dtype=np.float64)
            out /= US_PER_SECOND
            out[absent] = np.inf
            return out
        if f == "since_first":
            firsts = [rows.take(self._earliest(w.before_us, e, k).first) for e in events]
            first = np.minimum.reduce(firsts) if firsts else np.full(len(rows), FOREVER, np.int64)
            out = np.subtract(self.now_us, first, dtype=np.float64)
            out /= US_PER_SECOND
            out[first == FOREVER] = np.inf
            return out
        assert prop is not None
        event = events[0]
        if f == "sum":
            return rows.take(self._summer(w, event, prop, k).micros) / MICROS
        if f == "mean":
            total = rows.take(self._summer(w, event, prop, k).micros) / MICROS
            count = rows.take(self._counter(w, event, prop, k).counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, total / np.maximum(count, 1), np.nan)
        if f == "last":
            return self._last_value(w, event, prop, rows, k)
        pairs = self._pairs(w, event, prop, k)
        if pairs.wide:
            return rows.take(self._from_scratch(call))
        if f in ("distinct", "top_count"):
            return pairs.derived(f, rows)
        top_count, top_row = pairs.derived("top_count", rows), pairs.derived("top_row", rows)
        values = self.log.value_array(prop)
        in_order = np.empty(len(values), dtype=object)
        in_order[pairs.row_of] = values  # row -> value
        out = np.full(len(top_count), None, dtype=object)
        has = top_count > 0
        out[has] = in_order[top_row[has]]
        return out

    def _counter(self, w: Window, event: str, prop: str | None, where: Node | None) -> Counter:
        base = self.bases[("count", w, event, prop, where)]
        assert isinstance(base, Counter)
        return base

    def _summer(self, w: Window, event: str, prop: str, where: Node | None) -> Summer:
        base = self.bases[("sum", w, event, prop, where)]
        assert isinstance(base, Summer)
        return base

    def _latest_of(self, w: Window, events: tuple[str, ...], rows: Rows, where: Node | None) -> np.ndarray:
        """The latest time of any of ``events`` (that ``where`` keeps) before the window's end, for the
        customers ``rows`` covers."""
        lasts = [rows.take(self._latest(w.before_us, e, where).last) for e in events]
        return lasts[0] if len(lasts) == 1 else np.maximum.reduce(lasts)

    def _latest(self, before_us: int, event: str, where: Node | None) -> Latest:
        base = self.bases[("latest", before_us, event, where)]
        assert isinstance(base, Latest)
        return base

    def _earliest(self, before_us: int, event: str, where: Node | None) -> Earliest:
        base = self.bases[("earliest", before_us, event, where)]
        assert isinstance(base, Earliest)
        return base

    def _pairs(self, w: Window, event: str, prop: str, where: Node | None) -> Pairs:
        base = self.bases[("pairs", w, event, prop, where)]
        assert isinstance(base, Pairs)
        return base

    def _last_value(self, w: Window, event: str, prop: str, rows: Rows, where: Node | None) -> np.ndarray:
        base = self.bases[("last", w.before_us, event, prop, where)]
        assert isinstance(base, LastValue)
        start, _ = w.bounds(self.now_us)
        last = rows.take(base.last)
        present = last != NEVER if start is None else last >= start
        number = np.where(present, rows.take(base.value), np.nan)
        values = self.log.value_array(prop)
        if not text_values(values):
            return number
        text = np.where(present, rows.take(base.text), NULL_CODE)
        ranking = value_rank(values)
        text_rank = np.where(text >= 0, ranking[text], NO_RANK)
        return last_column(number, text_rank, values[np.argsort(ranking)])

    def set_time_zones(self, zones: np.ndarray) -> None:
        """Each customer slot's ``timezone`` attribute, for aggregates over calendar periods (the caller
        hands them over at each tick, before reading values; slots beyond the column are UTC)."""
        self.zones = zones
        self._zone_codes = None
        for call in self.calls:
            if lang.period_of(call) is not None:
                self._values.pop(call, None)

    def set_fits(self, fits: Mapping[tuple[str, str], Fit]) -> None:
        """The purchase models' newest fits by (event, value property), oldest first, for ``p_alive`` and
        the other predictions (the caller hands them over at each tick, before reading values)."""
        if dict(fits) != self.fits:
            self.fits = dict(fits)
            for call in self.calls:
                if call.func in lang.PREDICTIONS:
                    self._values.pop(call, None)

    def _from_scratch(self, call: Call, parts: Mapping[Node, np.ndarray] | None = None) -> np.ndarray:
        """The aggregate from its window's events (its filter's customer-level ``parts``, if it has any,
        given by the caller or, when they read no metric or attribute, worked out here)."""
        codes = [c for c in (self.log.type_code(e) for e in _events(call)) if c != NULL_CODE]
        every_type = call.func in ("distinct_events", "since_first") and not call.args
        types = None if every_type or call.func == "sessions" else codes
        customers = CustomerFrame(self.n, np.ones(self.n, bool))
        cache = AggregateCache()
        if call in self._lookups:
            looked_up = self._looked_up(call, parts)
            if looked_up is not None:
                return looked_up
        start, end = _window(call).bounds(self.now_us)
        period = lang.period_of(call)
        if period is not None:
            if self._zone_codes is None or len(self._zone_codes[1]) != self.n:  # once per tick
                zones = np.full(self.n, None, dtype=object)
                reach = min(self.n, len(self.zones))
                zones[:reach] = self.zones[:reach]
                self._zone_codes = zone_codes(zones)
            cache.masks[("zones",)] = self._zone_codes
            table = zone_table(period.name, self._zone_codes[0], self.now_us)
            start, end = int(table[:, 0].min()), int(table[:, 1].max())  # every zone's period
        frame = self.log.frame(self.log.range(start, end, types=types), self.n)
        evaluator = Evaluator(frame, customers, self.now_us, cache=cache, fits=self.fits)
        if not lang.where_parts(call):
            return evaluator.values(call)
        return evaluator.filtered(call, self._parts(call) if parts is None else parts)

    def _looked_up(self, call: Call, parts: Mapping[Node, np.ndarray] | None) -> np.ndarray | None:
        """``count(e, where=e.p == X)`` as the cell of its Pairs base at the row of each customer's X (see
        ``signals._lookup``); None when the base is too wide or the values cannot be looked up."""
        prop, part = self._lookups[call]
        pairs = self._pairs(_window(call), self._call_events(call)[0], prop, None)
        values = self.log.values[prop]
        if pairs.wide or len(pairs.row_of) != len(values):
            return None
        if call in self._looked_up_memo:
            return self._looked_up_memo[call]
        key = (prop, len(values))  # a grown dictionary is looked at again
        if key not in self._value_codes:
            self._value_codes[key] = ValueCodes.of(values)
        table = self._value_codes[key]
        if table is None:
            return None
        rows = self._top_value_rows(part, table, pairs.row_of)
        if rows is None:
            x = np.asarray((self._parts(call) if parts is None else parts)[part])
            if x.ndim == 0:
                x = np.full(self.n, x.item(), dtype=object if x.dtype == object else None)
            if len(x) < self.n:  # slots past the column's end are null
                number = x.dtype.kind == "f"
                grown = np.full(self.n, np.nan if number else None, dtype=x.dtype if number else object)
                grown[: len(x)] = x
                x = grown
            codes = table.codes(x[: self.n])
            if codes is None:
                return None
            rows = np.append(pairs.row_of, -1)[codes]  # code -1 (no value) reads the trailing -1
        # One cell per customer, through the flat matrix: row * capacity + customer.
        none = rows < 0
        cells = rows.astype(np.int64)
        cells[none] = 0
        cells *= pairs.matrix.shape[1]
        cells += np.arange(self.n)
        out = pairs.matrix.reshape(-1)[cells].astype(np.float64)
        out[none] = 0.0
        if parts is None or not _reads_names(call):
            self._looked_up_memo[call] = out = _read_only(out)  # its X is the aggregates' own: kept
        return out

    def _top_value_rows(self, part: Node, table: ValueCodes, row_of: np.ndarray) -> np.ndarray | None:
        """When X is a ``top_value`` these aggregates keep, each customer's row of the counts (``row_of``
        of the codes ``table`` gives) without looking their values up one by one: each row of its own
        base is looked up once. -1: no value (or one the counts never saw)."""
        if not isinstance(part, Call) or part.func != "top_value" or part in self._rebuilt:
            return None
        if part not in self._bases_of:
            return None
        prop = _prop(part)
        assert prop is not None
        base = self._pairs(_window(part), self._call_events(part)[0], prop, _static_where(part))
        if base.wide:
            return None
        in_order = np.empty(len(base.row_of), dtype=object)
        in_order[base.row_of] = self.log.value_array(prop)  # its row -> value
        codes = table.codes(in_order)
        if codes is None:
            return None
        # Its row -> our row, and a last entry -1 for customers without a value.
        to_row = np.append(np.append(row_of, -1)[codes], -1)
        every = Rows.every(self.n)
        top_row = base.derived("top_row", every).copy()
        top_row[base.derived("top_count", every) == 0] = len(to_row) - 1
        return to_row[top_row]

    def _parts(self, call: Call) -> dict[Node, np.ndarray]:
        """The customer-level parts of a filter that reads only aggregates (and literals), from them."""
        if _reads_names(call):
            raise ValueError("this filter reads metrics or attributes: an evaluator hands their values over")
        cache = AggregateCache()
        cache.compute = self.filtered
        parts = lang.where_parts(call)
        for nested in (c for part in parts for c in lang.aggregates(part)):
            if not lang.where_parts(nested):
                cache.values[nested] = self.value(nested)
        customers = CustomerFrame(self.n, np.ones(self.n, bool))
        evaluator = Evaluator(EventFrame.empty(self.n), customers, self.now_us, cache=cache)
        return {part: evaluator.values(part) for part in parts}


class Rows:
    """The customer slots a read covers: the first ``n`` (``Rows.every``) or the keys ``keys``. Reads
    through one ``Rows`` gather each array once, so two aggregates over one base (or a value and its
    latest times) share the gather."""

    def __init__(self, keys: np.ndarray | None, n: int | None = None) -> None:
        self.keys = keys
        self._n = len(keys) if keys is not None else int(n or 0)
        self._taken: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def every(cls, n: int) -> Rows:
        return cls(None, n)

    def __len__(self) -> int:
        return self._n

    def take(self, array: np.ndarray) -> np.ndarray:
        """``array``'s entries for these slots (every slot: a view of the first ``n``)."""
        if self.keys is None:
            return array[: self._n]
        known = self._taken.get(id(array))
        if known is not None and known[0] is array:
            return known[1]
        taken = _read_only(array[self.keys])  # shared by every reader of this array
        self._taken[id(array)] = (array, taken)  # holding the array keeps its id from being reused
        return taken


def _reads_names(call: Call) -> bool:
    """Whether the call's filter reads a metric or an attribute (a value only an evaluator knows)."""
    return any(lang.free_names(part) for part in lang.where_parts(call))


def _total(columns: list[np.ndarray], n: int) -> np.ndarray:
    """The element-wise sum of per-type columns, as float64."""
    if not columns:
        return np.zeros(n)
    if len(columns) == 1:
        return columns[0] if columns[0].dtype == np.float64 else columns[0].astype(np.float64)
    out = columns[0].astype(np.float64)
    for column in columns[1:]:
        out += column
    return out


def _read_only(values: np.ndarray) -> np.ndarray:
    """A view readers cannot write through: aggregate values may be the bases' own arrays."""
    view = values.view()
    view.flags.writeable = False
    return view


class LastValue(Base):
    """For ``last(event.prop)``: per customer, the latest time of an event with the property before the
    window's end, and what the from-scratch evaluation reads at that instant (``signals._evaluate``'s
    ``last_values``): the smallest number, and the code of the smallest text in ``value_rank``'s order,
    whatever order events arrive in. As for ``Latest``, the window's start is applied when read: if the
    latest event is before it, so is every other one."""

    def __init__(self, before_us: int, event: str, prop: str, log: EventLog) -> None:
        super().__init__(Window(None, before_us), event)
        self.prop, self.log = prop, log
        self.last = np.zeros(0, np.int64)
        self.value = np.zeros(0)
        self.text = np.zeros(0, np.int64)  # the log's code of the text value, NULL_CODE if none

    def reset(self, n: int) -> None:
        self.last = np.full(n, NEVER, np.int64)
        self.value = np.full(n, np.nan)
        self.text = np.full(n, NULL_CODE, np.int64)

    def grow(self, n: int) -> None:
        self.last = _grown(self.last, n, NEVER)
        self.value = _grown(self.value, n, np.nan)
        self.text = _grown(self.text, n, NULL_CODE)

    def delta(self, events: Segment, sign: int) -> None:
        assert sign > 0, "events never leave an unbounded window"
        codes = events.codes[self.prop]
        present = codes >= 0
        customers, ts, codes = events.customer[present], events.ts[present], codes[present]
        values = events.numbers_of(self.prop)[present]
        if not len(customers):
            return
        # Only the customers of these events are touched: a tick costs what arrived.
        before = self.last[customers]
        np.maximum.at(self.last, customers, ts)
        after = self.last[customers]
        # No number yet is held as infinity while folding (a minimum with NaN would stay NaN).
        self.value[customers[np.isnan(self.value[customers])]] = np.inf
        later = customers[after > before]
        self.value[later] = np.inf  # a later instant: the old values no longer count
        self.text[later] = NULL_CODE
        at_latest = ts == after
        numbers = at_latest & ~np.isnan(values)
        np.minimum.at(self.value, customers[numbers], values[numbers])
        self.value[customers[np.isinf(self.value[customers])]] = np.nan
        texts = at_latest & np.isnan(values)
        if texts.any():
            self._fold_texts(customers[texts], codes[texts].astype(np.int64))

    def _fold_texts(self, customers: np.ndarray, codes: np.ndarray) -> None:
        """Keep, per customer, the smallest text (in ``value_rank``'s order) of its own and ``codes``. The
        order of two values never changes as others join the dictionary, so codes stay comparable."""
        ranking = value_rank(self.log.value_array(self.prop))
        owners, slot = np.unique(customers, return_inverse=True)
        best = np.full(len(owners), NO_RANK, np.int64)
        np.minimum.at(best, slot, ranking[codes])
        held = self.text[owners]
        held_rank = np.where(held >= 0, ranking[np.maximum(held, 0)], NO_RANK)
        better = best < held_rank
        self.text[owners[better]] = np.argsort(ranking)[best[better]]
