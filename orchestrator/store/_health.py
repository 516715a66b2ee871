"""Journeys marked failed: a failure inside one journey's part of a tick (its version, a migration, entry,
conversions, exits, stepping) is stored here, one row per failing journey, and cleared when the journey
works again. ``status`` reads it; the engine writes it once per tick, in one short transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text

TABLE = "journey_health"


@dataclass(frozen=True)
class JourneyFailure:
    journey_id: str
    error: str  # one line, naming the cause (ids and file positions, never customer values)
    since_us: int  # the first tick that failed with this error
    last_us: int  # the latest tick that failed with it


def failed_journeys(conn: Connection) -> list[JourneyFailure]:
    """Every journey marked failed, by id (none in a store made before the table existed)."""
    return _failures(conn) if inspect(conn).has_table(TABLE) else []


def _failures(conn: Connection) -> list[JourneyFailure]:
    rows = conn.execute(
        text(f"SELECT journey_id, error, since_us, last_us FROM {TABLE} ORDER BY journey_id")
    ).all()
    return [JourneyFailure(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


def record_health(conn: Connection, failures: Mapping[str, str], now_us: int) -> dict[str, str]:
    """Store one tick's verdict: each journey in ``failures`` is marked failed with its error (since this
    tick, unless it already failed with the same error); every other mark is cleared (the journey worked
    at this tick, or is no longer run). Returns the marks as they were before, by journey id."""
    before = {f.journey_id: f.error for f in _failures(conn)}
    for journey_id, error in failures.items():
        if before.get(journey_id) == error:
            conn.execute(
                text(f"UPDATE {TABLE} SET last_us = :now WHERE journey_id = :j"),
                {"j": journey_id, "now": now_us},
            )
        elif journey_id in before:
            conn.execute(
                text(f"UPDATE {TABLE} SET error = :e, since_us = :now, last_us = :now WHERE journey_id = :j"),
                {"j": journey_id, "e": error, "now": now_us},
            )
        else:
            conn.execute(
                text(
                    f"INSERT INTO {TABLE} (journey_id, error, since_us, last_us) VALUES (:j, :e, :now, :now)"
                ),
                {"j": journey_id, "e": error, "now": now_us},
            )
    for journey_id in before.keys() - failures.keys():
        conn.execute(text(f"DELETE FROM {TABLE} WHERE journey_id = :j"), {"j": journey_id})
    return before
