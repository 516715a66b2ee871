#!/usr/bin/env python3
"""Memory and tick time per worker when 1, 2 and 4 partitioned workers share one PostgreSQL store.

    python benchmarks/partitions.py [--customers 200000] [--workers 1,2,4] [--partitions 64] [--seed 42]

1. Generates the reference workload (``../shared/bench``, about 20 events per customer) and ingests its
   events through the engine's ingest path into a fresh database on a private PostgreSQL server (started
   here, socket only, stopped by pid at the end). Not timed.
2. For each worker count W: a copy of that database (``CREATE DATABASE ... TEMPLATE``), then W worker
   processes with ``partitions`` set, started together (each joins before any balances), each running one
   tick of the five reference journeys at the workload's instant: balancing, reading the events of its own
   partitions, evaluating, entering, stepping and dispatching its own customers (to an in-memory
   provider). Each reports the partitions it held, the events in its signal state, its tick's seconds
   (and of them reading the events) and its peak resident memory (the kernel's figure for the process).
3. Prints one JSON line per worker count: those figures per worker, the largest peak and tick, and the
   instances entered in all (which must not depend on W); then a table.

The machine's cores are shared by the workers and the PostgreSQL server, so with more workers than cores
the tick's wall time does not fall; memory per worker is what the partitions buy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from orchestrator.channels._base import ChannelRouter  # noqa: E402
from orchestrator.channels._memory import MemoryAdapter  # noqa: E402
from orchestrator.clock import SimulatedClock, from_us  # noqa: E402
from orchestrator.engine._tick import Engine  # noqa: E402
from orchestrator.engine._workspace import load_workspace  # noqa: E402
from orchestrator.ingest import ingest_file  # noqa: E402
from orchestrator.store import open_store  # noqa: E402
from orchestrator.testing import PostgresServer  # noqa: E402

REFERENCE = ROOT / "examples" / "reference"


def worker(url: str, now_us: int, partitions: int, barrier: Any, results: Any) -> None:
    """One partitioned worker: join, wait for the others, one tick; what it held and what it cost."""
    store = open_store(url)
    engine = Engine(
        store,
        load_workspace([REFERENCE]),
        ChannelRouter([MemoryAdapter()]),
        SimulatedClock(from_us(now_us)),
        partitions=partitions,
        lease_seconds=600.0,
    )
    engine.join()
    barrier.wait()
    started = time.perf_counter()
    report = engine.tick()
    seconds = time.perf_counter() - started
    own = engine.sharing.ownership if engine.sharing is not None else None
    results.put(
        {
            "partitions": 0 if own is None else len(own.partitions),
            "events": len(engine.signals.log),
            "tick_s": round(seconds, 3),
            "load_events_s": round(report.timings.get("load_events", 0.0), 3),
            "timings": {k: round(v, 3) for k, v in report.timings.items() if v >= 0.05},
            "entered": sum(j.entered for j in report.journeys.values()),
            "failed": report.failed,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )
    barrier.wait()  # nobody hands partitions back before every worker has ticked
    engine.leave()
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    server = PostgresServer.start()
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            data = Path(scratch) / "data"
            command = [sys.executable, str(args.refbench), "generate", str(args.customers), str(data)]
            generated = subprocess.run(
                [*command, "--seed", str(args.seed)],
                check=True,
                capture_output=True,
                text=True,
            )
            meta = json.loads(generated.stdout)
            now_us = int(meta.get("now", 1_700_006_400)) * 1_000_000
            base = server.new_database("base")
            store = open_store(base)
            started = time.perf_counter()
            ingested = ingest_file(store, data / "events.parquet", kind="events", now_us=now_us)
            ingest_s = time.perf_counter() - started
            store.dispose()
            print(f"ingested {ingested.accepted:,} events in {ingest_s:.1f}s", file=sys.stderr)
            ctx = multiprocessing.get_context("spawn")
            for n in counts:
                url = server.new_database(f"w{n}_", copy_of=base)
                barrier = ctx.Barrier(n)
                results = ctx.Queue()
                procs = [
                    ctx.Process(target=worker, args=(url, now_us, args.partitions, barrier, results))
                    for _ in range(n)
                ]
                for p in procs:
                    p.start()
                workers = sorted((results.get(timeout=3600) for _ in procs), key=lambda r: -r["partitions"])
                for p in procs:
                    p.join(timeout=120)
                failed = [r["failed"] for r in workers if r["failed"]]
                if failed:
                    raise SystemExit(f"a journey failed: {failed[0]}")
                check = open_store(url)
                with check.connect() as conn:
                    instances = int(
                        conn.execute(text("SELECT COUNT(*) FROM journey_instances")).scalar() or 0
                    )
                check.dispose()
                row = {
                    "customers": args.customers,
                    "events": ingested.accepted,
                    "partitions": args.partitions,
                    "workers": n,
                    "max_peak_rss_mb": max(r["peak_rss_mb"] for r in workers),
                    "max_tick_s": max(r["tick_s"] for r in workers),
                    "instances": instances,
                    "per_worker": workers,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.stop()
    if len({r["instances"] for r in rows}) > 1:
        raise SystemExit("the workers entered different instances for different worker counts")
    print()
    print("| workers | partitions each | events each | peak RSS per worker (MB) | tick (s) | instances |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        each = r["per_worker"]
        held = " / ".join(str(w["partitions"]) for w in each)
        events = " / ".join(format(w["events"], ",") for w in each)
        peaks = " / ".join(str(w["peak_rss_mb"]) for w in each)
        print(
            f"| {r['workers']} | {held} | {events} | {peaks} | {r['max_tick_s']:.2f} | {r['instances']:,} |"
        )


if __name__ == "__main__":
    main()
