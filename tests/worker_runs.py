"""Several engine processes ticking against one PostgreSQL store, for the worker tests and
``benchmarks/workers.py``.

Each process builds its own Engine (its own connections, its own signal state, its own worker identity),
waits on a barrier so that all start together, runs its ticks on a simulated clock and reports what it
stepped and delivered. Each has its own in-memory provider; the parent checks across them.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import insert_instances, open_store
from orchestrator.store._customers import upsert_customers

#: Two sends an hour apart: stepping an instance twice at one step would queue a second ledger row.
JOURNEY = """\
id: shared
version: 1
entry:
  segment: cohort == "w"
holdout: 0
steps:
  - id: hello
    send:
      channel: webhook
      endpoint: crm
      template: m.json
  - id: pause
    wait: 1h
  - id: again
    send:
      channel: webhook
      endpoint: crm
      template: m.json
"""


def write_journey(folder: Path) -> Path:
    (folder / "journeys").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "journeys" / "shared.yaml").write_text(JOURNEY)
    (folder / "templates" / "m.json").write_text('{"customer": "{{ customer.id }}"}\n')
    return folder / "journeys"


def add_customers(url: str, n: int, now: datetime) -> None:
    store = open_store(url)
    try:
        for first in range(0, n, 50_000):
            with store.begin() as conn:
                rows = [{"id": f"c{k}", "cohort": "w"} for k in range(first, min(first + 50_000, n))]
                upsert_customers(conn, rows, now_us=to_us(now))
    finally:
        store.dispose()


def add_due_instances(url: str, journeys: Path, n: int, now: datetime) -> None:
    """``n`` instances at the first step, due at ``now``, written directly (no entry work in the run)."""
    store = open_store(url)
    try:
        plan = load_workspace([journeys]).plans[0]
        with store.begin() as conn:
            keys = np.arange(1, n + 1, dtype=np.int64)  # customer keys are dense from 1 in a fresh store
            insert_instances(conn, plan.id, plan.version, keys, np.zeros(n, bool), "hello", to_us(now))
    finally:
        store.dispose()


@dataclass
class WorkerResult:
    worker: str
    ticks: int
    stepped: int
    delivered: list[str]  # idempotency keys this process's provider delivered
    attempts: int
    seconds: float  # from the barrier to the end of the last tick
    dispatch_seconds: float  # of which handing messages to the provider
    error: str | None = None


def tick_worker(
    url: str,
    journeys: str,
    start: datetime,
    step: timedelta,
    ticks: int,
    batch: int,
    barrier: Any,
    results: Any,
) -> None:
    """One worker process: ``ticks`` ticks from ``start``, ``step`` apart; puts a WorkerResult."""
    store = open_store(url)
    provider = MemoryAdapter()
    clock = SimulatedClock(start)
    engine = Engine(store, load_workspace([journeys]), ChannelRouter([provider]), clock)
    assert engine.sharing is not None, "workers share PostgreSQL stores only"
    engine.sharing.batch = batch
    # Each worker runs its own simulated clock, which may fall behind another's by the whole run (on wall
    # clocks workers differ by milliseconds): the check against a clock that stepped back allows that.
    engine.clock_skew_us = to_us(start + ticks * step) - to_us(start)
    barrier.wait()
    began = time.perf_counter()
    stepped = done = 0
    dispatch_seconds = 0.0
    error = None
    try:
        for _ in range(ticks):
            report = engine.tick()
            stepped += sum(j.stepped for j in report.journeys.values())
            dispatch_seconds += report.timings.get("dispatch", 0.0)
            done += 1
            clock.advance(step)
    except Exception as exc:  # reported to the parent, which fails the test
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - began
    results.put(
        WorkerResult(
            engine.sharing.worker,
            done,
            stepped,
            [m.idempotency_key for m in provider.sent],
            len(provider.attempts),
            seconds,
            dispatch_seconds,
            error,
        )
    )
    store.dispose()


def run_workers(
    url: str, journeys: Path, n_workers: int, start: datetime, step: timedelta, ticks: int, batch: int
) -> tuple[list[WorkerResult], float]:
    """Run ``n_workers`` processes together; their results and the wall time from the common start to the
    last one's end."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n_workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=tick_worker, args=(url, str(journeys), start, step, ticks, batch, barrier, results)
        )
        for _ in range(n_workers)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    began = time.perf_counter()
    out = [results.get(timeout=600) for _ in procs]
    wall = max(r.seconds for r in out) if out else time.perf_counter() - began
    for p in procs:
        p.join(timeout=60)
    return out, wall
