"""The columnar inputs of evaluation: events and customers as numpy arrays indexed by customer key.

The store reads plain columns; ``EventFrame.from_columns`` and ``CustomerFrame.from_values`` make them
frames (sharing the store's arrays); the evaluator reads the frames. Neither side knows how the other works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NULL_CODE = -1


@dataclass(frozen=True)
class Categorical:
    """A dictionary-encoded column: ``values[codes[i]]`` is row i's value, code -1 means null.

    Text properties (categories, cart ids) are held this way so that grouping by them costs integer
    work, and so that a growing column can append codes without re-encoding what it already holds.
    """

    codes: np.ndarray  # int32
    values: np.ndarray  # object array of distinct values

    def __len__(self) -> int:
        return len(self.codes)

    def decode(self) -> np.ndarray:
        out = np.full(len(self.codes), None, dtype=object)
        present = self.codes >= 0
        out[present] = self.values[self.codes[present]]
        return out

    @classmethod
    def encode(cls, column: Sequence[Any] | np.ndarray) -> Categorical:
        """Encode values (None or "" for null) in one pass; values keep their Python types."""
        table: dict[Any, int] = {}
        code = table.setdefault
        codes = np.fromiter(
            (NULL_CODE if v is None or v == "" else code(v, len(table)) for v in column),
            np.int32,
            len(column),
        )
        values = np.empty(len(table), dtype=object)
        values[:] = list(table)
        return cls(codes, values)


Property = np.ndarray | Categorical


@dataclass
class EventFrame:
    """Events before the evaluation instant, one array element per event.

    ``customer`` holds customer keys (``0 <= key < n_customers``), ``ts`` microseconds since the epoch,
    ``type`` indexes ``type_names``. ``properties`` holds the property columns that were asked for:
    float64 with NaN for numbers, ``Categorical`` (or object with ``None``) for anything else.
    """

    customer: np.ndarray
    ts: np.ndarray
    type: np.ndarray
    type_names: Sequence[str]
    n_customers: int
    properties: Mapping[str, Property] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._codes = {name: i for i, name in enumerate(self.type_names)}

    def __len__(self) -> int:
        return len(self.ts)

    def type_code(self, name: str) -> int:
        """The code of an event type, or ``NULL_CODE`` for a type never seen (it matches nothing)."""
        return self._codes.get(name, NULL_CODE)

    def prop(self, name: str) -> Property:
        try:
            return self.properties[name]
        except KeyError:
            raise KeyError(f"event property {name!r} was not loaded into the frame") from None

    def values(self, name: str) -> np.ndarray:
        """The property as a plain column (categoricals decoded to objects)."""
        col = self.prop(name)
        return col.decode() if isinstance(col, Categorical) else col

    @classmethod
    def from_columns(
        cls,
        customer: np.ndarray,
        ts: np.ndarray,
        type: np.ndarray,
        type_names: Sequence[str],
        n_customers: int,
        properties: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]],
    ) -> EventFrame:
        """A frame over plain columns, without copying them: each property is an array, or a
        ``(codes, values)`` pair that becomes a ``Categorical``."""
        columns: dict[str, Property] = {
            name: Categorical(*col) if isinstance(col, tuple) else col for name, col in properties.items()
        }
        return cls(customer, ts, type, type_names, n_customers, columns)

    @classmethod
    def empty(cls, n_customers: int, properties: Sequence[str] = ()) -> EventFrame:
        return cls(
            customer=np.zeros(0, np.int64),
            ts=np.zeros(0, np.int64),
            type=np.zeros(0, np.int32),
            type_names=(),
            n_customers=n_customers,
            properties={p: np.zeros(0, object) for p in properties},
        )


@dataclass
class CustomerFrame:
    """Customer attributes as columns of length ``n`` (one slot per key; ``exists`` marks real rows)."""

    n: int
    exists: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_values(cls, n: int, keys: np.ndarray, values: Mapping[str, Sequence[Any]]) -> CustomerFrame:
        """``n`` slots with the customers ``keys`` present and, per name, the customers' values (aligned with
        ``keys``) placed at their keys. A column's type follows ``column_from_values`` over the customers'
        values; empty slots hold NaN (float), False (bool) or None (object)."""
        exists = np.zeros(n, bool)
        exists[keys] = True
        return cls(n=n, exists=exists, columns={name: _place(col, keys, n) for name, col in values.items()})

    def column(self, name: str) -> np.ndarray:
        col = self.columns.get(name)
        if col is None:
            return np.full(self.n, np.nan)
        return col


def column_from_values(values: Sequence[Any]) -> np.ndarray:
    """Turn Python values into the evaluator's column form: float64 (NaN for null) when every value is a
    number or null, bool when every value is a boolean, object otherwise."""
    seen_other = False
    seen_bool = False
    seen_number = False
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool | np.bool_):
            seen_bool = True
        elif isinstance(v, int | float | np.integer | np.floating):
            seen_number = True
        else:
            seen_other = True
            break
    if not seen_other and seen_bool and not seen_number and all(v is not None for v in values):
        return np.array(values, dtype=bool)
    if not seen_other and not seen_bool:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _place(values: Sequence[Any], keys: np.ndarray, n: int) -> np.ndarray:
    """``column_from_values`` over the existing customers' values, placed at their keys in a column of
    length ``n``; empty slots are NaN (float), False (bool) or None (object)."""
    col = column_from_values(values)
    if col.dtype == np.float64:
        out = np.full(n, np.nan)
    elif col.dtype == bool:
        out = np.zeros(n, bool)
    else:
        out = np.empty(n, object)
    out[keys] = col
    return out
