"""How far a condition's value may move with time alone over the coming *horizon*: interval arithmetic.

A kept condition (``kept_conditions``) is re-evaluated at each tick only for customers whose inputs changed
and for those whose result time alone may change before the horizon ends: the *volatile* ones. This module
works out the latter. Time moves a ``since`` value (and cuts off a ``since``/``last`` at its window's
start); everything else is constant over the horizon unless an event or an attribute changes it, which the
caller learns otherwise.

Interval rules (``Span``): a number's span is ``[lo, hi]`` over the horizon (NaN: null throughout);
``since`` and ``since_first`` grow by the horizon's length; aggregates over a calendar period are
volatile (their bounds jump at local midnights); other aggregates and attributes are constant; arithmetic,
``min``/``max``/``abs``, monotone built-ins and comparisons follow interval arithmetic; ``and``/``or``
know that a constant false (true) operand decides; anything else is volatile wherever an input may vary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.signals import _builtin_values as builtin_values
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import Evaluator
from orchestrator.signals._incremental import IncrementalAggregates, Rows
from orchestrator.signals._lang import Binary, Call, Name, Node, Unary

DEFAULT_HORIZON_US = 6 * 3600 * US_PER_SECOND
# Increasing functions of one number, applied to a span's ends.
_MONOTONE = {"_days": builtin_values.days}


@dataclass
class Span:
    """A value over the horizon, per customer: ``lo``/``hi`` bound a number (None: not a number, or no
    bound known) and ``varies`` marks customers whose value may change."""

    varies: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


class Spans:
    """Spans of the nodes of one condition, for the customers an ``Evaluator`` covers."""

    def __init__(
        self, evaluator: Evaluator, aggregates: IncrementalAggregates, rows: Rows | None, length_us: int
    ) -> None:
        self.ev, self.aggregates, self.rows = evaluator, aggregates, rows
        self.n = evaluator.n
        self.length_us = length_us
        self._metrics: dict[str, Span] = {}

    def value(self, node: Node) -> np.ndarray:
        return self.ev.values(node)

    def constant(self, node: Node) -> Span:
        values = self.value(node)
        none = np.zeros(self.n, bool)
        if values.dtype.kind in "fiub":
            numbers = values.astype(np.float64)
            return Span(none, numbers, numbers)
        return Span(none)

    def span(self, node: Node) -> Span:
        if isinstance(node, lang.Number | lang.Duration | lang.Boolean | lang.String | lang.Null):
            return self.constant(node)
        if isinstance(node, Name):
            name = node.parts[0]
            if name in self.ev.metrics:
                if name not in self._metrics:
                    self._metrics[name] = self.span(self.ev.metrics[name])
                return self._metrics[name]
            return self.constant(node)  # an attribute: changes are the caller's to report
        if isinstance(node, Unary):
            inner = self.span(node.operand)
            if node.op == "not" or inner.lo is None or inner.hi is None:
                return Span(inner.varies.copy())
            return Span(inner.varies.copy(), -inner.hi, -inner.lo)
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, Call):
            return self._call(node)
        return Span(np.ones(self.n, bool))

    def _binary(self, node: Binary) -> Span:
        op = node.op
        if op in ("and", "or"):
            left, right = self.span(node.left), self.span(node.right)
            lv = self.ev.condition(node.left)
            rv = self.ev.condition(node.right)
            if op == "and":  # a side that is false throughout decides
                decided = (~left.varies & ~lv) | (~right.varies & ~rv)
            else:
                decided = (~left.varies & lv) | (~right.varies & rv)
            return Span((left.varies | right.varies) & ~decided)
        left, right = self.span(node.left), self.span(node.right)
        varies = left.varies | right.varies
        if op in ("in", "==", "!=") and (
            op == "in" or isinstance(node.left, lang.Null) or isinstance(node.right, lang.Null)
        ):
            return Span(varies)
        if left.lo is None or left.hi is None or right.lo is None or right.hi is None:
            return Span(varies)
        a0, a1, b0, b1 = left.lo, left.hi, right.lo, right.hi
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            null = np.isnan(a0) | np.isnan(a1) | np.isnan(b0) | np.isnan(b1)
            if op in ("<", "<=", ">", ">=", "==", "!="):
                if op in ("<", "<="):
                    decided = (a1 < b0) | (a0 >= b1) if op == "<" else (a1 <= b0) | (a0 > b1)
                elif op in (">", ">="):
                    decided = (a0 > b1) | (a1 <= b0) if op == ">" else (a0 >= b1) | (a1 < b0)
                else:
                    decided = ((a0 == a1) & (b0 == b1)) | (a1 < b0) | (b1 < a0)
                return Span(varies | ~(decided | null))  # null throughout: false throughout
            if op == "+":
                lo, hi = a0 + b0, a1 + b1
            elif op == "-":
                lo, hi = a0 - b1, a1 - b0
            elif op == "*":
                products = np.stack([a0 * b0, a0 * b1, a1 * b0, a1 * b1])
                lo, hi = products.min(axis=0), products.max(axis=0)
            elif op == "/":
                crosses = (b0 <= 0) & (b1 >= 0) & ~((b0 == 0) & (b1 == 0))
                quotients = np.stack([a0 / b0, a0 / b1, a1 / b0, a1 / b1])
                lo, hi = quotients.min(axis=0), quotients.max(axis=0)
                varies = varies | crosses
                zero = (b0 == 0) & (b1 == 0)
                lo, hi = np.where(zero, np.nan, lo), np.where(zero, np.nan, hi)
            else:
                return Span(varies)
        # inf - inf and 0 * inf give NaN where the value is not null: no bound is known there.
        lost = (np.isnan(lo) | np.isnan(hi)) & ~null
        return Span(varies | lost, np.where(null, np.nan, lo), np.where(null, np.nan, hi))

    def _call(self, call: Call) -> Span:
        spec = lang.FUNCTIONS[call.func]
        if spec.kind == "events" or lang.is_property_aggregate(call):
            return self._aggregate(call)
        args = [self.span(a) for a in call.args]
        varies = np.zeros(self.n, bool)
        for arg in args:
            varies |= arg.varies
        numeric = all(a.lo is not None and a.hi is not None for a in args)
        if call.func in ("min", "max") and numeric and args:
            fold = np.fmin if call.func == "min" else np.fmax
            lo, hi = args[0].lo, args[0].hi
            for arg in args[1:]:
                assert lo is not None and hi is not None and arg.lo is not None and arg.hi is not None
                lo, hi = fold(lo, arg.lo), fold(hi, arg.hi)
            return Span(varies, lo, hi)
        if call.func == "abs" and numeric and len(args) == 1:
            lo, hi = args[0].lo, args[0].hi
            assert lo is not None and hi is not None
            low = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0))
            return Span(varies, low, np.fmax(np.abs(lo), np.abs(hi)))
        if call.func in _MONOTONE and numeric and len(args) == 1:
            f = _MONOTONE[call.func]
            lo, hi = args[0].lo, args[0].hi
            assert lo is not None and hi is not None
            return Span(varies, f(lo), f(hi))
        if call.func == "coalesce" and numeric:
            # Which argument is taken depends on which are null; constant where no argument varies.
            lo, hi = args[-1].lo, args[-1].hi
            assert lo is not None and hi is not None
            for arg in reversed(args[:-1]):
                assert arg.lo is not None and arg.hi is not None
                null = np.isnan(arg.lo) & np.isnan(arg.hi)
                lo, hi = np.where(null, lo, arg.lo), np.where(null, hi, arg.hi)
            return Span(varies, lo, hi)
        if not varies.any():
            return self.constant(call)
        return Span(varies)  # anything else: may change wherever an input may

    def _aggregate(self, call: Call) -> Span:
        none = np.zeros(self.n, bool)
        if lang.period_of(call) is not None:
            # Calendar periods jump at each customer's local midnights: volatile throughout (they are
            # recomputed at each tick, which forces a full evaluation anyway).
            return Span(np.ones(self.n, bool))
        if call.func == "since_first":
            now = self.value(call)
            if call.kwarg("within") is not None:  # the earliest event may leave the window
                return Span(np.ones(self.n, bool))
            return Span(none, now, np.where(np.isinf(now), now, now + self.length_us / US_PER_SECOND))
        if call.func not in ("since", "last"):
            return self.constant(call)  # changes only when events enter or leave its window: touched
        if lang.where_parts(call):
            return Span(np.ones(self.n, bool))  # a filter on the customer's values: evaluated every tick
        last, start = self.aggregates.last_times(call, self.rows)
        varies = none
        if start is not None:  # the window's start passes the latest event: the value becomes null
            varies = (last >= start) & (last < start + self.length_us)
        if call.func == "last":
            value = self.value(call)
            if value.dtype == object:  # text: no bounds, only whether the window's start cuts it off
                return Span(varies)
            return Span(varies, *(2 * [value.astype(np.float64)]))
        now = self.value(call)
        return Span(varies, now, np.where(np.isinf(now), now, now + self.length_us / US_PER_SECOND))
