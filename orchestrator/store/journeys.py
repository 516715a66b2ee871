"""Set-based reads and writes of journey state: versions, entry membership, holdout assignments,
instances, the send ledger and conversions.

Every function takes a Connection that is already inside the caller's transaction, so a tick can write
state changes, ledger rows and conversions atomically. Reads return numpy columns; writes take columns
or lists of row dicts and run as one executemany each. Nothing here loops over customers with a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

CHUNK = 20_000


def _column(rows: Sequence[Sequence[Any]], i: int, dtype: Any) -> np.ndarray:
    if not rows:
        return np.zeros(0, dtype=dtype)
    return np.fromiter((r[i] for r in rows), dtype=dtype, count=len(rows))


# ---------------------------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class StoredVersion:
    journey_id: str
    version: int
    digest: str
    source: str


def stored_version(conn: Connection, journey_id: str, version: int) -> StoredVersion | None:
    row = conn.execute(
        text("SELECT digest, source FROM journey_versions WHERE journey_id = :j AND version = :v"),
        {"j": journey_id, "v": version},
    ).first()
    return StoredVersion(journey_id, version, row[0], row[1]) if row else None


def register_version(
    conn: Connection, journey_id: str, version: int, digest: str, source: str, now_us: int
) -> None:
    conn.execute(
        text(
            "INSERT INTO journey_versions (journey_id, version, digest, source, registered_us) "
            "VALUES (:j, :v, :d, :s, :t)"
        ),
        {"j": journey_id, "v": version, "d": digest, "s": source, "t": now_us},
    )


def active_versions(conn: Connection, journey_id: str) -> list[int]:
    rows = conn.execute(
        text("SELECT DISTINCT version FROM journey_instances WHERE journey_id = :j AND status = 'active'"),
        {"j": journey_id},
    ).all()
    return sorted(int(r[0]) for r in rows)


# ---------------------------------------------------------------------------------------------- entry


def signal_members(conn: Connection, journey_id: str) -> np.ndarray:
    """Keys for which the journey's entry condition held at the previous tick."""
    rows = conn.execute(
        text("SELECT customer_key FROM signal_members WHERE journey_id = :j"), {"j": journey_id}
    ).all()
    return _column(rows, 0, np.int64)


def update_signal_members(
    conn: Connection, journey_id: str, added: np.ndarray, removed: np.ndarray, now_us: int
) -> None:
    if len(removed):
        conn.execute(
            text("DELETE FROM signal_members WHERE journey_id = :j AND customer_key = :k"),
            [{"j": journey_id, "k": int(k)} for k in removed],
        )
    if len(added):
        conn.execute(
            text("INSERT INTO signal_members (journey_id, customer_key, since_us) VALUES (:j, :k, :t)"),
            [{"j": journey_id, "k": int(k), "t": now_us} for k in added],
        )


@dataclass
class EntryHistory:
    """Per customer who ever entered the journey (in key order): whether an instance is active, and the
    last exit."""

    keys: np.ndarray
    active: np.ndarray
    last_exit_us: np.ndarray  # -1 where the customer never exited


def entry_history(conn: Connection, journey_id: str) -> EntryHistory:
    rows = conn.execute(
        text(
            "SELECT customer_key, MAX(CASE WHEN status = 'active' THEN 1 ELSE 0 END), "
            "COALESCE(MAX(exited_us), -1) FROM journey_instances WHERE journey_id = :j GROUP BY customer_key "
            "ORDER BY customer_key"
        ),
        {"j": journey_id},
    ).all()
    return EntryHistory(
        _column(rows, 0, np.int64), _column(rows, 1, np.int64) > 0, _column(rows, 2, np.int64)
    )


def holdout_assignments(conn: Connection, journey_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, is_holdout) of every customer already assigned for the journey, in key order."""
    rows = conn.execute(
        text("SELECT customer_key, arm FROM holdout_assignments WHERE journey_id = :j ORDER BY customer_key"),
        {"j": journey_id},
    ).all()
    keys = _column(rows, 0, np.int64)
    held = np.array([r[1] == "holdout" for r in rows], dtype=bool)
    return keys, held


def insert_assignments(
    conn: Connection,
    journey_id: str,
    keys: np.ndarray,
    buckets: np.ndarray,
    held: np.ndarray,
    percent: float,
    now_us: int,
    reason: str,
) -> None:
    if not len(keys):
        return
    conn.execute(
        text(
            "INSERT INTO holdout_assignments (journey_id, customer_key, arm, bucket, percent, assigned_us, "
            "reason) VALUES (:j, :k, :a, :b, :p, :t, :r)"
        ),
        [
            {
                "j": journey_id,
                "k": int(k),
                "a": "holdout" if h else "treatment",
                "b": float(b),
                "p": percent,
                "t": now_us,
                "r": reason,
            }
            for k, b, h in zip(keys, buckets, held, strict=True)
        ],
    )


def insert_instances(
    conn: Connection,
    journey_id: str,
    version: int,
    keys: np.ndarray,
    held: np.ndarray,
    state: str,
    now_us: int,
) -> None:
    if not len(keys):
        return
    conn.execute(
        text(
            "INSERT INTO journey_instances (journey_id, version, customer_key, state, status, holdout, "
            "entered_us, wake_at_us) VALUES (:j, :v, :k, :s, 'active', :h, :t, :t)"
        ),
        [
            {"j": journey_id, "v": version, "k": int(k), "s": state, "h": bool(h), "t": now_us}
            for k, h in zip(keys, held, strict=True)
        ],
    )


# ---------------------------------------------------------------------------------------------- stepping


@dataclass
class DueInstances:
    ids: np.ndarray
    keys: np.ndarray
    states: np.ndarray  # object array of state names
    holdout: np.ndarray
    wake_at_us: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def due_instances(conn: Connection, journey_id: str, version: int, now_us: int) -> DueInstances:
    rows = conn.execute(
        text(
            "SELECT id, customer_key, state, holdout, wake_at_us FROM journey_instances "
            "WHERE journey_id = :j AND version = :v AND status = 'active' AND wake_at_us <= :now "
            "ORDER BY id"
        ),
        {"j": journey_id, "v": version, "now": now_us},
    ).all()
    states = np.empty(len(rows), dtype=object)
    states[:] = [r[2] for r in rows]
    return DueInstances(
        ids=_column(rows, 0, np.int64),
        keys=_column(rows, 1, np.int64),
        states=states,
        holdout=np.array([bool(r[3]) for r in rows], dtype=bool),
        wake_at_us=_column(rows, 4, np.int64),
    )


def update_instances(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of id, state, status, wake_at_us, exited_us, exit_reason."""
    for start in range(0, len(rows), CHUNK):
        conn.execute(
            text(
                "UPDATE journey_instances SET state = :state, status = :status, wake_at_us = :wake_at_us, "
                "exited_us = :exited_us, exit_reason = :exit_reason WHERE id = :id"
            ),
            rows[start : start + CHUNK],
        )


def insert_messages(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    conn.execute(
        text(
            "INSERT INTO messages (idempotency_key, journey_id, version, instance_id, customer_key, step, "
            "channel, recipient, subject, body, html, title, link, status, reason, created_us) VALUES "
            "(:idempotency_key, :journey_id, :version, :instance_id, :customer_key, :step, :channel, "
            ":recipient, :subject, :body, :html, :title, :link, :status, :reason, :created_us)"
        ),
        rows,
    )


# ---------------------------------------------------------------------------------------------- goals


@dataclass
class OpenInstances:
    ids: np.ndarray
    keys: np.ndarray
    versions: np.ndarray
    entered_us: np.ndarray
    holdout: np.ndarray
    active: np.ndarray


def unconverted_instances(conn: Connection, journey_id: str, entered_since_us: int) -> OpenInstances:
    rows = conn.execute(
        text(
            "SELECT i.id, i.customer_key, i.version, i.entered_us, i.holdout, i.status "
            "FROM journey_instances i LEFT JOIN conversions c ON c.instance_id = i.id "
            "WHERE i.journey_id = :j AND i.entered_us >= :since AND c.instance_id IS NULL"
        ),
        {"j": journey_id, "since": entered_since_us},
    ).all()
    return OpenInstances(
        ids=_column(rows, 0, np.int64),
        keys=_column(rows, 1, np.int64),
        versions=_column(rows, 2, np.int64),
        entered_us=_column(rows, 3, np.int64),
        holdout=np.array([bool(r[4]) for r in rows], dtype=bool),
        active=np.array([r[5] == "active" for r in rows], dtype=bool),
    )


def insert_conversions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    conn.execute(
        text(
            "INSERT INTO conversions (instance_id, journey_id, version, customer_key, holdout, entered_us, "
            "converted_us, revenue) VALUES (:instance_id, :journey_id, :version, :customer_key, :holdout, "
            ":entered_us, :converted_us, :revenue)"
        ),
        rows,
    )


def finish_instances(conn: Connection, ids: np.ndarray, status: str, reason: str, now_us: int) -> None:
    if not len(ids):
        return
    conn.execute(
        text(
            "UPDATE journey_instances SET status = :s, state = :s, exited_us = :t, exit_reason = :r, "
            "wake_at_us = NULL WHERE id = :id AND status = 'active'"
        ),
        [{"s": status, "t": now_us, "r": reason, "id": int(i)} for i in ids],
    )


# ---------------------------------------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    idempotency_key: str
    journey_id: str
    step: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    html: str | None
    title: str | None
    link: str | None
    customer_id: str
    held_out: bool
    created_us: int


def queued_messages(conn: Connection, limit: int, after_id: int = 0) -> list[QueuedMessage]:
    """Queued messages with ``id > after_id``, oldest first."""
    rows = conn.execute(
        text(
            "SELECT m.id, m.idempotency_key, m.journey_id, m.step, m.channel, m.recipient, m.subject, "
            "m.body, m.html, m.title, m.link, c.id, h.arm, m.created_us FROM messages m "
            "JOIN customers c ON c.key = m.customer_key LEFT JOIN holdout_assignments h "
            "ON h.journey_id = m.journey_id AND h.customer_key = m.customer_key "
            "WHERE m.status = 'queued' AND m.id > :after ORDER BY m.id LIMIT :n"
        ),
        {"n": limit, "after": after_id},
    ).all()
    return [
        QueuedMessage(
            id=r[0],
            idempotency_key=r[1],
            journey_id=r[2],
            step=r[3],
            channel=r[4],
            recipient=r[5] or "",
            subject=r[6],
            body=r[7] or "",
            html=r[8],
            title=r[9],
            link=r[10],
            customer_id=r[11],
            held_out=r[12] == "holdout",
            created_us=r[13],
        )
        for r in rows
    ]


def record_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of id, status, reason, provider_id, sent_us."""
    if rows:
        conn.execute(
            text(
                "UPDATE messages SET status = :status, reason = :reason, provider_id = :provider_id, "
                "sent_us = :sent_us WHERE id = :id"
            ),
            rows,
        )
