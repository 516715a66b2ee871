"""The tick log: one row per engine tick, with its instant, how long it took and its report as JSON
(``status``, the daemon's metrics and ``/metrics`` read it back)."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from orchestrator.store._tables import TickLog

TICKS = TickLog.__table__  # type: ignore[attr-defined]


def record_tick(conn: Connection, now_us: int, seconds: float, summary: str) -> None:
    """Store one tick: its instant, its duration in seconds and its report (JSON text)."""
    conn.execute(insert(TICKS).values(now_us=now_us, seconds=seconds, summary=summary))
