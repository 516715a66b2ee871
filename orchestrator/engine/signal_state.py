"""The engine's memory of behaviour between ticks: the event log and the aggregates kept on it.

At each tick the state reads only the events that arrived since the last one (by event id), appends
them to the log and advances every aggregate to the tick's instant. After a restart the first tick reads
everything again and rebuilds the same state: the store stays the only source of truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection

from orchestrator.signals import lang
from orchestrator.signals.evaluate import AggregateCache
from orchestrator.signals.frame import EventFrame
from orchestrator.signals.incremental import IncrementalAggregates
from orchestrator.signals.lang import Call
from orchestrator.signals.log import EventLog, property_uses
from orchestrator.spec.plan import JourneyPlan
from orchestrator.store.customers import max_key
from orchestrator.store.events import load_new_events


@dataclass
class Refresh:
    new_events: int
    load_seconds: float
    advance_seconds: float


class SignalState:
    """Every aggregate of a set of journeys, kept current over an in-memory event log."""

    def __init__(self, plans: Iterable[JourneyPlan] = ()) -> None:
        self._plans: dict[tuple[str, int], JourneyPlan] = {}
        self._numeric: set[str] = set()
        self._categorical: set[str] = set()
        self.log = EventLog()
        self.aggregates = IncrementalAggregates([], self.log)
        self.ensure(plans)

    def ensure(self, plans: Iterable[JourneyPlan]) -> None:
        """Cover these journeys too. A journey that reads a property the log does not hold yet means
        starting the log again (the next refresh reads all events)."""
        new = [p for p in plans if (p.id, p.version) not in self._plans]
        if not new:
            return
        for plan in new:
            self._plans[(plan.id, plan.version)] = plan
        calls = self._calls()
        numeric, categorical = property_uses(calls)
        for plan in self._plans.values():
            goal = plan.journey.goal
            if goal is not None and goal.revenue:
                numeric.add(goal.revenue)
        if numeric - self._numeric or categorical - self._categorical or not self.log.segments:
            self._numeric |= numeric
            self._categorical |= categorical
            self.log = EventLog(self._numeric, self._categorical)
        self.aggregates = IncrementalAggregates(calls, self.log)

    def _calls(self) -> list[Call]:
        return list(
            dict.fromkeys(
                call
                for plan in self._plans.values()
                for node in plan.expressions()
                for call in lang.aggregates(node)
            )
        )

    def refresh(self, conn: Connection, now_us: int) -> Refresh:
        """Read the events that arrived since the last refresh and advance every aggregate to ``now_us``."""
        started = time.perf_counter()
        frame, last_id = load_new_events(conn, self.log.last_id, self.log.numeric + self.log.categorical)
        frame.n_customers = max(frame.n_customers, max_key(conn) + 1)
        loaded = time.perf_counter()
        segment = self.log.append_frame(frame, last_id)
        self.aggregates.advance(segment, now_us)
        return Refresh(len(frame), loaded - started, time.perf_counter() - loaded)

    @property
    def n_customers(self) -> int:
        return self.log.n_customers

    def fill(self, cache: AggregateCache) -> None:
        self.aggregates.fill(cache)

    def events(self, start_us: int | None, end_us: int) -> EventFrame:
        """Events with ``start_us <= ts < end_us`` from the log."""
        return self.log.frame(self.log.range(start_us, end_us))
