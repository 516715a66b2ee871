#!/usr/bin/env python3
"""Crash test: the daemon is killed with SIGKILL at random points and restarted; at the end every customer
received each message exactly once and nobody was lost.

    python benchmarks/crash.py [--customers 100000] [--kills 100] [--seed 1] [--workdir DIR]

Setup (not timed): a SQLite store with N customers and one journey entered on a segment:
``send welcome -> wait 1d -> send reminder -> wait 2d -> send last`` (webhook channel, holdout 0), so each
customer should receive three messages. The provider is the file outbox (one file per idempotency key:
a repeated key is answered ``sent`` without a second delivery), wrapped so that every delivery attempt
is logged with its key, customer and step.

The run: a real ``orchestrator daemon`` subprocess on a simulated clock (6 hours per tick, resumed after
the last stored tick on restart) ticking back to back, killed with SIGKILL after a random delay, restarted
at once, ``--kills`` times; then it runs undisturbed until every instance has finished and nothing is
queued, and is stopped with SIGTERM. On each start the daemon first re-dispatches ledger rows left queued
(same key), then ticks.

Counts (one JSON line): ``expected`` (customer, message) pairs; ``delivered`` pairs with a delivery at
the provider; ``duplicates``, deliveries beyond the first for a pair (two distinct keys for one customer
and step, or a provider that delivered a key twice); ``lost``, expected pairs never delivered; the
delivery attempts, of which ``repeated_attempts`` reused a key already delivered (crashes between the
provider's answer and the ledger's record, reconciled by the key); instances per final status; kills
after which the ledger held queued rows; wall time.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from orchestrator.channels.outbox import file_stem  # noqa: E402
from orchestrator.store import open_store, sqlite_url  # noqa: E402
from orchestrator.store.customers import upsert_customers  # noqa: E402

JOURNEY = """\
id: crash
version: 1
entry:
  segment: cohort == "crash"
holdout: 0
steps:
  - id: welcome
    send: {channel: webhook, endpoint: crm, template: m.json}
  - id: day_one
    wait: 1d
  - id: reminder
    send: {channel: webhook, endpoint: crm, template: m.json}
  - id: day_three
    wait: 2d
  - id: last
    send: {channel: webhook, endpoint: crm, template: m.json}
"""
MESSAGES = ("welcome", "reminder", "last")
START = "2024-05-01T00:00:00Z"
STEP = "6h"


def setup(workdir: Path, customers: int) -> str:
    (workdir / "journeys").mkdir(parents=True, exist_ok=True)
    (workdir / "templates").mkdir(exist_ok=True)
    (workdir / "journeys" / "crash.yaml").write_text(JOURNEY)
    (workdir / "templates" / "m.json").write_text('{"customer": "{{ customer.id }}"}\n')
    url = sqlite_url(workdir / "crash.db")
    store = open_store(url)
    try:
        for first in range(0, customers, 50_000):
            with store.begin() as conn:
                rows = [
                    {"id": f"c{k}", "cohort": "crash"} for k in range(first, min(first + 50_000, customers))
                ]
                upsert_customers(conn, rows, now_us=0)
    finally:
        store.dispose()
    return url


def daemon(workdir: Path, url: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "orchestrator", "daemon", "--db", url, "--journeys", str(workdir / "journeys"),
        "--outbox", str(workdir / "outbox"), "--interval", "0.05", "--simulated-clock", START,
        "--simulated-step", STEP, "--attempt-log", str(workdir / "attempts.jsonl"),
    ]  # fmt: skip
    log = (workdir / "daemon.log").open("ab")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def progress(url: str) -> dict[str, Any]:
    store = open_store(url, create=False)
    try:
        with store.connect() as conn:
            if not store.is_initialised():
                return {"active": -1, "queued": -1, "ticks": 0}
            active = conn.execute(
                text("SELECT COUNT(*) FROM journey_instances WHERE status = 'active'")
            ).scalar()
            entered = conn.execute(text("SELECT COUNT(*) FROM journey_instances")).scalar()
            queued = conn.execute(text("SELECT COUNT(*) FROM messages WHERE status = 'queued'")).scalar()
            ticks = conn.execute(text("SELECT COUNT(*) FROM ticks")).scalar()
    finally:
        store.dispose()
    return {"active": int(active or 0), "entered": int(entered or 0), "queued": int(queued or 0),
            "ticks": int(ticks or 0)}  # fmt: skip


def count(workdir: Path, url: str, customers: int) -> dict[str, Any]:
    attempts = [orjson.loads(line) for line in (workdir / "attempts.jsonl").read_bytes().splitlines() if line]
    on_disk = (
        {p.name for p in (workdir / "outbox" / "webhook").iterdir()}
        if (workdir / "outbox").exists()
        else set()
    )
    keys = {a["key"]: (a["customer"], a["step"]) for a in attempts}
    delivered_keys = [k for k in keys if f"{file_stem(k)}.json" in on_disk]
    per_pair = Counter(keys[k] for k in delivered_keys)
    expected = {(f"c{k}", step) for k in range(customers) for step in MESSAGES}
    first_attempts: set[str] = set()
    repeated = 0
    for a in attempts:
        if a["key"] in first_attempts:
            repeated += 1
        first_attempts.add(a["key"])
    store = open_store(url, create=False)
    with store.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, COUNT(*) FROM journey_instances GROUP BY status")).all()
        )
        ledger = dict(conn.execute(text("SELECT status, COUNT(*) FROM messages GROUP BY status")).all())
        per_instance_step = conn.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT instance_id, step FROM messages "
                "GROUP BY instance_id, step HAVING COUNT(*) > 1) AS repeated"
            )
        ).scalar()
        customers_entered = conn.execute(
            text("SELECT COUNT(DISTINCT customer_key) FROM journey_instances")
        ).scalar()
    store.dispose()
    return {
        "customers": customers,
        "expected": len(expected),
        "delivered": sum(1 for pair in expected if per_pair[pair] >= 1),
        "duplicates": sum(n - 1 for n in per_pair.values() if n > 1),
        "lost": sum(1 for pair in expected if per_pair[pair] == 0),
        "unexpected": sum(1 for pair in per_pair if pair not in expected),
        "attempts": len(attempts),
        "repeated_attempts": repeated,
        "ledger": {str(k): int(v) for k, v in ledger.items()},
        "ledger_duplicate_steps": int(per_instance_step or 0),
        "customers_entered": int(customers_entered or 0),
        "instances": {str(k): int(v) for k, v in statuses.items()},
    }


def run(customers: int, kills: int, seed: int, workdir: Path, max_delay: float) -> dict[str, Any]:
    rng = random.Random(seed)
    url = setup(workdir, customers)
    began = time.perf_counter()
    left_queued = 0
    for _ in range(kills):
        proc = daemon(workdir, url)
        time.sleep(rng.uniform(0.2, max_delay))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Ledger rows still queued: committed sends whose delivery was not (or not yet) recorded.
        left_queued += int(progress(url)["queued"] > 0)
    proc = daemon(workdir, url)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        time.sleep(0.5)
        state = progress(url)
        if state["entered"] >= customers and state["active"] == 0 and state["queued"] == 0:
            break
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}; see {workdir / 'daemon.log'}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    wall = time.perf_counter() - began
    figures = count(workdir, url, customers)
    figures.update(
        {
            "kills": kills,
            "kills_leaving_queued_rows": left_queued,
            "seed": seed,
            "wall_seconds": round(wall, 1),
        }
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=5.0, help="longest run before a kill, seconds")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store, outbox and logs here")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
        figures = run(args.customers, args.kills, args.seed, args.workdir, args.max_delay)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            figures = run(args.customers, args.kills, args.seed, Path(scratch), args.max_delay)
    print(json.dumps(figures), flush=True)
    sys.exit(0 if figures["duplicates"] == figures["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
