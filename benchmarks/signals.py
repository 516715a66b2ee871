#!/usr/bin/env python3
"""Signal evaluation at scale, measured against the reference numpy kernel in the same run.

    python benchmarks/signals.py --customers 100000 [--seed 42] [--workdir DIR]

1. Generates the reference workload with ``refbench.py generate`` (in ``../shared/bench``).
2. Ingests its Parquet file through the engine's own ingest path into a fresh default store (SQLite),
   in a process of its own (as ``orchestrator ingest`` runs), whose peak RSS is reported on its own.
3. Reads the store into the engine's signal state and evaluates the five reference journeys of
   ``examples/reference`` at NOW, timing the evaluation from that state.
4. Adds 1% more events (activity in the hour after NOW), ingests them through the engine's ingest
   path with the signal state taking each committed chunk (as the daemon does with its inbox), and
   times a second tick one hour later; checks that tick's results against a from-scratch evaluation
   and a restarted state. Also times reading those events back from the store, which is what a tick
   pays instead when another process ingested them. The restart is timed two ways (``startup``): a
   state reading every event from the store (``startup_store_s``), and, after writing that state's
   snapshot (``snapshot_mb``; ``snapshot_write_s``: the background write; ``snapshot_view_s``: what the
   tick pays for it), a state loading the snapshot and reading the newer events
   (``startup_snapshot_s``); both must give the same conditions.
5. Times the reference kernel on the same data (median of three) and prints one JSON line with the
   figures and, per rule, counts and id sums compared with the reference (``"match": true`` only when
   every count and id sum is equal).

Peak RSS: ``engine_peak_rss_mb`` is this process's peak through the engine's phases (state load,
evaluation, second tick); ``peak_rss_mb`` also covers the checks and the reference kernel after them;
``ingest_peak_rss_mb`` is the ingest's own process. ``measure_ingest`` and ``load_state`` are the
measuring functions other benchmarks may call.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.engine._signal_state import SignalState  # noqa: E402
from orchestrator.engine._state_snapshot import (  # noqa: E402
    SnapshotSettings,
    StateFile,
    take_view,
    write_snapshot,
)
from orchestrator.engine._workspace import load_workspace  # noqa: E402
from orchestrator.ingest import ingest_events_records, ingest_file  # noqa: E402
from orchestrator.signals import (  # noqa: E402
    AggregateCache,
    CustomerFrame,
    Evaluator,
    EventFrame,
    IncrementalAggregates,
    IncrementalConditions,
)
from orchestrator.store import Store, events_fingerprint, open_store, sqlite_url  # noqa: E402
from orchestrator.store._customers import customer_ids  # noqa: E402
from orchestrator.store._events import load_new_events  # noqa: E402

RULES = {
    "r1": "r1_recency",
    "r2": "r2_frequency_drop",
    "r3": "r3_cart_abandonment",
    "r4": "r4_browse_intent",
    "r5": "r5_engagement_score",
}
HOUR_US = 3600 * 1_000_000


def load_refbench(path: Path) -> Any:
    if not path.exists():
        sys.exit(f"reference workload generator not found at {path} (pass --refbench)")
    spec = importlib.util.spec_from_file_location("refbench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conditions(state: SignalState, plans: list[Any], n: int, now_us: int) -> dict[str, np.ndarray]:
    cache = AggregateCache()
    state.fill(cache)
    customers = CustomerFrame(n, np.arange(n) > 0)
    empty = EventFrame.empty(n)
    return {p.id: Evaluator(empty, customers, now_us, p.metrics, cache).condition(p.signal) for p in plans}


def kept_conditions(kept: IncrementalConditions, plans: list[Any], n: int) -> dict[str, np.ndarray]:
    """The same conditions through the engine's kept conditions: re-evaluated only where they may have
    changed (no customer attributes change in this workload)."""
    customers = CustomerFrame(n, np.arange(n) > 0)
    none = np.zeros(0, np.int64)
    return {p.id: kept.condition(p.id, p.signal, customers, p.metrics, changed=none) for p in plans}


def startup(store: Store, plans: list[Any], now_us: int, path: Path) -> tuple[dict[str, Any], SignalState]:
    """The engine's start-up on ``store``, from the store and from a snapshot at ``path``: the seconds until
    the state's log is current (``SignalState.start``; the first evaluation, the same both ways, is not
    counted), the snapshot's size, the seconds its write takes (the background thread's work) and its view
    (the tick's part), and whether both states give the same conditions at ``now_us``. Returns the figures
    and the state started from the snapshot (advanced to ``now_us``). One state at a time is in memory."""
    gc.collect()
    t0 = time.perf_counter()
    from_store = SignalState(plans)
    with store.connect() as conn:
        from_store.start(conn)
    store_s = time.perf_counter() - t0
    with store.connect() as conn:
        from_store.refresh(conn, now_us)
        fingerprint = events_fingerprint(conn, from_store.log.last_id)
    expected = conditions(from_store, plans, from_store.n_customers, now_us)
    t1 = time.perf_counter()
    view = take_view(from_store.log, fingerprint)
    t2 = time.perf_counter()
    size = write_snapshot(view, path)
    write_s = time.perf_counter() - t2
    del from_store, view
    gc.collect()
    t3 = time.perf_counter()
    loaded = SignalState(plans, StateFile(SnapshotSettings(path)))
    with store.connect() as conn:
        loaded.start(conn)
    snapshot_s = time.perf_counter() - t3
    assert loaded.snapshot is not None and loaded.snapshot.loaded is not None, "the snapshot was not used"
    loaded.snapshot.close()
    with store.connect() as conn:
        loaded.refresh(conn, now_us)
    got = conditions(loaded, plans, loaded.n_customers, now_us)
    figures = {
        "startup_store_s": round(store_s, 3),
        "startup_snapshot_s": round(snapshot_s, 3),
        "startup_snapshot_of_store": round(snapshot_s / store_s, 4),
        "snapshot_mb": round(size / 1e6, 1),
        "snapshot_write_s": round(write_s, 3),
        "snapshot_view_s": round(t2 - t1, 4),
        "snapshot_events": len(loaded.log),
        "snapshot_equals_store": all(np.array_equal(got[p.id], expected[p.id]) for p in plans),
    }
    return figures, loaded


def peak_rss_mb() -> int:
    """This process's peak resident memory so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure_ingest(db: Path, events_file: Path, now_us: int) -> dict[str, Any]:
    """Ingest ``events_file`` through the engine's own path into a fresh default store (SQLite) at ``db``:
    the events stored, the seconds, the rate, and this process's peak RSS once done (run it in a process
    of its own for the ingest's own peak)."""
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    store = open_store(sqlite_url(db))
    try:
        report = ingest_file(store, events_file, kind="events", now_us=now_us)
    finally:
        store.dispose()
    return {
        "events": report.accepted,
        "seconds": round(report.seconds, 3),
        "events_per_s": round(report.accepted / report.seconds),
        "peak_rss_mb": peak_rss_mb(),
    }


def log_memory_mb(state: SignalState) -> dict[str, float]:
    """What the signal state's event log holds, in MiB per column (summed over its segments)."""
    out: dict[str, float] = {}
    for segment in state.log.segments:
        columns = {"customer": segment.customer, "ts": segment.ts, "type": segment.type}
        columns.update({f"number:{k}": v for k, v in segment.numbers.items()})
        columns.update({f"code:{k}": v for k, v in segment.codes.items()})
        for name, column in columns.items():
            out[name] = out.get(name, 0.0) + column.nbytes / 2**20
    return {name: round(mb, 1) for name, mb in out.items()}


def load_state(store: Any, plans: list[Any]) -> tuple[SignalState, dict[str, Any]]:
    """The engine's signal state read from ``store`` as a first tick reads it: the state, and the
    seconds to read the store and to group the events, the log's memory and the peak RSS after."""
    state = SignalState(plans)
    t0 = time.perf_counter()
    with store.connect() as conn:
        columns, last_id = load_new_events(conn, 0, state.log.numeric + state.log.categorical)
        frame = EventFrame.from_columns(*columns)
        del columns
    t1 = time.perf_counter()
    state.log.append_frame(frame, last_id)
    del frame
    t2 = time.perf_counter()
    return state, {
        "read_seconds": round(t1 - t0, 3),
        "append_seconds": round(t2 - t1, 3),
        "log_mb": log_memory_mb(state),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=None, help="where data and store go (default: temp)")
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()
    refbench = load_refbench(args.refbench)
    scratch = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = args.workdir or Path(scratch.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    now_us = int(refbench.NOW) * 1_000_000

    # 1. The workload, from the generator's own command line (its memory is not this process's).
    data_dir = workdir / "data"
    generated = subprocess.run(
        [
            sys.executable,
            str(args.refbench),
            "generate",
            str(args.customers),
            str(data_dir),
            "--seed",
            str(args.seed),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    meta = json.loads(generated.stdout)
    peaks: dict[str, int] = {}

    def peak(phase: str) -> None:
        peaks[phase] = peak_rss_mb()

    # 2. Ingest through the engine's own path into a fresh default store.
    db = workdir / "orchestrator.db"
    # In a process of its own, as ``orchestrator ingest`` runs: its peak is its own, and what the ingest
    # leaves behind in the allocator is not counted in the engine's phases below.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        ingest = child.submit(measure_ingest, db, data_dir / "events.parquet", now_us).result()
    peak("before_state_load")
    store = open_store(sqlite_url(db))

    # 3. The engine's signal state, read from the store, then evaluated at NOW.
    plans = load_workspace([ROOT / "examples" / "reference"]).plans
    state, loaded = load_state(store, plans)
    t0, t1 = 0.0, loaded["read_seconds"]
    t2_first = t1 + loaded["append_seconds"]  # the log is grouped: the state is loaded
    peak("state_load")
    # Timed like the reference: the median of three full evaluations (each from fresh aggregates).
    evaluations = []
    for _ in range(3):
        state.aggregates = IncrementalAggregates(state.aggregates.calls, state.log)
        t2 = time.perf_counter()
        state.aggregates.advance(now_us)
        fired = conditions(state, plans, state.n_customers, now_us)
        evaluations.append(time.perf_counter() - t2)
    evaluation_s = statistics.median(evaluations)
    # The engine keeps conditions between ticks: its first evaluation also works out which customers
    # time alone may change before the horizon.
    kept = IncrementalConditions(state.aggregates)
    t3 = time.perf_counter()
    kept_first = kept_conditions(kept, plans, state.n_customers)
    kept_first_s = time.perf_counter() - t3
    assert all(np.array_equal(kept_first[p.id], fired[p.id]) for p in plans)
    peak("evaluation")
    with store.connect() as conn:
        ids = customer_ids(conn, np.arange(state.n_customers))
    ids[0] = "-1"
    int_ids = ids.astype(np.int64)
    engine_rules = {rule: fired[journey] for rule, journey in RULES.items()}

    # 4. One per cent more events, in the hour after NOW, and a second tick an hour later.
    rng = np.random.default_rng(args.seed + 1)
    extra = max(1, ingest["events"] // 100)
    picks = rng.integers(1, state.n_customers, extra)
    names = ["session_start", "product_view", "add_to_cart", "purchase", "wishlist_add", "nps_response"]
    kinds = rng.choice(len(names), extra, p=[0.4, 0.35, 0.1, 0.05, 0.07, 0.03])
    offsets = np.sort(rng.integers(0, HOUR_US, extra))
    records = []
    for cid, kind, offset in zip(ids[picks], kinds, offsets, strict=True):
        event = names[int(kind)]
        props: dict[str, Any] = {}
        if event in ("product_view", "add_to_cart", "wishlist_add"):
            props["category"] = f"cat{int(rng.integers(20)):02d}"
        elif event == "purchase":
            props["amount"] = round(float(rng.lognormal(3.5, 0.8)), 2)
        elif event == "nps_response":
            props["score"] = int(rng.integers(11))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now_us + int(offset)) / 1e6)) + "Z"
        records.append({"customer_id": cid, "event": event, "ts": stamp, "properties": props})
    seen_id = state.log.last_id
    extra_ingest = ingest_events_records(store, records, now_us=now_us, on_events=state.accept)
    later_us = now_us + HOUR_US
    t4 = time.perf_counter()
    with store.connect() as conn:
        refresh = state.refresh(conn, later_us)
    t4b = time.perf_counter()
    fired_later = kept_conditions(kept, plans, state.n_customers)
    second_tick_s = time.perf_counter() - t4
    second_conditions_s = time.perf_counter() - t4b
    rows_share = (kept.rows_evaluated - len(plans) * state.n_customers) / (len(plans) * state.n_customers)
    with store.connect() as conn:  # what the tick would have read had another process ingested them
        t5 = time.perf_counter()
        reread_columns, _ = load_new_events(conn, seen_id, state.log.numeric + state.log.categorical)
        reread = EventFrame.from_columns(*reread_columns)
        reread_s = time.perf_counter() - t5
    assert len(reread) == extra_ingest.accepted
    del reread, reread_columns
    peak("second_tick")
    del state, kept  # the kept conditions hold the first state's aggregates and log
    gc.collect()
    # A restart: a fresh state read from the store, and one from its snapshot, must give the same answers;
    # and so must the plain (non-incremental) evaluator over the same events.
    restart, restarted = startup(store, plans, later_us, workdir / "orchestrator.db.signals")
    fired_restart = conditions(restarted, plans, restarted.n_customers, later_us)
    equals_restart = all(np.array_equal(fired_later[p.id], fired_restart[p.id]) for p in plans)
    whole = restarted.log.range(None, None)  # one segment just read: views, no copy
    full = restarted.log.frame(whole)
    everyone = CustomerFrame(full.n_customers, np.arange(full.n_customers) > 0)
    incremental_exact = all(  # one cache per journey, so the check's masks are freed as it goes
        np.array_equal(
            fired_later[p.id],
            Evaluator(full, everyone, later_us, p.metrics, AggregateCache()).condition(p.signal),
        )
        for p in plans
    )
    del full, whole, restarted
    store.dispose()
    gc.collect()
    peak("restart_and_from_scratch_check")

    # 5. The reference kernel on the same data, in this process.
    z = np.load(data_dir / "events.npz")
    arrays = {k: z[k] for k in z.files}
    n = int(arrays["customer_id"].max()) + 1
    times, reference = [], None
    for _ in range(3):
        t = time.perf_counter()
        reference = refbench.evaluate(arrays, n)
        times.append(time.perf_counter() - t)
    reference_s = statistics.median(times)
    peak("reference")
    assert reference is not None
    ref_ids = np.arange(n)

    rules: dict[str, Any] = {}
    match = True
    for rule, mask in reference.items():
        mine = engine_rules[rule]
        got = {"count": int(mine.sum()), "id_sum": int(int_ids[mine].sum())}
        want = {"count": int(mask.sum()), "id_sum": int(ref_ids[mask].sum())}
        rules[rule] = {**got, "reference": want, "equal": got == want}
        match = match and got == want

    out = {
        "customers": meta["customers"],
        "events": meta["events"],
        "seed": args.seed,
        "ingest_events_per_s": ingest["events_per_s"],
        "ingest_seconds": ingest["seconds"],
        "state_load_seconds": round(t1 - t0, 3),
        "state_append_seconds": round(t2_first - t1, 3),
        "evaluation_seconds": round(evaluation_s, 4),
        "evaluation_runs": [round(t, 4) for t in evaluations],
        "reference_seconds": round(reference_s, 4),
        "reference_runs": [round(t, 4) for t in times],
        "ratio": round(evaluation_s / reference_s, 3),
        "second_tick": {
            "new_events": refresh.new_events,
            "ingest_seconds": round(extra_ingest.seconds, 3),
            "seconds": round(second_tick_s, 4),
            "store_seconds": round(refresh.load_seconds, 4),  # asking the store for events and customers
            "fold_seconds": round(refresh.advance_seconds, 4),  # the new events into the aggregates
            "conditions_seconds": round(second_conditions_s, 4),  # the kept conditions
            "of_first_evaluation": round(second_tick_s / evaluation_s, 3),
            # The engine's first tick reads every event from the store, builds the state and evaluates.
            "of_first_tick_from_store": round(second_tick_s / (t1 - t0 + t2_first - t1 + evaluation_s), 4),
            "first_kept_conditions_seconds": round(kept_first_s, 4),
            "customers_reevaluated_share": round(rows_share, 4),
            "of_reference": round(second_tick_s / reference_s, 3),
            "read_back_from_store_seconds": round(reread_s, 4),
            "equals_from_scratch": incremental_exact,
            "equals_restart": equals_restart,
        },
        **restart,
        "startup_snapshot_of_reference": round(restart["startup_snapshot_s"] / reference_s, 3),
        "peak_rss_mb": max(peaks.values()),  # this process: the engine, then the checks and the reference
        "engine_peak_rss_mb": peaks["second_tick"],  # state load, evaluation and the second tick
        "ingest_peak_rss_mb": ingest["peak_rss_mb"],  # the ingest's own process
        "peak_rss_mb_by_phase": peaks,
        "log_mb": loaded["log_mb"],
        "rules": rules,
        "match": match,
    }
    print(json.dumps(out))
    if scratch is not None:
        scratch.cleanup()
    return 0 if match and incremental_exact and equals_restart and restart["snapshot_equals_store"] else 1


if __name__ == "__main__":
    sys.exit(main())
