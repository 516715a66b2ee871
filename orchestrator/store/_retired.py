"""Retired journeys: ``orchestrator retire JOURNEY`` ends a journey for good, in one transaction.

Leaving a journey out of the workspace only pauses it (its instances are not stepped, its queued messages
are not dispatched, nothing is failed). Retiring it is the explicit end: its queued messages become
``cancelled`` ("journey retired"), its active instances finish as ``exited`` with reason "journey retired",
and a row in ``retired_journeys`` remembers the highest version it had. The journey runs again only from a
higher version (the engine refuses the retired versions and lifts the retirement when a higher one runs).
Every function runs in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from orchestrator.store._funnel import RETIRED, count_where
from orchestrator.store._ledger import cancel_queued

RETIRED_REASON = "journey retired"


@dataclass(frozen=True)
class Retirement:
    journey_id: str
    version: int  # the highest version registered when it was retired
    retired_us: int
    cancelled: int  # queued messages cancelled
    finished: int  # active instances finished


def retirement(conn: Connection, journey_id: str) -> Retirement | None:
    row = conn.execute(
        text("SELECT version, retired_us, cancelled, finished FROM retired_journeys WHERE journey_id = :j"),
        {"j": journey_id},
    ).first()
    if row is None:
        return None
    return Retirement(journey_id, int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def retire_journey(conn: Connection, journey_id: str, now_us: int) -> Retirement | None:
    """Retire ``journey_id``: cancel its queued messages, finish its active instances, remember it.
    ``None`` when the store has never run the journey."""
    top = conn.execute(
        text("SELECT MAX(version) FROM journey_versions WHERE journey_id = :j"), {"j": journey_id}
    ).scalar()
    if top is None:
        return None
    cancelled = cancel_queued(conn, journey_id, RETIRED_REASON)
    count_where(conn, "journey_id = :j AND status = 'active'", {"j": journey_id}, RETIRED, "exited")
    finished = conn.execute(
        text(
            "UPDATE journey_instances SET status = 'exited', state = 'exited', exited_us = :t, "
            "exit_reason = :r, wake_at_us = NULL WHERE journey_id = :j AND status = 'active'"
        ),
        {"t": now_us, "r": RETIRED_REASON, "j": journey_id},
    ).rowcount
    conn.execute(text("DELETE FROM retired_journeys WHERE journey_id = :j"), {"j": journey_id})
    conn.execute(
        text(
            "INSERT INTO retired_journeys (journey_id, version, retired_us, cancelled, finished) "
            "VALUES (:j, :v, :t, :c, :f)"
        ),
        {"j": journey_id, "v": int(top), "t": now_us, "c": cancelled, "f": int(finished or 0)},
    )
    return Retirement(journey_id, int(top), now_us, cancelled, int(finished or 0))


def lift_retirement(conn: Connection, journey_id: str) -> None:
    """A higher version of a retired journey runs: it is no longer retired."""
    conn.execute(text("DELETE FROM retired_journeys WHERE journey_id = :j"), {"j": journey_id})
