"""SQLite's write-ahead log, for a writer that commits many times a second (the HTTP API's): checkpoints
from a connection of their own, and the writing connection's own settings. Nothing here applies to
PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection


def checkpoint_wal(dbapi_connection: Any) -> None:
    """Copy the write-ahead log into the database file as far as readers allow, on a DBAPI connection
    (``Engine.raw_connection()``) kept for it: a passive checkpoint, which never blocks the writer."""
    dbapi_connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def tune_writer_connection(conn: Connection, *, durable: bool, autocheckpoint_pages: int) -> None:
    """Settings of this SQLite connection only (the engine's other connections stay as they are):
    ``durable`` syncs every commit to disk; a commit checkpoints the log itself once it holds
    ``autocheckpoint_pages`` pages (the backstop should the checkpointer fall behind)."""
    raw: Any = conn.connection.dbapi_connection
    if durable:
        raw.execute("PRAGMA synchronous=FULL")
    raw.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint_pages}")
