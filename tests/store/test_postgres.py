"""The PostgreSQL backend of the store: URLs, 64-bit instants, snapshot reads, concurrent schema creation,
advisory locks; and the schema upgrade that adds the lease columns to older SQLite stores."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from orchestrator.store import _leases as leases
from orchestrator.store import open_store, sqlite_url
from orchestrator.store._customers import upsert_customers

BIG_US = 1_714_554_000_000_000  # 2024-05-01 in microseconds: beyond a 32-bit INTEGER


@pytest.mark.postgres
def test_plain_postgres_urls_use_psycopg_and_instants_are_64_bit(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    store = open_store(plain)
    assert store.is_postgres and store.engine.dialect.driver == "psycopg"
    with store.begin() as conn:
        upsert_customers(conn, [{"id": "ann"}], now_us=BIG_US)
    with store.connect() as conn:
        assert conn.execute(text("SELECT updated_us FROM customers")).scalar() == BIG_US
    store.dispose()


@pytest.mark.postgres
def test_a_read_sees_one_snapshot_while_others_commit(postgres_url: str) -> None:
    store = open_store(postgres_url)
    with store.begin() as conn:
        upsert_customers(conn, [{"id": "ann"}], now_us=BIG_US)
    with store.connect() as reader:
        before = reader.execute(text("SELECT COUNT(*) FROM customers")).scalar()
        with store.begin() as writer:
            upsert_customers(writer, [{"id": "bob"}], now_us=BIG_US)
        assert reader.execute(text("SELECT COUNT(*) FROM customers")).scalar() == before == 1
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM customers")).scalar() == 2
    store.dispose()


@pytest.mark.postgres
def test_workers_starting_together_create_the_schema_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_store(postgres_url).dispose()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = open_store(postgres_url, create=False)
    assert store.is_initialised()
    store.dispose()


@pytest.mark.postgres
def test_singleton_jobs_run_in_one_transaction_at_a_time(postgres_url: str) -> None:
    store = open_store(postgres_url)
    with store.begin() as first:
        assert leases.try_singleton(first, "journey:a")
        with store.begin() as second:
            assert not leases.try_singleton(second, "journey:a")
            assert leases.try_singleton(second, "journey:b")
        with leases.session_singleton(store.engine, "dispatch") as got:
            assert got
            with leases.session_singleton(store.engine, "dispatch") as again:
                assert not again
    with store.begin() as third:  # the first transaction's lock ended with it
        assert leases.try_singleton(third, "journey:a")
    store.dispose()


def test_sqlite_is_one_worker_and_older_stores_get_the_lease_columns(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "old.db")
    store = open_store(url)
    with store.begin() as conn:
        assert leases.try_singleton(conn, "journey:a")  # nothing to share with
        conn.execute(text("ALTER TABLE journey_instances DROP COLUMN claimed_by"))
        conn.execute(text("ALTER TABLE journey_instances DROP COLUMN lease_until_us"))
        conn.execute(text("DROP TABLE alembic_version"))  # made before the schema's revisions were kept
    store.dispose()
    store = open_store(url)
    columns = {c["name"] for c in inspect(store.engine).get_columns("journey_instances")}
    assert {"claimed_by", "lease_until_us"} <= columns
    store.dispose()
