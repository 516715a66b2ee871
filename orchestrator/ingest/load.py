"""Loading validated chunks into the store, one transaction per chunk.

A chunk's customers are mapped to keys (created when new), its event names to type ids, and its events are
inserted in one executemany, all inside one transaction: a crash loses at most the chunk in flight. Each
ingest ends with an ``ingest_batches`` row holding its counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from sqlalchemy import Connection, insert

from orchestrator.ingest.readers import (
    CHUNK_ROWS,
    CustomerChunk,
    EventChunk,
    customer_chunks,
    detect_format,
    detect_kind,
    event_chunks,
    record_event_chunks,
)
from orchestrator.ingest.report import IngestError, IngestReport
from orchestrator.store.customers import ensure_customer_keys, upsert_customers
from orchestrator.store.db import Store
from orchestrator.store.events import event_type_ids, insert_events
from orchestrator.store.tables import IngestBatch

MAX_REJECT_EXAMPLES = 20
#: How far past the ingest's time a customer record's ``updated_at`` may be (clocks differ a little).
UPDATED_AT_LEEWAY_US = 86_400_000_000
KINDS = ("events", "customers")


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


class _KeyCache:
    """Customer keys and event type ids already resolved during this ingest (they never change)."""

    def __init__(self, now_us: int) -> None:
        self.now_us = now_us
        self.customers: dict[str, int] = {}
        self.types: dict[str, int] = {}

    def customer_keys(self, conn: Connection, ids: list[str]) -> np.ndarray:
        known = self.customers
        missing = [cid for cid in ids if cid not in known]
        if missing:
            known.update(zip(missing, ensure_customer_keys(conn, missing, self.now_us).tolist(), strict=True))
        return np.fromiter(map(known.__getitem__, ids), np.int64, len(ids))

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
) -> None:
    cache = _KeyCache(now_us)
    for chunk in chunks:
        if len(chunk):
            with store.begin() as conn:
                keys = cache.customer_keys(conn, chunk.customer_ids)[chunk.customer_codes]
                types = cache.type_ids(conn, chunk.event_names)[chunk.event_codes]
                first, last = insert_events(conn, keys, types, chunk.ts_us, chunk.properties)
            report.accepted += len(chunk)
            if on_events is not None:  # only once committed: what it is told is in the store for good
                on_events(
                    IngestedEvents(
                        first, last, keys, chunk.event_names, chunk.event_codes, chunk.ts_us, chunk.properties
                    )
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
        conn.execute(
            insert(IngestBatch.__table__),  # type: ignore[attr-defined]
            [
                {
                    "source": report.source,
                    "kind": report.kind,
                    "accepted": report.accepted,
                    "rejected": report.rejected,
                    "started_us": int(now_us),
                    "seconds": report.seconds,
                }
            ],
        )


def ingest_file(
    store: Store,
    path: str | os.PathLike[str],
    kind: str | None = None,
    *,
    now_us: int,
    max_reject_examples: int = MAX_REJECT_EXAMPLES,
    chunk_rows: int = CHUNK_ROWS,
    rejects: TextIO | None = None,
    on_events: EventsCallback | None = None,
) -> IngestReport:
    """Load an events or customers file (``.jsonl``/``.ndjson``, ``.csv`` or ``.parquet``) into ``store``.

    ``kind`` is "events" or "customers"; None detects it (an ``event`` field in the first record, CSV header
    or Parquet schema means events). Malformed rows are rejected with their line and reason and the rest is
    kept (and written to ``rejects`` as JSON lines, when given); each chunk of ``chunk_rows`` rows commits
    on its own, and ``on_events``, when given, is then handed the chunk's events. ``now_us`` stamps new
    customers and the ``ingest_batches`` row, is the time of customer rows without ``updated_at`` and
    bounds theirs (at most a day later); customer rows older than the customer's stored record are skipped
    and counted as ``stale``. Raises ``IngestError`` for a file that cannot be read at all (unknown
    extension or kind, a required column missing) and lets database errors through (chunks already
    committed stay).
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
    if kind == "events":
        _load_events(
            store, event_chunks(path, fmt, chunk_rows), report, now_us, max_reject_examples, on_events
        )
    else:
        chunks = customer_chunks(path, fmt, chunk_rows, latest_us=now_us + UPDATED_AT_LEEWAY_US)
        _load_customers(store, chunks, report, now_us, max_reject_examples)
    report.seconds = time.perf_counter() - started
    _record_batch(store, report, now_us)
    return report


def ingest_events_records(
    store: Store,
    records: Iterable[Any],
    now_us: int,
    source: str = "records",
    *,
    max_reject_examples: int = MAX_REJECT_EXAMPLES,
    chunk_rows: int = CHUNK_ROWS,
    on_events: EventsCallback | None = None,
) -> IngestReport:
    """Load in-memory event records (mappings shaped like JSONL lines; ``ts`` may also be an aware
    ``datetime``) with the same validation as files; a record's "line" is its 1-based position.
    ``on_events`` is as for ``ingest_file``."""
    started = time.perf_counter()
    report = IngestReport(source=source, kind="events")
    _load_events(
        store, record_event_chunks(records, chunk_rows), report, now_us, max_reject_examples, on_events
    )
    report.seconds = time.perf_counter() - started
    _record_batch(store, report, now_us)
    return report
