"""The engine's copy of the customer attributes its journeys read, kept current between ticks.

Reading every customer at every tick costs seconds at a million customers. Instead the first tick reads
them all, and later ticks read only the customers written since (every customer write stamps a revision
that grows in commit order) and place their values in the columns. The result is always the frame that
``engine._snapshot.load_customer_frame`` would give: a column's type depends on every customer's values
(numbers, booleans or anything), so the state counts the kinds of value per column, and when a change
would change a column's type it reads everything again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.signals import CustomerFrame
from orchestrator.store import Connection, max_key, max_revision, read_customer_values


@dataclass
class _Kinds:
    """How many existing customers hold a null, a boolean, a number or anything else in one column."""

    null: int = 0
    boolean: int = 0
    number: int = 0
    other: int = 0

    def add(self, values: Iterable[Any], sign: int) -> None:
        for value in values:
            kind = _kind(value)
            setattr(self, kind, getattr(self, kind) + sign)

    def dtype(self) -> np.dtype[Any]:
        """The type ``column_from_values`` gives a column holding these kinds."""
        if self.other:
            return np.dtype(object)
        if self.boolean and not self.number and not self.null:
            return np.dtype(np.bool_)
        if not self.boolean:
            return np.dtype(np.float64)
        return np.dtype(object)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | float | np.integer | np.floating):
        return "number"
    return "other"


def _empty(dtype: np.dtype[Any], n: int) -> np.ndarray:
    if dtype == np.float64:
        return np.full(n, np.nan)
    if dtype == np.bool_:
        return np.zeros(n, bool)
    return np.empty(n, object)


class CustomerState:
    """Customer columns by key, refreshed from the customers written since the last refresh."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.revision = -1  # nothing read yet
        self.n = 0
        self.exists = np.zeros(0, bool)
        self.columns: dict[str, np.ndarray] = {}
        self.kinds: dict[str, _Kinds] = {}
        self.full_reads = 0
        # Keys of the customers the last ``frame`` call read as changed (None: it read everyone).
        self.changed: np.ndarray | None = None

    def frame(self, conn: Connection, names: Iterable[str]) -> CustomerFrame:
        """The customers with these columns as of ``conn``'s snapshot (read it from ``Store.connect``).
        The arrays are the state's own: readers must not write to them."""
        wanted = tuple(dict.fromkeys(names))
        if self.revision < 0 or not set(wanted) <= set(self.names):
            self._read_all(conn, tuple(dict.fromkeys(self.names + wanted)))
            self.changed = None
        else:
            self.changed = self._read_changes(conn)
        return CustomerFrame(self.n, self.exists[: self.n], {k: self.columns[k][: self.n] for k in wanted})

    def _read_all(self, conn: Connection, names: tuple[str, ...]) -> None:
        revision = max_revision(conn)
        n = max_key(conn) + 1
        keys, values = read_customer_values(conn, names)
        self.names, self.n, self.revision = names, n, revision
        self.exists = np.zeros(n, bool)
        self.exists[keys] = True
        self.columns, self.kinds = {}, {}
        for name in names:
            kinds = _Kinds()
            kinds.add(values[name], +1)
            column = _empty(kinds.dtype(), n)
            _place(column, keys, values[name])
            self.columns[name], self.kinds[name] = column, kinds
        self.full_reads += 1

    def _read_changes(self, conn: Connection) -> np.ndarray | None:
        """Read the customers written since the last read; their keys (None after a full read)."""
        revision = max_revision(conn)
        if revision == self.revision:
            return np.zeros(0, np.int64)
        n = max_key(conn) + 1
        keys, values = read_customer_values(conn, self.names, after_revision=self.revision)
        if n > len(self.exists):
            capacity = max(n, len(self.exists) + len(self.exists) // 4)
            self.exists = np.concatenate([self.exists, np.zeros(capacity - len(self.exists), bool)])
            for name, column in self.columns.items():
                grown = _empty(column.dtype, capacity)
                grown[: len(column)] = column
                self.columns[name] = grown
        known = self.exists[keys]
        for name in self.names:
            column, kinds = self.columns[name], self.kinds[name]
            kinds.add(
                column[keys[known]].tolist() if column.dtype != np.float64 else _floats(column, keys[known]),
                -1,
            )
            kinds.add(values[name], +1)
            if kinds.dtype() != column.dtype:
                # The column changes type for everyone (say a first text value among numbers).
                self._read_all(conn, self.names)
                return None
        for name in self.names:
            _place(self.columns[name], keys, values[name])
        self.exists[keys] = True
        self.n, self.revision = n, revision
        return keys


def _floats(column: np.ndarray, keys: np.ndarray) -> list[Any]:
    """A float column's values as the kinds it was built from: NaN was null."""
    return [None if v != v else v for v in column[keys].tolist()]


def _place(column: np.ndarray, keys: np.ndarray, values: Sequence[Any]) -> None:
    if column.dtype == np.float64:
        column[keys] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    elif column.dtype == np.bool_:
        column[keys] = np.array(values, dtype=bool)
    else:
        placed = np.empty(len(values), dtype=object)
        placed[:] = list(values)
        column[keys] = placed
