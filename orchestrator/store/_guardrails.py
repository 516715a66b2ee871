"""What the lift report's guardrails read: the moments a journey's customers opted out, complained or
bounced, and the messages the journey handed to a provider. One query each, as numpy columns; the report
matches them to each entry's window (``measure._guardrails``).

- ``journey_opt_outs``: consent withdrawals the engine recorded (``consent_changes`` with consent false,
  any channel) and events of one name (``unsubscribe``), of the customers who entered the journey;
- ``journey_customer_events``: events of one name (``complaint``) of those customers;
- ``journey_bounces``: the journey's messages that failed and put their address on the suppression list
  (``suppressions.message_id``), by instance, and events of one name (``bounce``) of its customers;
- ``journey_message_outcomes``: the journey's messages the provider took (``sent``) or refused
  (``failed``), by instance, test sends left out.

Each reads the moments with ``from_us <= at < until_us``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection

from orchestrator.store._bulk import column, fetch

#: The customers who entered the journey, as a sub-query on ``:j``.
_ENTERED = "SELECT customer_key FROM journey_instances WHERE journey_id = :j"


@dataclass(frozen=True)
class Moments:
    """Moments something happened, as aligned columns: ``instance_id`` is the journey instance it belongs
    to (0 when it belongs to the customer, not one entry), ``customer_key`` whose, ``at_us`` when."""

    instance_id: np.ndarray  # int64
    customer_key: np.ndarray  # int64
    at_us: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.at_us.shape[0])


@dataclass(frozen=True)
class MessageOutcomes:
    """The journey's messages handed to a provider: their instance, whether it took them (``sent``) and
    when they were queued."""

    instance_id: np.ndarray  # int64
    sent: np.ndarray  # bool: status sent (else failed)
    created_us: np.ndarray  # int64


def _moments(rows: list[tuple[object, ...]]) -> Moments:
    return Moments(column(rows, 0, np.int64), column(rows, 1, np.int64), column(rows, 2, np.int64))


def _events(alias: str) -> str:
    """The events of name ``:n`` of the journey's customers, in the window, as (0, customer, time)."""
    return (
        f"SELECT 0, {alias}.customer_key, {alias}.ts_us FROM events {alias} "
        f"JOIN event_types t ON t.id = {alias}.type_id WHERE t.name = :n AND {alias}.ts_us >= :a "
        f"AND {alias}.ts_us < :b AND {alias}.customer_key IN ({_ENTERED})"
    )


def journey_opt_outs(
    conn: Connection, journey_id: str, event_name: str, from_us: int, until_us: int
) -> Moments:
    """Consent withdrawals (any channel) and events named ``event_name`` of the journey's customers."""
    rows = fetch(
        conn,
        "SELECT 0, c.customer_key, c.at_us FROM consent_changes c WHERE NOT c.consent AND c.at_us >= :a "
        f"AND c.at_us < :b AND c.customer_key IN ({_ENTERED}) UNION ALL {_events('e')}",
        {"j": journey_id, "n": event_name, "a": int(from_us), "b": int(until_us)},
    )
    return _moments(rows)


def journey_customer_events(
    conn: Connection, journey_id: str, event_name: str, from_us: int, until_us: int
) -> Moments:
    """Events named ``event_name`` of the journey's customers."""
    rows = fetch(
        conn, _events("e"), {"j": journey_id, "n": event_name, "a": int(from_us), "b": int(until_us)}
    )
    return _moments(rows)


def journey_bounces(
    conn: Connection, journey_id: str, event_name: str, from_us: int, until_us: int
) -> Moments:
    """The journey's messages that failed and suppressed their address (by instance, at the suppression's
    time), and events named ``event_name`` of its customers (instance 0)."""
    rows = fetch(
        conn,
        "SELECT m.instance_id, m.customer_key, s.created_us FROM messages m "
        "JOIN suppressions s ON s.message_id = m.id WHERE m.journey_id = :j AND m.status = 'failed' "
        f"AND NOT m.test AND s.created_us >= :a AND s.created_us < :b UNION ALL {_events('e')}",
        {"j": journey_id, "n": event_name, "a": int(from_us), "b": int(until_us)},
    )
    return _moments(rows)


def journey_message_outcomes(
    conn: Connection, journey_id: str, from_us: int, until_us: int
) -> MessageOutcomes:
    """The journey's messages with status ``sent`` or ``failed`` queued in the window, test sends left out."""
    rows = fetch(
        conn,
        "SELECT instance_id, CASE WHEN status = 'sent' THEN 1 ELSE 0 END, created_us FROM messages "
        "WHERE journey_id = :j AND status IN ('sent', 'failed') AND NOT test "
        "AND created_us >= :a AND created_us < :b",
        {"j": journey_id, "a": int(from_us), "b": int(until_us)},
    )
    return MessageOutcomes(
        column(rows, 0, np.int64), column(rows, 1, np.int64).astype(bool), column(rows, 2, np.int64)
    )
