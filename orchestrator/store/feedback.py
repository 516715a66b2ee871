"""What customers tell the engine back through the links of its messages: opt-outs, opens and clicks.

Every function takes a connection inside the caller's write transaction (``Store.begin``).

- ``record_opt_out`` sets ``consent_<channel>`` false on the customer (a new revision, so the engine's
  copy of the customers sees it) and keeps a ``consent_changes`` row with the source and time, which a
  later customer record older than the opt-out cannot undo (``customers.upsert_customers``). It does not
  touch the customer's ``record_us``: the rest of a record that arrives later still applies. Twice is
  once: an opt-out already in force adds nothing.
- ``tracked_message`` reads the ledger row a click or open token names.
- ``record_tracked_event`` stores an ``email_open``/``email_click`` event through the event table's own
  insert (its own-id keys, see ``ingest.keys``), unless the same one was stored less than a window ago.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, false, func, insert, select, text, update

from orchestrator.store.customers import (
    CONSENT_CHANGES,
    CONSENTS,
    CUSTOMERS,
    ensure_customer_keys,
    next_revision,
)
from orchestrator.store.events import EVENTS, event_type_ids, insert_new_events
from orchestrator.store.tables import Message

MESSAGES = Message.__table__  # type: ignore[attr-defined]


def record_opt_out(conn: Connection, customer_id: str, channel: str, source: str, at_us: int) -> bool:
    """Withdraw the customer's consent for ``channel`` (``email``, ``sms`` or ``push``); True when this
    changed anything, False when the same opt-out was already in force. A customer the store does not know
    yet is created with the consent withdrawn, so the opt-out holds when their record arrives."""
    column = f"consent_{channel}"
    if column not in CONSENTS:
        raise ValueError(f"no consent for channel {channel!r}")
    key = int(ensure_customer_keys(conn, [customer_id], at_us)[0])
    revision = next_revision(conn)  # on PostgreSQL this locks out other customer writers until commit
    current = conn.execute(select(CUSTOMERS.c[column]).where(CUSTOMERS.c.key == key)).scalar()
    col = CONSENT_CHANGES.c
    last = conn.execute(
        select(func.max(col.at_us)).where(
            col.customer_key == key, col.channel == channel, col.consent == false()
        )
    ).scalar()
    if current is not None and not current and last is not None:
        return False
    conn.execute(
        insert(CONSENT_CHANGES),
        [{"customer_key": key, "channel": channel, "consent": False, "source": source, "at_us": int(at_us)}],
    )
    conn.execute(
        update(CUSTOMERS)
        .where(CUSTOMERS.c.key == key)
        .values({column: False, "updated_us": int(at_us), "revision": revision})
    )
    return True


@dataclass(frozen=True)
class TrackedMessage:
    """The ledger row a tracking token names."""

    id: int
    idempotency_key: str
    journey_id: str
    version: int
    step: str
    channel: str
    customer_key: int
    test: bool


def tracked_message(conn: Connection, message_id: int) -> TrackedMessage | None:
    col = MESSAGES.c
    row = conn.execute(
        select(
            col.id, col.idempotency_key, col.journey_id, col.version, col.step, col.channel,
            col.customer_key, col.test,
        ).where(col.id == int(message_id))
    ).first()  # fmt: skip
    if row is None:
        return None
    return TrackedMessage(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5], int(row[6]), bool(row[7]))


def record_tracked_event(
    conn: Connection,
    customer_key: int,
    name: str,
    ts_us: int,
    properties_json: str,
    key: int,
    previous_key: int,
    window_us: int,
) -> bool:
    """Store one event with its own-id ``key`` unless that key is stored, or ``previous_key`` (the same
    event's key in the window before) was stored less than ``window_us`` before ``ts_us``; True when
    stored."""
    if conn.dialect.name == "postgresql":  # as insert_new_events does: the look-up below stays exact
        conn.execute(text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
    col = EVENTS.c
    found = conn.execute(
        select(col.event_key, col.ts_us).where(col.event_key < 0, col.event_key.in_([key, previous_key]))
    ).all()
    for stored_key, stored_ts in found:
        if stored_key == key or ts_us - int(stored_ts) < window_us:
            return False
    type_id = event_type_ids(conn, [name])[name]
    _, _, rows = insert_new_events(
        conn,
        np.array([customer_key], np.int64),
        np.array([type_id], np.int64),
        np.array([ts_us], np.int64),
        [properties_json],
        np.array([key], np.int64),
    )
    return len(rows) == 1
