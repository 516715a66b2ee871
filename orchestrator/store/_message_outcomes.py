"""What became of each message of a journey, for the report's per-message table (``journey_messages``).

Three set-based reads over the journey's ledger rows (test sends left out), whatever their number:

- the rows themselves: id, instance, customer, step, channel, status, when queued and when sent;
- the ledger messages that were opened or clicked: the ``email_open`` / ``email_click`` events the
  tracking links record carry the message's ledger key in their ``message`` property (``_feedback``),
  joined to the ledger on it (``json_extract`` on SQLite, ``->>`` on PostgreSQL);
- the first opt-out through a link (``consent_changes`` withdrawing consent, from ``unsubscribe_link`` or
  ``one_click``) on the message's channel within ``window_us`` after it was sent. An unsubscribe link names
  the customer and the channel, not the message, so an opt-out counts for every message of the journey
  on that channel sent to the customer in the window before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection

from orchestrator.store._bulk import column, fetch, objects, optional_ints

#: The sources of an opt-out through a message's link (``ingest._feedback.SOURCES``).
LINK_OPT_OUTS = ("unsubscribe_link", "one_click")


@dataclass(frozen=True)
class JourneyMessages:
    """A journey's ledger rows as aligned columns, in id order: ``sent_us`` is -1 for a message not sent;
    ``opened`` / ``clicked`` say whether a tracking event names it; ``opted_out_us`` is the first opt-out
    through a link on its channel within the window after it was sent (-1: none)."""

    id: np.ndarray
    instance_id: np.ndarray
    customer_key: np.ndarray
    version: np.ndarray
    step: np.ndarray
    channel: np.ndarray
    status: np.ndarray
    created_us: np.ndarray
    sent_us: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    opted_out_us: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])


def _message_property(conn: Connection) -> str:
    """SQL reading the ``message`` property of an event (``e``)."""
    if conn.dialect.name == "postgresql":
        return "(CAST(e.properties AS json) ->> 'message')"
    return "json_extract(e.properties, '$.message')"


def journey_messages(
    conn: Connection, journey_id: str, open_event: str, click_event: str, window_us: int
) -> JourneyMessages:
    """Every ledger row of ``journey_id`` with its opens, clicks and opt-outs (see the module docstring)."""
    rows = fetch(
        conn,
        "SELECT id, instance_id, customer_key, version, step, channel, status, created_us, sent_us "
        "FROM messages WHERE journey_id = :j AND test = :no ORDER BY id",
        {"j": journey_id, "no": False},
    )
    ids = column(rows, 0, np.int64)
    # The two event types first: a store without tracking has neither, and its events are not read.
    types = dict(
        fetch(
            conn,
            "SELECT id, name FROM event_types WHERE name IN (:open, :click)",
            {"open": open_event, "click": click_event},
        )
    )
    tracked: list[tuple[int, str]] = []
    if types:
        found = fetch(
            conn,
            f"SELECT m.id, e.type_id FROM events e JOIN messages m ON m.idempotency_key = "
            f"{_message_property(conn)} AND m.customer_key = e.customer_key "
            f"WHERE e.type_id IN ({', '.join(str(int(t)) for t in types)}) AND m.journey_id = :j "
            "AND m.test = :no GROUP BY m.id, e.type_id",
            {"j": journey_id, "no": False},
        )
        tracked = [(int(r[0]), types[r[1]]) for r in found]
    opted = fetch(
        conn,
        "SELECT m.id, MIN(c.at_us) FROM messages m JOIN consent_changes c "
        "ON c.customer_key = m.customer_key AND c.channel = m.channel "
        "WHERE m.journey_id = :j AND m.test = :no AND m.sent_us IS NOT NULL AND c.consent = :no "
        "AND c.source IN (:link, :one_click) AND c.at_us >= m.sent_us AND c.at_us < m.sent_us + :window "
        "GROUP BY m.id",
        {
            "j": journey_id,
            "no": False,
            "link": LINK_OPT_OUTS[0],
            "one_click": LINK_OPT_OUTS[1],
            "window": int(window_us),
        },
    )
    opened = _flags(ids, [int(r[0]) for r in tracked if r[1] == open_event])
    clicked = _flags(ids, [int(r[0]) for r in tracked if r[1] == click_event])
    opted_out = np.full(len(ids), -1, np.int64)
    if opted:
        where = np.searchsorted(ids, column(opted, 0, np.int64))
        opted_out[where] = column(opted, 1, np.int64)
    return JourneyMessages(
        id=ids,
        instance_id=column(rows, 1, np.int64),
        customer_key=column(rows, 2, np.int64),
        version=column(rows, 3, np.int64),
        step=objects(rows, 4),
        channel=objects(rows, 5),
        status=objects(rows, 6),
        created_us=column(rows, 7, np.int64),
        sent_us=optional_ints(rows, 8),
        opened=opened,
        clicked=clicked,
        opted_out_us=opted_out,
    )


def _flags(ids: np.ndarray, named: list[int]) -> np.ndarray:
    """A mask over ``ids`` (sorted) of the ids in ``named``."""
    out = np.zeros(len(ids), bool)
    if named:
        out[np.searchsorted(ids, np.asarray(named, np.int64))] = True
    return out
