"""What customers tell the engine back through the links of its messages: opt-outs, opens and clicks.

Every function takes a connection inside the caller's write transaction (``Store.begin``).

- ``record_opt_out`` sets ``consent_<channel>`` false on the customer (a new revision, so the engine's
  copy of the customers sees it) and keeps a ``consent_changes`` row with the source and time, which a
  later customer record older than the opt-out cannot undo (``customers.upsert_customers``). It does not
  touch the customer's ``record_us``: the rest of a record that arrives later still applies. Twice is
  once: an opt-out already in force adds nothing.
- ``tracked_message`` reads the ledger row a click or open token names.
- ``record_tracked_event`` stores an ``email_open``/``email_click`` event through the event table's own
  insert (its own-id keys, see ``ingest._keys``), unless the same one was stored less than a window ago.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, false, func, insert, select, text, update

from orchestrator.store._bulk import executemany, fetch
from orchestrator.store._customers import (
    CONSENT_CHANGES,
    CONSENTS,
    CUSTOMERS,
    ensure_customer_keys,
    next_revision,
)
from orchestrator.store._events import event_type_ids


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
    rows = fetch(
        conn,
        "SELECT id, idempotency_key, journey_id, version, step, channel, customer_key, test "
        "FROM messages WHERE id = :id",
        {"id": int(message_id)},
    )
    if not rows:
        return None
    r = rows[0]
    return TrackedMessage(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5], int(r[6]), bool(r[7]))


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
    stored. One event in plain SQL, as ``events.insert_new_events`` stores many: its id is one more than
    the largest, taken while the writer holds the table (SQLite's write lock, a table lock on
    PostgreSQL), so ids grow in commit order and the look-up of the keys is exact."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
    found = fetch(
        conn,
        "SELECT event_key, ts_us FROM events WHERE event_key < 0 AND event_key IN (:key, :previous)",
        {"key": int(key), "previous": int(previous_key)},
    )
    for stored_key, stored_ts in found:
        if stored_key == key or ts_us - int(stored_ts) < window_us:
            return False
    types = fetch(conn, "SELECT id FROM event_types WHERE name = :name", {"name": name})
    type_id = int(types[0][0]) if types else event_type_ids(conn, [name])[name]
    next_id = int(fetch(conn, "SELECT COALESCE(MAX(id), 0) + 1 FROM events", {})[0][0])
    executemany(
        conn,
        "INSERT INTO events (id, customer_key, type_id, ts_us, properties, event_key) "
        "VALUES (:id, :customer, :type, :ts, :properties, :key)",
        [
            {
                "id": next_id,
                "customer": int(customer_key),
                "type": type_id,
                "ts": int(ts_us),
                "properties": properties_json,
                "key": int(key),
            }
        ],
    )
    return True
