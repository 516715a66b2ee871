"""Journey instances: created at entry, read when due, moved between steps and finished, in bulk.

Every write takes aligned columns and is one executemany or one set-based UPDATE (on PostgreSQL one
statement over arrays), never a query per customer. ``due_instances`` reads a worker's claimed batch
when given one (``store._leases``), and the write that steps an instance clears that claim. All in the
caller's transaction, so a step's state change commits with its ledger rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from orchestrator.store import _leases as leases
from orchestrator.store._bulk import (
    RUNS,
    UPDATE_FROM,
    column,
    copy_rows,
    executemany,
    fetch,
    id_runs,
    objects,
    optional_ints,
)
from orchestrator.store._customers import chunked
from orchestrator.store._funnel import ENTRY_TRIGGER, add_funnel_counts, arm_counts, count_leaving
from orchestrator.store._partitions import Ownership, owned_clause

#: Rows whose parameters are made at a time, for the writes that bind one set per row.
_ROWS = 100_000


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
    if conn.dialect.name == "sqlite":
        # One statement over the rows as one JSON array (in order, so ids follow the given order).
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
    columns = (
        "journey_id", "version", "customer_key", "state", "status", "holdout", "entered_us", "since_us",
        "wake_at_us", "entry_key", "entry_event_id", "data", "entry_values",
    )  # fmt: skip
    listed = list(rows)
    copied = (
        (journey_id, version, k, state, "active", h, t, t, t, ek, ev, d, values)
        for k, h, t, ek, ev, d, values in listed
    )
    if copy_rows(conn, "journey_instances", columns, copied):
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
            for k, h, t, ek, ev, d, values in listed
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
    # With the version's states given to ``due_instances``: each instance's state as its position in them
    # (-1 for a state they do not have).
    state_codes: np.ndarray | None = None

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
    states: Sequence[str] | None = None,
    waiting_keys: np.ndarray | None = None,
) -> DueInstances:
    """Active instances of one version that are due (``wake_at_us <= now``), plus every active instance at
    one of ``waiting_states`` (waits for an event, which can end before their timeout), in id order; with
    ``waiting_keys``, only those of these customers (found through the customer index, in chunks). With
    ``claimed`` (a worker sharing the store), only the instances of that claim still held, locked. With
    ``states`` (the version's states, in code order), ``state_codes`` gives each instance's state code.

    On SQLite the rows come back as one text per column (``group_concat``), parsed straight into numpy
    columns: a million due instances are a few strings, not a million tuples (see ``_due_from_json``)."""
    columns = _DUE_COLUMNS
    if claimed is not None:
        rows = leases.lock_claimed(conn, journey_id, version, claimed.worker, claimed.ids, columns)
        return _due_from_rows(rows, states)
    params: dict[str, Any] = {"j": journey_id, "v": version, "now": now_us}
    due = (
        "FROM journey_instances WHERE journey_id = :j AND status = 'active' AND version = :v "
        "AND wake_at_us <= :now"
    )
    waiting = ""
    if waiting_states:
        listing = ", ".join(f":s{i}" for i in range(len(waiting_states)))
        params.update({f"s{i}": s for i, s in enumerate(waiting_states)})
        waiting = (
            "FROM journey_instances WHERE journey_id = :j AND status = 'active' AND version = :v "
            f"AND wake_at_us > :now AND state IN ({listing})"
        )
    sources = [due]
    if waiting and waiting_keys is None:
        sources.append(waiting)
    elif waiting and conn.dialect.name == "postgresql":
        keys = np.unique(np.asarray(waiting_keys, dtype=np.int64)).tolist()
        if keys:
            params["keys"] = keys
            sources.append(waiting + " AND customer_key = ANY(:keys)")
    elif waiting:
        # SQLite would rather walk the live index over every parked instance: name the customer one.
        by_customer = waiting.replace(
            "FROM journey_instances", "FROM journey_instances INDEXED BY ix_instances_customer"
        )
        for part in chunked(np.unique(np.asarray(waiting_keys, dtype=np.int64)).tolist()):
            keys_sql = ", ".join(str(k) for k in part)  # plain ints from numpy: safe to inline
            sources.append(by_customer + f" AND customer_key IN ({keys_sql})")
    if conn.dialect.name == "sqlite":
        return _due_from_json(conn, sources, params, states)
    rows = [row for source in sources for row in fetch(conn, f"SELECT {columns} {source}", params)]
    rows.sort(key=lambda r: r[0])
    return _due_from_rows(rows, states)


def _codes_sql(states: Sequence[str] | None, params: dict[str, Any]) -> str:
    """SQL giving the code of ``state`` among ``states`` (-1 for another), or the name without them."""
    if states is None:
        return "state"
    params.update({f"c{i}": name for i, name in enumerate(states)})
    return f"CASE state {' '.join(f'WHEN :c{i} THEN {i}' for i in range(len(states)))} ELSE -1 END"


def _due_from_json(
    conn: Connection, sources: list[str], params: dict[str, Any], states: Sequence[str] | None
) -> DueInstances:
    """SQLite: the due rows of each ``FROM ... WHERE`` in ``sources`` as one text per column.

    The integer columns come as comma-separated lists (``group_concat``), which numpy parses straight
    into int64 (``_ints``), the instants relative to ``now`` (a few characters each instead of sixteen).
    The correlation keys (texts, usually none) come as a JSON array of the rows that have one, with their
    ids; the state names, without ``states``, as a JSON array."""
    state = _codes_sql(states, params)
    aggregates = ", ".join(
        (
            "group_concat(id)",
            "group_concat(customer_key)",
            f"group_concat({state})" if states is not None else "json_group_array(state)",
            "group_concat(holdout)",
            "group_concat(wake_at_us - :now)",
            # Instances written before since_us existed count from their wake-up time.
            "group_concat(COALESCE(since_us, wake_at_us) - :now)",
            "group_concat(entered_us - :now)",
            "group_concat(id) FILTER (WHERE entry_key IS NOT NULL)",
            "json_group_array(entry_key) FILTER (WHERE entry_key IS NOT NULL)",
        )
    )
    now = int(params["now"])
    parts: list[list[np.ndarray]] = [[] for _ in range(7)]
    state_names: list[Any] = []
    keyed_ids: list[np.ndarray] = []
    keyed: list[Any] = []
    for source in sources:
        row = fetch(conn, f"SELECT {aggregates} {source}", params)[0]
        n = len(ids := _ints(row[0]))
        for i in range(7):
            if i == 2 and states is None:
                state_names.extend(orjson.loads(row[2]) if n else [])
                continue
            values = ids if i == 0 else _ints(row[i])
            if len(values) != n:  # group_concat skips NULLs: a column that has one cannot be aligned
                raise RuntimeError(f"journey_instances: a due instance has no value in column {i}")
            parts[i].append(values + now if i >= 4 else values)
        keyed_ids.append(_ints(row[7]))
        keyed.extend(orjson.loads(row[8]) if row[8] else [])
    columns = [np.concatenate(p) if p else np.zeros(0, np.int64) for p in parts]
    ids = columns[0]
    # In id order (the scan follows the index, by wake-up time); usually ids come sorted already.
    order: np.ndarray | slice = slice(None) if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids)
    ids = ids[order]
    entry_keys = np.full(len(ids), None, dtype=object)
    if keyed:
        entry_keys[np.searchsorted(ids, np.concatenate(keyed_ids))] = keyed
    codes = names = None
    if states is not None:
        codes = columns[2][order]
        names = np.array([*states, None], dtype=object)[codes]
        if (codes < 0).any():  # states the version does not have: read their names for the caller to show
            unknown = ids[codes < 0]
            found = instance_states(conn, unknown.tolist())
            names[codes < 0] = [found[int(i)] for i in unknown]
    else:
        names = _object_array(state_names)[order]
    return DueInstances(
        ids=ids,
        keys=columns[1][order],
        states=names,
        holdout=columns[3][order].astype(bool),
        wake_at_us=columns[4][order],
        since_us=columns[5][order],
        entered_us=columns[6][order],
        entry_keys=entry_keys,
        state_codes=codes,
    )


def _ints(listed: str | None) -> np.ndarray:
    """A comma-separated list of integers (``group_concat``; None for no rows) as int64, parsed by numpy."""
    if not listed:
        return np.zeros(0, np.int64)
    return np.fromstring(listed, dtype=np.int64, sep=",")


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def instance_states(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """The ``state`` of the given instances, by id."""
    out: dict[int, str] = {}
    for part in chunked(sorted({int(i) for i in ids})):
        listing = ", ".join(str(i) for i in part)  # plain ints: safe to inline
        out.update(fetch(conn, f"SELECT id, state FROM journey_instances WHERE id IN ({listing})", {}))
    return out


def _due_from_rows(rows: Sequence[Sequence[Any]], states: Sequence[str] | None = None) -> DueInstances:
    wake = column(rows, 4, np.int64)
    names = objects(rows, 2)
    codes = None
    if states is not None:
        known = {name: i for i, name in enumerate(states)}
        codes = np.fromiter((known.get(s, -1) for s in names), np.int64, len(names))
    return DueInstances(
        ids=column(rows, 0, np.int64),
        keys=column(rows, 1, np.int64),
        states=names,
        holdout=np.fromiter((bool(r[3]) for r in rows), dtype=bool, count=len(rows)),
        wake_at_us=wake,
        # Instances written before since_us existed count from their wake-up time.
        since_us=np.where(optional_ints(rows, 5) < 0, wake, optional_ints(rows, 5)) if rows else wake,
        entered_us=column(rows, 6, np.int64),
        entry_keys=objects(rows, 7),
        state_codes=codes,
    )


def instance_data(conn: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """The ``data`` JSON of the given instances, by id (one statement per 5,000 ids)."""
    out: dict[int, str | None] = {}
    for part in chunked(sorted({int(i) for i in ids})):
        listing = ", ".join(str(i) for i in part)  # plain ints: safe to inline
        out.update(fetch(conn, f"SELECT id, data FROM journey_instances WHERE id IN ({listing})", {}))
    return out


def move_instances(
    conn: Connection,
    ids: np.ndarray,
    states: Sequence[str] | np.ndarray,
    since_us: np.ndarray,
    wake_at_us: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    sent: np.ndarray | None = None,
    first_send_us: int | None = None,
) -> None:
    """Active instances to new steps: state, when they got there, when to look again. ``states`` are
    names, or codes into ``names``. Where ``sent`` (instances that passed a send step) is true, the same
    write records ``first_send_us`` as their first send unless they have one (``mark_first_sends``).

    Instances that entered together usually move together: on SQLite, rows with the same new values are
    written by one UPDATE over their ids (travelling as one JSON array) when such groups are large, else
    one executemany of single-row UPDATEs, and a move of most of the table builds the live index again
    after the writes instead of moving its entries one by one (``_live_index_set_aside``); on PostgreSQL
    one UPDATE joins the new values by id."""
    n = len(ids)
    if not n:
        return
    if names is None:
        names = sorted(set(states))
        known = {name: i for i, name in enumerate(names)}
        codes = np.fromiter((known[s] for s in states), np.int64, n)
    else:
        codes = np.asarray(states, dtype=np.int64)
    marks = np.zeros(n, bool) if sent is None or first_send_us is None else np.asarray(sent, dtype=bool)
    first = None if first_send_us is None else int(first_send_us)
    ids = np.asarray(ids, dtype=np.int64)
    since_us, wake_at_us = np.asarray(since_us, dtype=np.int64), np.asarray(wake_at_us, dtype=np.int64)
    if conn.dialect.name == "postgresql":
        # One statement over arrays: PostgreSQL joins the new values to the rows by id. A worker's claim on
        # the rows ends with the move (store.leases), saving a second write of each row.
        conn.execute(
            text(
                "UPDATE journey_instances AS i SET state = u.s, since_us = u.t, wake_at_us = u.w, "
                "first_send_us = COALESCE(i.first_send_us, u.f), claimed_by = NULL, lease_until_us = NULL "
                "FROM unnest(CAST(:ids AS BIGINT[]), CAST(:s AS TEXT[]), CAST(:t AS BIGINT[]), "
                "CAST(:w AS BIGINT[]), CAST(:f AS BIGINT[])) AS u(id, s, t, w, f) WHERE i.id = u.id"
            ),
            {
                "ids": ids.tolist(),
                "s": np.asarray(names, dtype=object)[codes].tolist(),
                "t": since_us.tolist(),
                "w": wake_at_us.tolist(),
                "f": [first if m else None for m in marks.tolist()],
            },
        )
        return
    with _live_index_set_aside(conn, n):
        _sqlite_moves(conn, ids, names, codes, since_us, wake_at_us, marks, first)


def _sqlite_moves(
    conn: Connection,
    ids: np.ndarray,
    names: Sequence[str],
    codes: np.ndarray,
    since_us: np.ndarray,
    wake_at_us: np.ndarray,
    marks: np.ndarray,
    first: int | None,
) -> None:
    """SQLite: the writes of ``move_instances`` (see there)."""
    sets = "state = :s, since_us = :t, wake_at_us = :w, first_send_us = COALESCE(first_send_us, :f)"
    groups = _groups(codes, since_us, wake_at_us, marks) if len(ids) >= 1000 else None
    if groups is not None:
        for rows in groups:
            j = rows[0]
            params: dict[str, Any] = {
                "s": names[int(codes[j])],
                "t": int(since_us[j]),
                "w": int(wake_at_us[j]),
                "f": first if marks[j] else None,
            }
            runs = id_runs(ids[rows]) if UPDATE_FROM else None
            if runs is not None:  # a few ranges of consecutive ids: each range sought once
                sql = f"UPDATE journey_instances SET {sets} FROM {RUNS} AS r WHERE id BETWEEN r.lo AND r.hi"
                params["runs"] = runs
            else:
                sql = f"UPDATE journey_instances SET {sets} WHERE id IN (SELECT value FROM json_each(:ids))"
                params["ids"] = orjson.dumps(ids[rows], option=orjson.OPT_SERIALIZE_NUMPY).decode()
            conn.execute(text(sql), params)
        return
    executemany(
        conn,
        f"UPDATE journey_instances SET {sets} WHERE id = :id",
        [
            {"id": i, "s": names[c], "t": t, "w": w, "f": first if m else None}
            for i, c, t, w, m in zip(
                ids.tolist(),
                codes.tolist(),
                since_us.tolist(),
                wake_at_us.tolist(),
                marks.tolist(),
                strict=True,
            )
        ],
    )


#: SQLite: a move of at least this many instances, and of at least half the rows of the table, sets the
#: live index aside while it writes (``_live_index_set_aside``).
SET_ASIDE_MIN = 100_000


@contextmanager
def _live_index_set_aside(conn: Connection, n: int) -> Iterator[None]:
    """SQLite: when ``n`` instances are about to move and they are at least half of the table (a young
    store, a first large campaign), drop ``ix_instances_live`` for the writes and build it again after
    them, from its own stored definition, in the same transaction.

    Moving an instance to a new wake-up moves its entry in that index: for a million instances that costs
    more than writing the rows (the entries leave one end of the index and join the other, one seek each).
    Building the index again sorts the entries of every active row at once, which costs a fraction of
    that per row of the table; it is chosen only where the table is at most twice the rows that move, so
    it is never the slower way. Readers in other connections keep seeing the old index until the commit;
    a rollback gives it back as it was."""
    if n < SET_ASIDE_MIN:
        yield
        return
    largest = conn.execute(text("SELECT MAX(id) FROM journey_instances")).scalar() or 0
    definition = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_instances_live'")
    ).scalar()
    if definition is None or 2 * n < int(largest):
        yield
        return
    try:
        conn.execute(text("DROP INDEX ix_instances_live"))
    except OperationalError:  # a statement of this connection still reading: the entries move one by one
        yield
        return
    yield
    conn.exec_driver_sql(str(definition))


def _groups(
    codes: np.ndarray, since_us: np.ndarray, wake_at_us: np.ndarray, marks: np.ndarray
) -> list[np.ndarray] | None:
    """The positions of the rows with the same new values, group by group, when the groups are few (at
    most one per hundred rows); else None."""
    n = len(codes)
    if (
        (codes == codes[0]).all()
        and (since_us == since_us[0]).all()
        and (wake_at_us == wake_at_us[0]).all()
        and (marks == marks[0]).all()
    ):
        return [np.arange(n)]
    order = np.lexsort((marks, wake_at_us, since_us, codes))
    keys = np.stack([codes[order], since_us[order], wake_at_us[order], marks[order].astype(np.int64)])
    starts = np.flatnonzero(np.concatenate([[True], np.any(keys[:, 1:] != keys[:, :-1], axis=0)]))
    if len(starts) * 100 > n:
        return None
    # Each group's rows in id order (the sort is stable and the rows come in id order).
    return np.split(order, starts[1:])


def finish_steps(
    conn: Connection, ids: np.ndarray, statuses: Sequence[str], reasons: Sequence[str], now_us: int
) -> None:
    """Instances that stepped into a terminal state (completed or exited), with the reason (on PostgreSQL
    one statement joining the values by id, on SQLite one executemany)."""
    if not (len(ids) == len(statuses) == len(reasons)):
        raise ValueError("finish_steps needs a status and a reason per instance")
    if conn.dialect.name == "postgresql":
        if len(ids):
            conn.execute(
                text(
                    "UPDATE journey_instances AS i SET state = u.s, status = u.s, since_us = :t, "
                    "wake_at_us = NULL, exited_us = :t, exit_reason = u.r, claimed_by = NULL, "
                    "lease_until_us = NULL FROM unnest(CAST(:ids AS BIGINT[]), CAST(:s AS TEXT[]), "
                    "CAST(:r AS TEXT[])) AS u(id, s, r) WHERE i.id = u.id"
                ),
                {
                    "ids": np.asarray(ids, dtype=np.int64).tolist(),
                    "s": list(statuses),
                    "r": list(reasons),
                    "t": now_us,
                },
            )
        return
    # The rows' parameters are made a block at a time: a dict per row for a million instances at once
    # would hold hundreds of MB.
    for start in range(0, len(ids), _ROWS):
        end = start + _ROWS
        executemany(
            conn,
            "UPDATE journey_instances SET state = :s, status = :s, since_us = :t, wake_at_us = NULL, "
            "exited_us = :t, exit_reason = :r, claimed_by = NULL, lease_until_us = NULL WHERE id = :id",
            [
                {"id": i, "s": s, "r": r, "t": now_us}
                for i, s, r in zip(
                    ids[start:end].tolist(), statuses[start:end], reasons[start:end], strict=True
                )
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


def active_instances(
    conn: Connection, journey_id: str, version: int, ownership: Ownership | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, customer keys) of the active instances of one version (with ``ownership``, only those of
    customers in its partitions)."""
    rows = fetch(
        conn,
        "SELECT id, customer_key FROM journey_instances WHERE journey_id = :j AND status = 'active' "
        f"AND version = :v AND {owned_clause('customer_key', ownership)}",
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
