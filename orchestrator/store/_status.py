"""Read-only counts for the status command and the daemon: instances per step, due work, backlog, ticks."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class StateCount:
    journey_id: str
    version: int
    status: str
    state: str
    count: int


def state_counts(conn: Connection, journey_id: str | None = None) -> list[StateCount]:
    """Instances per journey, version, status and state (finished instances by how they finished)."""
    where = "WHERE journey_id = :j " if journey_id is not None else ""
    rows = conn.execute(
        text(
            "SELECT journey_id, version, status, state, COUNT(*) FROM journey_instances "
            f"{where}GROUP BY journey_id, version, status, state ORDER BY journey_id, version, status, state"
        ),
        {"j": journey_id},
    ).all()
    return [StateCount(r[0], int(r[1]), r[2], r[3], int(r[4])) for r in rows]


@dataclass(frozen=True)
class Backlog:
    channel: str
    queued: int
    oldest_us: int
    sending: int = 0  # handed to the provider, answer not recorded yet (or in flight at a crash)
    uncertain: int = 0  # at_most_once: in flight when a dispatcher stopped, never sent again


def outbox_backlog(conn: Connection) -> list[Backlog]:
    """Per channel: messages queued or in flight (and the oldest of them), and those left uncertain."""
    rows = conn.execute(
        text(
            "SELECT channel, SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN status <> 'uncertain' THEN created_us END), "
            "SUM(CASE WHEN status = 'sending' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'uncertain' THEN 1 ELSE 0 END) "
            "FROM messages WHERE status IN ('queued', 'sending', 'uncertain') "
            "GROUP BY channel ORDER BY channel"
        )
    ).all()
    return [
        Backlog(r[0], int(r[1] or 0), int(r[2] if r[2] is not None else 0), int(r[3] or 0), int(r[4] or 0))
        for r in rows
    ]


def due_counts(conn: Connection, now_us: int, horizon_us: int) -> dict[str, tuple[int, int]]:
    """Per journey: active instances due now (``wake_at_us <= now``) and due within ``horizon_us`` after."""
    rows = conn.execute(
        text(
            "SELECT journey_id, SUM(CASE WHEN wake_at_us <= :now THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN wake_at_us > :now AND wake_at_us <= :later THEN 1 ELSE 0 END) "
            "FROM journey_instances WHERE status = 'active' GROUP BY journey_id ORDER BY journey_id"
        ),
        {"now": now_us, "later": now_us + horizon_us},
    ).all()
    return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}


def last_tick(conn: Connection) -> tuple[int, float, str] | None:
    """(now_us, seconds, summary JSON) of the latest tick."""
    row = conn.execute(text("SELECT now_us, seconds, summary FROM ticks ORDER BY id DESC LIMIT 1")).first()
    return None if row is None else (int(row[0]), float(row[1]), str(row[2]))


def latest_tick_us(conn: Connection) -> int | None:
    """The latest instant among the recent ticks (with several workers, ticks are stored as they end, not
    in the order of their instants)."""
    value = conn.execute(
        text("SELECT MAX(now_us) FROM (SELECT now_us FROM ticks ORDER BY id DESC LIMIT 100) recent")
    ).scalar()
    return None if value is None else int(value)


def recent_tick_instants(conn: Connection, limit: int = 20) -> list[int]:
    """The instants of the latest ``limit`` ticks, oldest first."""
    rows = conn.execute(text("SELECT now_us FROM ticks ORDER BY id DESC LIMIT :n"), {"n": limit}).all()
    return sorted(int(r[0]) for r in rows)


def max_tick_us(conn: Connection) -> int | None:
    """The latest instant of every tick the store holds (``latest_tick_us`` looks at recent ticks only)."""
    value = conn.execute(text("SELECT MAX(now_us) FROM ticks")).scalar()
    return None if value is None else int(value)
