"""Conditions kept between ticks, re-evaluated only where they may have changed.

A condition's value for a customer changes between two ticks for one of three reasons: an event entered
or left one of its aggregates' windows (the incremental aggregates report those customers as *touched*),
an attribute it reads changed (the caller says which customers), or time alone moved a ``since`` value
(or cut off a ``since``/``last`` at its window's start). The first two are known at each tick. For the
third, a full evaluation also works out, by interval arithmetic over the coming *horizon*, which
customers' results could change with time alone before it ends; only those are *volatile*.

So each tick re-evaluates touched, changed, volatile and new customers, and a full evaluation happens
once per horizon (and whenever something is not tracked: a clock that steps back, a missed tick, a
population function such as ``quintile`` whose value depends on everyone, an aggregate rebuilt from
scratch). The results are always those of a full evaluation; the tests compare them tick after tick.

Which customers are volatile is worked out in ``horizon`` (interval arithmetic over the horizon).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame
from orchestrator.signals._horizon import DEFAULT_HORIZON_US, Spans
from orchestrator.signals._incremental import IncrementalAggregates, Rows
from orchestrator.signals._lang import Call, Node

POPULATION_FUNCTIONS = frozenset({"quintile"})


@dataclass
class _Kept:
    node: Node
    result: np.ndarray
    volatile: np.ndarray
    until_us: int
    now_us: int
    generation: int
    attributes: tuple[str, ...] = field(default_factory=tuple)


class IncrementalConditions:
    """Conditions over one set of incremental aggregates, each kept under a caller's key."""

    def __init__(self, aggregates: IncrementalAggregates, horizon_us: int = DEFAULT_HORIZON_US) -> None:
        self.aggregates = aggregates
        self.horizon_us = horizon_us
        self._kept: dict[Any, _Kept] = {}
        self.full_evaluations = 0
        self.rows_evaluated = 0

    def condition(
        self,
        key: Any,
        node: Node,
        customers: CustomerFrame,
        metrics: Mapping[str, Node] | None = None,
        changed: np.ndarray | None = None,
    ) -> np.ndarray:
        """Where ``node`` holds for every customer slot at the aggregates' instant (what
        ``Evaluator.condition`` gives). ``changed``: keys of customers whose attributes changed since the
        previous call with this key (None: unknown, so every customer reading attributes is re-read)."""
        metrics = dict(metrics or {})
        aggs = self.aggregates
        now_us, n = aggs.now_us, customers.n
        kept = self._kept.get(key)
        reads = _reads(node, metrics)
        touched = None
        if (
            kept is not None
            and kept.node == node
            and kept.generation == aggs.generation - 1
            and kept.now_us <= now_us <= kept.until_us
            and not (reads.attributes and changed is None)
            and reads.tracked(aggs)
        ):
            touched = aggs.touched_by(reads.calls)
        if touched is None:
            until_us = now_us + self.horizon_us
            result, volatile = self._evaluate(node, reads, metrics, customers, None, until_us)
            self._kept[key] = _Kept(node, result, volatile, until_us, now_us, aggs.generation)
            self.full_evaluations += 1
            self.rows_evaluated += n
            return result.copy()
        assert kept is not None
        # The kept arrays are this object's own: update them in place where their length allows.
        result, volatile = _sized(kept.result, n), _sized(kept.volatile, n)
        dirty = volatile.copy()
        reach = min(n, len(touched))
        dirty[:reach] |= touched[:reach]
        dirty[len(kept.result) :] = True
        if changed is not None and reads.attributes:
            dirty[changed[changed < n]] = True
        rows = np.flatnonzero(dirty)
        if len(rows):
            result[rows], volatile[rows] = self._evaluate(
                node, reads, metrics, customers, rows, kept.until_us
            )
        kept.result, kept.volatile, kept.now_us, kept.generation = result, volatile, now_us, aggs.generation
        self.rows_evaluated += len(rows)
        return result.copy()

    # -------------------------------------------------------------------------------------- evaluation

    def _evaluate(
        self,
        node: Node,
        reads: _Reads,
        metrics: Mapping[str, Node],
        customers: CustomerFrame,
        rows: np.ndarray | None,
        until_us: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The condition for ``rows`` (None: every slot), and where time alone may change it by
        ``until_us``."""
        frame = customers if rows is None else _subset(customers, rows)
        picked = None if rows is None else Rows(rows)  # each base gathered once for these rows
        cache = AggregateCache()
        cache.compute = self.aggregates.filtered  # for filters on the customer's values (never kept)
        for call in reads.calls:  # every aggregate the condition reads, through its metrics too
            if not lang.where_parts(call):
                cache.values[call] = self.aggregates.value(call, picked)
        evaluator = Evaluator(EventFrame.empty(frame.n), frame, self.aggregates.now_us, metrics, cache)
        result = evaluator.condition(node)
        if not reads.timed:
            return result, np.zeros(len(result), bool)  # only events and attributes change it
        evaluator.memo = {}  # the spans ask for the value of every nested node
        spans = Spans(evaluator, self.aggregates, picked, max(0, until_us - self.aggregates.now_us))
        return result, spans.span(node).varies


# ------------------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class _Reads:
    calls: tuple[Call, ...]
    attributes: tuple[str, ...]
    population: bool

    @property
    def timed(self) -> bool:
        """Whether time alone changes the value (a ``since``, ``since_first``, a windowed ``last``, or a
        calendar period)."""
        return any(
            call.func in ("since", "since_first", "last") or lang.period_of(call) is not None
            for call in self.calls
        )

    def tracked(self, aggregates: IncrementalAggregates) -> bool:
        """Whether every change to the condition's inputs is reported by the aggregates."""
        return not self.population and all(aggregates.tracks(call) for call in self.calls)


def _reads(node: Node, metrics: Mapping[str, Node]) -> _Reads:
    calls: list[Call] = []
    attributes: list[str] = []
    population = False
    seen: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        for sub in lang.walk(current):
            if isinstance(sub, Call) and sub.func in POPULATION_FUNCTIONS:
                population = True
        calls.extend(lang.aggregates(current))
        for name in lang.free_names(current):
            head = name.parts[0]
            if head in metrics:
                if head not in seen:
                    seen.add(head)
                    stack.append(metrics[head])
            else:
                attributes.append(head)
    return _Reads(tuple(dict.fromkeys(calls)), tuple(dict.fromkeys(attributes)), population)


def _subset(customers: CustomerFrame, rows: np.ndarray) -> CustomerFrame:
    return CustomerFrame(
        len(rows), customers.exists[rows], {name: col[rows] for name, col in customers.columns.items()}
    )


def _sized(values: np.ndarray, n: int) -> np.ndarray:
    """``values`` itself when it has ``n`` entries; otherwise cut to ``n``, or grown with zeros."""
    if len(values) == n:
        return values
    if len(values) > n:
        return values[:n].copy()
    out = np.zeros(n, values.dtype)
    out[: len(values)] = values
    return out
