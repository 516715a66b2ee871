"""A count filtered on "the event's value equals the customer's value", read from a count matrix.

``count(purchase, within=30d, where=purchase.category == top_value(product_view.category, within=14d))``
counts, per customer, the events whose ``category`` equals one value of that customer's own (``X``: a
metric, an attribute, another aggregate). The count of every (value, customer) pair in the window is
what a ``Pairs`` base keeps (``signals._incremental``), so the answer is one cell per customer: the row of
the customer's ``X``, in its column. This module finds that shape in a call (``lookup_shape``) and maps
the customers' values of ``X`` to the codes of the property's dictionary (``ValueCodes``), with the
language's ``==`` as the from-scratch filter applies it (``signals._where`` and ``_evaluate._compare``):

- the events' values read as numbers when every value the log has seen of the property is a number, as
  they are otherwise; text equals only text, a number equals a number of the same value (``1 == 1.0``,
  and ``true`` equals 1 as in Python);
- a null ``X`` (missing, ``""``, NaN), or a value the log has never seen, matches no event: a count of 0.

When two of the log's values read as the same number (integers beyond 2**53), or a value cannot be looked
up (a list), ``ValueCodes`` gives up (None) and the caller computes the filter from the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from orchestrator.signals import _lang as lang
from orchestrator.signals._lang import Binary, Call, Name, Node


def lookup_shape(call: Call) -> tuple[str, Node] | None:
    """For ``count(e, ..., where=e.p == X)`` or ``where=X == e.p`` over one event type, with ``X`` reading
    the customer's values only: the property ``p`` and the part ``X``. None for any other call."""
    where = call.kwarg("where")
    if call.func != "count" or not isinstance(where, Binary) or where.op != "==":
        return None
    if call.kwarg("by") is not None or lang.period_of(call) is not None:
        return None
    events = {a.parts[0] for a in [*call.args, *lang.kwarg_events(call)] if isinstance(a, Name)}
    if len(events) != 1 or len(call.args) != 1:
        return None
    parts = lang.where_parts(call)
    for prop, other in ((where.left, where.right), (where.right, where.left)):
        if isinstance(prop, Name) and len(prop.parts) == 2 and prop.parts[0] in events and other in parts:
            return prop.parts[1], other
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "") or value != value


class ValueCodes:
    """The codes of a property's dictionary (the log's values, in order) by value, as ``==`` matches
    them. Build with ``ValueCodes.of``, which gives None when a value could match two codes."""

    def __init__(self, by_value: dict[Any, int], numbers: np.ndarray, number_codes: np.ndarray) -> None:
        self.by_value = by_value
        self.numbers, self.number_codes = numbers, number_codes  # sorted floats, and their codes

    @classmethod
    def of(cls, values: Sequence[Any]) -> ValueCodes | None:
        as_numbers = all(_is_number(v) for v in values)  # as ``signals._where._dictionary_column`` reads
        by_value: dict[Any, int] = {}
        floats: list[float] = []
        codes: list[int] = []
        for code, value in enumerate(values):
            if _is_null(value):
                continue  # a null event value equals nothing
            key = float(value) if as_numbers else value
            if key in by_value:
                return None  # two values read as one number
            by_value[key] = code
            if isinstance(key, int | float):
                try:
                    exact = float(key) == key
                except OverflowError:
                    exact = False
                if exact:  # an integer no float equals cannot equal a number column's value
                    floats.append(float(key))
                    codes.append(code)
        order = np.argsort(np.asarray(floats, np.float64), kind="stable")
        return cls(by_value, np.asarray(floats, np.float64)[order], np.asarray(codes, np.int64)[order])

    def codes(self, x: np.ndarray) -> np.ndarray | None:
        """The code equal to each of ``x`` (-1: none); None when a value cannot be looked up."""
        if x.dtype.kind in "fb":
            numbers = x.astype(np.float64, copy=False)
            if not len(self.numbers):
                return np.full(len(x), -1, np.int64)
            at = np.minimum(np.searchsorted(self.numbers, numbers), len(self.numbers) - 1)
            return np.where(self.numbers[at] == numbers, self.number_codes[at], -1)  # NaN equals nothing
        try:  # a null is no key: it finds none
            return np.fromiter(map(self.by_value.get, x.tolist(), repeat(-1)), np.int64, count=len(x))
        except TypeError:
            return None  # an unhashable value (a list): left to the from-scratch filter
