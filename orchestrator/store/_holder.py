"""One engine process per SQLite store: the holder lock.

A SQLite file has one writer at a time, and the engine's locks for sharing work (``store._leases``) only
exist on PostgreSQL, so two engine processes on one SQLite file would both step, and both dispatch, every
message. An engine process (``run --once``, the daemon, the demo) therefore holds the store for its whole
life: an exclusive ``flock`` on ``<file>.lock`` beside the SQLite file, with a one-line record of who holds
it (pid, host, command, since). A second engine process fails to take the lock at once and is refused
with the holder's record.

The kernel releases the lock when the holding process ends, however it ends (SIGKILL included), so a dead
holder's lock is taken over by the next process without any guessing about stale pids or heartbeats; the
record it left is simply overwritten. Processes that only ingest or read (``ingest``, ``status``,
``report``) do not take the lock: SQLite serialises their writes with the engine's. PostgreSQL stores take
no lock here: several workers share them through leases.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import orjson
from sqlalchemy.engine import make_url

from orchestrator.errors import StoreError

#: How long a refused process waits for a new holder to finish writing its record before naming it.
RECORD_WAIT_SECONDS = 1.0


class StoreHeld(StoreError):
    """Another live engine process holds this SQLite store (the message names it)."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    command: str
    since: str  # ISO-8601

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command}, since {self.since})"


def lock_path(url: str) -> Path | None:
    """The lock file of a SQLite store URL (``<file>.lock``); None for PostgreSQL or an in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(f"{parsed.database}.lock")


class Holding:
    """The lock on one store, held until ``release`` (or the end of a ``with`` block, or the process)."""

    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the lock

    def __enter__(self) -> Holding:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()


def hold(url: str, command: str, since: datetime) -> Holding:
    """Hold the store at ``url`` for this process, as ``command`` since ``since``; raises ``StoreHeld``
    naming the holder when another process has it. A no-op on PostgreSQL."""
    path = lock_path(url)
    if path is None:
        return Holding(None, None)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StoreHeld(_refusal(path)) from None
        raise OSError(
            exc.errno, f"cannot lock {path} ({exc.strerror}); a SQLite store must be on a local file system"
        ) from None
    record = Holder(os.getpid(), socket.gethostname(), command, since.isoformat())
    os.ftruncate(fd, 0)
    os.pwrite(fd, orjson.dumps(vars(record)) + b"\n", 0)
    return Holding(path, fd)


def holder(path: Path) -> Holder | None:
    """The record in a lock file (whoever holds it now, or held it last); None when unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
        return Holder(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refusal(path: Path) -> str:
    store = path.with_suffix("") if path.suffix == ".lock" else path
    found = holder(path)
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    # A process that has just taken the lock may not have written its record yet: until it has, the file
    # is empty or still names the previous (ended) holder.
    while (found is None or not _alive_here(found)) and time.monotonic() < deadline:
        time.sleep(0.05)
        found = holder(path)
    who = found.describe() if found is not None else "a process that has not written its record yet"
    return (
        f"another engine process holds the store {store}: {who}; one engine process runs per SQLite file "
        "(stop that one first, or use PostgreSQL for several workers)"
    )


def _alive_here(found: Holder) -> bool:
    """Whether the record's process is alive (a record from another host is taken as it is)."""
    if found.host != socket.gethostname():
        return True
    try:
        os.kill(found.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
