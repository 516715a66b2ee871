"""Database errors as one line for people: what happened to the store and what to do.

Built from the error's kind and the database's own short text (SQLite's error name, PostgreSQL's class
and SQLSTATE), never from a statement or its parameters, which can hold customer data.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError

from orchestrator.errors import DISK_FULL_REMEDY as _DISK_FULL


def describe_database_error(exc: BaseException) -> str | None:
    """One line for an error raised by the store's database (through SQLAlchemy or the driver itself);
    None when ``exc`` is not one."""
    if isinstance(exc, DBAPIError):
        return _database(exc.orig)
    if isinstance(exc, (sqlite3.Error, *_psycopg_errors())):
        return _database(exc)
    return None


def _database(orig: BaseException | None) -> str:
    text = _first_line(orig) if orig is not None else ""
    code = str(getattr(orig, "sqlite_errorname", "") or "")  # SQLITE_FULL, SQLITE_IOERR_WRITE, ...
    lowered = text.lower()
    if code == "SQLITE_FULL" or "database or disk is full" in lowered:
        return f"disk full: the store could not grow; {_DISK_FULL}"
    if code.startswith("SQLITE_BUSY") or "database is locked" in lowered:
        return (
            "the store is locked: another process kept it busy for 30 s (a long ingest, or an engine on "
            "the same file); wait for it, then run again"
        )
    if code.startswith("SQLITE_IOERR") or "disk i/o error" in lowered:
        return (
            f"disk I/O error in the store ({code or text}): the disk may be full or failing, or the file "
            f"over a size limit; {_DISK_FULL}, or check the disk"
        )
    if code.startswith("SQLITE_CANTOPEN") or "unable to open database file" in lowered:
        return "cannot open the store's file: check that its folder exists and is writable"
    if code.startswith("SQLITE_READONLY") or "readonly database" in lowered:
        return "the store is read-only: check the permissions of the file and its folder"
    if code == "SQLITE_NOTADB" or "file is not a database" in lowered:
        return "the store file is not a SQLite database: check --db"
    if code.startswith("SQLITE_CORRUPT"):
        return "the store file is damaged (SQLITE_CORRUPT): restore it from a backup"
    if orig is not None and type(orig).__module__.startswith("psycopg"):
        if type(orig).__name__ == "OperationalError":  # cannot connect, server gone: no data in the text
            return f"cannot use the PostgreSQL store: {text}"
        # Other messages can quote a value (invalid input syntax for type ...: "<value>"): the code only.
        state = getattr(orig, "sqlstate", None) or "no SQLSTATE"
        return f"the PostgreSQL store refused a statement ({type(orig).__name__}, SQLSTATE {state})"
    return f"the store failed: {text or type(orig).__name__}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""


def _psycopg_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return ()
    return (psycopg.Error,)
