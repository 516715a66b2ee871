"""Alembic's environment: the migrations run on the connection ``store._schema`` hands over (inside its
transaction and lock), or, from the ``alembic`` command line, on the store at ``ORCHESTRATOR_DB``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel


def _run(connection: Connection) -> None:
    # Batch mode lets the same steps rebuild a SQLite table where ALTER TABLE cannot do the change.
    context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("the store's migrations run against a store (offline SQL is not supported)")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from orchestrator.store._db import open_engine

    engine = open_engine(None)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
