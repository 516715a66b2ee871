"""What entry reads and keeps between ticks: signal memberships, entry history, entry cursors and events.

``signal_members`` is the set of customers whose entry condition held at the previous tick (entry admits
the newly added ones); ``entry_history`` says per customer (or correlation key) whether an instance is
active and when the last one finished; an event-triggered journey's cursor holds the last event id it read
and the ids still pending. Reads return numpy columns, writes take columns; all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, text

from orchestrator.store._bulk import column, executemany, fetch, objects
from orchestrator.store._customers import chunked
from orchestrator.store._partitions import Ownership, owned_clause

#: Signal members written at a time on SQLite.
_MEMBER_ROWS = 100_000


def signal_members(conn: Connection, journey_id: str) -> np.ndarray:
    """Keys for which the journey's entry condition held at the previous tick."""
    rows = fetch(conn, "SELECT customer_key FROM signal_members WHERE journey_id = :j", {"j": journey_id})
    return column(rows, 0, np.int64)


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
    # The rows' parameters are made a block at a time: a million members as dicts at once would hold
    # hundreds of MB.
    for start in range(0, len(removed), _MEMBER_ROWS):
        executemany(
            conn,
            "DELETE FROM signal_members WHERE journey_id = :j AND customer_key = :k",
            [{"j": journey_id, "k": k} for k in np.asarray(removed[start : start + _MEMBER_ROWS]).tolist()],
        )
    for start in range(0, len(added), _MEMBER_ROWS):
        executemany(
            conn,
            "INSERT INTO signal_members (journey_id, customer_key, since_us) VALUES (:j, :k, :t)",
            [
                {"j": journey_id, "k": k, "t": now_us}
                for k in np.asarray(added[start : start + _MEMBER_ROWS]).tolist()
            ],
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
    conn: Connection,
    journey_id: str,
    customers: np.ndarray | None = None,
    *,
    keyed: bool = False,
    entered_before_us: int | None = None,
) -> EntryHistory:
    """The entry history of ``customers`` (all customers when None), per customer or, with ``keyed``,
    per customer and correlation key value; with ``entered_before_us``, of the instances entered before
    that instant only."""
    group = "customer_key, entry_key" if keyed else "customer_key"
    select = "customer_key, entry_key" if keyed else "customer_key, NULL"
    base = (
        f"SELECT {select}, MAX(CASE WHEN status = 'active' THEN 1 ELSE 0 END), COALESCE(MAX(exited_us), -1) "
        "FROM journey_instances WHERE journey_id = :j"
    )
    if entered_before_us is not None:
        base += f" AND entered_us < {int(entered_before_us)}"  # an int: safe to inline
    rows: list[tuple[Any, ...]] = []
    if customers is None:
        rows = fetch(conn, f"{base} GROUP BY {group}", {"j": journey_id})
    else:
        for part in chunked(sorted({int(k) for k in customers})):
            listing = ", ".join(str(k) for k in part)  # plain ints from numpy: safe to inline
            rows.extend(
                fetch(conn, f"{base} AND customer_key IN ({listing}) GROUP BY {group}", {"j": journey_id})
            )
    rows.sort(key=lambda r: (r[0], "" if r[1] is None else r[1]))
    return EntryHistory(
        column(rows, 0, np.int64),
        objects(rows, 1),
        column(rows, 2, np.int64) > 0,
        column(rows, 3, np.int64),
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
    return entry_cursors(conn, [journey_id]).get(journey_id)


def entry_cursors(conn: Connection, names: Sequence[str]) -> dict[str, tuple[int, list[int]]]:
    """The stored cursors among ``names`` (a journey's, or its cursors per partition), read at once."""
    if not names:
        return {}
    params = {f"j{i}": name for i, name in enumerate(names)}
    rows = conn.execute(
        text(
            "SELECT journey_id, last_event_id, pending FROM entry_cursors "
            f"WHERE journey_id IN ({', '.join(':' + k for k in params)})"
        ),
        params,
    ).all()
    return {str(r[0]): (int(r[1]), [int(i) for i in orjson.loads(r[2])]) for r in rows}


def set_entry_cursor(conn: Connection, journey_id: str, last_event_id: int, pending: Iterable[int]) -> None:
    params = {"j": journey_id, "e": int(last_event_id), "p": orjson.dumps(sorted(pending)).decode()}
    updated = conn.execute(
        text("UPDATE entry_cursors SET last_event_id = :e, pending = :p WHERE journey_id = :j"), params
    )
    if not updated.rowcount:
        conn.execute(
            text("INSERT INTO entry_cursors (journey_id, last_event_id, pending) VALUES (:j, :e, :p)"), params
        )


def entry_events(
    conn: Connection,
    type_id: int,
    after_id: int,
    pending: Sequence[int],
    ownership: Ownership | None = None,
) -> EntryEvents:
    """Events of one type with ``id > after_id`` or an id in ``pending``, in id order; with
    ``ownership``, only those of customers in its partitions."""
    sql = (
        "SELECT id, customer_key, ts_us, properties FROM events WHERE type_id = :t "
        f"AND {owned_clause('customer_key', ownership)} AND (id > :a"
    )
    if pending:
        sql += " OR id IN (" + ", ".join(str(int(i)) for i in pending) + ")"
    rows = fetch(conn, sql + ") ORDER BY id", {"t": type_id, "a": after_id})
    return EntryEvents(
        column(rows, 0, np.int64),
        column(rows, 1, np.int64),
        column(rows, 2, np.int64),
        [r[3] for r in rows],
    )


def max_event_id(conn: Connection) -> int:
    value = conn.execute(text("SELECT MAX(id) FROM events")).scalar()
    return 0 if value is None else int(value)
