#!/usr/bin/env python3
"""Stepping throughput of 1, 2 and 4 worker processes sharing one PostgreSQL store.

    python benchmarks/workers.py [--instances 100000] [--workers 1,2,4] [--batch 5000]

For each worker count: a fresh database on a private PostgreSQL server (started here, socket only, stopped
by pid at the end), N customers and N instances of a ``send -> wait 1h -> send`` journey all due now; the
workers start together and tick once. Stepping (claims, state changes and ledger rows, each batch one
transaction) is shared; dispatch runs in one worker at a time. Prints one JSON line per worker count:
instances stepped per second until the last worker finished stepping, the whole wall time including
dispatch, and each worker's share. Checks that every instance was stepped once (ledger rows == N).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import text  # noqa: E402
from worker_runs import add_customers, add_due_instances, run_workers, write_journey  # noqa: E402

from orchestrator.store import open_store  # noqa: E402
from orchestrator.testing import T0, PostgresServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    server = PostgresServer.start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            journeys = write_journey(Path(scratch))
            for n_workers in (int(w) for w in args.workers.split(",")):
                url = server.new_database("bench")
                add_customers(url, args.instances, T0)
                add_due_instances(url, journeys, args.instances, T0)
                results, wall = run_workers(
                    url, journeys, n_workers, T0, timedelta(minutes=1), ticks=1, batch=args.batch
                )
                errors = [r.error for r in results if r.error]
                if errors:
                    raise SystemExit(f"worker failed: {errors[0]}")
                stepping = max(r.seconds - r.dispatch_seconds for r in results)
                store = open_store(url)
                with store.connect() as conn:
                    ledger = int(
                        conn.execute(text("SELECT COUNT(DISTINCT instance_id) FROM messages")).scalar()
                    )
                    rows = int(conn.execute(text("SELECT COUNT(*) FROM messages")).scalar())
                store.dispose()
                print(
                    json.dumps(
                        {
                            "workers": n_workers,
                            "instances": args.instances,
                            "batch": args.batch,
                            "stepping_seconds": round(stepping, 3),
                            "stepped_per_second": round(args.instances / stepping),
                            "wall_seconds_with_dispatch": round(wall, 3),
                            "stepped_by_worker": sorted((r.stepped for r in results), reverse=True),
                            "ledger_rows": rows,
                            "instances_with_a_row": ledger,
                            "exactly_once": rows == ledger == args.instances,
                        }
                    ),
                    flush=True,
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
