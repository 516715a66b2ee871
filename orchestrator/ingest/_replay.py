"""Past events read whole, for a backtest: the events of files as one set of columns, not stored.

A backtest (``orchestrator.engine.backtest``) stores events itself, a tick's worth at a time, so that no
tick sees its future; what it needs from ingest is the files read and checked as ingest reads them
(the same readers, the same rejects) into one ``EventChunk``. Events with their own id that repeat one
read earlier are dropped, as ingest would not store them twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator.ingest._readers import ANY_TIME, CHUNK_ROWS, EventChunk, detect_format, event_chunks
from orchestrator.ingest._summary import IngestError, IngestReport


@dataclass
class PastEventsRead:
    """The events of the files (``events``), and per file what was read and rejected (``reports``)."""

    events: EventChunk
    reports: list[IngestReport] = field(default_factory=list)


def read_events(paths: Sequence[str | os.PathLike[str]], max_reject_examples: int = 20) -> PastEventsRead:
    """Read event files (JSONL, CSV or Parquet) into one ``EventChunk``, in file order; each file's
    malformed rows are rejected and counted in its report (``accepted`` counts the events kept). Raises
    ``IngestError`` for a file that cannot be read at all."""
    ids: dict[str, int] = {}
    names: dict[str, int] = {}
    customer_codes: list[np.ndarray] = []
    event_codes: list[np.ndarray] = []
    times: list[np.ndarray] = []
    properties: list[str] = []
    seen_ids: set[str] = set()
    reports = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise IngestError(f"{path}: no such file")
        report = IngestReport(source=str(path), kind="events")
        for chunk in event_chunks(path, detect_format(path), CHUNK_ROWS, ANY_TIME):
            keep = np.ones(len(chunk), bool)
            if chunk.message_ids is not None:
                for i, mid in enumerate(chunk.message_ids):
                    if mid is not None:
                        if mid in seen_ids:
                            keep[i] = False
                        seen_ids.add(mid)
            cmap = np.array([ids.setdefault(c, len(ids)) for c in chunk.customer_ids], dtype=np.int64)
            emap = np.array([names.setdefault(n, len(names)) for n in chunk.event_names], dtype=np.int64)
            rows = np.flatnonzero(keep)
            customer_codes.append(cmap[chunk.customer_codes[rows]] if len(cmap) else np.zeros(0, np.int64))
            event_codes.append(emap[chunk.event_codes[rows]] if len(emap) else np.zeros(0, np.int64))
            times.append(np.asarray(chunk.ts_us, dtype=np.int64)[rows])
            properties.extend(chunk.properties[i] for i in rows.tolist())
            report.accepted += len(rows)
            report.duplicates += len(chunk) - len(rows)
            report.add_rejects(chunk.rejects, max_reject_examples)
        reports.append(report)

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    events = EventChunk(
        customer_ids=list(ids),
        customer_codes=joined(customer_codes),
        event_names=list(names),
        event_codes=joined(event_codes),
        ts_us=joined(times),
        properties=properties,
    )
    return PastEventsRead(events, reports)
