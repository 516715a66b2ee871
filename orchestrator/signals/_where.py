"""The ``where=`` filter of an aggregate, evaluated for many events at once.

``count(purchase, within=30d, where=purchase.category == top_value(product_view.category, within=14d))``
aggregates only the events for which the condition holds. The condition is an ordinary expression, read
event by event: ``purchase.category`` is each event's own value, and the parts that read the customer's
values (``top_value(...)``, a metric, an attribute) are each customer's value, repeated for each of
their events (``signals._lang.where_split`` finds both). The condition is rewritten so that each of those
inputs becomes one column over the events, and the rest is evaluated by an ordinary evaluator over those
columns, with the language's own operators and null rules.

A part that reads a single text property and nothing of the customer (``purchase.category == "shoes"``,
the whole of most filters) is evaluated once per distinct value of the property, over its dictionary,
and then looked up by each event's code: a gather instead of a comparison of text per event.

This module knows nothing of windows or bases: callers (``signals._evaluate`` over a frame,
``signals._incremental`` over the log's segments) hand over the events' columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Protocol

import numpy as np

from orchestrator.signals import _lang as lang
from orchestrator.signals._frame import Categorical, CustomerFrame
from orchestrator.signals._lang import Name, Node

Property = np.ndarray | Categorical


class _Local(Protocol):
    """An evaluator over plain columns of length ``n`` (one row per event, or per distinct value)."""

    def values(self, node: Node) -> np.ndarray: ...

    def condition(self, node: Node) -> np.ndarray: ...


Local = Callable[[CustomerFrame], _Local]


def event_mask(
    where: Node,
    columns: Callable[[str], Property],
    customers: np.ndarray,
    parts: Mapping[Node, np.ndarray],
    local: Local,
    tables: MutableMapping[Any, Any],
) -> np.ndarray:
    """Where ``where`` holds for each of the events whose customer keys are ``customers``.

    ``columns(prop)`` gives a property over those same events (numbers, or a ``Categorical``); ``parts``
    maps each customer-level part of the condition to its value for every customer slot; ``local`` makes
    an evaluator over columns; ``tables`` keeps what is worked out per distinct value between calls
    (its keys include the dictionary's length, so a grown dictionary is worked out again)."""
    n = len(customers)
    inputs: dict[str, np.ndarray] = {}
    part_names: dict[Node, str] = {}

    def column_name(values: np.ndarray) -> Name:
        name = f"__where_{len(inputs)}"
        inputs[name] = values
        return Name(0, (name,))

    def rewrite(node: Node) -> Node:
        if node in parts:
            if node not in part_names:
                part_names[node] = column_name(_gather(parts[node], customers)).parts[0]
            return Name(node.pos, (part_names[node],))
        props, customer = lang.where_split(node)
        if not props:
            return node  # a literal (customer parts were caught above)
        names = {p.parts[1] for p in props}
        if not customer and len(names) == 1:
            column = columns(next(iter(names)))
            if isinstance(column, Categorical):
                return column_name(_by_value(node, column, local, tables)[column.codes])
        if isinstance(node, Name):
            return column_name(_per_event(columns(node.parts[1]), tables, node.parts[1]))
        changes = {
            f.name: _rewrite_field(getattr(node, f.name), rewrite)
            for f in dataclasses.fields(node)
            if f.name != "pos"
        }
        return dataclasses.replace(node, **changes)

    residual = rewrite(where)
    if isinstance(residual, Name) and residual.parts[0] in inputs:
        column = inputs[residual.parts[0]]
        if column.dtype == bool:
            return column  # the whole filter was looked up by value (most filters): nothing left to do
    return local(CustomerFrame(n, np.ones(n, bool), inputs)).condition(residual)


def _rewrite_field(value: Any, rewrite: Callable[[Node], Node]) -> Any:
    if isinstance(value, Node):
        return rewrite(value)
    if isinstance(value, tuple):
        return tuple(_rewrite_field(v, rewrite) for v in value)
    return value


def _by_value(node: Node, column: Categorical, local: Local, tables: MutableMapping[Any, Any]) -> np.ndarray:
    """``node`` (reading one property) for each value of the column's dictionary, and null last: indexed
    by code, where code -1 (no value) reads the last entry."""
    key = ("where-values", node, id(column.values), len(column.values))
    table = tables.get(key)
    if table is None:
        values = _dictionary_column(column.values)
        props, _ = lang.where_split(node)
        names = {p: Name(p.pos, ("__value",)) for p in props}

        def swap(sub: Node) -> Node:
            if isinstance(sub, Name) and sub in names:
                return names[sub]
            if lang._is_aggregate_call(sub):
                return sub
            changes = {
                f.name: _rewrite_field(getattr(sub, f.name), swap)
                for f in dataclasses.fields(sub)
                if f.name != "pos"
            }
            return dataclasses.replace(sub, **changes) if changes else sub

        frame = CustomerFrame(len(values), np.ones(len(values), bool), {"__value": values})
        table = np.asarray(local(frame).values(swap(node)))
        if table.ndim == 0:
            table = np.full(len(values), table.item())
        tables[key] = table
    return table


def _per_event(column: Property, tables: MutableMapping[Any, Any], prop: str) -> np.ndarray:
    """A property's value on each event, as the filter reads it."""
    if not isinstance(column, Categorical):
        return column
    key = ("where-column", prop, id(column.values), len(column.values))
    values = tables.get(key)
    if values is None:
        values = tables[key] = _dictionary_column(column.values)
    return values[column.codes]


def _dictionary_column(values: np.ndarray) -> np.ndarray:
    """A property's distinct values followed by null, as one column: numbers (NaN for null) when every
    value is a number, else the values as they are (None for null), compared as the language compares
    text."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.tolist()):
        return np.append(np.asarray(values, dtype=np.float64), np.nan)
    out = np.empty(len(values) + 1, dtype=object)
    out[:-1] = values
    out[-1] = None
    return out


def _gather(values: np.ndarray, customers: np.ndarray) -> np.ndarray:
    """A customer-level column read at each event's customer (null for a slot past its end)."""
    values = np.asarray(values)
    if values.ndim == 0:
        return np.full(len(customers), values.item(), dtype=object if values.dtype == object else None)
    top = int(customers.max(initial=-1)) + 1
    if top > len(values):
        fill: Any = np.nan if values.dtype.kind == "f" else None
        grown = np.full(top, fill, dtype=values.dtype if values.dtype.kind in "fO" else object)
        grown[: len(values)] = values
        values = grown
    return values[customers]
