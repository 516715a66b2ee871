"""Aggregates kept up to date from tick to tick.

Each aggregate of the journeys (``count(session_start, within=14d)``, ``since(purchase)``, ...) rests on a
*base*: per-customer state over the events of a time window ``[now - before - within, now - before)``.
When the clock moves from one tick to the next, a base adds the events that entered its window (newly
ingested ones, and older ones the window's end passed over) and removes those its start passed over.
A tick therefore costs what changed, not all history. The results equal a from-scratch evaluation
exactly (counts are integers, sums are re-based whenever the window is rebuilt); the tests check that.

Bases:

- ``Counter``: events per customer (optionally only those with a property present);
- ``Summer``: sum of a numeric property;
- ``Latest``: the latest event time (windows only cut it off, so it never needs removal);
- ``Pairs``: a customer-by-value count matrix (event types, or a text property's codes), from which
  ``distinct``, ``distinct_events``, ``top_count`` and ``top_value`` read;
- ``Rebuilt``: anything not maintained incrementally (min/max, very wide value sets), recomputed each
  tick from the window's events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.signals import lang
from orchestrator.signals.evaluate import (
    MATRIX_CELLS,
    MICROS,
    AggregateCache,
    Evaluator,
    to_micros,
    type_mask,
    value_rank,
)
from orchestrator.signals.frame import CustomerFrame
from orchestrator.signals.lang import Call, Name
from orchestrator.signals.log import EventLog, Segment

NEVER = np.iinfo(np.int64).min


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
    return Window(
        None if within is None else round(within.seconds * US_PER_SECOND),  # type: ignore[attr-defined]
        0 if before is None else round(before.seconds * US_PER_SECOND),  # type: ignore[attr-defined]
    )


def _events(call: Call) -> tuple[str, ...]:
    if lang.FUNCTIONS[call.func].kind == "events":
        return tuple(sorted({a.parts[0] for a in call.args if isinstance(a, Name)}))
    arg = call.args[0]
    assert isinstance(arg, Name)
    return (arg.parts[0],)


def _prop(call: Call) -> str | None:
    if lang.FUNCTIONS[call.func].kind == "events":
        return None
    arg = call.args[0]
    assert isinstance(arg, Name)
    return arg.parts[1]


class _Tick:
    """Per-tick memo of window ranges and type masks, shared by every base."""

    def __init__(self, log: EventLog, new: Segment, now_us: int) -> None:
        self.log, self.new, self.now_us = log, new, now_us
        self.n = log.n_customers
        self._ranges: dict[tuple[Any, ...], Segment] = {}
        self._masks: dict[tuple[Any, ...], np.ndarray] = {}

    def old(self, start: int | None, end: int | None) -> Segment:
        """Events that were in the log before this tick, in ``[start, end)``."""
        if start is not None and end is not None and end <= start:
            return self.log.range(0, 0)
        key = ("old", start, end)
        if key not in self._ranges:
            self._ranges[key] = self.log.range(start, end, exclude=self.new)
        return self._ranges[key]

    def new_in(self, start: int | None, end: int) -> Segment:
        key = ("new", start, end)
        if key not in self._ranges:
            ts = self.new.ts
            lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
            hi = int(np.searchsorted(ts, end, side="left"))
            self._ranges[key] = self.new.take(slice(lo, max(lo, hi)))
        return self._ranges[key]

    def everything(self, start: int | None, end: int) -> Segment:
        key = ("all", start, end)
        if key not in self._ranges:
            self._ranges[key] = self.log.range(start, end)
        return self._ranges[key]

    def types(self, segment: Segment, names: tuple[str, ...]) -> np.ndarray:
        key = (id(segment), names)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = type_mask(segment.type, self.log.type_names, names)
        return mask


class Base:
    """Per-customer state over one window; ``delta`` folds a set of events in (sign +1) or out (-1)."""

    additive = True

    def __init__(self, window: Window) -> None:
        self.window = window
        self.bounds: tuple[int | None, int] | None = None

    def reset(self, n: int) -> None:
        raise NotImplementedError

    def grow(self, n: int) -> None:
        raise NotImplementedError

    def delta(self, tick: _Tick, events: Segment, sign: int) -> None:
        raise NotImplementedError

    def advance(self, tick: _Tick) -> None:
        start1, end1 = self.window.bounds(tick.now_us)
        if self.bounds is not None:
            start0, end0 = self.bounds
            backwards = end1 < end0 or (start1 is not None and start0 is not None and start1 < start0)
        if self.bounds is None or backwards or not self.additive:
            self.reset(tick.n)
            self.delta(tick, tick.everything(start1, end1), +1)
        else:
            self.grow(tick.n)
            if start1 is not None and start0 is not None and start1 > start0:
                self.delta(tick, tick.old(start0, min(start1, end0)), -1)
            enter_from = end0 if start1 is None else max(end0, start1)
            if end1 > enter_from:
                self.delta(tick, tick.old(enter_from, end1), +1)
            self.delta(tick, tick.new_in(start1, end1), +1)
        self.bounds = (start1, end1)


class Counter(Base):
    def __init__(self, window: Window, events: tuple[str, ...], prop: str | None) -> None:
        super().__init__(window)
        self.events, self.prop = events, prop
        self.counts = np.zeros(0, np.int64)

    def reset(self, n: int) -> None:
        self.counts = np.zeros(n, np.int64)

    def grow(self, n: int) -> None:
        if n > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(n - len(self.counts), np.int64)])

    def delta(self, tick: _Tick, events: Segment, sign: int) -> None:
        mask = tick.types(events, self.events)
        if self.prop is not None:
            mask = mask & ~np.isnan(events.numbers[self.prop])
        customers = events.customer[mask]
        if len(customers) * 8 < len(self.counts):
            np.add.at(self.counts, customers, sign)  # few events: touch only their customers
            return
        counted = np.bincount(customers, minlength=len(self.counts))
        self.counts += counted if sign > 0 else -counted


class Summer(Base):
    """Sums in millionths of a unit, held as exactly representable whole numbers, so adding and removing
    values never drifts and the result equals a from-scratch sum bit for bit."""

    def __init__(self, window: Window, events: tuple[str, ...], prop: str) -> None:
        super().__init__(window)
        self.events, self.prop = events, prop
        self.micros = np.zeros(0)

    def reset(self, n: int) -> None:
        self.micros = np.zeros(n)

    def grow(self, n: int) -> None:
        if n > len(self.micros):
            self.micros = np.concatenate([self.micros, np.zeros(n - len(self.micros))])

    def delta(self, tick: _Tick, events: Segment, sign: int) -> None:
        values = events.numbers[self.prop]
        mask = tick.types(events, self.events) & ~np.isnan(values)
        micros = to_micros(values[mask])
        self.micros += sign * np.bincount(events.customer[mask], weights=micros, minlength=len(self.micros))

    @property
    def sums(self) -> np.ndarray:
        return self.micros / MICROS


class Latest(Base):
    """The latest event time before the window's end; the window's start is applied when read."""

    def __init__(self, window: Window, events: tuple[str, ...]) -> None:
        super().__init__(Window(None, window.before_us))
        self.events = events
        self.last = np.zeros(0, np.int64)

    def reset(self, n: int) -> None:
        self.last = np.full(n, NEVER, np.int64)

    def grow(self, n: int) -> None:
        if n > len(self.last):
            self.last = np.concatenate([self.last, np.full(n - len(self.last), NEVER, np.int64)])

    def delta(self, tick: _Tick, events: Segment, sign: int) -> None:
        assert sign > 0, "events never leave an unbounded window"
        mask = tick.types(events, self.events)
        np.maximum.at(self.last, events.customer[mask], events.ts[mask])


class Pairs(Base):
    """Counts per (customer, value): value is the event type (``prop`` None) or a text property's value.

    Columns are kept in value order (the rank of each value), so the first maximum of a row is the most
    frequent value with ties going to the smallest, as ``top_value`` defines it, with no reordering.
    """

    def __init__(
        self, window: Window, events: tuple[str, ...] | None, prop: str | None, log: EventLog
    ) -> None:
        super().__init__(window)
        self.events, self.prop, self.log = events, prop, log
        self.matrix = np.zeros((0, 0), np.int32)
        self.column_of = np.zeros(0, np.int64)  # code -> column (the value's rank)
        self.wide = False  # too many cells for a matrix: such aggregates are read from scratch
        # What readers want from the matrix, kept per customer and refreshed only for touched rows.
        self.distinct = np.zeros(0, np.int64)
        self.top_count = np.zeros(0, np.int64)
        self.top_column = np.zeros(0, np.int64)
        self._touched: list[np.ndarray] = []
        self._all_touched = True
        self._fresh = True

    def width_now(self) -> int:
        return len(self.log.type_names) if self.prop is None else len(self.log.values[self.prop])

    def _ranking(self) -> np.ndarray:
        if self.prop is None:
            return np.arange(len(self.log.type_names))  # any fixed order will do for event types
        return value_rank(self.log.value_array(self.prop))

    def reset(self, n: int) -> None:
        self.column_of = self._ranking()
        self.matrix = np.zeros((n, max(len(self.column_of), 1)), np.int32)
        self._fresh = True  # all zeros: the first full count can replace it instead of adding to it
        self._all_touched = True

    def grow(self, n: int) -> None:
        rows, cols = self.matrix.shape
        if self.width_now() > len(self.column_of):
            # New values change the ranking: move every existing column to its new place.
            ranking = self._ranking()
            grown = np.zeros((max(n, rows), max(len(ranking), 1)), np.int32)
            grown[:rows, ranking[: len(self.column_of)]] = self.matrix[:, self.column_of]
            self.matrix, self.column_of = grown, ranking
            self._all_touched = True
        elif n > rows:
            self.matrix = np.concatenate([self.matrix, np.zeros((n - rows, cols), np.int32)])
            self._all_touched = True

    def delta(self, tick: _Tick, events: Segment, sign: int) -> None:
        rows, cols = self.matrix.shape
        if self.prop is None:
            # Event types: every event has one, and their columns are their codes.
            if self.events is None:
                customers, columns = events.customer, events.type
            else:
                mask = tick.types(events, self.events)
                customers, columns = events.customer[mask], events.type[mask]
        else:
            values = events.codes[self.prop]
            mask = tick.types(events, self.events) & (values >= 0) if self.events else values >= 0
            customers, columns = events.customer[mask], self.column_of[values[mask]]
        if len(customers) * 8 < rows * cols:
            np.add.at(self.matrix, (customers, columns), sign)  # few events: touch only their cells
            self._touched.append(customers)
            self._fresh = self._fresh and not len(customers)
            return
        counted = np.bincount(customers * cols + columns, minlength=rows * cols).reshape(rows, cols)
        if sign > 0 and self._fresh:
            self.matrix = counted.astype(np.int32)
        else:
            self.matrix += (sign * counted).astype(np.int32)
        self._fresh = False
        self._all_touched = True

    def derive(self) -> None:
        """Refresh ``distinct``, ``top_count`` and ``top_column`` for the rows the deltas touched (all rows
        after a rebuild or a change of columns)."""
        rows = self.matrix.shape[0]
        if self._all_touched or len(self.distinct) != rows:
            self.distinct = (self.matrix > 0).sum(axis=1)
            self.top_column = self.matrix.argmax(axis=1)  # the first maximum: the smallest value on ties
            self.top_count = self.matrix[np.arange(rows), self.top_column].astype(np.int64)
        elif self._touched:
            dirty = np.zeros(rows, bool)  # marking beats sorting the touched customers to dedupe them
            for customers in self._touched:
                dirty[customers] = True
            touched = np.flatnonzero(dirty)
            block = self.matrix[touched]
            self.distinct[touched] = (block > 0).sum(axis=1)
            top = block.argmax(axis=1)
            self.top_column[touched] = top
            self.top_count[touched] = block[np.arange(len(touched)), top]
        self._touched, self._all_touched = [], False


class IncrementalAggregates:
    """The aggregates of a set of expressions, advanced tick by tick over an ``EventLog``."""

    def __init__(self, calls: Iterable[Call], log: EventLog) -> None:
        self.log = log
        self.calls = list(dict.fromkeys(calls))
        self.bases: dict[tuple[Any, ...], Base] = {}
        self._rebuilt: list[Call] = []
        self.values: dict[Call, np.ndarray] = {}
        for call in self.calls:
            self._bases_for(call)

    def _base(self, key: tuple[Any, ...], make: Any) -> Base:
        base = self.bases.get(key)
        if base is None:
            base = self.bases[key] = make()
        return base

    def _bases_for(self, call: Call) -> list[Base]:
        w, events, prop, f = _window(call), _events(call), _prop(call), call.func
        if f == "count":
            return [self._base(("count", w, events, None), lambda: Counter(w, events, None))]
        if f == "since":
            return [self._base(("latest", w.before_us, events), lambda: Latest(w, events))]
        if f == "distinct_events":
            listed = events or None
            return [self._base(("pairs", w, listed, None), lambda: Pairs(w, listed, None, self.log))]
        assert prop is not None
        if f == "sum":
            return [self._base(("sum", w, events, prop), lambda: Summer(w, events, prop))]
        if f == "mean":
            return [
                self._base(("sum", w, events, prop), lambda: Summer(w, events, prop)),
                self._base(("count", w, events, prop), lambda: Counter(w, events, prop)),
            ]
        if f in ("distinct", "top_count", "top_value"):
            return [self._base(("pairs", w, events, prop), lambda: Pairs(w, events, prop, self.log))]
        self._rebuilt.append(call)  # min / max of a property
        return []

    def advance(self, new: Segment, now_us: int) -> None:
        """Bring every aggregate to ``now_us`` after ``new`` (already appended to the log) arrived."""
        tick = _Tick(self.log, new, now_us)
        for base in self.bases.values():
            if isinstance(base, Pairs):
                base.wide = tick.n * max(base.width_now(), 1) > MATRIX_CELLS
                if base.wide:
                    base.bounds = None  # rebuild from scratch if it ever becomes narrow enough again
                    continue
            base.advance(tick)
        self.values = {call: self._read(call, tick) for call in self.calls}

    def fill(self, cache: AggregateCache) -> None:
        """Put every aggregate's current value where an ``Evaluator`` looks first."""
        cache.values.update(self.values)

    def _read(self, call: Call, tick: _Tick) -> np.ndarray:
        n = tick.n
        if call in self._rebuilt:
            return self._from_scratch(call, tick)
        w, events, prop, f = _window(call), _events(call), _prop(call), call.func
        if f == "count":
            return self._counter(w, events, None).counts[:n].astype(np.float64)
        if f == "since":
            base = self.bases[("latest", w.before_us, events)]
            assert isinstance(base, Latest)
            start, _ = w.bounds(tick.now_us)
            last = base.last[:n]
            present = last != NEVER if start is None else last >= start
            return np.where(present, (tick.now_us - last) / US_PER_SECOND, np.inf)
        if f == "distinct_events":
            pairs = self._pairs(w, events or None, None)
            if pairs.wide:
                return self._from_scratch(call, tick)
            pairs.derive()
            return pairs.distinct[:n].astype(np.float64)
        assert prop is not None
        if f == "sum":
            return self._summer(w, events, prop).sums[:n].copy()
        if f == "mean":
            total = self._summer(w, events, prop).sums[:n]
            count = self._counter(w, events, prop).counts[:n]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, total / np.maximum(count, 1), np.nan)
        pairs = self._pairs(w, events, prop)
        if pairs.wide:
            return self._from_scratch(call, tick)
        pairs.derive()
        if f == "distinct":
            return pairs.distinct[:n].astype(np.float64)
        if f == "top_count":
            return pairs.top_count[:n].astype(np.float64)
        values = self.log.value_array(prop)
        in_order = np.empty(len(values), dtype=object)
        in_order[pairs.column_of] = values  # column -> value
        out = np.full(n, None, dtype=object)
        has = pairs.top_count[:n] > 0
        out[has] = in_order[pairs.top_column[:n][has]]
        return out

    def _counter(self, w: Window, events: tuple[str, ...], prop: str | None) -> Counter:
        base = self.bases[("count", w, events, prop)]
        assert isinstance(base, Counter)
        return base

    def _summer(self, w: Window, events: tuple[str, ...], prop: str) -> Summer:
        base = self.bases[("sum", w, events, prop)]
        assert isinstance(base, Summer)
        return base

    def _pairs(self, w: Window, events: tuple[str, ...] | None, prop: str | None) -> Pairs:
        base = self.bases[("pairs", w, events, prop)]
        assert isinstance(base, Pairs)
        return base

    def _from_scratch(self, call: Call, tick: _Tick) -> np.ndarray:
        start, end = _window(call).bounds(tick.now_us)
        frame = self.log.frame(tick.everything(start, end), tick.n)
        empty = CustomerFrame(frame.n_customers, np.ones(frame.n_customers, bool))
        return Evaluator(frame, empty, tick.now_us).values(call)
