"""Opening the store: one SQLAlchemy engine, tables created on first use.

Two backends share one interface: a SQLite file in WAL mode (the default; one worker process) and
PostgreSQL through psycopg 3 (``postgresql://...``; any number of worker processes, which share the work
through row claims and advisory locks, see ``store.leases``). SQL that only one of them understands has a
path per backend next to it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlmodel import SQLModel

from orchestrator.store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

DEFAULT_URL = "sqlite:///orchestrator.db"


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one, else ``ORCHESTRATOR_DB``, else ``orchestrator.db`` here."""
    return explicit or os.environ.get("ORCHESTRATOR_DB") or DEFAULT_URL


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{os.fspath(path)}"


def _driver_url(url: str) -> str:
    """PostgreSQL URLs without a driver use psycopg 3 (SQLAlchemy would otherwise look for psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@dataclass
class Store:
    engine: Engine

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside one write transaction, committed on success and rolled back on error.

        On SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``): a transaction that
        reads and then writes can otherwise fail when another writer got in between.
        """
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading: everything it reads comes from one consistent snapshot."""
        with self.engine.connect() as conn:
            conn.info[_READ_ONLY] = True
            try:
                yield conn
            finally:
                conn.info.pop(_READ_ONLY, None)

    def is_initialised(self) -> bool:
        """Whether the engine's tables exist (a store nothing has been written to has none)."""
        return inspect(self.engine).has_table("journey_versions")

    def dispose(self) -> None:
        self.engine.dispose()


_READ_ONLY = "orchestrator_read_only"


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # The sqlite3 driver would open transactions itself, only at the first write, so reads inside a
    # transaction could each see different data. Hand transaction control to SQLAlchemy (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers (status, report) run while a tick writes; NORMAL sync is durable across
    # process crashes in WAL mode, which is the failure the engine must survive.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.info.get(_READ_ONLY) else "BEGIN IMMEDIATE")


def _postgres_begin(conn: Connection) -> None:
    # Readers get one snapshot for the whole transaction (READ COMMITTED, the default that writers keep,
    # would give each statement its own).
    if conn.info.get(_READ_ONLY):
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


#: Advisory lock key that serialises schema creation when several workers start at once.
SCHEMA_LOCK = 0x6F72636865737472


_ADDED_COLUMNS = {"claimed_by": "TEXT", "lease_until_us": "BIGINT"}  # journey_instances, added later


def _schema_complete(engine: Engine) -> bool:
    inspector = inspect(engine)
    if not all(inspector.has_table(name) for name in SQLModel.metadata.tables):
        return False
    return set(_ADDED_COLUMNS) <= {c["name"] for c in inspector.get_columns("journey_instances")}


def _create_schema(engine: Engine) -> None:
    """Create missing tables, and add columns that later versions introduced to tables that exist. A
    complete schema is only read: opening a store does not wait for a writer's lock."""
    if _schema_complete(engine):
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
        SQLModel.metadata.create_all(conn)
        have = {c["name"] for c in inspect(conn).get_columns("journey_instances")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in have:
                conn.execute(text(f"ALTER TABLE journey_instances ADD COLUMN {name} {kind}"))


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open (and by default create) the store at ``url``."""
    url = _driver_url(database_url(url))
    if not create and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise FileNotFoundError(f"no store at {url.removeprefix('sqlite:///')}")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgres_begin)
    if create:
        _create_schema(engine)
    return Store(engine)
