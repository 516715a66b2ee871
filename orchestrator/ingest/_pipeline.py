"""Loading validated chunks into the store, one transaction per chunk.

A chunk's customers are mapped to keys (created when new), its event names to type ids, and its events are
inserted in one executemany, all inside one transaction: a crash loses at most the chunk in flight. The
chunks' transactions share one connection with a large page cache, and on SQLite their commits leave the
write-ahead log to the ingest, which checkpoints it every ``CHECKPOINT_EVENTS`` events and at its end
(``Store.bulk_writes``): a page written by several chunks (the customers' id index) is copied into the
database once per checkpoint rather than once per chunk. Each ingest ends with an ``ingest_batches`` row
holding its counts.

Every event from a file has a key (see ``ingest._keys``): its own id, or the file's digest and its line.
An event whose key is stored already is counted as a duplicate and not stored again, so ingesting a file
twice, or again after a crash at any point, stores each of its events once.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from orchestrator.ingest._ids import IdIndex, string_array
from orchestrator.ingest._keys import batch_digest, event_keys, file_digest
from orchestrator.ingest._readers import (
    CHUNK_ROWS,
    DAY_US,
    CustomerChunk,
    EventChunk,
    ReadPosition,
    TimeRange,
    customer_chunks,
    detect_format,
    detect_kind,
    event_chunks,
    record_event_chunks,
)
from orchestrator.ingest._summary import IngestError, IngestReport
from orchestrator.store import (
    Connection,
    Store,
    ensure_customer_keys,
    event_source,
    event_type_ids,
    insert_new_events,
    record_ingest_batch,
    upsert_customers,
)

MAX_REJECT_EXAMPLES = 20
#: How far past the ingest's time a customer record's ``updated_at`` may be (clocks differ a little).
UPDATED_AT_LEEWAY_US = 86_400_000_000
KINDS = ("events", "customers")
#: Events stored between two checkpoints of SQLite's write-ahead log during an ingest (see
#: ``Store.bulk_writes``): about 50 MB of log, so that it stays bounded without rewriting each chunk's pages.
CHECKPOINT_EVENTS = 1_000_000
#: Rows per chunk on PostgreSQL: there a chunk's transaction holds the events table's lock (see
#: ``store.insert_new_events``), which the other writers wait for, so it stays short.
SHARED_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class IngestedEvents:
    """The events one chunk committed, with store ids ``first_id..last_id`` in row order: what an
    in-process copy of the events (the engine's signal state) needs to take them without reading them
    back. ``event_codes`` index ``event_names``; ``properties`` is each event's JSON object text as stored."""

    first_id: int
    last_id: int
    customer_keys: np.ndarray
    event_names: list[str]
    event_codes: np.ndarray
    ts_us: np.ndarray
    properties: list[str]


EventsCallback = Callable[[IngestedEvents], object]
#: Told after each chunk of a file: the bytes of the file read so far, and its size.
ProgressCallback = Callable[[int, int], object]


class _KeyCache:
    """Customer keys and event type ids already resolved during this ingest (they never change). Customer
    ids are looked up an array at a time (``_ids.IdIndex``): at a million customers nearly every event of
    a chunk names a customer the chunk names nowhere else. Ids new to the ingest are created without a
    look-up first as long as every one so far was new to the store too (a store being filled)."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us
        self.customers = IdIndex()
        self.likely_new = True
        self.types: dict[str, int] = {}

    def customer_keys(self, conn: Connection, ids: Sequence[str] | pa.Array) -> np.ndarray:
        """The keys of these distinct customer ids, creating the customers the store does not have."""
        ids = string_array(ids)
        keys = self.customers.get(ids)
        unknown = np.flatnonzero(keys < 0)
        if len(unknown):  # ids new to this ingest: the store has them or creates them
            new_ids = ids.take(pa.array(unknown))
            created = ensure_customer_keys(conn, new_ids.to_pylist(), self.now_us, likely_new=self.likely_new)
            # Keys of customers all created now follow one another; any stored before breaks the run, and
            # the next chunks look their ids up first (the store is not being filled from empty).
            self.likely_new = self.likely_new and bool((np.diff(created) == 1).all())
            keys[unknown] = created
            self.customers.add(new_ids, created)
        return keys

    def type_ids(self, conn: Connection, names: list[str]) -> np.ndarray:
        missing = [name for name in names if name not in self.types]
        if missing:
            self.types.update(event_type_ids(conn, missing))
        return np.fromiter(map(self.types.__getitem__, names), np.int64, len(names))


def _load_events(
    store: Store,
    chunks: Iterator[EventChunk],
    report: IngestReport,
    now_us: int,
    max_examples: int,
    on_events: EventsCallback | None = None,
    digest: bytes | None = None,
) -> None:
    cache = _KeyCache(now_us)
    source = None
    if digest is not None:
        with store.begin() as conn:
            source = event_source(conn, digest, now_us)
    unsaved = 0  # events committed since the write-ahead log was last checkpointed
    with store.bulk_writes() as conn:
        for chunk in chunks:
            # A chunk of rejects only still records them for its source (see ``insert_new_events``).
            if len(chunk) or (source is not None and chunk.rejects):
                keys: np.ndarray | None = None
                keyed: np.ndarray | None = None
                if source is not None or chunk.message_ids is not None:
                    keys, keyed = event_keys(source, chunk.lines, chunk.message_ids)
                with conn.begin():
                    ids = chunk.customer_ids if chunk.customer_id_array is None else chunk.customer_id_array
                    customers = cache.customer_keys(conn, ids)[chunk.customer_codes]
                    types = cache.type_ids(conn, chunk.event_names)[chunk.event_codes]
                    first, last, rows = insert_new_events(
                        conn, customers, types, chunk.ts_us, chunk.properties, keys, keyed,
                        source=source, lines=chunk.lines, rejected_lines=[r.line for r in chunk.rejects],
                    )  # fmt: skip
                stored = len(rows)
                report.accepted += stored
                report.duplicates += len(chunk) - stored
                unsaved += stored
                if unsaved >= CHECKPOINT_EVENTS:
                    store.checkpoint()
                    unsaved = 0
                if on_events is not None and stored:  # only once committed: it is in the store for good
                    codes, ts_us, properties = chunk.event_codes, chunk.ts_us, chunk.properties
                    if stored < len(chunk):  # only the events stored now
                        customers, codes, ts_us = customers[rows], codes[rows], ts_us[rows]
                        properties = [properties[i] for i in rows.tolist()]
                    on_events(
                        IngestedEvents(first, last, customers, chunk.event_names, codes, ts_us, properties)
                    )
            report.add_rejects(chunk.rejects, max_examples)


def _load_customers(
    store: Store, chunks: Iterator[CustomerChunk], report: IngestReport, now_us: int, max_examples: int
) -> None:
    for chunk in chunks:
        if chunk.rows:
            with store.begin() as conn:
                written = upsert_customers(conn, chunk.rows, now_us)
            # A row older than the customer's stored record is valid but not applied: stale, not accepted.
            report.accepted += len(chunk.rows) - written.stale
            report.stale += written.stale
        report.add_rejects(chunk.rejects, max_examples)


def _record_batch(store: Store, report: IngestReport, now_us: int) -> None:
    with store.begin() as conn:
        record_ingest_batch(
            conn,
            source=report.source,
            kind=report.kind,
            accepted=report.accepted,
            rejected=report.rejected,
            duplicates=report.duplicates,
            started_us=int(now_us),
            seconds=report.seconds,
        )


def time_range(now_us: int, min_us: int | None = None, max_future_us: int | None = None) -> TimeRange:
    """The event times an ingest at ``now_us`` accepts: from ``min_us`` (default 1970-01-01) to
    ``max_future_us`` (default one day) after ``now_us``."""
    return TimeRange.default(
        now_us, DAY_US if max_future_us is None else max_future_us, 0 if min_us is None else min_us
    )


def ingest_file(
    store: Store,
    path: str | os.PathLike[str],
    kind: str | None = None,
    *,
    now_us: int,
    max_reject_examples: int = MAX_REJECT_EXAMPLES,
    chunk_rows: int | None = None,
    rejects: TextIO | None = None,
    on_events: EventsCallback | None = None,
    times: TimeRange | None = None,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Load an events or customers file (``.jsonl``/``.ndjson``, ``.csv`` or ``.parquet``) into ``store``.

    ``kind`` is "events" or "customers"; None takes it from the file as a whole (``readers.detect_kind``:
    an ``event`` column in the CSV header or Parquet schema; in JSONL, records with an ``event`` field,
    and a file mixing both kinds of record is refused). Malformed rows are rejected with their line and
    reason and the rest is kept (and written to ``rejects`` as JSON lines, when given); events whose time
    is outside ``times`` (default: ``time_range(now_us)``) are rejected too. Each chunk of ``chunk_rows``
    rows (by default ``CHUNK_ROWS`` on SQLite, ``SHARED_CHUNK_ROWS`` elsewhere) commits on its own, and
    ``on_events``, when given, is then handed the events it stored. Events whose key is stored already
    are counted as duplicates and not stored (see ``ingest._keys``).
    ``now_us`` stamps new customers and the ``ingest_batches`` row, is the time of customer rows without
    ``updated_at`` and bounds theirs (at most a day later); customer rows older than the customer's stored
    record are skipped and counted as ``stale``. ``progress``, when given, is told after each chunk how
    many bytes of the file are read (and its size). Raises ``IngestError`` for a file
    that cannot be read at all (unknown extension or kind, a required column missing) and lets other
    errors through (chunks already committed stay; ingesting the same file again stores the rest).
    """
    started = time.perf_counter()
    path = Path(path)
    fmt = detect_format(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    if kind is None:
        kind = detect_kind(path, fmt)
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r}; expected one of {KINDS}")
    report = IngestReport(source=str(path), kind=kind, sink=rejects)
    position = None if progress is None else ReadPosition(path.stat().st_size)
    if kind == "events":
        rows_per_chunk = _chunk_rows(store, chunk_rows)
        chunks = event_chunks(path, fmt, rows_per_chunk, times or time_range(now_us), **_watched(position))
        digest = file_digest(path)
        told = _told(_read_ahead(chunks), position, progress)
        try:
            _load_events(store, told, report, now_us, max_reject_examples, on_events, digest)
        finally:  # stops the reader's thread at once, should storing fail
            told.close()
    else:
        latest_us = now_us + UPDATED_AT_LEEWAY_US
        rows = customer_chunks(path, fmt, _chunk_rows(store, chunk_rows), latest_us, **_watched(position))
        _load_customers(store, _told(rows, position, progress), report, now_us, max_reject_examples)
    report.seconds = time.perf_counter() - started
    _record_batch(store, report, now_us)
    return report


def _chunk_rows(store: Store, chunk_rows: int | None) -> int:
    """Rows per chunk: as given, else ``CHUNK_ROWS`` on SQLite and ``SHARED_CHUNK_ROWS`` elsewhere."""
    if chunk_rows is not None:
        return chunk_rows
    return CHUNK_ROWS if store.is_sqlite else SHARED_CHUNK_ROWS


_END = object()


def _read_ahead(chunks: Iterator[Any]) -> Iterator[Any]:
    """``chunks``, the next one read (and validated) in a thread of its own while the caller stores the
    one before: the readers' Arrow work and SQLite's steps both run without the interpreter's lock, so
    the two overlap. At most one chunk waits; an error of the reader is raised here, in order; the thread
    ends with the caller's loop, however it ends."""
    handoff: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                handoff.put((item, error), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not hand(chunk):
                    return
            hand(_END)
        except BaseException as error:  # handed to the caller's thread, raised there
            hand(_END, error)

    reader = threading.Thread(target=read, name="ingest-reader", daemon=True)
    reader.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        reader.join()
        if isinstance(chunks, Generator):
            chunks.close()


def _watched(position: ReadPosition | None) -> dict[str, ReadPosition]:
    """The readers' ``position`` argument, passed only when progress is asked for."""
    return {} if position is None else {"position": position}


def _told(
    chunks: Iterator[Any], position: ReadPosition | None, progress: ProgressCallback | None
) -> Generator[Any, None, None]:
    """``chunks``, telling ``progress`` how far the file is read once each chunk is loaded."""
    if position is None or progress is None:
        yield from chunks
        return
    for chunk in chunks:
        yield chunk
        progress(position.read(), position.size)
    progress(position.size, position.size)


def ingest_events_records(
    store: Store,
    records: Iterable[Any],
    now_us: int,
    source: str = "records",
    *,
    batch_id: str | None = None,
    max_reject_examples: int = MAX_REJECT_EXAMPLES,
    chunk_rows: int | None = None,
    on_events: EventsCallback | None = None,
    times: TimeRange | None = None,
) -> IngestReport:
    """Load in-memory event records (mappings shaped like JSONL lines; ``ts`` may also be an aware
    ``datetime``) with the same validation as files; a record's "line" is its 1-based position.
    ``on_events`` is as for ``ingest_file``. ``times`` bounds the event times; by default only events
    before 1970 are refused: records come from code (a simulation, a test) that may well plan events
    ahead, where files come from outside and are held to ``time_range(now_us)``.

    A record with its own id (``message_id``, ``messageId`` or ``event_id``) is stored once whatever
    batch brings it. Other records are de-duplicated only when the caller names the batch with a
    ``batch_id`` that stays the same when the same batch is sent again (a request id, an export's name):
    their key is then the batch id and the position, as a file's is its digest and the line. Without a
    ``batch_id`` they have no key and are always stored: identical records are not taken for a replay,
    since two calls may each bring one real event that happen to look the same."""
    started = time.perf_counter()
    report = IngestReport(source=source, kind="events")
    chunks = record_event_chunks(records, _chunk_rows(store, chunk_rows), times or TimeRange(0))
    digest = None if batch_id is None else batch_digest(batch_id)
    _load_events(store, chunks, report, now_us, max_reject_examples, on_events, digest)
    report.seconds = time.perf_counter() - started
    _record_batch(store, report, now_us)
    return report
