"""Several workers on one PostgreSQL store: claims are disjoint, skip locked rows and expire; two and four
worker processes step every instance exactly once and deliver every message once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from worker_runs import add_customers, add_due_instances, run_workers, write_journey

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine._tick import Engine
from orchestrator.engine._workers import Sharing
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import _leases as leases
from orchestrator.store import open_store
from orchestrator.testing import T0

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def test_claims_are_disjoint_skip_locked_rows_and_expire(tmp_path: Path, postgres_url: str) -> None:
    journeys = write_journey(tmp_path)
    add_customers(postgres_url, 25, T0)
    add_due_instances(postgres_url, journeys, 25, T0)
    store = open_store(postgres_url)
    now = to_us(T0)

    def claim(worker: str, batch: int = 10, lease: float = 120.0) -> list[int]:
        with store.begin() as conn:
            return leases.claim_due(conn, "shared", 1, now, worker, batch, lease)

    a, b, c = claim("a"), claim("b"), claim("c")
    assert (len(a), len(b), len(c)) == (10, 10, 5)
    assert len(set(a) | set(b) | set(c)) == 25
    assert claim("d") == []  # everything is under an unexpired lease
    with store.begin() as conn:
        leases.release(conn, "a", a)
        leases.release(conn, "b", b)
        leases.release(conn, "c", c)

    # A stepping transaction holds row locks: another worker's claim skips those rows without waiting.
    with store.begin() as holder:
        holder.execute(text("SELECT id FROM journey_instances WHERE id = ANY(:ids) FOR UPDATE"), {"ids": a})
        others = claim("e", batch=100)
        assert set(others) == set(b) | set(c)
    with store.begin() as conn:
        leases.release(conn, "e", others)

    # A claim whose worker died expires; the new owner takes it over and the old one can no longer step it.
    dead = claim("dead", batch=25, lease=0.001)
    time.sleep(0.05)
    taken = claim("alive", batch=25)
    assert sorted(taken) == sorted(dead)
    with store.begin() as conn:
        assert leases.lock_claimed(conn, "shared", 1, "dead", dead, "id") == []
        assert len(leases.lock_claimed(conn, "shared", 1, "alive", taken, "id")) == 25
    store.dispose()


@pytest.mark.parametrize("n_workers", [2, 4])
def test_workers_step_every_instance_exactly_once(tmp_path: Path, postgres_url: str, n_workers: int) -> None:
    n = 3000
    journeys = write_journey(tmp_path)
    add_customers(postgres_url, n, T0)
    add_due_instances(postgres_url, journeys, n, T0)

    results, _ = run_workers(postgres_url, journeys, n_workers, T0, timedelta(hours=1), ticks=3, batch=100)
    assert [r.error for r in results] == [None] * n_workers
    assert len({r.worker for r in results}) == n_workers
    assert sum(1 for r in results if r.stepped) >= 2, "the work was not shared"

    # Finish what the workers' three ticks left (the second send is due an hour after the first).
    store = open_store(postgres_url)
    provider = MemoryAdapter()
    clock = SimulatedClock(T0 + timedelta(hours=5))
    final = Engine(store, load_workspace([journeys]), ChannelRouter([provider]), clock).tick()

    # Each instance moves twice (hello -> pause, pause -> again -> completed): more means a double step.
    stepped = sum(r.stepped for r in results) + final.journeys["shared"].stepped
    assert stepped == 2 * n
    with store.connect() as conn:
        ledger = conn.execute(text("SELECT idempotency_key, instance_id, step, status FROM messages")).all()
        instances = conn.execute(
            text("SELECT status, COUNT(*), COUNT(claimed_by) FROM journey_instances GROUP BY status")
        ).all()
    assert len(ledger) == 2 * n
    assert len({row[0] for row in ledger}) == 2 * n
    per_instance = Counter((row[1], row[2]) for row in ledger)
    assert set(per_instance.values()) == {1} and len(per_instance) == 2 * n
    assert {row[3] for row in ledger} == {"sent"}
    assert [tuple(r) for r in instances] == [("completed", n, 0)]

    # Dispatch runs in one worker at a time: no key reached a provider twice, and every key reached one.
    delivered = [key for r in results for key in r.delivered] + [m.idempotency_key for m in provider.sent]
    assert len(delivered) == len(set(delivered)) == 2 * n
    assert set(delivered) == {row[0] for row in ledger}
    store.dispose()


def test_sharing_is_for_postgres_only(tmp_path: Path, postgres_url: str) -> None:
    sqlite = open_store(f"sqlite:///{tmp_path / 'one.db'}")
    postgres = open_store(postgres_url)
    assert Sharing.for_store(sqlite) is None
    sharing = Sharing.for_store(postgres)
    assert sharing is not None and sharing.worker != Sharing().worker
    with pytest.raises(ValueError):
        Sharing(batch=0)
    sqlite.dispose()
    postgres.dispose()


def test_two_daemon_processes_share_one_journey(tmp_path: Path, postgres_url: str) -> None:
    """The real command: two ``orchestrator daemon`` processes on one PostgreSQL store, entry included."""
    n = 500
    journeys = write_journey(tmp_path)
    add_customers(postgres_url, n, T0)
    command = [
        sys.executable, "-m", "orchestrator", "daemon", "--db", postgres_url, "--journeys", str(journeys),
        "--outbox", str(tmp_path / "outbox"), "--interval", "0.05", "--max-ticks", "6",
        "--simulated-clock", "2024-05-01T09:00:00Z", "--simulated-step", "1h",
    ]  # fmt: skip
    daemons = [
        subprocess.Popen([*command, "--attempt-log", str(tmp_path / f"attempts{i}.jsonl")], cwd=ROOT)
        for i in range(2)
    ]
    assert [d.wait(timeout=120) for d in daemons] == [0, 0]
    store = open_store(postgres_url)
    with store.connect() as conn:
        per_step = dict(
            conn.execute(text("SELECT step, COUNT(DISTINCT instance_id) FROM messages GROUP BY step")).all()
        )
        rows = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM messages")).one()
        instances = conn.execute(
            text("SELECT COUNT(*), COUNT(DISTINCT customer_key) FROM journey_instances")
        ).one()
    store.dispose()
    assert tuple(instances) == (n, n)  # entry ran once per customer although both daemons ticked
    assert per_step == {"hello": n, "again": n} and tuple(rows) == (2 * n, 2 * n)
    attempts = [
        orjson.loads(line)["key"]
        for i in range(2)
        for line in (tmp_path / f"attempts{i}.jsonl").read_bytes().splitlines()
    ]
    assert len(attempts) == len(set(attempts)) == 2 * n  # one dispatcher at a time: no key sent twice
    assert len(list((tmp_path / "outbox" / "webhook").iterdir())) == 2 * n


def test_two_partitioned_daemons_share_the_customers(tmp_path: Path, postgres_url: str) -> None:
    """The real command with ``workers.partitions`` in orchestrator.yaml: two daemons share the partitions
    (how evenly depends on when each starts: the first may run every tick before the second joins), every
    customer enters once and every message goes once, and they hand their partitions back as they stop."""
    n = 500
    journeys = write_journey(tmp_path)
    add_customers(postgres_url, n, T0)
    config = tmp_path / "orchestrator.yaml"
    config.write_text("tick: 1m\nworkers:\n  partitions: 16\n  lease: 5m\n")
    command = [
        sys.executable, "-m", "orchestrator", "daemon", "--config", str(config), "--db", postgres_url,
        "--journeys", str(journeys), "--outbox", str(tmp_path / "outbox"), "--interval", "0.2",
        "--max-ticks", "6", "--simulated-clock", "2024-05-01T09:00:00Z", "--simulated-step", "1h",
    ]  # fmt: skip
    daemons = [
        subprocess.Popen([*command, "--attempt-log", str(tmp_path / f"attempts{i}.jsonl")], cwd=ROOT)
        for i in range(2)
    ]
    assert [d.wait(timeout=180) for d in daemons] == [0, 0]
    store = open_store(postgres_url)
    with store.connect() as conn:
        instances = conn.execute(
            text("SELECT COUNT(*), COUNT(DISTINCT customer_key) FROM journey_instances")
        ).one()
        rows = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM messages")).one()
        leases_left = conn.execute(
            text("SELECT COUNT(*) FROM partition_leases WHERE owner IS NOT NULL")
        ).scalar()
        count = conn.execute(text("SELECT COUNT(*) FROM partition_leases")).scalar()
    store.dispose()
    assert tuple(instances) == (n, n)  # each customer entered once, by its partition's worker
    assert tuple(rows) == (2 * n, 2 * n)
    assert (count, leases_left) == (16, 0)  # both handed their partitions back as they stopped
    sent_by = [
        [orjson.loads(line)["key"] for line in (tmp_path / f"attempts{i}.jsonl").read_bytes().splitlines()]
        for i in range(2)
    ]
    everything = sent_by[0] + sent_by[1]
    assert len(everything) == len(set(everything)) == 2 * n
    status = subprocess.run(
        [sys.executable, "-m", "orchestrator", "status", "--db", postgres_url, "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert orjson.loads(status.stdout)["partitions"] == {"": 16}  # all free again
