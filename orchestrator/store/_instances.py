"""Journey instances: created at entry, read when due, moved between steps and finished, in bulk.

Every write takes aligned columns and is one executemany or one set-based UPDATE (on PostgreSQL one
statement over arrays), never a query per customer. ``due_instances`` reads a worker's claimed batch
when given one (``store._leases``), and the write that steps an instance clears that claim. All in the
caller's transaction, so a step's state change commits with its ledger rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, text

from orchestrator.store import _leases as leases
from orchestrator.store._bulk import column, executemany, fetch, objects, optional_ints
from orchestrator.store._customers import chunked
from orchestrator.store._funnel import ENTRY_TRIGGER, add_funnel_counts, arm_counts, count_leaving


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
    entry_values: Sequence[str | None] | None = None,
) -> None:
    """New active instances at ``state``, due at once (``wake_at_us = since_us = entered_us``), counted
    in the funnel as entries; ``entry_values`` (JSON per instance) are the values that let each one in."""
    n = len(keys)
    if not n:
        return
    add_funnel_counts(
        conn, arm_counts(journey_id, version, "", ENTRY_TRIGGER, state, np.asarray(held, dtype=bool))
    )
    entered = np.broadcast_to(np.asarray(entered_us, dtype=np.int64), (n,))
    no_values: list[None] = [None] * n
    if conn.dialect.name == "sqlite":
        # One statement over the rows as one JSON array (in order, so ids follow the given order).
        rows = zip(
            np.asarray(keys).tolist(),
            np.asarray(held, dtype=bool).tolist(),
            entered.tolist(),
            entry_keys if entry_keys is not None else no_values,
            event_ids.tolist() if event_ids is not None else no_values,
            data if data is not None else no_values,
            entry_values if entry_values is not None else no_values,
            strict=True,
        )
        conn.execute(
            text(
                "INSERT INTO journey_instances (journey_id, version, customer_key, state, status, holdout, "
                "entered_us, since_us, wake_at_us, entry_key, entry_event_id, data, entry_values) "
                "SELECT :j, :v, json_extract(value, '$[0]'), :s, 'active', json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]'), json_extract(value, '$[2]'), json_extract(value, '$[2]'), "
                "json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), "
                "json_extract(value, '$[6]') FROM json_each(:rows) ORDER BY key"
            ),
            {"j": journey_id, "v": version, "s": state, "rows": orjson.dumps(list(rows)).decode()},
        )
        return
    executemany(
        conn,
        "INSERT INTO journey_instances (journey_id, version, customer_key, state, status, holdout, "
        "entered_us, since_us, wake_at_us, entry_key, entry_event_id, data, entry_values) VALUES (:j, :v, "
        ":k, :s, 'active', :h, :t, :t, :t, :ek, :ev, :d, :ev2)",
        [
            {
                "j": journey_id,
                "v": version,
                "k": k,
                "s": state,
                "h": h,
                "t": t,
                "ek": ek,
                "ev": ev,
                "d": d,
                "ev2": values,
            }
            for k, h, t, ek, ev, d, values in zip(
                np.asarray(keys).tolist(),
                np.asarray(held, dtype=bool).tolist(),
                entered.tolist(),
                entry_keys if entry_keys is not None else no_values,
                event_ids.tolist() if event_ids is not None else no_values,
                data if data is not None else no_values,
                entry_values if entry_values is not None else no_values,
                strict=True,
            )
        ],
    )


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
    *,
    claimed: leases.Claim | None = None,
    waiting_keys: np.ndarray | None = None,
) -> DueInstances:
    """Active instances of one version that are due (``wake_at_us <= now``), plus every active instance at
    one of ``waiting_states`` (waits for an event, which can end before their timeout), in id order; with
    ``waiting_keys``, only those of these customers (found through the customer index, in chunks). With
    ``claimed`` (a worker sharing the store), only the instances of that claim still held, locked."""
    columns = _DUE_COLUMNS
    if claimed is not None:
        rows = leases.lock_claimed(conn, journey_id, version, claimed.worker, claimed.ids, columns)
        return _due_from_rows(rows)
    params: dict[str, Any] = {"j": journey_id, "v": version, "now": now_us}
    rows = fetch(
        conn,
        f"SELECT {columns} FROM journey_instances WHERE journey_id = :j AND status = 'active' "
        "AND wake_at_us <= :now AND version = :v",
        params,
    )
    if waiting_states:
        listing = ", ".join(f":s{i}" for i in range(len(waiting_states)))
        params.update({f"s{i}": s for i, s in enumerate(waiting_states)})
        waiting = (
            f"SELECT {columns} FROM journey_instances WHERE journey_id = :j AND status = 'active' "
            f"AND state IN ({listing}) AND version = :v AND wake_at_us > :now"
        )
        if waiting_keys is None:
            rows.extend(fetch(conn, waiting, params))
        elif conn.dialect.name == "postgresql":
            keys = np.unique(np.asarray(waiting_keys, dtype=np.int64)).tolist()
            if keys:
                rows.extend(fetch(conn, waiting + " AND customer_key = ANY(:keys)", {**params, "keys": keys}))
        else:
            # SQLite would rather walk the due index over every parked instance: name the customer one.
            by_customer = waiting.replace(
                "FROM journey_instances", "FROM journey_instances INDEXED BY ix_instances_customer"
            )
            for part in chunked(np.unique(np.asarray(waiting_keys, dtype=np.int64)).tolist()):
                listing = ", ".join(str(k) for k in part)  # plain ints from numpy: safe to inline
                rows.extend(fetch(conn, by_customer + f" AND customer_key IN ({listing})", params))
    rows.sort(key=lambda r: r[0])
    return _due_from_rows(rows)


def _due_from_rows(rows: Sequence[Sequence[Any]]) -> DueInstances:
    wake = column(rows, 4, np.int64)
    return DueInstances(
        ids=column(rows, 0, np.int64),
        keys=column(rows, 1, np.int64),
        states=objects(rows, 2),
        holdout=np.fromiter((bool(r[3]) for r in rows), dtype=bool, count=len(rows)),
        wake_at_us=wake,
        # Instances written before since_us existed count from their wake-up time.
        since_us=np.where(optional_ints(rows, 5) < 0, wake, optional_ints(rows, 5)) if rows else wake,
        entered_us=column(rows, 6, np.int64),
        entry_keys=objects(rows, 7),
    )


def instance_data(conn: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """The ``data`` JSON of the given instances, by id (one statement per 5,000 ids)."""
    out: dict[int, str | None] = {}
    for part in chunked(sorted({int(i) for i in ids})):
        listing = ", ".join(str(i) for i in part)  # plain ints: safe to inline
        out.update(fetch(conn, f"SELECT id, data FROM journey_instances WHERE id IN ({listing})", {}))
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
    executemany(
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
    executemany(
        conn,
        "UPDATE journey_instances SET state = :s, status = :s, since_us = :t, wake_at_us = NULL, "
        "exited_us = :t, exit_reason = :r, claimed_by = NULL, lease_until_us = NULL WHERE id = :id",
        [
            {"id": i, "s": s, "r": r, "t": now_us}
            for i, s, r in zip(ids.tolist(), statuses, reasons, strict=True)
        ],
    )


def mark_first_sends(conn: Connection, ids: np.ndarray, now_us: int) -> None:
    """Record ``now_us`` as the first send of those instances that have none yet (instances that passed a
    send step at this tick, in both arms), with one statement."""
    if not len(ids):
        return
    listed = np.unique(np.asarray(ids, dtype=np.int64)).tolist()
    update = "UPDATE journey_instances SET first_send_us = :now WHERE first_send_us IS NULL AND id IN "
    if conn.dialect.name == "sqlite":
        conn.execute(
            text(update + "(SELECT value FROM json_each(:ids))"), {"now": now_us, "ids": orjson.dumps(listed)}
        )
    else:
        conn.execute(text(update + "(SELECT unnest(CAST(:ids AS BIGINT[])))"), {"now": now_us, "ids": listed})


def set_instance_data(conn: Connection, ids: np.ndarray, data: Sequence[str]) -> None:
    executemany(
        conn,
        "UPDATE journey_instances SET data = :d WHERE id = :id",
        [{"id": i, "d": d} for i, d in zip(ids.tolist(), data, strict=True)],
    )


def active_instances(conn: Connection, journey_id: str, version: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, customer keys) of the active instances of one version."""
    rows = fetch(
        conn,
        "SELECT id, customer_key FROM journey_instances WHERE journey_id = :j AND status = 'active' "
        "AND version = :v",
        {"j": journey_id, "v": version},
    )
    return column(rows, 0, np.int64), column(rows, 1, np.int64)


def finish_instances(
    conn: Connection, ids: np.ndarray, status: str, reason: str, now_us: int, *, trigger: str
) -> None:
    """Finish active instances from outside the steps (goal reached, exit criteria met), counted in the
    funnel as taking ``trigger`` (``goal``, ``exit_when``) from their step to ``status``."""
    count_leaving(conn, ids, trigger, status)
    executemany(
        conn,
        "UPDATE journey_instances SET status = :s, state = :s, exited_us = :t, exit_reason = :r, "
        "wake_at_us = NULL WHERE id = :id AND status = 'active'",
        [{"s": status, "t": now_us, "r": reason, "id": int(i)} for i in ids],
    )


def latest_instance_data(conn: Connection, journey_id: str, customer_key: int) -> str | None:
    """The ``data`` (entry event and captured events, JSON) of the customer's latest entry into the
    journey, or None."""
    value = conn.execute(
        text(
            "SELECT data FROM journey_instances WHERE journey_id = :j AND customer_key = :k "
            "ORDER BY entered_us DESC, id DESC LIMIT 1"
        ),
        {"j": journey_id, "k": int(customer_key)},
    ).scalar()
    return None if value is None else str(value)


@dataclass(frozen=True)
class CustomerInstance:
    """One entry of a customer into a journey, with its holdout assignment when one is stored."""

    id: int
    journey_id: str
    version: int
    entered_us: int
    holdout: bool
    state: str
    status: str
    since_us: int | None
    wake_at_us: int | None
    exited_us: int | None
    exit_reason: str | None
    entry_key: str | None
    arm: str | None  # from holdout_assignments (None when no assignment is stored)
    arm_reason: str | None
    holdout_layer: str | None
    entry_values: str | None = None  # JSON: the entry condition's metrics and attributes at entry


def customer_instances(
    conn: Connection, customer_key: int, journey_id: str | None = None
) -> list[CustomerInstance]:
    """Every instance of one customer (in ``journey_id`` only, when given), in the order they entered."""
    only = " AND i.journey_id = :j" if journey_id else ""
    rows = conn.execute(
        text(
            "SELECT i.id, i.journey_id, i.version, i.entered_us, i.holdout, i.state, i.status, "
            "i.since_us, i.wake_at_us, i.exited_us, i.exit_reason, i.entry_key, h.arm, h.reason, h.layer, "
            "i.entry_values "
            "FROM journey_instances i LEFT JOIN holdout_assignments h ON h.journey_id = i.journey_id "
            "AND h.customer_key = i.customer_key WHERE i.customer_key = :k"
            + only
            + " ORDER BY i.entered_us, i.id"
        ),
        {"k": int(customer_key), "j": journey_id},
    ).all()
    return [
        CustomerInstance(
            id=int(r.id),
            journey_id=r.journey_id,
            version=int(r.version),
            entered_us=r.entered_us,
            holdout=bool(r.holdout),
            state=r.state,
            status=r.status,
            since_us=r.since_us,
            wake_at_us=r.wake_at_us,
            exited_us=r.exited_us,
            exit_reason=r.exit_reason,
            entry_key=r.entry_key,
            arm=r.arm,
            arm_reason=r.reason,
            holdout_layer=r.layer,
            entry_values=r.entry_values,
        )
        for r in rows
    ]
