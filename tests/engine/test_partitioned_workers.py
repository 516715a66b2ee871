"""Workers that split the customers into partitions (PostgreSQL): fed the same events at the same instants,
one, two and four worker processes produce exactly the entries, holdout arms, ledger, conversions and
condition memberships of one process that holds every customer; a worker killed in the middle of a tick
loses and duplicates nothing once its partitions are taken over."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from partition_runs import Workers, add_customers, add_events, outcome, tick_events, write_workspace

from orchestrator.clock import to_us
from orchestrator.testing import T0
from orchestrator.testing.postgres import PostgresServer

pytestmark = pytest.mark.postgres

CUSTOMERS = 240
TICKS = 8
PARTITIONS = 8
STEP = timedelta(hours=1)


def run(
    url: str,
    journeys: Path,
    workers: int,
    partitions: int,
    *,
    kill_at: int | None = None,
    lease_seconds: float = 120.0,
) -> tuple[dict[str, list[tuple[object, ...]]], list[str], int]:
    """The outcome of ``TICKS`` ticks over the same events; the ledger keys delivered; the extra ticks
    the survivors needed to take over a killed worker's partitions."""
    add_customers(url, CUSTOMERS, T0)
    pool = Workers(url, journeys, T0, workers, partitions, lease_seconds)
    extra = 0
    try:
        for number in range(TICKS):
            now_us = to_us(T0 + number * STEP)
            add_events(url, tick_events(number, CUSTOMERS, now_us))
            if number == kill_at:
                pool.tick(number, now_us, kill=workers - 1, kill_after=0.05)
                extra = pool.tick_until_whole(number, now_us, deadline_s=60 + 4 * lease_seconds)
            else:
                replies = pool.tick(number, now_us)
                if partitions:
                    assert sum(r.partitions for r in replies) == partitions  # every partition held once
    finally:
        pool.stop()
    return outcome(url), pool.delivered, extra


@pytest.fixture(scope="module")
def one_process(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The reference: one process without partitions, holding every customer."""
    journeys = write_workspace(tmp_path_factory.mktemp("one"))
    result, delivered, _ = run(postgres_server.new_database("one"), journeys, 1, 0)
    return result, delivered


def test_the_reference_run_exercises_every_path(one_process: tuple) -> None:
    result, delivered = one_process
    journeys = Counter(row[0] for row in result["instances"])
    assert journeys["active"] > 20 and journeys["carts"] > 20 and journeys["welcome"] > 20
    assert {row[3] for row in result["instances"]} == {False, True}  # both arms
    carts = Counter(row[4] for row in result["instances"] if row[0] == "carts")
    assert (
        carts["converted"] > 0 and carts["completed"] > 0 and carts["active"] > 0
    )  # bought, reminded, parked
    assert len(result["conversions"]) > 5
    assert {row[2] for row in result["messages"]} >= {"hello", "again", "reminder", "welcome"}
    assert len(delivered) == len(set(delivered)) == sum(row[4] == "sent" for row in result["messages"])


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_partitioned_workers_match_one_process(
    workers: int, one_process: tuple, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    expected, _ = one_process
    journeys = write_workspace(tmp_path)
    result, delivered, _ = run(postgres_server.new_database("w"), journeys, workers, PARTITIONS)
    for table in expected:
        assert result[table] == expected[table], table
    assert len(delivered) == len(set(delivered))  # each message handed over once, by one worker
    assert len(delivered) == sum(row[4] == "sent" for row in result["messages"])


def test_a_worker_killed_mid_tick_loses_and_duplicates_nothing(
    one_process: tuple, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    expected, _ = one_process
    journeys = write_workspace(tmp_path)
    result, delivered, extra = run(
        postgres_server.new_database("k"), journeys, 2, PARTITIONS, kill_at=3, lease_seconds=3.0
    )
    assert extra >= 1
    for table in expected:
        assert result[table] == expected[table], table
    # Nothing left in flight: what the dead worker was sending was sent again (same key) by its successor.
    assert not [row for row in result["messages"] if row[4] in ("sending", "queued")]
    assert delivered  # the survivors delivered (the keys the dead worker handed over died with it)
