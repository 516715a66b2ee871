"""Dispatch with per-channel concurrency: a channel's provider calls run as wide as its concurrency (the
adapter's own, or the dispatch context's mapping), groups grow to fill those lanes on at_least_once
channels, and at_most_once channels keep the small group, so the rows in doubt after a crash stay bounded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.channels._base import ChannelRouter, DeliveryResult, OutgoingMessage
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.engine._dispatch import DispatchContext, DispatchReport, dispatch_queued
from orchestrator.store import Store
from orchestrator.testing import SimClock, World, at, write_files

JOURNEY = """\
id: texts
version: 1
segment: tier == "gold"
holdout: 0
steps:
  - id: first
    send: {channel: sms, template: t.txt}
"""


class Lanes(MemoryAdapter):
    """An SMS provider taking ``concurrency`` calls at once. The first ``gather`` calls wait until that
    many are in flight together (a barrier: they only pass when dispatch runs them side by side). Each
    call records how many ledger rows are marked ``sending`` and the most calls seen in flight."""

    def __init__(self, store: Store, concurrency: int, gather: int = 0) -> None:
        super().__init__(["sms"])
        self.store = store
        self.concurrency = concurrency
        self.gather = gather
        self.barrier = threading.Barrier(gather) if gather else None
        self.calls = 0
        self.in_flight = 0
        self.most = 0
        self.sending: list[int] = []
        self.count = threading.Lock()

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        with self.store.connect() as conn:
            (marked,) = conn.exec_driver_sql("SELECT COUNT(*) FROM messages WHERE status = 'sending'").one()
        with self.count:
            self.calls += 1
            first = self.calls <= self.gather
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.sending.append(int(marked))
        try:
            if first and self.barrier is not None:
                self.barrier.wait(timeout=20)
            return super().send(message)
        finally:
            with self.count:
                self.in_flight -= 1


def texts_world(tmp_path: Path, people: int) -> World:
    write_files(tmp_path, {"journeys/texts.yaml": JOURNEY, "templates/t.txt": "Hi"})
    rows = [
        {"id": f"c{i}", "tier": "gold", "phone": f"+1415555{i:04d}", "consent_sms": True}
        for i in range(people)
    ]
    made = World(tmp_path, clock=SimClock(at("2024-05-06T10:00:00Z")))
    made.add_customers(*rows)
    return made


def test_a_wide_provider_gets_its_calls_in_flight_together(tmp_path: Path) -> None:
    w = texts_world(tmp_path, 80)
    adapter = Lanes(w.store, concurrency=32, gather=32)
    w.engine.router = ChannelRouter([adapter])
    report = w.tick()
    assert report.delivery.delivered == 80 and len(adapter.sent) == 80
    assert adapter.most == 32  # 32 calls waited for each other: the lane is 32 wide
    # Groups grew to the lane's width: at most that many rows were ever marked in flight.
    assert max(adapter.sending) <= 128 and max(adapter.sending) >= 32


@pytest.mark.parametrize(("mode", "most_marked"), [("at_least_once", 128), ("at_most_once", 8)])
def test_the_context_mapping_sets_the_width_and_at_most_once_keeps_small_groups(
    tmp_path: Path, mode: str, most_marked: int
) -> None:
    w = texts_world(tmp_path, 40)
    w.engine.dispatch = lambda limit=None: DispatchReport()  # type: ignore[method-assign]
    w.tick()  # stepping only: 40 rows queued
    adapter = Lanes(w.store, concurrency=32)
    plan = w.engine.workspace.plans[0]
    context = DispatchContext(
        plan_for=lambda _j, _v: plan,
        renderer_for=w.engine.workspace.renderers.get,
        metrics_for=lambda _p: {},
        delivery={"sms": mode},  # type: ignore[dict-item]
        concurrency={"sms": 3},
    )
    report = dispatch_queued(w.store, ChannelRouter([adapter]), w.clock, context)
    assert report.delivered == 40 and len(adapter.sent) == 40
    assert adapter.most <= 3  # the mapping overrides the adapter's 32
    # A fast provider's at_least_once groups may grow to max_group; at_most_once ones stay at 8.
    assert max(adapter.sending) <= most_marked
