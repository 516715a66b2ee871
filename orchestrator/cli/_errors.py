"""Expected failures as one line: what happened and what to do, never a traceback.

A full disk, a locked or unreadable store, input nested too deeply, a number too large, memory running
out: ``describe`` turns each into one line naming the cause and the remedy. Messages are built from the
error's kind, file name and the database's own short text, never from a database error's statement or
parameters (which can hold customer data). An error it does not know is left to ``unexpected``: its type
and the line of the code where it arose, with a pointer to ``-v`` for the traceback.

``UsageError`` (exit 2) and ``Failure`` (exit 1) are what commands raise for bad arguments and for problems
found; both are defined in ``orchestrator.errors`` (with every error's exit code) and imported here, where
the commands import them from. This module is imported by every command: it loads nothing heavy until an
error is described.
"""

from __future__ import annotations

import errno
import sqlite3
import traceback

from orchestrator.errors import Failure, UsageError

__all__ = ["Failure", "UsageError", "describe", "unexpected"]

_DISK_FULL = "free some space (or raise the quota or size limit) and run again"


def describe(exc: BaseException) -> str | None:
    """One line for an expected failure; None when ``exc`` is not one."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return _database(exc.orig)
    if isinstance(exc, (sqlite3.Error, *_psycopg_errors())):
        return _database(exc)
    if isinstance(exc, OSError):
        return _os(exc)
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to process (recursion limit); flatten the expression or file"
    if isinstance(exc, OverflowError):
        return f"a number is too large: {_first_line(exc)}; use a smaller value"
    if isinstance(exc, MemoryError):
        return "out of memory; give the process more memory or work on smaller files"
    return None


def unexpected(exc: BaseException) -> str:
    """One line for an error nobody expected (a bug): its type and where it arose, not its message."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/orchestrator/" in f.filename]
    where = ""
    if frames:
        where = f" at {frames[-1].filename.rsplit('/orchestrator/', 1)[1]}:{frames[-1].lineno}"
    return f"unexpected error ({type(exc).__name__}{where}); run with -v for the traceback"


def _os(exc: OSError) -> str:
    name = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full{name}: {_DISK_FULL}"
    if exc.errno == errno.EFBIG:
        limit = "a write went past the file system's or the process's size limit"
        return f"file too large{name}: {limit}; {_DISK_FULL}"
    if exc.errno == errno.EIO:
        return f"disk I/O error{name}: check the disk"
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot use{where}: {exc.strerror or type(exc).__name__}"


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
