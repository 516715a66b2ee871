"""The tick log: ``record_tick`` stores a tick that the status reads give back, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.store import open_store, sqlite_url
from orchestrator.store._status import last_tick, latest_tick_us, recent_tick_instants
from orchestrator.store._ticks import record_tick

BIG_US = 1_714_554_000_000_000  # beyond a 32-bit INTEGER


def _check(url: str) -> None:
    store = open_store(url)
    try:
        with store.begin() as conn:
            record_tick(conn, BIG_US, 0.25, '{"now_us": 1}')
            record_tick(conn, BIG_US - 60_000_000, 0.5, "{}")  # stored later, at an earlier instant
        with store.connect() as conn:
            assert last_tick(conn) == (BIG_US - 60_000_000, 0.5, "{}")
            assert latest_tick_us(conn) == BIG_US
            assert recent_tick_instants(conn) == [BIG_US - 60_000_000, BIG_US]
    finally:
        store.dispose()


def test_a_recorded_tick_reads_back_on_sqlite(tmp_path: Path) -> None:
    _check(sqlite_url(tmp_path / "s.db"))


@pytest.mark.postgres
def test_a_recorded_tick_reads_back_on_postgres(postgres_url: str) -> None:
    _check(postgres_url)
