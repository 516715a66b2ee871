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

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    inspect,
    literal,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateTable
from sqlmodel import SQLModel

from orchestrator.errors import StoreError
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


class SchemaError(StoreError):
    """The store's tables cannot be brought up to this version's schema (the message says why)."""


def _missing_columns(inspector: Any) -> list[tuple[Table, Column[Any]]]:
    """Columns of this version's tables that the store's existing tables lack (a store made by an
    earlier version)."""
    missing = []
    for table in SQLModel.metadata.sorted_tables:
        if inspector.has_table(table.name):
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing += [(table, column) for column in table.columns if column.name not in have]
    return missing


def _relaxed_columns(inspector: Any) -> list[tuple[Table, Column[Any]]]:
    """Columns that this version allows to be NULL and the store's existing tables do not (a store made
    by an earlier version, e.g. consents before "no record" could be stored)."""
    relaxed = []
    for table in SQLModel.metadata.sorted_tables:
        if inspector.has_table(table.name):
            strict = {c["name"] for c in inspector.get_columns(table.name) if not c["nullable"]}
            relaxed += [
                (table, column)
                for column in table.columns
                if column.nullable and not column.primary_key and column.name in strict
            ]
    return relaxed


def _relax_columns(conn: Connection, table: Table, columns: list[Column[Any]]) -> None:
    """Let ``columns`` of ``table`` hold NULL, keeping every row. PostgreSQL drops the constraint;
    SQLite cannot, so the table is rebuilt: created anew as this version declares it, filled with the
    rows, renamed over the old one, and its indexes created again."""
    preparer = conn.dialect.identifier_preparer
    name = preparer.format_table(table)
    if conn.dialect.name != "sqlite":
        for column in columns:
            column_name = preparer.format_column(column)
            conn.execute(text(f"ALTER TABLE {name} ALTER COLUMN {column_name} DROP NOT NULL"))
        return
    scratch = table.to_metadata(MetaData(), name=f"{table.name}__rebuild")
    new_name = preparer.format_table(scratch)
    listing = ", ".join(preparer.format_column(column) for column in table.columns)
    conn.execute(CreateTable(scratch))
    conn.execute(text(f"INSERT INTO {new_name} ({listing}) SELECT {listing} FROM {name}"))
    conn.execute(text(f"DROP TABLE {name}"))
    conn.execute(text(f"ALTER TABLE {new_name} RENAME TO {name}"))
    for index in table.indexes:
        index.create(conn)


def _add_column(conn: Connection, table: Table, column: Column[Any]) -> None:
    """Add a column a later version introduced; rows already there take its default (or null)."""
    where = f"the store's table {table.name} has no column {column.name} (added by a later version)"
    if column.primary_key or column.unique:
        raise SchemaError(f"{where}, and a key column cannot be added to existing rows: recreate the store")
    default = _default_sql(column, conn)
    if not column.nullable and default is None:
        raise SchemaError(f"{where}, and it has no default for existing rows: recreate the store")
    preparer = conn.dialect.identifier_preparer
    ddl = f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.format_column(column)} "
    ddl += column.type.compile(dialect=conn.dialect)
    if default is not None:
        ddl += f" DEFAULT {default}"
    if not column.nullable:
        ddl += " NOT NULL"
    conn.execute(text(ddl))


def _default_sql(column: Column[Any], conn: Connection) -> str | None:
    """The column's default as SQL: its server default, else its Python default when a plain value."""
    server = getattr(column.server_default, "arg", None)
    if server is not None and not isinstance(server, str):
        return str(server.compile(dialect=conn.dialect))  # an SQL expression such as false()
    value = server
    if value is None and column.default is not None and column.default.is_scalar:
        value = getattr(column.default, "arg", None)
    if value is None:
        return None
    return str(literal(value).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _create_schema(engine: Engine, *, create_tables: bool = True) -> None:
    """Create missing tables (unless ``create_tables`` is false), add the columns later versions
    introduced to tables that exist, with their indexes, and let columns that may now be NULL hold it.
    A complete schema is only read: opening a store does not wait for a writer's lock."""
    inspector = inspect(engine)
    absent = [name for name in SQLModel.metadata.tables if not inspector.has_table(name)]
    changes = _missing_columns(inspector) or _relaxed_columns(inspector)
    if not changes and not (create_tables and absent):
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
        inspector = inspect(conn)  # again, under the lock: another worker may have done it meanwhile
        missing = _missing_columns(inspector)
        for table, column in missing:
            _add_column(conn, table, column)
        for table in {table for table, _ in missing}:
            have = {index["name"] for index in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in have:
                    index.create(conn)
        relaxed: dict[Table, list[Column[Any]]] = {}
        for table, column in _relaxed_columns(inspect(conn)):
            relaxed.setdefault(table, []).append(column)
        for table, columns in relaxed.items():
            _relax_columns(conn, table, columns)
        if create_tables:
            SQLModel.metadata.create_all(conn)


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
    _create_schema(engine, create_tables=create)  # an existing store made by an earlier version is upgraded
    return Store(engine)
