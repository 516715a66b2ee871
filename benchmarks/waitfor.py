#!/usr/bin/env python3
"""Entry by event and ``wait_for`` matching with many instances parked, on a SQLite store.

    python benchmarks/waitfor.py --customers 200000 [--events 10000] [--full] [--workdir DIR]

(``--instances N`` is the same as ``--customers N``: one parked instance per customer.)

1. Builds, set-based and not timed, a fresh SQLite store with N customers' abandoned carts: one
   ``add_to_cart`` event each (``cart_id`` c<key>), one instance each of a journey entered by that event
   (keyed on ``cart_id``) parked at a ``wait_for: purchase`` matched on the cart id (entered over the
   last two days, timeout 3 days: no timeout comes due in the measured hour), and each customer's holdout
   assignment. The engine's signal state reads the events; one tick (not timed) looks at every parked
   instance once, as the first tick after a start does.
2. Adds M new events (not timed), stamped in the hour before the measured tick: 40% ``add_to_cart`` of a
   new cart by a random customer (each one enters), 40% ``purchase`` of the customer's parked cart (each
   one ends its wait), 20% ``purchase`` of another cart (matches nothing).
3. Times the tick's entry (``engine._entry.enter``) and ``wait_for`` matching (``engine._stepping.step_due``,
   which reads, matches and writes the instances that moved) in one transaction, commit included; the
   signal state's refresh (reading the new events, advancing the aggregates) is not part of it.
   ``--full`` makes stepping read every parked instance, as it did before the engine remembered what it
   had looked at (the figures before).
4. Times the engine's evaluation of the five reference signals over the reference workload of the same N
   customers (``benchmarks/stepping.signal_seconds``, median of three) and prints the ratio.

Prints one JSON line; ``wait_for_figures`` (and ``wait_for_tick``, without the reference) gives the same
dict to other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from orchestrator.engine._entry import enter  # noqa: E402
from orchestrator.engine._signal_state import SignalState  # noqa: E402
from orchestrator.engine._stepping import WaitMarks, step_due  # noqa: E402
from orchestrator.engine._workspace import load_workspace  # noqa: E402
from orchestrator.signals import AggregateCache, CustomerFrame, Evaluator, EventFrame  # noqa: E402
from orchestrator.store import open_store, sqlite_url  # noqa: E402
from orchestrator.store._events import event_type_ids, insert_events  # noqa: E402

JOURNEY = """\
id: carts
version: 1
entry:
  event: add_to_cart
  key: cart_id
holdout: 10
steps:
  - id: bought_it
    wait_for:
      event: purchase
      match: {cart_id: entry.cart_id}
      timeout: 3d
      then: exit
  - id: reminder
    send: {channel: email, subject: "Your cart", template: hello.txt}
reentry: never
"""
HOUR_US = 3600 * 1_000_000
NOW_US = 1_700_006_400 * 1_000_000  # the measured tick; the first one was an hour before


def build(workdir: Path, n: int) -> tuple[Any, Any]:
    """The store of step 1 (every row written by INSERT ... SELECT over a counter) and the workspace."""
    (workdir / "journeys").mkdir(parents=True, exist_ok=True)
    (workdir / "templates").mkdir(exist_ok=True)
    (workdir / "journeys" / "carts.yaml").write_text(JOURNEY)
    (workdir / "templates" / "hello.txt").write_text("Your cart is waiting.\n")
    db = workdir / "waitfor.db"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    store = open_store(sqlite_url(db))
    workspace = load_workspace([workdir / "journeys"])
    start = NOW_US - HOUR_US - 2 * 24 * HOUR_US
    span = 2 * 24 * HOUR_US
    counter = "WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < :n) "
    entered = f"({start} + (k * 7919) % {span})"
    with store.begin() as conn:
        types = event_type_ids(conn, ["add_to_cart", "purchase"])
        conn.exec_driver_sql(
            counter.replace(":n", str(n)) + "INSERT INTO customers (key, id, email, attributes, updated_us, "
            "record_us, revision) SELECT k, 'c' || k, 'c' || k || '@example.com', '{}', 0, 0, 0 FROM c"
        )
        conn.exec_driver_sql(
            counter.replace(":n", str(n))
            + "INSERT INTO events (id, customer_key, type_id, ts_us, properties) "
            f"SELECT k, k, {types['add_to_cart']}, {entered}, '{{\"cart_id\":\"c' || k || '\"}}' FROM c"
        )
        conn.exec_driver_sql(
            counter.replace(":n", str(n))
            + "INSERT INTO journey_instances (journey_id, version, customer_key, "
            "state, status, holdout, entered_us, since_us, wake_at_us, entry_key, entry_event_id, data) "
            f"SELECT 'carts', 1, k, 'bought_it', 'active', k % 10 = 0, {entered}, {entered}, "
            f"{entered} + {3 * 24 * HOUR_US}, 'c' || k, k, "
            '\'{"entry":{"cart_id":"c\' || k || \'"}}\' FROM c'
        )
        conn.exec_driver_sql(
            counter.replace(":n", str(n)) + "INSERT INTO holdout_assignments (journey_id, customer_key, arm, "
            "bucket, percent, assigned_us, reason, layer) SELECT 'carts', k, CASE WHEN k % 10 = 0 THEN "
            f"'holdout' ELSE 'treatment' END, 0.5, 10, {start}, 'bucket', 'journey' FROM c"
        )
        conn.exec_driver_sql(
            f"INSERT INTO entry_cursors (journey_id, last_event_id, pending) VALUES ('carts', {n}, '[]')"
        )
    return store, workspace


def add_events(store: Any, n: int, m: int, seed: int = 7) -> None:
    """The M new events of step 2."""
    rng = np.random.default_rng(seed)
    kinds = rng.random(m)
    keys = rng.integers(1, n + 1, m)
    ts = NOW_US - HOUR_US + np.sort(rng.integers(0, HOUR_US, m))
    carts = np.where(
        kinds < 0.4, np.char.add("new", np.arange(m).astype(str)), np.char.add("c", keys.astype(str))
    )
    carts = np.where(kinds >= 0.8, np.char.add("other", np.arange(m).astype(str)), carts)
    with store.begin() as conn:
        types = event_type_ids(conn, ["add_to_cart", "purchase"])
        type_ids = np.where(kinds < 0.4, types["add_to_cart"], types["purchase"])
        properties = [orjson.dumps({"cart_id": str(c), "amount": 20.0}).decode() for c in carts]
        insert_events(conn, keys, type_ids, ts, properties)


def tick(
    store: Any, plan: Any, state: SignalState, n: int, now_us: int, marks: WaitMarks | None
) -> dict[str, Any]:
    """One tick's entry and stepping of the journey (the refresh before it not timed)."""
    with store.connect() as conn:
        state.refresh(conn, now_us)
    customers = CustomerFrame(n + 1, np.arange(n + 1) > 0)
    cache = AggregateCache()
    state.fill(cache)
    evaluator = Evaluator(EventFrame.empty(n + 1), customers, now_us, plan.metrics, cache)
    started = time.perf_counter()
    with store.begin() as conn:
        entered = enter(conn, plan, evaluator, now_us)
        entering = time.perf_counter()
        stepped = step_due(conn, plan, evaluator, customers, state, now_us, marks=marks)
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "entry_seconds": round(entering - started, 4),
        "stepping_seconds": round(done - entering, 4),
        "entered": entered.instances,
        "stepped": stepped.stepped,
        "read": stepped.read,
        "phases": {k: round(v, 4) for k, v in stepped.seconds.items()},
    }


def wait_for_tick(workdir: Path, n: int, m: int = 10_000, *, full: bool = False) -> dict[str, Any]:
    """Steps 1 to 3 for N customers and M new events: the measured tick's figures (no signal ratio)."""
    t0 = time.perf_counter()
    store, workspace = build(workdir, n)
    plan = workspace.plans[0]
    state = SignalState([plan])
    marks = None if full else WaitMarks()
    first = tick(store, plan, state, n, NOW_US - HOUR_US, marks)
    setup = time.perf_counter() - t0
    add_events(store, n, m)
    second = tick(store, plan, state, n, NOW_US, marks)
    with store.connect() as conn:
        parked = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM journey_instances WHERE status = 'active' AND state = 'bought_it'"
        ).scalar()
    store.dispose()
    return {
        "customers": n,
        "new_events": m,
        "full_read": full,
        "setup_seconds": round(setup, 1),
        "first_tick_seconds": round(first["seconds"], 3),
        "wait_for_tick_s": round(second["seconds"], 4),
        "tick": second,
        "parked_after": parked,
    }


def wait_for_figures(
    workdir: Path, n: int, m: int = 10_000, *, full: bool = False, refbench: Path | None = None
) -> dict[str, Any]:
    """``wait_for_tick`` with the reference signals' evaluation of the same N customers measured after it
    (``reference_s``) and the ratio to it (``ratio_to_signals``)."""
    from stepping import signal_seconds

    result = wait_for_tick(workdir, n, m, full=full)
    seconds = signal_seconds(n, refbench or ROOT.parent / "shared" / "bench" / "refbench.py")
    result["reference_s"] = round(seconds, 4)
    result["ratio_to_signals"] = round(result["wait_for_tick_s"] / seconds, 3)
    # The names benchmarks/scale.py reads.
    result["tick_seconds"] = result["wait_for_tick_s"]
    result["ratio_to_evaluation"] = result["ratio_to_signals"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", "--instances", type=int, default=200_000, help="parked carts")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--full", action="store_true", help="read every parked instance (the figure before)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the store goes (default: temp)")
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = args.workdir or Path(scratch.name)  # type: ignore[union-attr]
    result = wait_for_figures(workdir, args.customers, args.events, full=args.full, refbench=args.refbench)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
