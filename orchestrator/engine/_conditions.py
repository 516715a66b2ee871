"""Branch conditions that read an instance's own values (``entry.cart_total``, ``response.score``).

Most of an expression is about the customer and is evaluated for every customer at once by the journey's
evaluator. Only the parts that read instance values differ between two instances of one customer. So each
largest part that reads no instance value is evaluated per customer and gathered by the instances'
customer keys, and what is left (operators over instance values and those gathered columns) is evaluated
over the instances. Functions of the whole population (``quintile``) thus still rank every customer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from orchestrator.signals import AggregateCache, CustomerFrame, Evaluator, EventFrame
from orchestrator.signals import _lang as lang


def _reads_instance(node: Any, names: frozenset[str]) -> bool:
    if isinstance(node, tuple):
        return any(_reads_instance(v, names) for v in node)
    if isinstance(node, lang.Name):
        return node.dotted in names
    if isinstance(node, lang.Node):
        return any(_reads_instance(getattr(node, f.name), names) for f in dataclasses.fields(node))
    return False


def _reads_data(node: Any) -> bool:
    """Whether a customer-level part depends on customer data at all (else it is a literal)."""
    if isinstance(node, tuple):
        return any(_reads_data(v) for v in node)
    if isinstance(node, lang.Name | lang.Call):
        return True
    if isinstance(node, lang.Node):
        return any(_reads_data(getattr(node, f.name)) for f in dataclasses.fields(node))
    return False


def instance_condition(
    node: lang.Node,
    names: frozenset[str],
    evaluator: Evaluator,
    keys: np.ndarray,
    values: dict[str, np.ndarray],
    now_us: int,
) -> np.ndarray:
    """Where ``node`` holds for each instance (customer ``keys``, instance ``values`` by name)."""
    columns: dict[str, np.ndarray] = dict(values)

    def split(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(split(v) for v in value)
        if not isinstance(value, lang.Node):
            return value
        if not _reads_instance(value, names):
            if not _reads_data(value):
                return value
            name = f"__customer_{len(columns)}"
            columns[name] = evaluator.values(value)[keys]
            return lang.Name(value.pos, (name,))
        if isinstance(value, lang.Name):
            return value
        changes = {f.name: split(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)

    residual = split(node)
    n = len(keys)
    frame = CustomerFrame(n=n, exists=np.ones(n, bool), columns=columns)
    local = Evaluator(EventFrame.empty(n), frame, now_us, {}, AggregateCache())
    return local.condition(residual)
