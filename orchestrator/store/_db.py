"""Opening the store: one SQLAlchemy engine, its tables created or upgraded on open (``store._schema``).

Two backends share one interface: a SQLite file in WAL mode (the default; one worker process) and
PostgreSQL through psycopg 3 (``postgresql://...``; any number of worker processes, which share the work
through row claims and advisory locks, see ``store._leases``). SQL that only one of them understands has a
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

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.errors import UsageError
from orchestrator.store import _schema as schema
from orchestrator.store._schema import SchemaError as SchemaError  # the store's public name for it

DEFAULT_URL = "sqlite:///orchestrator.db"


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one, else ``ORCHESTRATOR_DB``, else ``orchestrator.db`` here."""
    return explicit or os.environ.get("ORCHESTRATOR_DB") or DEFAULT_URL


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{os.fspath(path)}"


def in_memory(url: str) -> bool:
    """Whether ``url`` names a SQLite store in memory, which no other process can open."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store URL; None for PostgreSQL or a SQLite store in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def schema_version() -> str:
    """The schema revision of the stores this version opens (a store is upgraded to it on open)."""
    return schema.head()


def _driver_url(url: str) -> str:
    """PostgreSQL URLs without a driver use psycopg 3 (SQLAlchemy would otherwise look for psycopg2). A
    bare file path is refused with what to write instead (the path itself is not repeated)."""
    if "://" not in url:
        raise UsageError(
            "the store is given as a URL, not a file path: write sqlite:///PATH for a SQLite file "
            "(four slashes before an absolute path) or postgresql://HOST/DB"
        )
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
    def begin(self, *, bulk: bool = False) -> Iterator[Connection]:
        """A connection inside one write transaction, committed on success and rolled back on error.

        On SQLite the transaction takes the write lock at once (``BEGIN IMMEDIATE``): a transaction that
        reads and then writes can otherwise fail when another writer got in between. A ``bulk``
        transaction (a tick's stepping of a journey, which may write a row or two per instance for a
        million instances) runs with its own page cache size (``BULK_CACHE_KIB``), and its commit does
        not checkpoint the write-ahead log: ``checkpoint`` does that after it (between ticks). Both
        settings are the connection's and end with the block.
        """
        if not (bulk and self.is_sqlite):
            with self.engine.begin() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            raw.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
            raw.execute("PRAGMA wal_autocheckpoint=0")
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                raw.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")

    @contextmanager
    def bulk_writes(self) -> Iterator[Connection]:
        """One connection for a series of write transactions, each opened by the caller with
        ``conn.begin()`` (an ingest's chunks), with the settings of ``begin(bulk=True)`` held from the
        first to the last: the page cache stays warm between the transactions and no commit checkpoints
        the write-ahead log. The caller checkpoints it (``checkpoint``) as it sees fit; it is checkpointed
        once more when the block ends. Elsewhere than on SQLite, a plain connection."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                yield conn
                return
            raw: Any = conn.connection.dbapi_connection
            raw.execute(f"PRAGMA cache_size=-{INGEST_CACHE_KIB}")
            raw.execute("PRAGMA wal_autocheckpoint=0")
            try:
                yield conn
            finally:
                raw.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                raw.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        self.checkpoint()

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file as far as readers allow (a passive
        checkpoint, which never waits for them). Nothing on PostgreSQL."""
        if self.is_sqlite:
            with self.engine.connect() as conn:
                raw: Any = conn.connection.dbapi_connection
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

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
#: SQLite's page cache per connection (KiB), and during a bulk transaction (``Store.begin(bulk=True)``):
#: only the pages a transaction touches are allocated. A bulk transaction mostly writes new pages, which a
#: larger cache only holds longer before they go to the write-ahead log: it was 256 MiB, with which the
#: engine's first tick at a million customers peaked some 300 MB higher, and stepping 300,000 instances
#: (``benchmarks/stepping.py``) took no less CPU than with 64 MiB or 32 MiB.
CACHE_KIB = 65_536
BULK_CACHE_KIB = 32_768
#: An ingest's connection (``Store.bulk_writes``): its chunks touch the same pages of the customers' id
#: index again and again, which a large cache keeps between commits (the ingest runs in a process of its
#: own, whose memory is not the engine's; ingest at 1M customers was measured with this size).
INGEST_CACHE_KIB = 262_144
#: SQLite's default: a commit that leaves the write-ahead log this many pages long checkpoints it.
AUTOCHECKPOINT_PAGES = 1000
#: SQLite's page size for new stores (bytes; SQLite's default is 4096). Stepping a million instances
#: writes a row or two each into every page of its tables and indexes: four times fewer, larger pages
#: mean fewer B-tree splits and merges and fewer page headers in the write-ahead log (stepping and its
#: commit took about a fifth less CPU at 16 KiB than at 4 KiB). A store keeps the size it was made with.
PAGE_SIZE = 16_384


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # The sqlite3 driver would open transactions itself, only at the first write, so reads inside a
    # transaction could each see different data. Hand transaction control to SQLAlchemy (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # Only a new, empty database takes it, and only before it is in WAL mode; an existing one ignores it.
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
    # WAL lets readers (status, report) run while a tick writes; NORMAL sync is durable across
    # process crashes in WAL mode, which is the failure the engine must survive.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.info.get(_READ_ONLY) else "BEGIN IMMEDIATE")


def _postgres_begin(conn: Connection) -> None:
    # Readers get one snapshot for the whole transaction (READ COMMITTED, the default that writers keep,
    # would give each statement its own).
    if conn.info.get(_READ_ONLY):
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def is_database_error(error: BaseException) -> bool:
    """Whether ``error`` came from the database (through SQLAlchemy or straight from a DBAPI cursor): a
    store that is down or full, rather than bad input."""
    if isinstance(error, SQLAlchemyError | sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, psycopg.Error)


def open_engine(url: str | None) -> Engine:
    """The SQLAlchemy engine for the store at ``url`` (see ``database_url``), with each backend's
    connection settings and transaction start."""
    url = _driver_url(database_url(url))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgres_begin)
    return engine


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open (and by default create) the store at ``url``. A store made by an earlier version is upgraded
    to this version's schema; one made by a later version is refused (``SchemaError``)."""
    url = _driver_url(database_url(url))
    if not create and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise FileNotFoundError(f"no store at {url.removeprefix('sqlite:///')}")
    store = Store(open_engine(url))
    try:
        schema.upgrade_on_open(store, create=create)
    except BaseException:
        store.dispose()
        raise
    return store


def _unsynced(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA synchronous=OFF")
    cur.close()


def open_scratch_store(path: str | os.PathLike[str]) -> Store:
    """A throwaway SQLite store at ``path`` (a backtest's): made like any other, but nothing it writes is
    synced to disk, since a crash may lose it whole."""
    store = open_store(sqlite_url(path))
    event.listen(store.engine, "connect", _unsynced)
    store.engine.dispose()  # the connections opened so far are replaced by ones with the setting
    return store
