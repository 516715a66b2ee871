"""The event log: events held in memory as numpy columns, in segments sorted by time.

The engine appends each tick's new events as a segment (sorted by time inside) and asks for events in a
time range, which costs a binary search per segment plus the events returned. That is what lets the
incremental aggregates (``signals.incremental``) add the events that enter a window and subtract those
that leave it, instead of rescanning all history at every tick.

Text properties are dictionary-encoded with one dictionary per property for the whole log, so codes
mean the same value in every segment; numbers are float64 with NaN for missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.signals.frame import NULL_CODE, Categorical, EventFrame

# Merge segments when there are more than this many, so range queries stay a handful of searches.
MAX_SEGMENTS = 12


@dataclass
class Segment:
    customer: np.ndarray  # int64
    ts: np.ndarray  # int64, ascending
    type: np.ndarray  # int32 codes into EventLog.type_names
    numbers: dict[str, np.ndarray] = field(default_factory=dict)  # float64
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # int32 into EventLog.values[prop]

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

    @staticmethod
    def concat(parts: Sequence[Segment], numbers: Iterable[str], codes: Iterable[str]) -> Segment:
        if not parts:
            return Segment(
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros(0, np.int32),
                {k: np.zeros(0) for k in numbers},
                {k: np.zeros(0, np.int32) for k in codes},
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
        """Add a batch of events (any order) and return it as a segment in the log's codes."""
        codes_of_type = np.array(
            [self._code_for_type(name) for name in frame.type_names] + [NULL_CODE], dtype=np.int32
        )
        types = codes_of_type[frame.type] if len(frame.type) else np.zeros(0, np.int32)
        numbers = {k: _as_numbers(frame.properties.get(k), len(frame)) for k in self.numeric}
        codes = {k: self._recode(k, frame.properties.get(k), len(frame)) for k in self.categorical}
        segment = Segment(frame.customer.astype(np.int64, copy=False), frame.ts, types, numbers, codes)
        if len(segment) > 1 and not bool(np.all(segment.ts[1:] >= segment.ts[:-1])):
            segment = segment.take(np.argsort(segment.ts, kind="stable"))  # only a batch out of order pays
        if len(segment):
            self.segments.append(segment)
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
        return mapping[column.codes]

    def _compact(self) -> None:
        if len(self.segments) <= MAX_SEGMENTS:
            return
        # Merge every segment but the largest; sorting a concatenation of sorted runs is cheap.
        largest = max(range(len(self.segments)), key=lambda i: len(self.segments[i]))
        rest = [s for i, s in enumerate(self.segments) if i != largest]
        merged = Segment.concat(rest, self.numeric, self.categorical)
        merged = merged.take(np.argsort(merged.ts, kind="stable"))
        self.segments = [self.segments[largest], merged]

    # ------------------------------------------------------------------------------------------ read

    def range(self, start_us: int | None, end_us: int | None, exclude: Segment | None = None) -> Segment:
        """Events with ``start_us <= ts < end_us`` (None: unbounded), from every segment but ``exclude``."""
        parts = []
        for segment in self.segments:
            if segment is exclude or not len(segment):
                continue
            lo = 0 if start_us is None else int(np.searchsorted(segment.ts, start_us, side="left"))
            hi = len(segment) if end_us is None else int(np.searchsorted(segment.ts, end_us, side="left"))
            if hi > lo:
                parts.append(segment.take(slice(lo, hi)))
        return Segment.concat(parts, self.numeric, self.categorical)

    def frame(self, segment: Segment, n_customers: int | None = None) -> EventFrame:
        """A segment as an ``EventFrame`` for the from-scratch evaluator."""
        properties: dict[str, Any] = dict(segment.numbers.items())
        for prop, codes in segment.codes.items():
            properties[prop] = Categorical(codes, self.value_array(prop))
        return EventFrame(
            customer=segment.customer,
            ts=segment.ts,
            type=segment.type,
            type_names=list(self.type_names),
            n_customers=max(self.n_customers, n_customers or 0),
            properties=properties,
        )


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _as_numbers(column: Any, n: int) -> np.ndarray:
    if column is None:
        return np.full(n, np.nan)
    if isinstance(column, Categorical):
        numbers = np.array(
            [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in column.values]
            + [np.nan],
            dtype=np.float64,
        )
        return numbers[column.codes]
    if column.dtype == object:
        return np.array(
            [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in column],
            dtype=np.float64,
        )
    return column.astype(np.float64, copy=False)


def property_uses(calls: Iterable[Any]) -> tuple[set[str], set[str]]:
    """(numeric, categorical) property names read by aggregate calls."""
    from orchestrator.signals import lang

    numeric: set[str] = set()
    categorical: set[str] = set()
    for call in calls:
        if lang.FUNCTIONS[call.func].kind == "events" or not call.args:
            continue
        arg = call.args[0]
        if isinstance(arg, lang.Name) and len(arg.parts) == 2:
            (numeric if call.func in ("sum", "mean", "min", "max") else categorical).add(arg.parts[1])
    return numeric, categorical
