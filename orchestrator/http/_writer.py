"""Group commits: the calls of every request that arrives while a transaction runs share the next one.

A request hands its validated calls to the ``GroupWriter`` and waits. One thread writes: it takes every
request queued (up to ``max_group_calls`` calls), stores them in one transaction (identify records
through ``store._customers.upsert_customers``, events through ``store._events.insert_new_events`` with
their keys, as file ingest does), commits, and only then answers each request. So a request is answered
once its calls are committed, and under load many requests share one commit.

On SQLite the writer's own connection commits with ``synchronous=FULL``: a committed group survives a
crash of the machine, not only of the process (one sync per group, which is what makes it affordable).
On PostgreSQL a commit is durable as the server is configured.

A group that fails for a reason other than the store (a bug) is retried request by request, so one bad
request never fails the others; when the store fails, every request of the group gets
``StoreUnavailable`` and nothing of the group is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.clock import Clock, SystemClock, to_us
from orchestrator.engine import failure_text
from orchestrator.errors import StoreError
from orchestrator.http._segment import ParsedCalls
from orchestrator.ingest import event_keys
from orchestrator.store import (
    Connection,
    Store,
    checkpoint_wal,
    ensure_customer_keys,
    event_type_ids,
    insert_new_events,
    is_database_error,
    tune_writer_connection,
    upsert_customers,
)

log = logging.getLogger("orchestrator.http")

#: At most this many calls in one transaction (a request is never split).
MAX_GROUP_CALLS = 20_000
#: Customer keys remembered between groups (they never change once committed).
MAX_CACHED_CUSTOMERS = 1_000_000


#: SQLite: WAL pages after which a commit of the writer checkpoints itself (the checkpointer lagging).
BACKSTOP_CHECKPOINT_PAGES = 10_000
#: SQLite: at most this many checkpoints a second.
CHECKPOINTS_PER_SECOND = 4


class Checkpointer:
    """SQLite: copies the write-ahead log into the database file from a thread and connection of its
    own (a passive checkpoint, ``checkpoint_wal``, which never blocks the writer), a few times a second while
    commits come. A commit then only appends to the log: a checkpoint (each page written again, and a
    sync) is never part of a request's wait, and pages changed by many commits are copied once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="orchestrator-api-checkpoints", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        raw: Any = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                try:
                    if raw is None:
                        raw = self.store.engine.raw_connection()
                    checkpoint_wal(raw)
                except Exception as exc:
                    if not is_database_error(exc):
                        raise
                    log.warning("a checkpoint of the store failed: %s", type(exc).__name__)
                    if raw is not None:
                        with contextlib.suppress(Exception):
                            raw.close()
                        raw = None
                if self._stopping:
                    return
                time.sleep(1 / CHECKPOINTS_PER_SECOND)
        finally:
            if raw is not None:
                raw.close()


def _store_failure(exc: BaseException) -> str:
    """One line for a store's failure: its type and place, and SQLite's own message (which never holds
    a value; other drivers' may, so theirs is left out)."""
    text = failure_text(exc)
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.Error) and str(orig):
        text += f": {str(orig).splitlines()[0][:200]}"
    return text


class StoreUnavailable(StoreError):
    """The store did not take the group (down, full, locked too long): nothing of it was stored."""


@dataclass(frozen=True)
class Written:
    """What one request's calls became: events stored, events not stored because their ``messageId``
    was (``duplicates``), identify records applied, and those older than the customer's stored record
    (``stale``, valid and not applied)."""

    events: int = 0
    duplicates: int = 0
    identified: int = 0
    stale: int = 0


@dataclass
class _Pending:
    calls: ParsedCalls
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Written]
    # The events' keys and the mask of those that have one (their messageId's), hashed by the request
    # before it queues: the writer's thread is the one every request waits for.
    keys: np.ndarray
    keyed: np.ndarray

    @property
    def size(self) -> int:
        return (len(self.calls.events) if self.calls.events is not None else 0) + len(self.calls.customers)


_STOP = object()


def _settle(future: asyncio.Future[Written], result: Written | BaseException) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class _Keys:
    """Customer keys and event type ids resolved before, so a group looks up only what is new. Values
    learned inside a transaction count only once it commits."""

    def __init__(self) -> None:
        self.customers: dict[str, int] = {}
        self.types: dict[str, int] = {}
        self.new_customers: dict[str, int] = {}
        self.new_types: dict[str, int] = {}

    def customer_keys(self, conn: Connection, ids: list[str], now_us: int) -> np.ndarray:
        known, new = self.customers, self.new_customers
        missing = [cid for cid in dict.fromkeys(ids) if cid not in known and cid not in new]
        if missing:
            new.update(zip(missing, ensure_customer_keys(conn, missing, now_us).tolist(), strict=True))
        return np.fromiter((known[cid] if cid in known else new[cid] for cid in ids), np.int64, len(ids))

    def type_ids(self, conn: Connection, names: list[str]) -> np.ndarray:
        known, new = self.types, self.new_types
        missing = [name for name in dict.fromkeys(names) if name not in known and name not in new]
        if missing:
            new.update(event_type_ids(conn, missing))
        return np.fromiter((known[n] if n in known else new[n] for n in names), np.int64, len(names))

    def committed(self) -> None:
        if len(self.customers) + len(self.new_customers) > MAX_CACHED_CUSTOMERS:
            self.customers.clear()
        self.customers.update(self.new_customers)
        self.types.update(self.new_types)
        self.rolled_back()

    def rolled_back(self) -> None:
        self.new_customers = {}
        self.new_types = {}


class GroupWriter:
    """The one writer of the HTTP service's calls; ``start`` it, ``await write(calls)`` from requests,
    ``stop`` it (what is queued is written first). ``on_commit`` is told each committed group's number
    of requests and calls."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        max_group_calls: int = MAX_GROUP_CALLS,
        durable: bool = True,
        on_commit: Callable[[int, int], object] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.max_group_calls = max_group_calls
        self.durable = durable
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._keys = _Keys()
        self._failing: str | None = None
        self._checkpoints: Checkpointer | None = None

    def start(self) -> None:
        if self._thread is None:
            if self.store.is_sqlite:
                self._checkpoints = Checkpointer(self.store)
                self._checkpoints.start()
            self._thread = threading.Thread(target=self._run, name="orchestrator-api-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the thread and close its connection."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._checkpoints is not None:
            self._checkpoints.stop(timeout)
            self._checkpoints = None

    async def write(self, calls: ParsedCalls) -> Written:
        """Store ``calls`` with the next group; returns once committed. Raises ``StoreUnavailable``."""
        if calls.events is None and not calls.customers:
            return Written()
        if self._thread is None:
            raise StoreUnavailable("the writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Written] = loop.create_future()
        ids = calls.events.message_ids if calls.events is not None else None
        n = len(calls.events) if calls.events is not None else 0
        keys, keyed = event_keys(None, np.zeros(n, np.int64), ids)
        assert keyed is not None  # without a source, the mask is always given
        self._queue.put(_Pending(calls, loop, future, keys, keyed))
        return await future

    # ------------------------------------------------------------------------------------------ thread

    def _run(self) -> None:
        stopping = False
        try:
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                group = [first]
                size = first.size
                while size < self.max_group_calls:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    group.append(item)
                    size += item.size
                self._write_group(group, size)
        finally:
            self._close()

    def _write_group(self, group: list[_Pending], size: int) -> None:
        try:
            results: Sequence[Written | BaseException] = self._commit(group)
        except Exception as exc:
            if is_database_error(exc):
                self._close()  # a broken connection is not used again
                text = _store_failure(exc)
                if text != self._failing:
                    log.error("the store did not take %d API request(s): %s", len(group), text)
                    self._failing = text
                results = [StoreUnavailable("the store is unavailable")] * len(group)
            elif len(group) > 1:
                results = [self._alone(item) for item in group]
            else:
                log.error("storing an API request failed: %s", failure_text(exc))
                log.debug("the failure's traceback", exc_info=True)
                results = [exc]
        else:
            if self._failing is not None:
                log.warning("the store takes API requests again")
                self._failing = None
            if self.on_commit is not None:
                self.on_commit(len(group), size)
            if self._checkpoints is not None:
                self._checkpoints.poke()
        for item, result in zip(group, results, strict=True):
            item.loop.call_soon_threadsafe(_settle, item.future, result)

    def _alone(self, item: _Pending) -> Written | BaseException:
        try:
            return self._commit([item])[0]
        except Exception as exc:
            if is_database_error(exc):
                self._close()
                return StoreUnavailable("the store is unavailable")
            log.error("storing an API request failed: %s", failure_text(exc))
            log.debug("the failure's traceback", exc_info=True)
            return exc

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self._conn is None:
            conn = self.store.engine.connect()
            if self.store.is_sqlite:
                # The checkpointer copies the WAL into the database outside the commits; the writer's own
                # checkpoints are only the backstop should it fall behind.
                tune_writer_connection(
                    conn, durable=self.durable, autocheckpoint_pages=BACKSTOP_CHECKPOINT_PAGES
                )
            self._conn = conn
        try:
            with self._conn.begin():
                yield self._conn
        except BaseException:
            self._keys.rolled_back()
            raise
        self._keys.committed()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                self._conn.close()
            self._conn = None

    def _commit(self, group: list[_Pending]) -> list[Written]:
        """Store the group in one transaction; what each request's calls became."""
        now_us = to_us(self.clock.now())
        started = time.perf_counter()
        identified = [0] * len(group)
        stale = [0] * len(group)
        with self._transaction() as conn:
            for i, item in enumerate(group):
                if item.calls.customers:
                    done = upsert_customers(conn, [row for _, row in item.calls.customers], now_us)
                    stale[i] = done.stale
                    identified[i] = len(item.calls.customers) - done.stale
            stored = self._insert_events(conn, group, now_us)
        log.debug("committed %d request(s) in %.4fs", len(group), time.perf_counter() - started)
        return [
            Written(
                events=stored[i],
                duplicates=(len(item.calls.events) if item.calls.events is not None else 0) - stored[i],
                identified=identified[i],
                stale=stale[i],
            )
            for i, item in enumerate(group)
        ]

    def _insert_events(self, conn: Connection, requests: list[_Pending], now_us: int) -> list[int]:
        """Insert the events of every request at once; the number stored of each."""
        stored = [0] * len(requests)
        customer_ids: list[str] = []
        event_names: list[str] = []
        times: list[np.ndarray] = []
        props: list[str] = []
        keys: list[np.ndarray] = []
        keyed: list[np.ndarray] = []
        owners: list[int] = []
        for i, item in enumerate(requests):
            chunk = item.calls.events
            if chunk is None:
                continue
            # Only the names the events use: a chunk's lists also name the rows it rejected.
            customer_ids += map(chunk.customer_ids.__getitem__, chunk.customer_codes.tolist())
            event_names += map(chunk.event_names.__getitem__, chunk.event_codes.tolist())
            times.append(chunk.ts_us)
            props += chunk.properties
            keys.append(item.keys)
            keyed.append(item.keyed)
            owners += [i] * len(chunk)
        if not owners:
            return stored
        customers = self._keys.customer_keys(conn, customer_ids, now_us)
        types = self._keys.type_ids(conn, event_names)
        _, _, rows = insert_new_events(
            conn, customers, types, np.concatenate(times), props, np.concatenate(keys), np.concatenate(keyed)
        )
        owner = np.asarray(owners, dtype=np.int64)
        for i, n in enumerate(np.bincount(owner[rows], minlength=len(requests)).tolist()):
            stored[i] = n
        return stored
