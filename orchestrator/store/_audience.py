"""Whole-base reads for audience estimates (``engine.audience``): who has been sent what lately and whose
address is on the suppression list, for every customer at once (one statement each, no key lists)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection

from orchestrator.store._bulk import column, fetch, objects

#: The customer column holding each consent channel's address (``language.ADDRESS_FIELD``'s columns).
_ADDRESS_COLUMNS = frozenset({"email", "phone", "push_token"})


def marketing_sends_since(conn: Connection, since_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every marketing message sent to any customer since ``since_us`` (test sends left out): (customer
    key, channel, sent_us), as ``recent_sends`` reads them for a batch."""
    rows = fetch(
        conn,
        "SELECT customer_key, channel, sent_us FROM messages WHERE status = 'sent' AND transactional = :f "
        "AND test = :f AND sent_us >= :since",
        {"since": since_us, "f": False},
    )
    return column(rows, 0, np.int64), objects(rows, 1), column(rows, 2, np.int64)


def suppressed_customer_keys(conn: Connection, channel: str, address_column: str) -> np.ndarray:
    """Keys of the customers whose ``address_column`` (email, phone or push_token) is on the suppression
    list of ``channel``, sorted."""
    if address_column not in _ADDRESS_COLUMNS:
        raise ValueError(f"not an address column: {address_column!r}")
    rows = fetch(
        conn,
        f"SELECT DISTINCT c.key FROM customers c JOIN suppressions s ON s.channel = :c "
        f"AND s.address = c.{address_column} ORDER BY c.key",
        {"c": channel},
    )
    return column(rows, 0, np.int64)
