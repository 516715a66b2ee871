"""The ingest log: one ``ingest_batches`` row per ingest, holding its counts."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from orchestrator.store._tables import IngestBatch

INGEST_BATCHES = IngestBatch.__table__  # type: ignore[attr-defined]


def record_ingest_batch(
    conn: Connection,
    *,
    source: str,
    kind: str,
    accepted: int,
    rejected: int,
    duplicates: int,
    started_us: int,
    seconds: float,
) -> None:
    """Write the ``ingest_batches`` row of one ingest (in the caller's transaction)."""
    row = {
        "source": source,
        "kind": kind,
        "accepted": accepted,
        "rejected": rejected,
        "duplicates": duplicates,
        "started_us": started_us,
        "seconds": seconds,
    }
    conn.execute(insert(INGEST_BATCHES), [row])
