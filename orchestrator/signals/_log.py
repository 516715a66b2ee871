"""The event log: events held in memory as numpy columns, in segments grouped by type and sorted by time.

The engine appends each tick's new events as a segment and asks for the events of some types in a time
range. Inside a segment events are grouped by type (a *run* per type) and sorted by time within a run, so
"the ``session_start`` events of the last 14 days" is two binary searches and a view, with no mask over
every event and no copy. That is what lets the incremental aggregates (``signals._incremental``) add the
events that enter a window and subtract those that leave it, instead of rescanning all history.

Text properties are dictionary-encoded with one dictionary per property for the whole log, so codes
mean the same value in every segment; numbers are float64 with NaN for missing, held as float32 in a
segment whose values all are float32 exactly (small whole numbers, scores: half the memory), and read back
as float64 (``Segment.numbers_of``), so every result is the same.

Columns take as few bytes as their values need, since at a million customers the log is most of the
engine's memory (20 bytes an event for the reference workload, 32 before): customer keys are int32 while
they fit, type codes and text codes int16 while there are fewer than 32,767 types or values of the
property; ``EventLog.frame`` gives the evaluator int64 keys and int32 codes, as the store reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.signals._evaluate import event_numbers
from orchestrator.signals._frame import NULL_CODE, Categorical, EventFrame

# Merge segments when there are more than this many, so range queries stay a handful of searches.
MAX_SEGMENTS = 12
# Elements recoded at a time in place.
_BLOCK = 1 << 20


@dataclass
class Segment:
    """Aligned event columns. A segment the log owns has ``runs``: its events are ordered by type code
    (unknown types, code -1, first) and by time within each type, and the events of type code ``c`` are
    ``runs[c + 1]:runs[c + 2]``. A segment made by joining ranges has ``runs`` None and no order."""

    customer: np.ndarray  # int32 (int64 when a key does not fit: see ``_customer_keys``)
    ts: np.ndarray  # int64
    type: np.ndarray  # int16 codes into EventLog.type_names (int32 past 32,766 types: ``_type_codes``)
    numbers: dict[str, np.ndarray] = field(default_factory=dict)  # float64 or float32: ``numbers_of``
    # int16 (int32 once the property has 32,767 values or more) into EventLog.values[prop]
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    runs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray | slice) -> Segment:
        return Segment(
            self.customer[index],
            self.ts[index],
            self.type[index],
            {k: v[index] for k, v in self.numbers.items()},
            {k: v[index] for k, v in self.codes.items()},
        )

    def numbers_of(self, prop: str) -> np.ndarray:
        """The numbers of ``prop`` as float64 (a float32 column, which holds them exactly, is widened)."""
        return self.numbers[prop].astype(np.float64, copy=False)

    def run(self, code: int) -> slice:
        """Where the events of type ``code`` are (an empty slice for a type the segment never saw)."""
        assert self.runs is not None, "only the log's own segments are grouped by type"
        key = code + 1
        if key + 1 >= len(self.runs):
            return slice(0, 0)
        return slice(int(self.runs[key]), int(self.runs[key + 1]))

    def window(self, code: int, start_us: int | None, end_us: int | None) -> Segment:
        """The events of type ``code`` with ``start_us <= ts < end_us``: a view, no copy."""
        run = self.run(code)
        ts = self.ts[run]
        lo = 0 if start_us is None else int(np.searchsorted(ts, start_us, side="left"))
        hi = len(ts) if end_us is None else int(np.searchsorted(ts, end_us, side="left"))
        return self.take(slice(run.start + lo, run.start + max(lo, hi)))

    @staticmethod
    def grouped(segment: Segment) -> Segment:
        """The same events ordered by type and by time within a type, with their ``runs``.

        The columns are reordered in place where they are writeable (the segment, and whatever else
        shares its arrays, sees the new order): a copy of every column at once would double the memory a
        large first load needs."""
        n_keys = int(segment.type.max(initial=NULL_CODE)) + 2
        key_type = np.int16 if n_keys < np.iinfo(np.int16).max else np.int32
        keys: np.ndarray = np.empty(len(segment), key_type)
        np.add(segment.type, 1, out=keys, casting="unsafe")  # every key fits: no int32 scratch column
        order: np.ndarray | None = None
        if len(segment) > 1 and not bool(np.all(segment.ts[1:] >= segment.ts[:-1])):
            order = np.argsort(segment.ts, kind="stable")  # only a batch out of time order pays this
            keys = keys[order]
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            # A stable order by type keeps time order inside each type.
            by_type = _stable_order(keys, n_keys)
            order = by_type if order is None else order[by_type]
            keys = keys[by_type]
            del by_type
        out = segment
        if order is not None:
            out = Segment(
                _permuted(segment.customer, order),
                _permuted(segment.ts, order),
                _permuted(segment.type, order),
                {k: _permuted(v, order) for k, v in segment.numbers.items()},
                {k: _permuted(v, order) for k, v in segment.codes.items()},
            )
        out.runs = np.searchsorted(keys, np.arange(n_keys + 1), side="left").astype(np.int64)
        return out

    @staticmethod
    def concat(parts: Sequence[Segment], numbers: Iterable[str], codes: Iterable[str]) -> Segment:
        if not parts:
            return Segment(
                np.zeros(0, np.int32),
                np.zeros(0, np.int64),
                np.zeros(0, np.int16),
                {k: np.zeros(0) for k in numbers},
                {k: np.zeros(0, np.int16) for k in codes},
            )
        if len(parts) == 1:
            return parts[0]
        return Segment(
            np.concatenate([p.customer for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.type for p in parts]),
            {k: np.concatenate([p.numbers[k] for p in parts]) for k in numbers},
            {k: np.concatenate([p.codes[k] for p in parts]) for k in codes},
        )


class EventLog:
    """All events seen so far, for the properties the journeys read.

    ``numeric`` properties are kept as numbers (text becomes null), ``categorical`` ones as codes; a
    property used both ways is kept both ways.
    """

    def __init__(self, numeric: Iterable[str] = (), categorical: Iterable[str] = ()) -> None:
        self.numeric = tuple(sorted(set(numeric)))
        self.categorical = tuple(sorted(set(categorical)))
        self.type_names: list[str] = []
        self._type_codes: dict[str, int] = {}
        self.values: dict[str, list[Any]] = {k: [] for k in self.categorical}
        self._dictionaries: dict[str, dict[Any, int]] = {k: {} for k in self.categorical}
        self.segments: list[Segment] = []
        # Segments appended since the aggregates last advanced: they are told apart from older events by
        # identity, so they are never merged until the aggregates have folded them in.
        self.fresh: list[Segment] = []
        self.n_customers = 0
        self.last_id = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def ts_max(self) -> int | None:
        tails = [int(s.ts[-1]) for s in self.segments if len(s)]
        return max(tails) if tails else None

    def type_code(self, name: str) -> int:
        return self._type_codes.get(name, NULL_CODE)

    def value_array(self, prop: str) -> np.ndarray:
        out = np.empty(len(self.values[prop]), dtype=object)
        out[:] = self.values[prop]
        return out

    # ------------------------------------------------------------------------------------------ append

    def append_frame(self, frame: EventFrame, last_id: int) -> Segment:
        """Add a batch of events (any order) and return it as a segment in the log's codes. The log takes
        the frame's arrays over and may reorder them in place: the caller should not use it afterwards."""
        codes_of_type = np.array(
            [self._code_for_type(name) for name in frame.type_names] + [NULL_CODE], dtype=np.int32
        )
        types = _type_codes(_recoded(frame.type, codes_of_type), len(self.type_names))
        numbers = {k: _as_numbers(frame.properties.get(k), len(frame)) for k in self.numeric}
        codes = {}
        for k in self.categorical:
            recoded = self._recode(k, frame.properties.get(k), len(frame))
            codes[k] = _type_codes(recoded, len(self.values[k]))  # the same narrowing as type codes
        segment = Segment.grouped(Segment(_customer_keys(frame.customer), frame.ts, types, numbers, codes))
        if len(segment):
            self.segments.append(_frozen(segment))
            self.fresh.append(segment)
            self._compact()
        self.n_customers = max(self.n_customers, frame.n_customers)
        self.last_id = max(self.last_id, last_id)
        return segment

    def _code_for_type(self, name: str) -> int:
        code = self._type_codes.get(name)
        if code is None:
            code = self._type_codes[name] = len(self.type_names)
            self.type_names.append(name)
        return code

    def _recode(self, prop: str, column: Any, n: int) -> np.ndarray:
        """Map a batch's column into the log-wide dictionary of ``prop``."""
        if column is None:
            return np.full(n, NULL_CODE, np.int32)
        if not isinstance(column, Categorical):
            column = Categorical.encode(
                np.array([None if v != v else _plain(v) for v in column], dtype=object)
                if column.dtype != object
                else column
            )
        dictionary = self._dictionaries[prop]
        mapping = np.empty(len(column.values) + 1, dtype=np.int32)
        for i, value in enumerate(column.values):
            code = dictionary.get(value)
            if code is None:
                code = dictionary[value] = len(self.values[prop])
                self.values[prop].append(value)
            mapping[i] = code
        mapping[-1] = NULL_CODE  # batch code -1 reads the last slot
        # The log takes the frame's arrays over: recode in place, a block at a time (no second column).
        return _recoded(column.codes, mapping)

    def settle(self) -> list[Segment]:
        """The fresh segments, which from now on count as settled (and may be merged)."""
        fresh, self.fresh = self.fresh, []
        return fresh

    def _compact(self) -> None:
        if len(self.segments) <= MAX_SEGMENTS:
            return
        # Merge every segment but the largest and the fresh ones; grouping a concatenation of grouped runs
        # is cheap.
        settled = [i for i, s in enumerate(self.segments) if not any(s is f for f in self.fresh)]
        if len(settled) < 3:
            return
        largest = max(settled, key=lambda i: len(self.segments[i]))
        rest = [self.segments[i] for i in settled if i != largest]
        merged = Segment.concat(rest, self.numeric, self.categorical)
        merged = Segment.grouped(merged.take(np.argsort(merged.ts, kind="stable")))
        self.segments = [self.segments[largest], _frozen(merged), *self.fresh]

    # ------------------------------------------------------------------------------------------ read

    def parts(
        self,
        start_us: int | None,
        end_us: int | None,
        types: Iterable[int] | None = None,
        exclude: Sequence[Segment] = (),
    ) -> list[Segment]:
        """Views of the events with ``start_us <= ts < end_us`` (None: unbounded) whose type code is in
        ``types`` (None: every type), from every segment but those in ``exclude``; each view holds one
        type."""
        codes = list(range(NULL_CODE, len(self.type_names)) if types is None else types)
        out = []
        for segment in self.segments:
            if not len(segment) or any(segment is e for e in exclude):
                continue
            for code in codes:
                part = segment.window(code, start_us, end_us)
                if len(part):
                    out.append(part)
        return out

    def range(
        self,
        start_us: int | None,
        end_us: int | None,
        exclude: Sequence[Segment] = (),
        types: Iterable[int] | None = None,
    ) -> Segment:
        """The ``parts`` as one segment (in no particular order)."""
        if types is None and start_us is None and end_us is None:  # whole segments: no split, no copy
            whole = [s for s in self.segments if len(s) and not any(s is e for e in exclude)]
            return Segment.concat(whole, self.numeric, self.categorical)
        return Segment.concat(self.parts(start_us, end_us, types, exclude), self.numeric, self.categorical)

    def frame(self, segment: Segment, n_customers: int | None = None) -> EventFrame:
        """A segment as an ``EventFrame`` for the from-scratch evaluator."""
        properties: dict[str, Any] = {k: segment.numbers_of(k) for k in segment.numbers}
        for prop, codes in segment.codes.items():  # the evaluator's codes are int32
            properties[prop] = Categorical(codes.astype(np.int32, copy=False), self.value_array(prop))
        return EventFrame(
            customer=segment.customer.astype(np.int64, copy=False),  # the evaluator's keys are int64
            ts=segment.ts,
            type=segment.type.astype(np.int32, copy=False),  # the evaluator's codes are int32
            type_names=list(self.type_names),
            n_customers=max(self.n_customers, n_customers or 0),
            properties=properties,
        )


def _frozen(segment: Segment) -> Segment:
    """The segment with its arrays made read-only: once in the log they are never changed in place, which
    lets a snapshot of the log (``engine._state_snapshot``) share them instead of copying them."""
    for column in (
        segment.customer,
        segment.ts,
        segment.type,
        *segment.numbers.values(),
        *segment.codes.values(),
    ):
        column.flags.writeable = False
    if segment.runs is not None:
        segment.runs.flags.writeable = False
    return segment


def _recoded(codes: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """``mapping[codes]`` (code -1 reads the mapping's last slot) as int32, written over ``codes`` a block
    at a time when the log may take them over (no second column for a large load)."""
    if not len(codes):
        return np.zeros(0, np.int32)
    if not (codes.dtype == np.int32 and codes.flags.writeable and codes.flags.c_contiguous):
        return mapping[codes].astype(np.int32, copy=False)
    for start in range(0, len(codes), _BLOCK):
        block = codes[start : start + _BLOCK]
        block[...] = mapping[block]
    return codes


def _type_codes(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Event type codes (or a property's value codes) as the log keeps them: int16 while the log knows
    fewer than 32,767 types (values), half the memory of int32 for a large log; else int32."""
    if n_codes < np.iinfo(np.int16).max:
        return codes.astype(np.int16)
    return codes.astype(np.int32, copy=False)


def _customer_keys(keys: np.ndarray) -> np.ndarray:
    """Customer keys as the log keeps them: int32 while every key fits (customers below 2^31), which
    spares 4 bytes an event over int64, the largest column of a large log after the instants."""
    if keys.dtype == np.int32:
        return keys
    limits = np.iinfo(np.int32)
    if not len(keys) or (int(keys.min()) >= limits.min and int(keys.max()) <= limits.max):
        return keys.astype(np.int32)
    return keys.astype(np.int64, copy=False)


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for keys in ``0..n_keys - 1``, as int32 where the positions fit
    (half the memory of numpy's int64 answer, which a large first load would hold beside its columns):
    the positions of each key in turn, in order."""
    if len(keys) >= np.iinfo(np.int32).max or n_keys > 64:  # many keys: numpy's radix sort
        return np.argsort(keys, kind="stable")
    order = np.empty(len(keys), np.int32)
    start = 0
    for key in range(n_keys):
        at = np.flatnonzero(keys == key)
        order[start : start + len(at)] = at
        start += len(at)
    return order


def _permuted(column: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``column[order]``, written back into ``column`` when it may be (one column's worth of scratch)."""
    if column.flags.writeable and column.flags.c_contiguous:
        column[...] = column[order]
        return column
    return column[order]


def _as_numbers(column: Any, n: int) -> np.ndarray:
    if column is None:
        return np.full(n, np.nan, np.float32)  # NaN is a float32 too
    if isinstance(column, Categorical):
        return _narrowed(np.append(event_numbers(column.values), np.nan)[column.codes])  # -1 reads NaN
    return _narrowed(event_numbers(column))


def _narrowed(values: np.ndarray) -> np.ndarray:
    """float64 numbers as float32 when every one of them is a float32 exactly (NaN included), else as
    they are: a property that is mostly missing, or small whole numbers, takes half the memory."""
    narrow = values.astype(np.float32)
    for start in range(0, len(values), _BLOCK):
        wide, back = values[start : start + _BLOCK], narrow[start : start + _BLOCK]
        if not np.array_equal(back.astype(np.float64), wide, equal_nan=True):
            return values
    return narrow


def property_uses(calls: Iterable[Any]) -> tuple[set[str], set[str]]:
    """(numeric, categorical) property names read by aggregate calls (``last`` reads both: its value may
    be a number or text)."""
    from orchestrator.signals import _lang as lang

    numeric: set[str] = set()
    categorical: set[str] = set()
    for call in calls:
        grouping = lang.group_property(call)
        if grouping is not None:
            categorical.add(grouping)  # only its values' identity matters
        # A where= filter reads each event's value as it is (text or number, from the log's dictionary),
        # or as a number where it only ever uses it as one (purchase.amount > 50).
        as_numbers = lang.where_numbers(call)
        numeric |= as_numbers
        categorical.update(
            name.parts[1] for name in lang.where_properties(call) if name.parts[1] not in as_numbers
        )
        if lang.FUNCTIONS[call.func].kind == "events" or not call.args:
            continue
        arg = call.args[0]
        if isinstance(arg, lang.Name) and len(arg.parts) == 2:
            if call.func in ("sum", "mean", "min", "max", "last"):
                numeric.add(arg.parts[1])
            if call.func not in ("sum", "mean", "min", "max"):
                categorical.add(arg.parts[1])  # last() reads text too: the value's code
    return numeric, categorical
