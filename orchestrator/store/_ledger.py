"""The message ledger: queued rows written with the step that sends them, and what dispatch reads and records.

A ledger row's ``idempotency_key`` is unique, so a row is queued once; dispatch reads due rows with their
holdout flags (the instance's and the customer's stored arm: the second enforcement), checks frequency
caps and suppressions, marks each small group of rows ``sending`` (with ``inflight_us`` and the attempt
counted) in a commit of its own before handing it to the provider, and records each outcome only on a row
still ``queued`` or ``sending``. A row found ``sending`` when a dispatch starts was in flight in a process
that stopped before recording the answer: ``settle_in_flight`` queues it again (at-least-once channels) or
records it ``uncertain`` (at-most-once channels). All in the caller's transaction.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

from orchestrator.store._bulk import CHUNK, RUNS, column, executemany, fetch, id_runs, objects
from orchestrator.store._customers import chunked, insert_ignoring_conflicts, raw_cursor
from orchestrator.store._partitions import Ownership, owned_clause
from orchestrator.store._tables import Suppression

MESSAGE_COLUMNS = (
    "idempotency_key",
    "journey_id",
    "version",
    "instance_id",
    "customer_key",
    "step",
    "channel",
    "recipient",
    "subject",
    "body",
    "html",
    "title",
    "link",
    "status",
    "reason",
    "created_us",
)


def insert_messages(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Ledger rows (dicts with ``MESSAGE_COLUMNS``), one executemany."""
    executemany(
        conn,
        f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES "
        f"({', '.join(':' + c for c in MESSAGE_COLUMNS)})",
        rows,
    )


def queue_messages(
    conn: Connection,
    *,
    journey_id: str,
    version: int,
    step: str,
    channel: str,
    transactional: bool,
    instance_ids: np.ndarray,
    key_suffix: str,
    created_us: int,
) -> int:
    """Queued ledger rows for the given instances at one send step, with one INSERT ... SELECT.

    Each row's key is ``<journey>/v<version>/<customer id>/<instance id><key_suffix>`` (the stepper's
    ``ledger_key``); the content is left empty for dispatch to render. Returns the number of rows."""
    if not len(instance_ids):
        return 0
    params: dict[str, Any] = {
        "prefix": f"{journey_id}/v{version}/",
        "suffix": key_suffix,
        "j": journey_id,
        "v": version,
        "step": step,
        "channel": channel,
        "tx": bool(transactional),
        "now": created_us,
    }
    insert = (
        "INSERT INTO messages (idempotency_key, journey_id, version, instance_id, customer_key, step, "
        "channel, status, created_us, attempts, transactional) "
        "SELECT :prefix || c.id || '/' || CAST(i.id AS TEXT) || :suffix, :j, :v, i.id, i.customer_key, "
        ":step, :channel, 'queued', :now, 0, :tx FROM "
    )
    select_ = insert + "journey_instances i JOIN customers c ON c.key = i.customer_key WHERE i.id IN "
    if conn.dialect.name == "sqlite":
        # One statement for the whole set: the ids travel as one JSON array, or as the runs of consecutive
        # ids they make (instances that entered together), each range of rows sought once.
        runs = id_runs(np.sort(np.asarray(instance_ids, dtype=np.int64)))
        if runs is not None:
            sql = (
                f"{insert}{RUNS} AS r JOIN journey_instances i ON i.id BETWEEN r.lo AND r.hi "
                "JOIN customers c ON c.key = i.customer_key"
            )
            conn.execute(text(sql), {**params, "runs": runs})
        else:
            listed = np.asarray(instance_ids, dtype=np.int64)
            conn.execute(
                text(select_ + "(SELECT value FROM json_each(:ids))"),
                {**params, "ids": orjson.dumps(listed, option=orjson.OPT_SERIALIZE_NUMPY)},
            )
        return len(instance_ids)
    ids = [int(i) for i in instance_ids]
    for part in chunked(ids, CHUNK):
        conn.execute(text(select_ + "(SELECT unnest(CAST(:ids AS BIGINT[])))"), {**params, "ids": list(part)})
    return len(ids)


class DueMessage(NamedTuple):
    """A queued ledger row whose time has come, with what dispatch needs to decide on it. (A named tuple:
    dispatch reads a thousand at a time, and a frozen dataclass costs several times more to build.)"""

    id: int
    idempotency_key: str
    journey_id: str
    version: int
    step: str
    channel: str
    customer_key: int
    instance_id: int
    attempts: int
    created_us: int
    transactional: bool
    reason: str | None
    held_out: bool


def due_messages(
    conn: Connection,
    limit: int,
    now_us: int,
    after_id: int = 0,
    journeys: Collection[str] | None = None,
    ownership: Ownership | None = None,
) -> list[DueMessage]:
    """Queued messages with ``id > after_id`` whose next attempt is due, oldest first; with ``journeys``,
    only theirs (the rows of other journeys are left where they are, and never fill a batch). ``held_out``
    is true when either the instance or the customer's recorded arm for the journey is the holdout. With
    ``ownership``, only the messages of customers in its partitions."""
    params: dict[str, Any] = {"n": limit, "after": after_id, "now": now_us}
    only = ""
    if journeys is not None:
        names = sorted(set(journeys))
        if not names:
            return []
        params.update({f"j{i}": name for i, name in enumerate(names)})
        only = f"AND m.journey_id IN ({', '.join(f':j{i}' for i in range(len(names)))}) "
    rows = fetch(
        conn,
        "SELECT m.id, m.idempotency_key, m.journey_id, m.version, m.step, m.channel, m.customer_key, "
        "m.instance_id, m.attempts, m.created_us, m.transactional, m.reason, "
        "CASE WHEN h.arm = 'holdout' OR i.holdout THEN 1 ELSE 0 END FROM messages m "
        "LEFT JOIN holdout_assignments h ON h.journey_id = m.journey_id AND h.customer_key = m.customer_key "
        "LEFT JOIN journey_instances i ON i.id = m.instance_id "
        "WHERE m.status = 'queued' AND (m.next_attempt_us IS NULL OR m.next_attempt_us <= :now) "
        f"AND m.id > :after AND {owned_clause('m.customer_key', ownership)} {only}ORDER BY m.id LIMIT :n",
        params,
    )
    return [due_message(r) for r in rows]


def due_message(r: Sequence[Any]) -> DueMessage:
    """A ``DueMessage`` from a row of ``due_messages``' SELECT."""
    return DueMessage(
        r[0],
        r[1],
        r[2],
        int(r[3]),
        r[4],
        r[5],
        int(r[6]),
        int(r[7]),
        int(r[8] or 0),
        int(r[9]),
        bool(r[10]),
        r[11],
        bool(r[12]),
    )


def recent_sends(
    conn: Connection, keys: Sequence[int], since_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marketing messages sent to these customers since ``since_us``: (customer key, channel, sent_us)."""
    out: list[tuple[Any, ...]] = []
    for part in chunked(sorted({int(k) for k in keys})):
        listing = ", ".join(str(k) for k in part)  # plain ints: safe to inline
        out.extend(
            fetch(
                conn,
                "SELECT customer_key, channel, sent_us FROM messages WHERE status = 'sent' "
                f"AND transactional = :f AND test = :f AND sent_us >= :since AND customer_key IN ({listing})",
                {"since": since_us, "f": False},
            )
        )
    return column(out, 0, np.int64), objects(out, 1), column(out, 2, np.int64)


def suppressed_addresses(conn: Connection, channel: str, addresses: Sequence[str]) -> dict[str, str]:
    """Which of ``addresses`` are on the suppression list of ``channel``, with the reason."""
    found: dict[str, str] = {}
    if conn.dialect.name == "sqlite":
        # One statement, the addresses as one JSON array: no IN list of a thousand names to compile.
        return dict(
            fetch(
                conn,
                "SELECT address, reason FROM suppressions WHERE channel = :c "
                "AND address IN (SELECT value FROM json_each(:a))",
                {"c": channel, "a": orjson.dumps(sorted(set(addresses))).decode()},
            )
        )
    for part in chunked(sorted(set(addresses))):
        listing = ", ".join(f":a{i}" for i in range(len(part)))
        params: dict[str, Any] = {f"a{i}": a for i, a in enumerate(part)}
        params["c"] = channel
        found.update(
            fetch(
                conn,
                f"SELECT address, reason FROM suppressions WHERE channel = :c AND address IN ({listing})",
                params,
            )
        )
    return found


def suppress_addresses(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of channel, address, reason, code, message_id, created_us; an address already listed keeps its
    first reason."""
    if not rows:
        return
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        first.setdefault((row["channel"], row["address"]), row)
    table = SQLModel.metadata.tables[Suppression.__tablename__]
    statement = insert_ignoring_conflicts(conn, table, ["channel", "address"])
    conn.execute(statement, list(first.values()))


_OUTCOME_COLUMNS = (
    "status", "reason", "recipient", "subject", "body", "html", "title", "link", "provider_id", "sent_us",
    "attempts", "next_attempt_us",
)  # fmt: skip
_RECORD = (
    f"UPDATE messages SET {', '.join(f'{c} = ?' for c in _OUTCOME_COLUMNS)} "
    "WHERE id = ? AND status IN ('queued', 'sending')"
)


# A row's parameters of ``_RECORD`` as one tuple, picked in C.
_RECORD_VALUES = operator.itemgetter(*_OUTCOME_COLUMNS, "id")


def record_outcomes(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of id, status, reason, recipient, subject, body, html, title, link, provider_id, sent_us,
    attempts, next_attempt_us: what dispatch decided or the provider answered, per message."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # Positional parameters: SQLite binds a tuple faster than a dict of thirteen names.
        cursor = raw_cursor(conn, writing=True)
        try:
            cursor.executemany(_RECORD, map(_RECORD_VALUES, rows))
        finally:
            cursor.close()
        return
    executemany(
        conn,
        f"UPDATE messages SET {', '.join(f'{c} = :{c}' for c in _OUTCOME_COLUMNS)} "
        "WHERE id = :id AND status IN ('queued', 'sending')",
        rows,
    )


def mark_in_flight(conn: Connection, ids: Sequence[int], attempts: Sequence[int], now_us: int) -> int:
    """Rows about to be handed to their provider: ``sending`` since ``now_us``, the attempt counted. Committed
    before the provider call, so a process that dies during the call leaves a row that says so. Returns the
    rows marked (-1 when the driver does not say)."""
    if not len(ids):
        return 0
    if conn.dialect.name == "sqlite":
        cursor = raw_cursor(conn, writing=True)
        try:
            cursor.executemany(
                "UPDATE messages SET status = 'sending', inflight_us = ?, attempts = ? "
                "WHERE id = ? AND status = 'queued'",
                [(now_us, int(a), int(i)) for i, a in zip(ids, attempts, strict=True)],
            )
            return int(cursor.rowcount)
        finally:
            cursor.close()
    return executemany(
        conn,
        "UPDATE messages SET status = 'sending', inflight_us = :t, attempts = :a "
        "WHERE id = :id AND status = 'queued'",
        [{"id": int(i), "a": int(a), "t": now_us} for i, a in zip(ids, attempts, strict=True)],
    )


REQUEUED_REASON = "in flight when its dispatcher stopped; sent again with the same key (at_least_once)"
UNCERTAIN_REASON = (
    "in flight when its dispatcher stopped: the provider may or may not have it; not sent again "
    "(at_most_once)"
)


def settle_in_flight(
    conn: Connection, at_most_once: Collection[str], ownership: Ownership | None = None
) -> tuple[int, int]:
    """Rows left ``sending`` by a dispatcher that stopped before recording the provider's answer: on the
    ``at_most_once`` channels they become ``uncertain``, never to be sent again; on the others they are
    queued again, to be sent with the same key. Returns (queued again, uncertain). With ``ownership``,
    only the rows of customers in its partitions (the other partitions' dispatchers may be sending)."""
    owned = owned_clause("customer_key", ownership)
    uncertain = 0
    channels = sorted(set(at_most_once))
    if channels:
        listing = ", ".join(f":c{i}" for i in range(len(channels)))
        params: dict[str, Any] = {f"c{i}": c for i, c in enumerate(channels)}
        uncertain = conn.execute(
            text(
                "UPDATE messages SET status = 'uncertain', reason = :r, next_attempt_us = NULL "
                f"WHERE status = 'sending' AND channel IN ({listing}) AND {owned}"
            ),
            {**params, "r": UNCERTAIN_REASON},
        ).rowcount
    requeued = conn.execute(
        text(
            "UPDATE messages SET status = 'queued', reason = :r, next_attempt_us = NULL "
            f"WHERE status = 'sending' AND {owned}"
        ),
        {"r": REQUEUED_REASON},
    ).rowcount
    return int(requeued or 0), int(uncertain or 0)


def cancel_queued(conn: Connection, journey_id: str, reason: str) -> int:
    """The journey's queued messages become ``cancelled`` with ``reason``; how many."""
    result = conn.execute(
        text(
            "UPDATE messages SET status = 'cancelled', reason = :r "
            "WHERE journey_id = :j AND status = 'queued'"
        ),
        {"r": reason, "j": journey_id},
    )
    return int(result.rowcount or 0)


def record_test_send(conn: Connection, row: dict[str, Any]) -> None:
    """One message sent by ``send-test`` with its outcome (``MESSAGE_COLUMNS`` plus ``sent_us`` and
    ``provider_id``), marked ``test``: no instance, never queued, left out of caps and reports."""
    columns = [*MESSAGE_COLUMNS, "sent_us", "provider_id", "attempts", "test"]
    values = {**row, "instance_id": 0, "attempts": 1, "test": True}
    conn.execute(
        text(f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
        values,
    )


def customers_sent_since(conn: Connection, since_us: int) -> np.ndarray:
    """The keys of the customers sent a message at or after ``since_us`` (each once)."""
    rows = conn.execute(
        text("SELECT DISTINCT customer_key FROM messages WHERE status = 'sent' AND sent_us >= :s"),
        {"s": since_us},
    ).all()
    return np.array([r.customer_key for r in rows], dtype=np.int64)


class MessageOutcome(NamedTuple):
    """Where a ledger row stands: its journey, channel, status and (when not sent) the reason."""

    journey_id: str
    channel: str
    status: str
    reason: str | None


def message_outcomes(conn: Connection) -> list[MessageOutcome]:
    """Every ledger row's journey, channel, status and reason (one query)."""
    rows = conn.execute(text("SELECT journey_id, channel, status, reason FROM messages")).all()
    return [MessageOutcome(*r) for r in rows]


class SentMessage(NamedTuple):
    """What a sent message said, and to whom."""

    journey_id: str
    step: str
    channel: str
    recipient: str | None
    subject: str | None
    title: str | None
    body: str | None


def first_sent_messages(conn: Connection, limit: int) -> list[SentMessage]:
    """The first ``limit`` messages sent, in ledger order."""
    rows = conn.execute(
        text(
            "SELECT journey_id, step, channel, recipient, subject, title, body FROM messages "
            "WHERE status = 'sent' ORDER BY id LIMIT :n"
        ),
        {"n": limit},
    ).all()
    return [SentMessage(*r) for r in rows]


@dataclass(frozen=True)
class CustomerMessage:
    """One ledger row of a customer, as ``why`` shows it."""

    instance_id: int
    journey_id: str
    version: int
    step: str
    channel: str
    status: str
    reason: str | None
    attempts: int
    created_us: int
    sent_us: int | None
    next_attempt_us: int | None
    recipient: str | None
    provider_id: str | None
    transactional: bool


def customer_messages(
    conn: Connection, customer_key: int, journey_id: str | None = None
) -> list[CustomerMessage]:
    """Every ledger row of one customer (in ``journey_id`` only, when given), oldest first."""
    only = " AND journey_id = :j" if journey_id else ""
    rows = conn.execute(
        text(
            "SELECT instance_id, journey_id, version, step, channel, status, reason, attempts, "
            "created_us, sent_us, next_attempt_us, recipient, provider_id, transactional FROM messages "
            "WHERE customer_key = :k" + only + " ORDER BY created_us, id"
        ),
        {"k": int(customer_key), "j": journey_id},
    ).all()
    return [
        CustomerMessage(
            instance_id=int(r.instance_id),
            journey_id=r.journey_id,
            version=int(r.version),
            step=r.step,
            channel=r.channel,
            status=r.status,
            reason=r.reason,
            attempts=int(r.attempts or 0),
            created_us=r.created_us,
            sent_us=r.sent_us,
            next_attempt_us=r.next_attempt_us,
            recipient=r.recipient,
            provider_id=r.provider_id,
            transactional=bool(r.transactional),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class SuppressedAddress:
    """An address on the suppression list of a channel: why, and since when."""

    channel: str
    address: str
    reason: str
    created_us: int


def address_suppressions(conn: Connection, addresses: Sequence[tuple[str, str]]) -> list[SuppressedAddress]:
    """The suppression list entries of a few (channel, address) pairs (a customer's addresses), in the order
    asked: one lookup by primary key each."""
    return [
        SuppressedAddress(r.channel, r.address, r.reason, r.created_us)
        for channel, address in addresses
        for r in conn.execute(
            text(
                "SELECT channel, address, reason, created_us FROM suppressions "
                "WHERE channel = :ch AND address = :a"
            ),
            {"ch": channel, "a": address},
        ).all()
    ]
