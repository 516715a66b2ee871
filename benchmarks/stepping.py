#!/usr/bin/env python3
"""Stepping due instances in bulk: N instances through one ``send -> wait`` step on a SQLite store.

    python benchmarks/stepping.py --instances 100000 [--signals] [--workdir DIR]

1. Creates N customers (with an email address and a first name) and N instances of a two-step journey
   (``send`` an email, then ``wait: 3d``), all due now, in a fresh SQLite file. Not timed.
2. Times one stepping run in one transaction, commit included: read the due instances, move them through
   the transition table, render N emails in the template sandbox, write N ledger rows and N state changes.
   The same run is split into read / step / render / write.
3. With ``--signals``: generates the reference workload for the same N customers (``refbench.generate``
   from ``../shared/bench``, about 20 events per customer), loads it into the engine's event log in memory
   and times the engine's evaluation of the five reference signals (the median of three, as in
   ``benchmarks/signals.py``), so stepping can be read as a ratio to it.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.engine.signal_state import SignalState  # noqa: E402
from orchestrator.engine.stepping import Stepper  # noqa: E402
from orchestrator.engine.workspace import load_workspace  # noqa: E402
from orchestrator.signals.evaluate import AggregateCache, Evaluator  # noqa: E402
from orchestrator.signals.frame import Categorical, CustomerFrame, EventFrame  # noqa: E402
from orchestrator.signals.incremental import IncrementalAggregates  # noqa: E402
from orchestrator.store import journeys as sj  # noqa: E402
from orchestrator.store import open_store, sqlite_url  # noqa: E402
from orchestrator.store.customers import upsert_customers  # noqa: E402

JOURNEY = """\
id: bench
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: hello
    send:
      channel: email
      subject: "Hello {{ customer.first_name }}"
      template: hello.txt
  - id: pause
    wait: 3d
"""
NOW_US = 1_700_006_400 * 1_000_000


def setup(workdir: Path, n: int) -> tuple[Any, Any]:
    (workdir / "journeys").mkdir(parents=True, exist_ok=True)
    (workdir / "templates").mkdir(exist_ok=True)
    (workdir / "journeys" / "bench.yaml").write_text(JOURNEY)
    (workdir / "templates" / "hello.txt").write_text("Hi {{ customer.first_name }}, welcome in.\n")
    db = workdir / "bench.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    store = open_store(sqlite_url(db))
    workspace = load_workspace([workdir / "journeys"])
    plan = workspace.plans[0]
    for first in range(1, n + 1, 100_000):
        with store.begin() as conn:
            rows = [
                {"id": f"c{k}", "email": f"c{k}@example.com", "first_name": f"Name{k}"}
                for k in range(first, min(first + 100_000, n + 1))
            ]
            upsert_customers(conn, rows, now_us=0)
    with store.begin() as conn:
        keys = np.arange(1, n + 1, dtype=np.int64)  # customer keys are dense from 1 in a fresh store
        sj.insert_instances(conn, plan.id, plan.version, keys, np.zeros(n, bool), "hello", NOW_US)
    return store, workspace


def step_once(store: Any, workspace: Any, n: int) -> dict[str, Any]:
    plan = workspace.plans[0]
    customers = CustomerFrame(n + 1, np.arange(n + 1) > 0)
    evaluator = Evaluator(EventFrame.empty(n + 1), customers, NOW_US, plan.metrics, AggregateCache())
    started = time.perf_counter()
    with store.begin() as conn:
        stepper = Stepper(
            conn, plan, evaluator, customers, SignalState(), workspace.renderer(plan.id), NOW_US
        )
        stepped = stepper.run()
        committing = time.perf_counter()
    done = time.perf_counter()
    with store.connect() as conn:
        parked = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM journey_instances WHERE state = 'pause' AND wake_at_us = ?",
            (NOW_US + 3 * 86400 * 1_000_000,),
        ).scalar()
        queued = conn.exec_driver_sql("SELECT COUNT(*) FROM messages WHERE status = 'queued'").scalar()
    assert stepped.stepped == n and parked == n and queued == n, (stepped.stepped, parked, queued)
    return {
        "stepping_seconds": round(done - started, 3),
        "phases": {k: round(v, 3) for k, v in stepped.seconds.items()}
        | {"commit": round(done - committing, 3)},
        "without_render_seconds": round(done - started - stepped.seconds["render"], 3),
    }


def signal_seconds(n: int, refbench_path: Path) -> float:
    """The engine's evaluation of the five reference signals over the reference workload of n customers."""
    spec = importlib.util.spec_from_file_location("refbench", refbench_path)
    assert spec is not None and spec.loader is not None
    refbench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refbench)
    data = refbench.generate(n)
    plans = load_workspace([ROOT / "examples" / "reference"]).plans
    state = SignalState(plans)
    score = data["score"].astype(np.float64)
    score[score < 0] = np.nan
    category = data["category"].astype(np.int32)
    frame = EventFrame(
        customer=data["customer_id"].astype(np.int64),
        ts=data["ts"].astype(np.int64) * 1_000_000,
        type=data["etype"].astype(np.int32),
        type_names=list(refbench.TYPES),
        n_customers=n,
        properties={
            "category": Categorical(category, np.arange(refbench.N_CAT).astype(object)),
            "amount": data["amount"],
            "score": score,
        },
    )
    state.log.append_frame(frame, len(frame))
    now_us = int(refbench.NOW) * 1_000_000
    runs = []
    for _ in range(3):
        state.aggregates = IncrementalAggregates(state.aggregates.calls, state.log)
        started = time.perf_counter()
        state.aggregates.advance(now_us)
        cache = AggregateCache()
        state.fill(cache)
        customers = CustomerFrame(n, np.ones(n, bool))
        for plan in plans:
            assert plan.signal is not None
            Evaluator(EventFrame.empty(n), customers, now_us, plan.metrics, cache).condition(plan.signal)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--signals", action="store_true", help="also time the reference signal evaluation")
    parser.add_argument("--workdir", type=Path, default=None, help="where the store goes (default: temp)")
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = args.workdir or Path(scratch.name)  # type: ignore[union-attr]
    n = args.instances
    t0 = time.perf_counter()
    store, workspace = setup(workdir, n)
    result: dict[str, Any] = {"instances": n, "setup_seconds": round(time.perf_counter() - t0, 1)}
    result |= step_once(store, workspace, n)
    store.dispose()
    if args.signals:
        seconds = signal_seconds(n, args.refbench)
        result["signal_evaluation_seconds"] = round(seconds, 3)
        result["ratio_to_signals"] = round(result["stepping_seconds"] / seconds, 2)
        result["ratio_without_render"] = round(result["without_render_seconds"] / seconds, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
