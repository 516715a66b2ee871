"""Read-only summaries of the journeys for the console: each journey's highest version, its retirement,
its entries since an instant, and a journey's latest ledger rows. One grouped statement each."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


def latest_versions(conn: Connection) -> dict[str, int]:
    """Every journey with a registered version, and its highest version."""
    rows = conn.execute(text("SELECT journey_id, MAX(version) FROM journey_versions GROUP BY journey_id"))
    return {str(r[0]): int(r[1]) for r in rows.all()}


def retired_versions(conn: Connection) -> dict[str, int]:
    """Retired journeys and the highest version each had when it was retired."""
    rows = conn.execute(text("SELECT journey_id, version FROM retired_journeys"))
    return {str(r[0]): int(r[1]) for r in rows.all()}


def entries_since(conn: Connection, since_us: int) -> dict[str, int]:
    """Per journey, the instances that entered at or after ``since_us`` (journeys with none are left out)."""
    rows = conn.execute(
        text(
            "SELECT journey_id, COUNT(*) FROM journey_instances WHERE entered_us >= :since "
            "GROUP BY journey_id"
        ),
        {"since": since_us},
    )
    return {str(r[0]): int(r[1]) for r in rows.all()}


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row of a journey, with the customer's id: what the console lists as a recent send."""

    created_us: int
    sent_us: int | None
    customer_id: str
    version: int
    step: str
    channel: str
    status: str
    reason: str | None


def latest_ledger_rows(conn: Connection, journey_id: str, limit: int = 50) -> list[LedgerEntry]:
    """The latest ``limit`` ledger rows of ``journey_id`` (test sends left out), newest first."""
    rows = conn.execute(
        text(
            "SELECT m.created_us, m.sent_us, c.id, m.version, m.step, m.channel, m.status, m.reason "
            "FROM messages m JOIN customers c ON c.key = m.customer_key "
            "WHERE m.journey_id = :j AND m.test = :f ORDER BY m.id DESC LIMIT :n"
        ),
        {"j": journey_id, "f": False, "n": limit},
    ).all()
    return [
        LedgerEntry(
            int(r[0]), None if r[1] is None else int(r[1]), str(r[2]), int(r[3]), r[4], r[5], r[6], r[7]
        )
        for r in rows
    ]
