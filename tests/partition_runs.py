"""Engine processes sharing one PostgreSQL store by partitions, driven tick by tick from the test.

The parent writes each tick's events to the store (as the API or an ingest would, to no worker in
particular), then tells every live worker to tick at the same simulated instant and waits for each to
finish; so one process and several, fed the same events, tick the same instants and can be compared row
for row. A worker can be killed mid-tick (SIGKILL); the survivors then tick again at the same instant until
they hold every partition (the dead worker's leases ran out), which is what a real deployment does at its
next ticks.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import open_store
from orchestrator.store._customers import upsert_customers
from orchestrator.store._events import event_type_ids, insert_events

#: A condition entry over the signal state (two visits in a day), with a holdout and two sends.
ACTIVE = """\
id: active
version: 1
signal: count(visit, within=1d) >= 2
segment: cohort == "w"
holdout: 20
steps:
  - id: hello
    send: {channel: webhook, endpoint: crm, template: m.json}
  - wait: 2h
  - id: again
    send: {channel: webhook, endpoint: crm, template: m.json}
goal:
  event: purchase
  within: 1d
"""

#: An event entry per cart, parked on a wait_for matched on the cart, with a goal matched on it too.
CARTS = """\
id: carts
version: 1
entry:
  event: add_to_cart
  key: cart_id
holdout: 10
steps:
  - id: bought
    wait_for:
      event: purchase
      match: {cart_id: entry.cart_id}
      timeout: 3h
      then: exit
  - id: reminder
    send: {channel: webhook, endpoint: crm, template: m.json}
goal:
  event: purchase
  within: 1d
  match: {cart_id: entry.cart_id}
  revenue: amount
reentry: never
"""

#: A segment alone (customer attributes, no events): every worker sees every customer's attributes.
WELCOME = """\
id: welcome
version: 1
segment: cohort == "x"
holdout: 50
steps:
  - id: welcome
    send: {channel: webhook, endpoint: crm, template: m.json}
"""

HOUR_US = 3_600_000_000


def write_workspace(folder: Path) -> Path:
    (folder / "journeys").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "journeys" / "active.yaml").write_text(ACTIVE)
    (folder / "journeys" / "carts.yaml").write_text(CARTS)
    (folder / "journeys" / "welcome.yaml").write_text(WELCOME)
    (folder / "templates" / "m.json").write_text('{"customer": "{{ customer.id }}"}\n')
    return folder / "journeys"


def add_customers(url: str, n: int, now: datetime) -> None:
    store = open_store(url)
    try:
        with store.begin() as conn:
            rows = [{"id": f"c{k}", "cohort": "w" if k % 7 else "x"} for k in range(n)]
            upsert_customers(conn, rows, now_us=to_us(now))
    finally:
        store.dispose()


def tick_events(seed: int, n_customers: int, now_us: int) -> list[tuple[int, str, int, dict[str, Any]]]:
    """The events that reach the store before the tick at ``now_us``: visits, carts and purchases of
    carts, stamped in the hour before it (a few ahead of it, which event entry keeps pending)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, str, int, dict[str, Any]]] = []
    for _ in range(n_customers):
        key = int(rng.integers(1, n_customers + 1))  # keys are dense from 1 in a fresh store
        kind = str(rng.choice(["visit", "visit", "add_to_cart", "purchase"]))
        ts = now_us - int(rng.integers(1, HOUR_US))
        if rng.random() < 0.05:
            ts = now_us + int(rng.integers(1, HOUR_US // 2))  # arrives ahead of its time
        props: dict[str, Any] = {}
        if kind in ("add_to_cart", "purchase"):
            props["cart_id"] = f"{key}-{int(rng.integers(0, 2))}"
        if kind == "purchase":
            props["amount"] = float(rng.choice([20.0, 80.0]))
        out.append((key, kind, ts, props))
    return out


def add_events(url: str, events: list[tuple[int, str, int, dict[str, Any]]]) -> None:
    store = open_store(url)
    try:
        with store.begin() as conn:
            types = event_type_ids(conn, ["visit", "add_to_cart", "purchase"])
            insert_events(
                conn,
                np.array([e[0] for e in events], np.int64),
                np.array([types[e[1]] for e in events], np.int64),
                np.array([e[2] for e in events], np.int64),
                [orjson.dumps(e[3]).decode() for e in events],
            )
    finally:
        store.dispose()


def outcome(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the runs must agree on, by customer id (ids of rows differ between runs)."""
    store = open_store(url)
    queries = {
        "instances": "SELECT i.journey_id, c.id, i.entered_us, i.holdout, i.status, i.state, i.exited_us, "
        "i.exit_reason, i.entry_key FROM journey_instances i JOIN customers c ON c.key = i.customer_key",
        "messages": "SELECT m.journey_id, c.id, m.step, m.channel, m.status, m.created_us FROM messages m "
        "JOIN customers c ON c.key = m.customer_key",
        "conversions": "SELECT v.journey_id, c.id, v.holdout, v.entered_us, v.converted_us, v.revenue "
        "FROM conversions v JOIN customers c ON c.key = v.customer_key",
        "assignments": "SELECT h.journey_id, c.id, h.arm FROM holdout_assignments h "
        "JOIN customers c ON c.key = h.customer_key",
        "members": "SELECT s.journey_id, c.id FROM signal_members s "
        "JOIN customers c ON c.key = s.customer_key",
    }
    try:
        with store.connect() as conn:
            return {name: sorted(map(tuple, conn.execute(text(sql)).all())) for name, sql in queries.items()}
    finally:
        store.dispose()


@dataclass
class Reply:
    worker: int
    tick: int
    partitions: int  # how many it held at this tick
    delivered: list[str]  # ledger keys its provider took at this tick
    error: str | None = None


def worker_main(
    index: int,
    url: str,
    journeys: str,
    start: datetime,
    partitions: int,
    lease_seconds: float,
    commands: Any,
    replies: Any,
) -> None:
    """One engine process: joins, then ticks at each instant the parent sends, until told to stop."""
    store = open_store(url)
    provider = MemoryAdapter()
    clock = SimulatedClock(start)
    engine = Engine(
        store,
        load_workspace([journeys]),
        ChannelRouter([provider]),
        clock,
        partitions=partitions,
        lease_seconds=lease_seconds,
    )
    engine.join()
    replies.put(("ready", index))
    while True:
        command = commands.get()
        if command is None:
            break
        number, now_us = command
        clock.advance(timedelta(microseconds=now_us - to_us(clock.now())))
        replies.put(("started", index))
        sent_before = len(provider.sent)
        error = None
        try:
            engine.tick()
        except Exception as exc:  # reported to the parent, which fails the test
            error = f"{type(exc).__name__}: {exc}"
        own = engine.sharing.ownership if engine.sharing is not None else None
        held = partitions if own is None else len(own.partitions)
        keys = [m.idempotency_key for m in provider.sent[sent_before:]]
        replies.put(("done", Reply(index, number, held, keys, error)))
    engine.leave()
    store.dispose()


class Workers:
    """``n`` worker processes on one store, ticked together by ``tick``."""

    def __init__(
        self, url: str, journeys: Path, start: datetime, n: int, partitions: int, lease_seconds: float
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.replies = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(
                target=worker_main,
                args=(
                    i,
                    url,
                    str(journeys),
                    start,
                    partitions,
                    lease_seconds,
                    self.commands[i],
                    self.replies,
                ),
            )
            for i in range(n)
        ]
        self.partitions = partitions
        self.live = set(range(n))
        self.delivered: list[str] = []
        for p in self.procs:
            p.start()
        ready = {self._get("ready") for _ in self.procs}
        assert ready == self.live

    def _get(self, kind: str) -> Any:
        while True:
            got, value = self.replies.get(timeout=120)
            if got == kind:
                return value

    def tick(self, number: int, now_us: int, kill: int | None = None, kill_after: float = 0.0) -> list[Reply]:
        """Every live worker ticks at ``now_us``; with ``kill``, that worker is killed ``kill_after``
        seconds after it started the tick. Returns the survivors' replies."""
        for i in sorted(self.live):
            self.commands[i].put((number, now_us))
        expected = set(self.live)
        if kill is not None:
            started: set[int] = set()
            while kill not in started:
                started.add(self._get("started"))
            time.sleep(kill_after)
            os.kill(self.procs[kill].pid or 0, signal.SIGKILL)
            self.procs[kill].join(timeout=30)
            self.live.discard(kill)
            expected.discard(kill)
        replies: list[Reply] = []
        while len(replies) < len(expected):
            try:
                got, value = self.replies.get(timeout=300)
            except queue.Empty:
                raise AssertionError("a worker did not finish its tick") from None
            if got == "done" and value.worker in expected:
                replies.append(value)
        for r in replies:
            assert r.error is None, r.error
            self.delivered.extend(r.delivered)
        return replies

    def tick_until_whole(self, number: int, now_us: int, deadline_s: float) -> int:
        """Tick the survivors at ``now_us`` again and again until together they hold every partition (a
        dead worker's leases must run out first); how many ticks it took."""
        ended = time.monotonic() + deadline_s
        rounds = 0
        while True:
            rounds += 1
            replies = self.tick(number, now_us)
            if sum(r.partitions for r in replies) == self.partitions:
                return rounds
            assert time.monotonic() < ended, "the dead worker's partitions were never taken over"
            time.sleep(0.5)

    def stop(self) -> None:
        for i in sorted(self.live):
            self.commands[i].put(None)
        for p in self.procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
