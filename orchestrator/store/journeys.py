"""Set-based reads and writes of journey state: versions, entry membership and cursors, holdout assignments,
instances, the send ledger and conversions.

Every function takes a Connection that is already inside the caller's transaction, so a tick can write
state changes, ledger rows and conversions atomically. Reads return numpy columns; writes take columns
and run as one executemany (through the DBAPI cursor on SQLite, which binds rows in C) or one set-based
UPDATE each. Nothing here loops over customers with a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

from orchestrator.store import leases
from orchestrator.store.customers import chunked, insert_ignoring_conflicts, raw_cursor
from orchestrator.store.tables import Suppression

CHUNK = 20_000


def _column(rows: Sequence[Sequence[Any]], i: int, dtype: Any) -> np.ndarray:
    if not rows:
        return np.zeros(0, dtype=dtype)
    return np.fromiter((r[i] for r in rows), dtype=dtype, count=len(rows))


def _objects(rows: Sequence[Sequence[Any]], i: int) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [r[i] for r in rows]
    return out


def _optional_ints(rows: Sequence[Sequence[Any]], i: int, missing: int = -1) -> np.ndarray:
    return np.fromiter((missing if r[i] is None else r[i] for r in rows), dtype=np.int64, count=len(rows))


def _executemany(conn: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
    """Run ``sql`` (named ``:params``) once per row. On SQLite the rows go to the DBAPI cursor directly:
    binding a million rows through SQLAlchemy's executemany costs several times more."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        cursor = raw_cursor(conn, writing=True)
        try:
            for start in range(0, len(rows), 100_000):
                cursor.executemany(sql, rows[start : start + 100_000])
        finally:
            cursor.close()
        return
    for start in range(0, len(rows), CHUNK):
        conn.execute(text(sql), list(rows[start : start + CHUNK]))


def _fetch(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """All rows of a SELECT as plain tuples (through the DBAPI cursor on SQLite)."""
    if conn.dialect.name == "sqlite":
        cursor = raw_cursor(conn)
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()
    return [tuple(r) for r in conn.execute(text(sql), params).all()]


# ---------------------------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class StoredVersion:
    journey_id: str
    version: int
    digest: str
    source: str
    shared_metrics: str | None = None


def stored_version(conn: Connection, journey_id: str, version: int) -> StoredVersion | None:
    row = conn.execute(
        text(
            "SELECT digest, source, shared_metrics FROM journey_versions "
            "WHERE journey_id = :j AND version = :v"
        ),
        {"j": journey_id, "v": version},
    ).first()
    return StoredVersion(journey_id, version, row[0], row[1], row[2]) if row else None


def stored_versions(conn: Connection, journey_id: str) -> list[int]:
    rows = conn.execute(
        text("SELECT version FROM journey_versions WHERE journey_id = :j ORDER BY version"), {"j": journey_id}
    ).all()
    return [int(r[0]) for r in rows]


def register_version(
    conn: Connection,
    journey_id: str,
    version: int,
    digest: str,
    source: str,
    now_us: int,
    shared_metrics: str | None = None,
) -> None:
    conn.execute(
        text(
            "INSERT INTO journey_versions "
            "(journey_id, version, digest, source, shared_metrics, registered_us) "
            "VALUES (:j, :v, :d, :s, :m, :t)"
        ),
        {"j": journey_id, "v": version, "d": digest, "s": source, "m": shared_metrics, "t": now_us},
    )


def active_versions(conn: Connection, journey_id: str) -> list[int]:
    rows = conn.execute(
        text("SELECT DISTINCT version FROM journey_instances WHERE journey_id = :j AND status = 'active'"),
        {"j": journey_id},
    ).all()
    return sorted(int(r[0]) for r in rows)


@dataclass(frozen=True)
class StateCount:
    journey_id: str
    version: int
    status: str
    state: str
    count: int


def state_counts(conn: Connection, journey_id: str | None = None) -> list[StateCount]:
    """Instances per journey, version, status and state (finished instances by how they finished)."""
    where = "WHERE journey_id = :j " if journey_id is not None else ""
    rows = conn.execute(
        text(
            "SELECT journey_id, version, status, state, COUNT(*) FROM journey_instances "
            f"{where}GROUP BY journey_id, version, status, state ORDER BY journey_id, version, status, state"
        ),
        {"j": journey_id},
    ).all()
    return [StateCount(r[0], int(r[1]), r[2], r[3], int(r[4])) for r in rows]


def migration_applied(conn: Connection, journey_id: str, to_version: int, from_version: int) -> bool:
    row = conn.execute(
        text(
            "SELECT 1 FROM journey_migrations WHERE journey_id = :j AND to_version = :t AND from_version = :f"
        ),
        {"j": journey_id, "t": to_version, "f": from_version},
    ).first()
    return row is not None


def record_migration(
    conn: Connection, journey_id: str, to_version: int, from_version: int, now_us: int, moved: int
) -> None:
    conn.execute(
        text(
            "INSERT INTO journey_migrations (journey_id, to_version, from_version, applied_us, moved) "
            "VALUES (:j, :t, :f, :now, :m)"
        ),
        {"j": journey_id, "t": to_version, "f": from_version, "now": now_us, "m": moved},
    )


def migrate_instances(
    conn: Connection, journey_id: str, from_version: int, to_version: int, old: str, new: str, now_us: int
) -> int:
    """Move the active instances of ``from_version`` at step ``old`` to step ``new`` of ``to_version``
    (``exited``: finish them); they are due at once, keeping when they reached their step. Returns how many
    moved."""
    params = {"j": journey_id, "f": from_version, "t": to_version, "old": old, "new": new, "now": now_us}
    if new == "exited":
        sql = (
            "UPDATE journey_instances SET status = 'exited', state = 'exited', exited_us = :now, "
            "wake_at_us = NULL, exit_reason = 'left by migration to version ' || :t "
            "WHERE journey_id = :j AND version = :f AND status = 'active' AND state = :old"
        )
    else:
        sql = (
            "UPDATE journey_instances SET version = :t, state = :new, wake_at_us = :now "
            "WHERE journey_id = :j AND version = :f AND status = 'active' AND state = :old"
        )
    result = conn.execute(text(sql), params)
    return int(result.rowcount or 0)


# ---------------------------------------------------------------------------------------------- entry


def signal_members(conn: Connection, journey_id: str) -> np.ndarray:
    """Keys for which the journey's entry condition held at the previous tick."""
    rows = _fetch(conn, "SELECT customer_key FROM signal_members WHERE journey_id = :j", {"j": journey_id})
    return _column(rows, 0, np.int64)


def update_signal_members(
    conn: Connection, journey_id: str, added: np.ndarray, removed: np.ndarray, now_us: int
) -> None:
    if conn.dialect.name == "postgresql":  # one statement each, the keys as one array
        params = {"j": journey_id, "t": now_us}
        if len(removed):
            conn.execute(
                text("DELETE FROM signal_members WHERE journey_id = :j AND customer_key = ANY(:keys)"),
                {**params, "keys": np.asarray(removed, dtype=np.int64).tolist()},
            )
        if len(added):
            conn.execute(
                text(
                    "INSERT INTO signal_members (journey_id, customer_key, since_us) "
                    "SELECT :j, k, :t FROM unnest(CAST(:keys AS BIGINT[])) AS k"
                ),
                {**params, "keys": np.asarray(added, dtype=np.int64).tolist()},
            )
        return
    _executemany(
        conn,
        "DELETE FROM signal_members WHERE journey_id = :j AND customer_key = :k",
        [{"j": journey_id, "k": int(k)} for k in removed],
    )
    _executemany(
        conn,
        "INSERT INTO signal_members (journey_id, customer_key, since_us) VALUES (:j, :k, :t)",
        [{"j": journey_id, "k": int(k), "t": now_us} for k in added],
    )


@dataclass
class EntryHistory:
    """Per customer (and, for journeys keyed by a correlation key, per key value) who ever entered the
    journey, sorted: whether an instance is active, and the last exit."""

    keys: np.ndarray
    entry_keys: np.ndarray  # object: the correlation key's value, None for journeys without one
    active: np.ndarray
    last_exit_us: np.ndarray  # -1 where no instance finished


def entry_history(
    conn: Connection, journey_id: str, customers: np.ndarray | None = None, *, keyed: bool = False
) -> EntryHistory:
    """The entry history of ``customers`` (all customers when None), per customer or, with ``keyed``,
    per customer and correlation key value."""
    group = "customer_key, entry_key" if keyed else "customer_key"
    select = "customer_key, entry_key" if keyed else "customer_key, NULL"
    base = (
        f"SELECT {select}, MAX(CASE WHEN status = 'active' THEN 1 ELSE 0 END), COALESCE(MAX(exited_us), -1) "
        "FROM journey_instances WHERE journey_id = :j"
    )
    rows: list[tuple[Any, ...]] = []
    if customers is None:
        rows = _fetch(conn, f"{base} GROUP BY {group}", {"j": journey_id})
    else:
        for part in chunked(sorted({int(k) for k in customers})):
            listing = ", ".join(str(k) for k in part)  # plain ints from numpy: safe to inline
            rows.extend(
                _fetch(conn, f"{base} AND customer_key IN ({listing}) GROUP BY {group}", {"j": journey_id})
            )
    rows.sort(key=lambda r: (r[0], "" if r[1] is None else r[1]))
    return EntryHistory(
        _column(rows, 0, np.int64),
        _objects(rows, 1),
        _column(rows, 2, np.int64) > 0,
        _column(rows, 3, np.int64),
    )


def holdout_assignments(conn: Connection, journey_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, is_holdout) of every customer already assigned for the journey, in key order."""
    rows = _fetch(
        conn,
        "SELECT customer_key, arm FROM holdout_assignments WHERE journey_id = :j ORDER BY customer_key",
        {"j": journey_id},
    )
    keys = _column(rows, 0, np.int64)
    held = np.array([r[1] == "holdout" for r in rows], dtype=bool)
    return keys, held


def insert_assignments(
    conn: Connection,
    journey_id: str,
    keys: np.ndarray,
    arm: np.ndarray,
    bucket: np.ndarray,
    percent: np.ndarray,
    reason: np.ndarray,
    layer: np.ndarray,
    now_us: int,
) -> None:
    """One stored holdout assignment per key; the other arrays are aligned with ``keys``."""
    _executemany(
        conn,
        "INSERT INTO holdout_assignments (journey_id, customer_key, arm, bucket, percent, assigned_us, "
        "reason, layer) VALUES (:j, :k, :a, :b, :p, :t, :r, :l)",
        [
            {
                "j": journey_id,
                "k": int(k),
                "a": a,
                "b": float(b),
                "p": float(p),
                "t": now_us,
                "r": r,
                "l": lay,
            }
            for k, a, b, p, r, lay in zip(
                keys.tolist(),
                arm.tolist(),
                bucket.tolist(),
                percent.tolist(),
                reason.tolist(),
                layer.tolist(),
                strict=True,
            )
        ],
    )


def insert_instances(
    conn: Connection,
    journey_id: str,
    version: int,
    keys: np.ndarray,
    held: np.ndarray,
    state: str,
    entered_us: np.ndarray | int,
    *,
    entry_keys: Sequence[str | None] | None = None,
    event_ids: np.ndarray | None = None,
    data: Sequence[str | None] | None = None,
) -> None:
    """New active instances at ``state``, due at once (``wake_at_us = since_us = entered_us``)."""
    n = len(keys)
    if not n:
        return
    entered = np.broadcast_to(np.asarray(entered_us, dtype=np.int64), (n,))
    no_values: list[None] = [None] * n
    _executemany(
        conn,
        "INSERT INTO journey_instances (journey_id, version, customer_key, state, status, holdout, "
        "entered_us, since_us, wake_at_us, entry_key, entry_event_id, data) VALUES (:j, :v, :k, :s, "
        "'active', :h, :t, :t, :t, :ek, :ev, :d)",
        [
            {"j": journey_id, "v": version, "k": k, "s": state, "h": h, "t": t, "ek": ek, "ev": ev, "d": d}
            for k, h, t, ek, ev, d in zip(
                np.asarray(keys).tolist(),
                np.asarray(held, dtype=bool).tolist(),
                entered.tolist(),
                entry_keys if entry_keys is not None else no_values,
                event_ids.tolist() if event_ids is not None else no_values,
                data if data is not None else no_values,
                strict=True,
            )
        ],
    )


@dataclass(frozen=True)
class EntryEvents:
    ids: np.ndarray
    keys: np.ndarray
    ts_us: np.ndarray
    properties: list[str]  # JSON text per event


def event_type_id(conn: Connection, name: str) -> int | None:
    value = conn.execute(text("SELECT id FROM event_types WHERE name = :n"), {"n": name}).scalar()
    return None if value is None else int(value)


def entry_cursor(conn: Connection, journey_id: str) -> tuple[int, list[int]] | None:
    row = conn.execute(
        text("SELECT last_event_id, pending FROM entry_cursors WHERE journey_id = :j"), {"j": journey_id}
    ).first()
    return None if row is None else (int(row[0]), [int(i) for i in orjson.loads(row[1])])


def set_entry_cursor(conn: Connection, journey_id: str, last_event_id: int, pending: Iterable[int]) -> None:
    params = {"j": journey_id, "e": int(last_event_id), "p": orjson.dumps(sorted(pending)).decode()}
    updated = conn.execute(
        text("UPDATE entry_cursors SET last_event_id = :e, pending = :p WHERE journey_id = :j"), params
    )
    if not updated.rowcount:
        conn.execute(
            text("INSERT INTO entry_cursors (journey_id, last_event_id, pending) VALUES (:j, :e, :p)"), params
        )


def entry_events(conn: Connection, type_id: int, after_id: int, pending: Sequence[int]) -> EntryEvents:
    """Events of one type with ``id > after_id`` or an id in ``pending``, in id order."""
    sql = "SELECT id, customer_key, ts_us, properties FROM events WHERE type_id = :t AND (id > :a"
    if pending:
        sql += " OR id IN (" + ", ".join(str(int(i)) for i in pending) + ")"
    rows = _fetch(conn, sql + ") ORDER BY id", {"t": type_id, "a": after_id})
    return EntryEvents(
        _column(rows, 0, np.int64),
        _column(rows, 1, np.int64),
        _column(rows, 2, np.int64),
        [r[3] for r in rows],
    )


def max_event_id(conn: Connection) -> int:
    value = conn.execute(text("SELECT MAX(id) FROM events")).scalar()
    return 0 if value is None else int(value)


# ---------------------------------------------------------------------------------------------- stepping


@dataclass
class DueInstances:
    ids: np.ndarray
    keys: np.ndarray
    states: np.ndarray  # object array of state names
    holdout: np.ndarray
    wake_at_us: np.ndarray
    since_us: np.ndarray
    entered_us: np.ndarray
    entry_keys: np.ndarray  # object array: the correlation key's value (None without one)

    def __len__(self) -> int:
        return len(self.ids)


_DUE_COLUMNS = "id, customer_key, state, holdout, wake_at_us, since_us, entered_us, entry_key"


def due_instances(
    conn: Connection,
    journey_id: str,
    version: int,
    now_us: int,
    waiting_states: Sequence[str] = (),
) -> DueInstances:
    """Active instances of one version that are due (``wake_at_us <= now``), plus every active instance at
    one of ``waiting_states`` (waits for an event, which can end before their timeout), in id order."""
    columns = _DUE_COLUMNS
    claimed = conn.info.get(leases.CLAIMED)
    if claimed is not None:  # a worker sharing the store: only its own claimed batch, locked
        worker, ids = claimed
        return _due_from_rows(leases.lock_claimed(conn, journey_id, version, worker, ids, columns))
    params: dict[str, Any] = {"j": journey_id, "v": version, "now": now_us}
    rows = _fetch(
        conn,
        f"SELECT {columns} FROM journey_instances WHERE journey_id = :j AND status = 'active' "
        "AND wake_at_us <= :now AND version = :v",
        params,
    )
    if waiting_states:
        listing = ", ".join(f":s{i}" for i in range(len(waiting_states)))
        params.update({f"s{i}": s for i, s in enumerate(waiting_states)})
        rows.extend(
            _fetch(
                conn,
                f"SELECT {columns} FROM journey_instances WHERE journey_id = :j AND status = 'active' "
                f"AND state IN ({listing}) AND version = :v AND wake_at_us > :now",
                params,
            )
        )
    rows.sort(key=lambda r: r[0])
    return _due_from_rows(rows)


def _due_from_rows(rows: Sequence[Sequence[Any]]) -> DueInstances:
    wake = _column(rows, 4, np.int64)
    return DueInstances(
        ids=_column(rows, 0, np.int64),
        keys=_column(rows, 1, np.int64),
        states=_objects(rows, 2),
        holdout=np.fromiter((bool(r[3]) for r in rows), dtype=bool, count=len(rows)),
        wake_at_us=wake,
        # Instances written before since_us existed count from their wake-up time.
        since_us=np.where(_optional_ints(rows, 5) < 0, wake, _optional_ints(rows, 5)) if rows else wake,
        entered_us=_column(rows, 6, np.int64),
        entry_keys=_objects(rows, 7),
    )


def instance_data(conn: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """The ``data`` JSON of the given instances, by id (one statement per 5,000 ids)."""
    out: dict[int, str | None] = {}
    for part in chunked(sorted({int(i) for i in ids})):
        listing = ", ".join(str(i) for i in part)  # plain ints: safe to inline
        out.update(_fetch(conn, f"SELECT id, data FROM journey_instances WHERE id IN ({listing})", {}))
    return out


def move_instances(
    conn: Connection, ids: np.ndarray, states: Sequence[str], since_us: np.ndarray, wake_at_us: np.ndarray
) -> None:
    """Active instances to new steps: state, when they got there, when to look again.

    Instances that entered together usually move together: rows with the same new values are written by
    one UPDATE over their ids when such groups are large, else one executemany of single-row UPDATEs."""
    n = len(ids)
    if n and conn.dialect.name == "postgresql":
        # One statement over arrays: PostgreSQL joins the new values to the rows by id. A worker's claim on
        # the rows ends with the move (store.leases), saving a second write of each row.
        conn.execute(
            text(
                "UPDATE journey_instances AS i SET state = u.s, since_us = u.t, wake_at_us = u.w, "
                "claimed_by = NULL, lease_until_us = NULL "
                "FROM unnest(CAST(:ids AS BIGINT[]), CAST(:s AS TEXT[]), CAST(:t AS BIGINT[]), "
                "CAST(:w AS BIGINT[])) AS u(id, s, t, w) WHERE i.id = u.id"
            ),
            {"ids": ids.tolist(), "s": list(states), "t": since_us.tolist(), "w": wake_at_us.tolist()},
        )
        return
    if n >= 1000 and conn.dialect.name == "sqlite":
        state_codes = np.unique(np.asarray(states, dtype=object).astype(str), return_inverse=True)
        order = np.lexsort((wake_at_us, since_us, state_codes[1]))
        keys = np.stack([state_codes[1][order], since_us[order], wake_at_us[order]])
        starts = np.flatnonzero(np.concatenate([[True], np.any(keys[:, 1:] != keys[:, :-1], axis=0)]))
        if len(starts) * 100 <= n:
            ends = np.append(starts[1:], n)
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                first = order[start]
                conn.execute(
                    text(
                        "UPDATE journey_instances SET state = :s, since_us = :t, wake_at_us = :w "
                        "WHERE id IN (SELECT value FROM json_each(:ids))"
                    ),
                    {
                        "s": states[first],
                        "t": int(since_us[first]),
                        "w": int(wake_at_us[first]),
                        "ids": orjson.dumps(ids[order[start:end]].tolist()).decode(),
                    },
                )
            return
    _executemany(
        conn,
        "UPDATE journey_instances SET state = :s, since_us = :t, wake_at_us = :w WHERE id = :id",
        [
            {"id": i, "s": s, "t": t, "w": w}
            for i, s, t, w in zip(ids.tolist(), states, since_us.tolist(), wake_at_us.tolist(), strict=True)
        ],
    )


def finish_steps(
    conn: Connection, ids: np.ndarray, statuses: Sequence[str], reasons: Sequence[str], now_us: int
) -> None:
    """Instances that stepped into a terminal state (completed or exited), with the reason."""
    _executemany(
        conn,
        "UPDATE journey_instances SET state = :s, status = :s, since_us = :t, wake_at_us = NULL, "
        "exited_us = :t, exit_reason = :r, claimed_by = NULL, lease_until_us = NULL WHERE id = :id",
        [
            {"id": i, "s": s, "r": r, "t": now_us}
            for i, s, r in zip(ids.tolist(), statuses, reasons, strict=True)
        ],
    )


def set_instance_data(conn: Connection, ids: np.ndarray, data: Sequence[str]) -> None:
    _executemany(
        conn,
        "UPDATE journey_instances SET data = :d WHERE id = :id",
        [{"id": i, "d": d} for i, d in zip(ids.tolist(), data, strict=True)],
    )


def active_instances(conn: Connection, journey_id: str, version: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, customer keys) of the active instances of one version."""
    rows = _fetch(
        conn,
        "SELECT id, customer_key FROM journey_instances WHERE journey_id = :j AND status = 'active' "
        "AND version = :v",
        {"j": journey_id, "v": version},
    )
    return _column(rows, 0, np.int64), _column(rows, 1, np.int64)


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
    _executemany(
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
    select_ = (
        "INSERT INTO messages (idempotency_key, journey_id, version, instance_id, customer_key, step, "
        "channel, status, created_us, attempts, transactional) "
        "SELECT :prefix || c.id || '/' || CAST(i.id AS TEXT) || :suffix, :j, :v, i.id, i.customer_key, "
        ":step, :channel, 'queued', :now, 0, :tx FROM journey_instances i "
        "JOIN customers c ON c.key = i.customer_key WHERE i.id IN "
    )
    ids = [int(i) for i in instance_ids]
    if conn.dialect.name == "sqlite":
        # One statement for the whole set: the ids travel as one JSON array.
        conn.execute(
            text(select_ + "(SELECT value FROM json_each(:ids))"), {**params, "ids": orjson.dumps(ids)}
        )
    else:
        for part in chunked(ids, CHUNK):
            conn.execute(
                text(select_ + "(SELECT unnest(CAST(:ids AS BIGINT[])))"), {**params, "ids": list(part)}
            )
    return len(ids)


# ---------------------------------------------------------------------------------------------- goals


@dataclass
class OpenInstances:
    ids: np.ndarray
    keys: np.ndarray
    versions: np.ndarray
    entered_us: np.ndarray
    holdout: np.ndarray
    active: np.ndarray
    entry_keys: np.ndarray  # object array: the correlation key's value (None without one)
    data: np.ndarray  # object array of JSON text (or None); all None unless asked for


def unconverted_instances(
    conn: Connection, journey_id: str, entered_since_us: int, *, with_data: bool = False
) -> OpenInstances:
    rows = _fetch(
        conn,
        "SELECT i.id, i.customer_key, i.version, i.entered_us, i.holdout, i.status, i.entry_key, "
        + ("i.data " if with_data else "NULL ")
        + "FROM journey_instances i LEFT JOIN conversions c ON c.instance_id = i.id "
        "WHERE i.journey_id = :j AND i.entered_us >= :since AND c.instance_id IS NULL",
        {"j": journey_id, "since": entered_since_us},
    )
    return OpenInstances(
        ids=_column(rows, 0, np.int64),
        keys=_column(rows, 1, np.int64),
        versions=_column(rows, 2, np.int64),
        entered_us=_column(rows, 3, np.int64),
        holdout=np.array([bool(r[4]) for r in rows], dtype=bool),
        active=np.array([r[5] == "active" for r in rows], dtype=bool),
        entry_keys=_objects(rows, 6),
        data=_objects(rows, 7),
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
    """Finish active instances from outside the steps (goal reached, exit criteria met)."""
    _executemany(
        conn,
        "UPDATE journey_instances SET status = :s, state = :s, exited_us = :t, exit_reason = :r, "
        "wake_at_us = NULL WHERE id = :id AND status = 'active'",
        [{"s": status, "t": now_us, "r": reason, "id": int(i)} for i in ids],
    )


# ---------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Backlog:
    channel: str
    queued: int
    oldest_us: int


def outbox_backlog(conn: Connection) -> list[Backlog]:
    rows = conn.execute(
        text(
            "SELECT channel, COUNT(*), MIN(created_us) FROM messages WHERE status = 'queued' "
            "GROUP BY channel ORDER BY channel"
        )
    ).all()
    return [Backlog(r[0], int(r[1]), int(r[2])) for r in rows]


def due_counts(conn: Connection, now_us: int, horizon_us: int) -> dict[str, tuple[int, int]]:
    """Per journey: active instances due now (``wake_at_us <= now``) and due within ``horizon_us`` after."""
    rows = conn.execute(
        text(
            "SELECT journey_id, SUM(CASE WHEN wake_at_us <= :now THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN wake_at_us > :now AND wake_at_us <= :later THEN 1 ELSE 0 END) "
            "FROM journey_instances WHERE status = 'active' GROUP BY journey_id ORDER BY journey_id"
        ),
        {"now": now_us, "later": now_us + horizon_us},
    ).all()
    return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}


def last_tick(conn: Connection) -> tuple[int, float, str] | None:
    """(now_us, seconds, summary JSON) of the latest tick."""
    row = conn.execute(text("SELECT now_us, seconds, summary FROM ticks ORDER BY id DESC LIMIT 1")).first()
    return None if row is None else (int(row[0]), float(row[1]), str(row[2]))


# ---------------------------------------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class DueMessage:
    """A queued ledger row whose time has come, with what dispatch needs to decide on it."""

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


def due_messages(conn: Connection, limit: int, now_us: int, after_id: int = 0) -> list[DueMessage]:
    """Queued messages with ``id > after_id`` whose next attempt is due, oldest first. ``held_out`` is true
    when either the instance or the customer's recorded arm for the journey is the holdout."""
    rows = _fetch(
        conn,
        "SELECT m.id, m.idempotency_key, m.journey_id, m.version, m.step, m.channel, m.customer_key, "
        "m.instance_id, m.attempts, m.created_us, m.transactional, m.reason, "
        "CASE WHEN h.arm = 'holdout' OR i.holdout THEN 1 ELSE 0 END FROM messages m "
        "LEFT JOIN holdout_assignments h ON h.journey_id = m.journey_id AND h.customer_key = m.customer_key "
        "LEFT JOIN journey_instances i ON i.id = m.instance_id "
        "WHERE m.status = 'queued' AND (m.next_attempt_us IS NULL OR m.next_attempt_us <= :now) "
        "AND m.id > :after ORDER BY m.id LIMIT :n",
        {"n": limit, "after": after_id, "now": now_us},
    )
    return [
        DueMessage(
            id=int(r[0]),
            idempotency_key=r[1],
            journey_id=r[2],
            version=int(r[3]),
            step=r[4],
            channel=r[5],
            customer_key=int(r[6]),
            instance_id=int(r[7]),
            attempts=int(r[8] or 0),
            created_us=int(r[9]),
            transactional=bool(r[10]),
            reason=r[11],
            held_out=bool(r[12]),
        )
        for r in rows
    ]


def recent_sends(
    conn: Connection, keys: Sequence[int], since_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marketing messages sent to these customers since ``since_us``: (customer key, channel, sent_us)."""
    out: list[tuple[Any, ...]] = []
    for part in chunked(sorted({int(k) for k in keys})):
        listing = ", ".join(str(k) for k in part)  # plain ints: safe to inline
        out.extend(
            _fetch(
                conn,
                "SELECT customer_key, channel, sent_us FROM messages WHERE status = 'sent' "
                f"AND transactional = :f AND sent_us >= :since AND customer_key IN ({listing})",
                {"since": since_us, "f": False},
            )
        )
    return _column(out, 0, np.int64), _objects(out, 1), _column(out, 2, np.int64)


def suppressed_addresses(conn: Connection, channel: str, addresses: Sequence[str]) -> dict[str, str]:
    """Which of ``addresses`` are on the suppression list of ``channel``, with the reason."""
    found: dict[str, str] = {}
    for part in chunked(sorted(set(addresses))):
        listing = ", ".join(f":a{i}" for i in range(len(part)))
        params: dict[str, Any] = {f"a{i}": a for i, a in enumerate(part)}
        params["c"] = channel
        found.update(
            _fetch(
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


def record_outcomes(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of id, status, reason, recipient, subject, body, html, title, link, provider_id, sent_us,
    attempts, next_attempt_us: what dispatch decided or the provider answered, per message."""
    _executemany(
        conn,
        "UPDATE messages SET status = :status, reason = :reason, recipient = :recipient, "
        "subject = :subject, body = :body, html = :html, title = :title, link = :link, "
        "provider_id = :provider_id, sent_us = :sent_us, attempts = :attempts, "
        "next_attempt_us = :next_attempt_us WHERE id = :id AND status = 'queued'",
        rows,
    )
