"""Cheap reads for a metrics scrape: the ledger by channel and status, and the ticks stored since the
last scrape. Each query reads an index or the few rows that are new, never a whole history."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


def message_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Messages of the ledger by (channel, status), test sends left out."""
    rows = conn.execute(
        text(
            "SELECT channel, status, COUNT(*) FROM messages WHERE test = :no "
            "GROUP BY channel, status ORDER BY channel, status"
        ),
        {"no": False},
    ).all()
    return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def sent_by_journey(conn: Connection) -> dict[str, int]:
    """Messages sent (status ``sent``) by journey, test sends left out."""
    rows = conn.execute(
        text(
            "SELECT journey_id, COUNT(*) FROM messages WHERE test = :no AND status = 'sent' "
            "GROUP BY journey_id"
        ),
        {"no": False},
    ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def last_tick_id(conn: Connection) -> int:
    """The id of the latest stored tick, 0 when none."""
    value = conn.execute(text("SELECT MAX(id) FROM ticks")).scalar()
    return 0 if value is None else int(value)


@dataclass(frozen=True)
class StoredTick:
    id: int
    now_us: int
    seconds: float
    summary: str  # the tick report as JSON


def ticks_after(conn: Connection, after_id: int, limit: int = 1000) -> list[StoredTick]:
    """The ticks stored after ``after_id``, oldest first, at most ``limit`` of them."""
    rows = conn.execute(
        text("SELECT id, now_us, seconds, summary FROM ticks WHERE id > :a ORDER BY id LIMIT :n"),
        {"a": after_id, "n": limit},
    ).all()
    return [StoredTick(int(r[0]), int(r[1]), float(r[2]), str(r[3])) for r in rows]


def ping(conn: Connection) -> None:
    """A round trip to the store; raises when it does not answer."""
    conn.execute(text("SELECT 1")).scalar()
