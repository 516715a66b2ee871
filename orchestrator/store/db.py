"""Opening the store: one SQLAlchemy engine, tables created on first use.

The default is a SQLite file in WAL mode; any SQLAlchemy URL works for the rest of the code, which uses
only portable Core statements.
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
from sqlmodel import SQLModel

from orchestrator.store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

DEFAULT_URL = "sqlite:///orchestrator.db"


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one, else ``ORCHESTRATOR_DB``, else ``orchestrator.db`` here."""
    return explicit or os.environ.get("ORCHESTRATOR_DB") or DEFAULT_URL


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{os.fspath(path)}"


@dataclass
class Store:
    engine: Engine

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

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


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open (and by default create) the store at ``url``."""
    url = database_url(url)
    if not create and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise FileNotFoundError(f"no store at {url.removeprefix('sqlite:///')}")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    if create:
        SQLModel.metadata.create_all(engine)
    return Store(engine)
