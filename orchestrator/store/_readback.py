"""Whole-table reads of what the engine did, for tests and inspection: instances, ledger rows, conversions
and suppressions, each as plain rows in the order they were written.

These reads are not on any hot path (they read every row); the engine never calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class InstanceRow:
    """One journey instance: whose, which journey and version, where it is and how it ended."""

    customer_id: str
    journey_id: str
    version: int
    state: str
    status: str
    exit_reason: str | None
    entry_key: str | None
    holdout: bool
    entered_us: int
    exited_us: int | None = None


@dataclass(frozen=True)
class LedgerRow:
    """One row of the message ledger, with the customer's id."""

    idempotency_key: str
    channel: str
    recipient: str | None
    customer_id: str
    journey_id: str
    step: str
    body: str | None
    subject: str | None
    html: str | None
    title: str | None
    link: str | None
    created_us: int
    status: str
    reason: str | None
    sent_us: int | None = None


@dataclass(frozen=True)
class ConversionRow:
    """One conversion recorded for an instance (either arm)."""

    customer_id: str
    journey_id: str
    holdout: bool
    converted_us: int
    revenue: float


@dataclass(frozen=True)
class SuppressionRow:
    """An address no message may go to again on its channel."""

    channel: str
    address: str
    reason: str


def instance_rows(conn: Connection, entered_since_us: int | None = None) -> list[InstanceRow]:
    """Every journey instance (or those that entered at ``entered_since_us`` or later), in the order they
    were created."""
    since = "" if entered_since_us is None else "WHERE i.entered_us >= :since "
    rows = conn.execute(
        text(
            "SELECT c.id, i.journey_id, i.version, i.state, i.status, i.exit_reason, i.entry_key, i.holdout, "
            "i.entered_us, i.exited_us FROM journey_instances i JOIN customers c ON c.key = i.customer_key "
            f"{since}ORDER BY i.id"
        ),
        {} if entered_since_us is None else {"since": int(entered_since_us)},
    ).all()
    return [InstanceRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9]) for r in rows]


def ledger_rows(conn: Connection) -> list[LedgerRow]:
    """Every ledger row, in the order they were written (by creation instant, then id)."""
    rows = conn.execute(
        text(
            "SELECT m.idempotency_key, m.channel, m.recipient, c.id, m.journey_id, m.step, m.body, "
            "m.subject, m.html, m.title, m.link, m.created_us, m.status, m.reason, m.sent_us FROM messages m "
            "JOIN customers c ON c.key = m.customer_key ORDER BY m.created_us, m.id"
        )
    ).all()
    return [LedgerRow(*row) for row in rows]


def conversion_rows(conn: Connection) -> list[ConversionRow]:
    """Every conversion, in the order of the instances converted."""
    rows = conn.execute(
        text(
            "SELECT c.id, v.journey_id, v.holdout, v.converted_us, v.revenue FROM conversions v "
            "JOIN customers c ON c.key = v.customer_key ORDER BY v.instance_id"
        )
    ).all()
    return [ConversionRow(r[0], r[1], bool(r[2]), r[3], float(r[4])) for r in rows]


def suppression_rows(conn: Connection) -> list[SuppressionRow]:
    """Every suppressed address, by channel and address."""
    rows = conn.execute(
        text("SELECT channel, address, reason FROM suppressions ORDER BY channel, address")
    ).all()
    return [SuppressionRow(*row) for row in rows]


def query_rows(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """The rows of a read query a test writes (``:name`` parameters), for what the reads above miss."""
    return list(conn.execute(text(sql), params or {}).all())
