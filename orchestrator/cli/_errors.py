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
import traceback

from orchestrator.errors import DISK_FULL_REMEDY, Failure, UsageError

__all__ = ["Failure", "UsageError", "describe", "unexpected"]

_DISK_FULL = DISK_FULL_REMEDY


def describe(exc: BaseException) -> str | None:
    """One line for an expected failure; None when ``exc`` is not one."""
    from orchestrator.store import describe_database_error

    database = describe_database_error(exc)
    if database is not None:
        return database
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""
