"""The store's schema on open: created, recognised, upgraded through the migrations, or refused.

The schema's history is a chain of Alembic revisions (``store/migrations/versions``); a store records the
one it is at in Alembic's ``alembic_version`` table. Opening a store:

- at this version's newest revision (the head): one query, nothing else;
- empty: today's tables are created as ``tables.py`` declares them and stamped at the head (the same
  schema the migrations build, which a test checks);
- at an older revision: the migrations since are applied, in one transaction;
- made before the migrations existed (no ``alembic_version``; earlier versions added columns by hand on
  open): stamped at the newest revision whose changes it has (each revision's ``applied``), then upgraded;
- at a revision this version does not know (made by a later version): refused with ``SchemaError``.

On PostgreSQL an advisory lock makes workers that open one store at once wait for the first one's upgrade
(PostgreSQL changes tables inside the transaction); on SQLite the upgrade's transaction holds the write
lock. Alembic is imported only when a store is upgraded.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from orchestrator.errors import StoreError
from orchestrator.store.migrations import FOLDER

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from orchestrator.store._db import Store

#: Alembic's table of the store's revision, as Alembic creates it (stamping a new store without Alembic).
VERSIONS = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


#: PostgreSQL advisory lock key held while the schema is created or upgraded (the key earlier versions
#: took for their upgrades too, so workers of both wait for each other).
SCHEMA_LOCK = 0x6F72636865737472


class SchemaError(StoreError):
    """The store's tables cannot be brought up to this version's schema (the message says why)."""


@cache
def revisions() -> tuple[str, ...]:
    """The revisions this version knows, oldest first (``versions/NNNN_what.py`` is revision ``NNNN``)."""
    return tuple(sorted(path.name.split("_", 1)[0] for path in (FOLDER / "versions").glob("[0-9]*_*.py")))


def head() -> str:
    """This version's newest revision: the schema of ``tables.py``."""
    return revisions()[-1]


def stored_revision(store: Store) -> str | None:
    """The revision the store is at, in one query; None when it has no ``alembic_version`` table."""
    try:
        return _read_revision(store)
    except DBAPIError:
        if not inspect(store.engine).has_table(VERSIONS.name):
            return None
    # The table is there (another worker may have just made it): read it again; an error now is the
    # store's own (locked, unreachable).
    return _read_revision(store)


def _read_revision(store: Store) -> str | None:
    with store.connect() as conn:
        return conn.execute(select_revision()).scalar()


def select_revision() -> Any:
    return VERSIONS.select().with_only_columns(VERSIONS.c.version_num)


def upgrade_on_open(store: Store, *, create: bool) -> None:
    """Bring the store's tables to this version's schema (see the module's docstring). Unless ``create``,
    an empty store stays empty."""
    revision = stored_revision(store)
    if revision == head():
        return
    _known(revision)
    if revision is None and not create and not _has_tables(inspect(store.engine)):
        return
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
        _upgrade(conn, create=create)


def _known(revision: str | None) -> None:
    if revision is not None and revision not in revisions():
        raise SchemaError(
            f"the store's schema is at revision {revision}, made by a later version (this one knows revisions"
            f" up to {head()}): open it with that version or a later one"
        )


def _has_tables(schema: Inspector) -> bool:
    """Whether the store has any of this version's tables (a store made before migrations existed)."""
    return any(schema.has_table(name) for name in SQLModel.metadata.tables)


def _upgrade(conn: Connection, *, create: bool) -> None:
    """Under the schema lock: look again (another worker may have upgraded meanwhile), then create,
    stamp or upgrade."""
    schema = inspect(conn)
    revision = conn.execute(select_revision()).scalar() if schema.has_table(VERSIONS.name) else None
    if revision == head():
        return
    _known(revision)
    if revision is None:
        if not _has_tables(schema):
            if create:
                SQLModel.metadata.create_all(conn)
                VERSIONS.create(conn)
                conn.execute(VERSIONS.insert().values(version_num=head()))
            return
        revision = legacy_revision(schema)
        if revision is not None:
            _stamp(conn, revision)
    _migrate(conn)


def legacy_revision(schema: Inspector) -> str | None:
    """The newest revision a store made before the migrations existed has, with every revision before it;
    None when it lacks some of the first one's tables."""
    found = None
    for script in reversed(list(script_directory().walk_revisions())):
        applied = getattr(script.module, "applied", None)  # revisions written since have none
        if applied is None or not applied(schema):
            break
        found = script.revision
    return found


def alembic_config(conn: Connection | None = None) -> Config:
    """Alembic's configuration for the store's migrations; with ``conn``, they run on that connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


@cache
def script_directory() -> ScriptDirectory:
    """The migrations as Alembic reads them (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _stamp(conn: Connection, revision: str) -> None:
    from alembic.runtime.migration import MigrationContext

    MigrationContext.configure(conn).stamp(script_directory(), revision)


def _migrate(conn: Connection) -> None:
    """Apply the revisions after the store's on ``conn``, inside its transaction."""
    from alembic import command

    command.upgrade(alembic_config(conn), "head")
