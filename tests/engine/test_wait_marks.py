"""Stepping that reads, of the instances parked at a ``wait_for``, only those of customers with a new event
since the last look (``engine._stepping.WaitMarks``) moves exactly as reading every parked instance does:
the same steps, instants, exits and captured properties, tick after tick of random events (late ones,
ones stamped ahead of the tick, purchases of other carts), across a restart, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from orchestrator.engine._entry import enter
from orchestrator.engine._signal_state import SignalState
from orchestrator.engine._stepping import WaitMarks, step_due
from orchestrator.engine._workspace import load_workspace
from orchestrator.signals import AggregateCache, CustomerFrame, Evaluator, EventFrame
from orchestrator.store import Store, open_store
from orchestrator.store._events import event_type_ids, insert_events

pytestmark = pytest.mark.backends("sqlite", "postgres")

JOURNEY = """\
id: carts
version: 1
entry: {event: add_to_cart, key: cart_id}
holdout: 20
steps:
  - id: bought
    wait_for:
      event: purchase
      match: {cart_id: entry.cart_id}
      timeout: 5h
      else: reminder
  - id: big
    branch:
      if: bought.amount >= 50
      then: thanks
  - exit: small purchase
  - id: thanks
    wait_for: {event: review, timeout: 3h, then: exit}
  - exit: no review
  - id: reminder
    send: {channel: email, subject: "Your cart", template: cart.txt}
reentry: never
"""
HOUR_US = 3600 * 1_000_000
START_US = 1_714_986_000 * 1_000_000
CUSTOMERS = 12


class Run:
    """One store stepped at every tick either with marks or reading every parked instance."""

    def __init__(self, store: Store, plan: Any, marked: bool) -> None:
        self.store, self.plan, self.marked = store, plan, marked
        self.restart()
        self.read = 0

    def restart(self) -> None:
        self.signals = SignalState([self.plan])
        self.marks = WaitMarks() if self.marked else None

    def tick(self, now_us: int) -> None:
        with self.store.connect() as conn:
            self.signals.refresh(conn, now_us)
        n = CUSTOMERS + 1
        customers = CustomerFrame(n, np.arange(n) > 0)
        cache = AggregateCache()
        self.signals.fill(cache)
        evaluator = Evaluator(EventFrame.empty(n), customers, now_us, self.plan.metrics, cache)
        with self.store.begin() as conn:
            enter(conn, self.plan, evaluator, now_us)
            stepped = step_due(conn, self.plan, evaluator, customers, self.signals, now_us, marks=self.marks)
        self.read += stepped.read

    def instances(self) -> list[tuple[Any, ...]]:
        with self.store.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, customer_key, entry_key, state, status, since_us, wake_at_us, exit_reason, data "
                "FROM journey_instances ORDER BY id"
            ).all()
        return [(*r[:-1], orjson.loads(r[-1]) if r[-1] else None) for r in rows]

    def messages(self) -> list[tuple[Any, ...]]:
        with self.store.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT idempotency_key, customer_key, created_us FROM messages ORDER BY 1"
                )
            ]


def random_events(rng: np.random.Generator, now_us: int) -> list[tuple[int, str, int, dict[str, Any]]]:
    """A tick's worth of events around ``now_us``: carts, purchases (of a cart of the customer's or not),
    reviews; most stamped in the hour before the tick, some late (hours before), some ahead of it."""
    out = []
    for _ in range(int(rng.integers(0, 12))):
        key = int(rng.integers(1, CUSTOMERS + 1))
        kind = str(rng.choice(["add_to_cart", "purchase", "purchase", "review"]))
        where = rng.random()
        if where < 0.15:
            ts = now_us - int(rng.integers(1, 6)) * HOUR_US + int(rng.integers(0, HOUR_US))  # late
        elif where < 0.25:
            ts = now_us + int(rng.integers(0, 2 * HOUR_US))  # ahead of the tick
        else:
            ts = now_us - int(rng.integers(1, HOUR_US))
        props: dict[str, Any] = {"cart_id": f"{key}-{int(rng.integers(0, 3))}"}
        if kind == "purchase":
            props["amount"] = float(rng.choice([20.0, 80.0]))
        out.append((key, kind, ts, props))
    return out


def add(store: Store, events: list[tuple[int, str, int, dict[str, Any]]]) -> None:
    if not events:
        return
    with store.begin() as conn:
        types = event_type_ids(conn, ["add_to_cart", "purchase", "review"])
        insert_events(
            conn,
            np.array([e[0] for e in events], np.int64),
            np.array([types[e[1]] for e in events], np.int64),
            np.array([e[2] for e in events], np.int64),
            [orjson.dumps(e[3]).decode() for e in events],
        )


def add_customers(store: Store) -> None:
    with store.begin() as conn:
        for k in range(1, CUSTOMERS + 1):
            conn.exec_driver_sql(
                "INSERT INTO customers (key, id, attributes, updated_us, record_us, revision) "
                f"VALUES ({k}, 'c{k}', '{{}}', 0, 0, 0)"
            )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reading_only_customers_with_new_events_moves_as_reading_them_all(
    make_store_url: Callable[[str], str], tmp_path: Path, seed: int
) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "journeys" / "carts.yaml").write_text(JOURNEY)
    (tmp_path / "templates" / "cart.txt").write_text("Your cart")
    plan = load_workspace([tmp_path / "journeys"]).plans[0]
    runs = [Run(open_store(make_store_url(f"{name}{seed}")), plan, marked) for name, marked in
            (("full", False), ("marked", True))]  # fmt: skip
    for run in runs:
        add_customers(run.store)
    rng = np.random.default_rng(seed)
    moved = set()
    for i in range(40):
        now_us = START_US + i * HOUR_US
        events = random_events(rng, now_us)
        for run in runs:
            add(run.store, events)
            if i == 20:
                run.restart()  # a new process: the first tick looks at every parked instance
            run.tick(now_us)
        full, marked = (run.instances() for run in runs)
        assert marked == full, f"tick {i}"
        moved |= {(r[3], r[4]) for r in full}
    assert runs[1].messages() == runs[0].messages()
    # What the runs went through: every way out of both waits, and captured purchases.
    assert {("exited", "exited"), ("completed", "completed"), ("bought", "active")} <= moved
    assert any(r[-1] and "bought" in r[-1] for r in runs[0].instances())
    # The marked run read fewer instances than the full one.
    assert runs[1].read < runs[0].read
    for run in runs:
        run.store.dispose()
