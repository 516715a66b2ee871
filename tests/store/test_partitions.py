"""Partitions owned through leases (``store._partitions``): one worker owns them all; workers that join
share them evenly; a worker that dies loses them when its lease ends and the others take them over with a
new epoch; one that leaves hands them back at once; the count is fixed; worker processes balancing at
the same time never share a partition and end with even shares."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.engine._status import status_report
from orchestrator.store import (
    Ownership,
    PartitionCountError,
    Store,
    balance_partitions,
    ensure_partitions,
    open_store,
    partition_of,
    partition_owners,
    partitions_still_held,
    release_partitions,
)
from orchestrator.store._events import event_type_ids, insert_events, load_events

ROOT = Path(__file__).resolve().parents[2]


def balance(store: Store, worker: str, lease: float = 60.0, count: int = 8):  # type: ignore[no-untyped-def]
    with store.begin() as conn:
        return balance_partitions(conn, worker, lease, count)


def test_partition_of_numbers_customers_densely_within_a_partition() -> None:
    keys = np.arange(1, 1001)
    parts = partition_of(keys, 64)
    assert parts.min() == 0 and parts.max() == 63
    for p in (0, 1, 63):
        local = keys[parts == p] // 64
        assert np.array_equal(local, np.arange(local[0], local[0] + len(local)))  # dense, no gaps


def test_sqlite_has_one_worker_owning_everything(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    mine = balance(store, "only", count=64)
    assert mine.partitions == tuple(range(64)) and mine.live_workers == 1
    assert mine.customers(np.array([1, 2, 64, 999])).all()
    store.dispose()


@pytest.mark.postgres
def test_workers_share_take_over_and_hand_back(postgres_url: str) -> None:
    store = open_store(postgres_url)
    a = balance(store, "a")
    assert a.partitions == tuple(range(8)) and a.epochs == (1,) * 8 and a.live_workers == 1

    # b joins: it counts two live workers but everything is held, so it waits; a gives back its surplus at
    # its next balance, and b takes it at its next.
    b = balance(store, "b")
    assert b.partitions == () and b.live_workers == 2
    a = balance(store, "a")
    assert a.partitions == (0, 1, 2, 3)
    b = balance(store, "b")
    assert b.partitions == (4, 5, 6, 7) and b.epochs == (2,) * 4
    with store.connect() as conn:
        assert partition_owners(conn) == {p: "a" if p < 4 else "b" for p in range(8)}
        assert partitions_still_held(conn, "b", b.partitions, b.epochs)
    assert status_report(store, 0).partitions == {"a": 4, "b": 4}  # what ``orchestrator status`` shows

    # b dies (stops balancing): its heartbeat and leases run out, and a takes its partitions over.
    short_b = balance(store, "b", lease=0.5)
    assert short_b.partitions == (4, 5, 6, 7)
    a = balance(store, "a")
    assert a.partitions == (0, 1, 2, 3)  # b's lease still holds
    time.sleep(0.7)
    a = balance(store, "a")
    assert a.partitions == tuple(range(8)) and a.live_workers == 1
    assert a.epochs[4:] == (3,) * 4  # a new epoch: work b did under the old lease is fenced off
    with store.begin() as conn:
        assert not partitions_still_held(conn, "b", short_b.partitions, short_b.epochs)

    # c joins and a leaves cleanly: c takes everything at its next balance, without waiting for a lease.
    c = balance(store, "c")
    assert c.partitions == () and c.live_workers == 2
    with store.begin() as conn:
        release_partitions(conn, "a")
    c = balance(store, "c")
    assert c.partitions == tuple(range(8)) and c.live_workers == 1
    store.dispose()


@pytest.mark.postgres
def test_the_partition_count_is_fixed(postgres_url: str) -> None:
    store = open_store(postgres_url)
    with store.begin() as conn:
        assert ensure_partitions(conn, 8) == 8
    with pytest.raises(PartitionCountError, match="split into 8 partitions, not 16"), store.begin() as conn:
        balance_partitions(conn, "x", 60.0, 16)
    with pytest.raises(PartitionCountError, match="at least 1"), store.begin() as conn:
        ensure_partitions(conn, 0)
    store.dispose()


WORKER = """
import json, sys, time
from orchestrator.store import balance_partitions, open_store
url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = open_store(url)
seen = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    with store.begin() as conn:
        mine = balance_partitions(conn, name, 30.0, 64)
    seen.append([time.time(), list(mine.partitions)])
    time.sleep(0.05)
print(json.dumps(seen[-1][1]))
"""


@pytest.mark.postgres
def test_worker_processes_balancing_at_once_end_with_even_disjoint_shares(
    postgres_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), postgres_url, f"w{i}", "6"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(4)
    ]
    finals = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        finals.append(set(json.loads(out)))
    # Each ended with a quarter of the partitions, no two workers with the same one, none left out.
    assert sorted(len(f) for f in finals) == [16, 16, 16, 16]
    assert set().union(*finals) == set(range(64))
    store = open_store(postgres_url)
    with store.connect() as conn:
        owners = partition_owners(conn)
    assert {o for o in owners.values()} == {"w0", "w1", "w2", "w3"}
    store.dispose()


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_a_worker_reads_the_events_of_its_partitions_only(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 's.db'}"
        if backend_name == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = open_store(url)
    keys = np.arange(1, 201, dtype=np.int64)
    with store.begin() as conn:
        types = event_type_ids(conn, ["visit"])
        docs = [json.dumps({"n": int(k), "flag": bool(k % 2), "tags": ["a"]}) for k in keys]
        insert_events(conn, keys, np.full(200, types["visit"]), keys * 1000, docs)
    mine = Ownership("w", (1, 6), (1, 1), 8, 2)
    with store.connect() as conn:
        columns = load_events(conn, None, ["n", "flag", "tags"], ownership=mine)
        every = load_events(conn, None, ["n", "flag", "tags"])
    store.dispose()
    wanted = keys[np.isin(keys % 8, [1, 6])]
    assert np.array_equal(np.sort(columns.customer), wanted)
    assert np.array_equal(columns.properties["n"], wanted.astype(float))
    assert len(every.customer) == 200
    # Both backends read property values alike (booleans as 1 and 0, lists as their JSON text).
    assert np.array_equal(every.properties["flag"], (keys % 2).astype(float))
    assert set(every.properties["tags"].values) == {'["a"]'}
