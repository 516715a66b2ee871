"""Shared fixtures.

The store-backed tests of ``POSTGRES_MODULES`` run twice: on SQLite and (marked ``postgres``) on a
private PostgreSQL server started once per session. Without PostgreSQL binaries those runs are skipped,
except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import steps_world
from pg_server import PostgresServer, postgres_bin

from orchestrator.store import Store, open_store, sqlite_url

#: Test modules whose tests also run on PostgreSQL (invariant 8: one suite, two backends).
POSTGRES_MODULES = frozenset(
    {
        "test_engine",
        "test_steps",
        "test_store_frames",
        "test_ingest",
        "test_customer_state",
        "test_contact_policy",
        "test_explain",
        "test_dispatch",
        "test_store_upgrade",
        "test_links",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in POSTGRES_MODULES and "backend" in metafunc.fixturenames:
        metafunc.parametrize(
            "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (socket only, as ``nobody`` under root), stopped by pid."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests, but initdb/pg_ctl were not found")
        pytest.skip("PostgreSQL binaries not installed")
    server = PostgresServer.start(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``sqlite`` or ``postgres``: the store backend of this run of the test. On PostgreSQL every World of
    the time-travel tests gets a database of its own."""
    name: str = getattr(request, "param", "sqlite")
    if name == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch.setattr(steps_world, "store_url", lambda _folder: server.new_database())
    return name


@pytest.fixture
def store(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A fresh store (SQLite in a temporary directory, or an empty PostgreSQL database), disposed at
    teardown."""
    postgres = backend == "postgres"
    url = request.getfixturevalue("postgres_url") if postgres else sqlite_url(tmp_path / "t.db")
    s = open_store(url)
    try:
        yield s
    finally:
        s.dispose()
