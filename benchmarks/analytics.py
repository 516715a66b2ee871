#!/usr/bin/env python3
"""What ``orchestrator analytics`` costs on the reference workload, against reading the events alone.

    python benchmarks/analytics.py [--customers 100000] [--seed 42] [--repeat 3]

The reference workload (``../shared/bench/refbench.py``: about 20 events per customer over the 90 days
before 2023-11-15) is written as Parquet and ingested into a scratch SQLite store as a user would
(``ingest_file``). Then, each the median of ``--repeat`` runs: ``load_events`` of every event with the
properties analytics reads (the store's part), and ``engagement_analytics`` over the whole 90 days
(reading included). Prints one JSON line: customers, events, ingest seconds, read seconds, analytics
seconds and their ratio to the read, and a few of the figures (so a run can be checked for sense).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.ingest import ingest_file  # noqa: E402
from orchestrator.measure import engagement_analytics  # noqa: E402
from orchestrator.store import load_events, open_store, sqlite_url  # noqa: E402


def load_refbench(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("refbench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()
    refbench = load_refbench(args.refbench)
    with tempfile.TemporaryDirectory() as folder:
        data = refbench.generate(args.customers, seed=args.seed)
        refbench.write(data, folder)
        store = open_store(sqlite_url(Path(folder) / "bench.db"))
        try:
            started = time.perf_counter()
            report = ingest_file(
                store, Path(folder) / "events.parquet", kind="events", now_us=int(refbench.NOW) * 10**6
            )
            ingest_seconds = time.perf_counter() - started
            reads, runs = [], []
            analytics = None
            for _ in range(args.repeat):
                started = time.perf_counter()
                with store.connect() as conn:
                    load_events(conn, until_us=None, properties=["amount", "score"])
                reads.append(time.perf_counter() - started)
                started = time.perf_counter()
                analytics = engagement_analytics(store, None, None)
                runs.append(time.perf_counter() - started)
        finally:
            store.dispose()
    assert analytics is not None
    read, run = statistics.median(reads), statistics.median(runs)
    data_out = analytics.data
    print(
        json.dumps(
            {
                "customers": args.customers,
                "events": report.accepted,
                "ingest_seconds": round(ingest_seconds, 2),
                "read_seconds": round(read, 3),
                "analytics_seconds": round(run, 3),
                "ratio_to_read": round(run / read, 2),
                "window": data_out["window"],
                "stickiness": round(data_out["active"]["stickiness"], 4),
                "last_mau": data_out["active"]["days"][-1]["mau"],
                "rfm_customers": data_out["rfm"]["customers"],
                "tier_customers": data_out["tiers"]["customers"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
