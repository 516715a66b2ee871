"""Goal conversions: the instances not yet converted, and one conversion row per converted instance.

An instance converts at most once (the conversions table is keyed by instance); measurement reads these
rows, with the holdout flag copied from the instance, and nothing else. Runs in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, text

from orchestrator.store._bulk import column, fetch, objects, optional_ints
from orchestrator.store._partitions import Ownership, owned_clause


@dataclass
class OpenInstances:
    ids: np.ndarray
    keys: np.ndarray
    versions: np.ndarray
    entered_us: np.ndarray
    holdout: np.ndarray
    active: np.ndarray
    first_send_us: np.ndarray  # int64, -1 before the instance passed a send step
    entry_keys: np.ndarray  # object array: the correlation key's value (None without one)
    data: np.ndarray  # object array of JSON text (or None); all None unless asked for


def unconverted_instances(
    conn: Connection,
    journey_id: str,
    entered_since_us: int,
    *,
    with_data: bool = False,
    keys: np.ndarray | None = None,
    after_id: int | None = None,
    from_first_send: bool = False,
    ownership: Ownership | None = None,
) -> OpenInstances:
    """The journey's instances entered since ``entered_since_us`` that have not converted; with ``keys``
    and ``after_id``, only those of these customers or with an id above ``after_id`` (the instances made
    since then). With ``from_first_send``, the instances whose first send was since ``entered_since_us``
    instead (those that never passed a send step have no goal window yet). With ``ownership``, only the
    instances of customers in its partitions."""
    anchor = "i.first_send_us" if from_first_send else "i.entered_us"
    select = (
        "SELECT i.id, i.customer_key, i.version, i.entered_us, i.holdout, i.status, i.entry_key, "
        + ("i.data, " if with_data else "NULL, ")
        + "i.first_send_us FROM journey_instances i LEFT JOIN conversions c ON c.instance_id = i.id "
        f"WHERE i.journey_id = :j AND {anchor} >= :since AND c.instance_id IS NULL "
        f"AND {owned_clause('i.customer_key', ownership)}"
    )
    params: dict[str, Any] = {"j": journey_id, "since": entered_since_us}
    if keys is None or after_id is None:
        rows = fetch(conn, select, params)
    else:
        listed = np.unique(np.asarray(keys, dtype=np.int64)).tolist()
        if conn.dialect.name == "sqlite":
            wanted, params["keys"] = "IN (SELECT value FROM json_each(:keys))", orjson.dumps(listed).decode()
        else:
            wanted, params["keys"] = "= ANY(CAST(:keys AS BIGINT[]))", listed
        # Two index look-ups (the customers, then the new instances), not a scan of every open instance: on
        # SQLite, ``+`` keeps the journey's index out of the second, which then reads ids above ``after``.
        newer = (
            select.replace("i.journey_id = :j", "+i.journey_id = :j")
            if conn.dialect.name == "sqlite"
            else select
        )
        rows = fetch(
            conn,
            f"{select} AND i.customer_key {wanted} UNION {newer} AND i.id > :after ORDER BY 1",
            {**params, "after": after_id},
        )
    return OpenInstances(
        ids=column(rows, 0, np.int64),
        keys=column(rows, 1, np.int64),
        versions=column(rows, 2, np.int64),
        entered_us=column(rows, 3, np.int64),
        holdout=np.array([bool(r[4]) for r in rows], dtype=bool),
        active=np.array([r[5] == "active" for r in rows], dtype=bool),
        first_send_us=optional_ints(rows, 8),
        entry_keys=objects(rows, 6),
        data=objects(rows, 7),
    )


def goal_event_customers(conn: Connection, type_id: int, after_id: int, up_to_id: int) -> np.ndarray:
    """The customers of the events of one type stored with ids ``after_id < id <= up_to_id`` (a range of
    the primary key: what arrived since then, whatever its time)."""
    rows = fetch(
        conn,
        "SELECT DISTINCT customer_key FROM events WHERE id > :a AND id <= :b AND type_id = :t",
        {"a": after_id, "b": up_to_id, "t": type_id},
    )
    return column(rows, 0, np.int64)


def max_instance_id(conn: Connection) -> int:
    """The largest instance id so far (0 for none)."""
    value = conn.execute(text("SELECT MAX(id) FROM journey_instances")).scalar()
    return 0 if value is None else int(value)


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


@dataclass(frozen=True)
class EntryOutcomes:
    """Every entry of a journey up to an instant, in instance order, as aligned columns: the instance, its
    conversion (if any) and its customer's holdout assignment for the journey (if any). Missing values:
    -1 for instants, NaN for the percent, None for strings."""

    instance_id: np.ndarray  # int64
    customer_key: np.ndarray  # int64
    held_out: np.ndarray  # bool: the instance is in the holdout arm
    entered_us: np.ndarray  # int64
    converted_us: np.ndarray  # int64, -1 without a conversion
    revenue: np.ndarray  # float64, 0 without a conversion
    assigned_arm: np.ndarray  # object: the assignment's arm
    layer: np.ndarray  # object: global | journey, None when not recorded
    assigned_us: np.ndarray  # int64, -1 without an assignment
    holdout_percent: np.ndarray  # float64, NaN without an assignment
    reason: np.ndarray  # object: why the assignment was made
    first_send_us: np.ndarray  # int64, -1 for an instance that never passed a send step
    exited_us: np.ndarray  # int64: when the instance left the journey, -1 while it is in it


def entry_outcomes(conn: Connection, journey_id: str, as_of_us: int) -> EntryOutcomes:
    """The entries of ``journey_id`` with ``entered_us <= as_of_us`` (one query)."""
    rows = conn.execute(
        text(
            "SELECT i.id, i.customer_key, i.holdout, i.entered_us, c.converted_us, COALESCE(c.revenue, 0), "
            "h.arm, h.layer, h.assigned_us, h.percent, h.reason, i.first_send_us, i.exited_us "
            "FROM journey_instances i LEFT JOIN conversions c ON c.instance_id = i.id "
            "LEFT JOIN holdout_assignments h "
            "ON h.journey_id = i.journey_id AND h.customer_key = i.customer_key "
            "WHERE i.journey_id = :j AND i.entered_us <= :t ORDER BY i.id"
        ),
        {"j": journey_id, "t": as_of_us},
    ).all()
    columns = zip(*rows, strict=True) if rows else [()] * 13
    ids, keys, held, entered, converted, revenue, arm, layer, assigned, percent, reason, first, exited = (
        columns
    )
    return EntryOutcomes(
        instance_id=np.array(ids, dtype=np.int64),
        customer_key=np.array(keys, dtype=np.int64),
        held_out=np.array([bool(v) for v in held], dtype=bool),
        entered_us=np.array(entered, dtype=np.int64),
        converted_us=np.array([-1 if v is None else int(v) for v in converted], dtype=np.int64),
        revenue=np.array(revenue, dtype=np.float64),
        assigned_arm=np.array(arm, dtype=object),
        layer=np.array(layer, dtype=object),
        assigned_us=np.array([-1 if v is None else int(v) for v in assigned], dtype=np.int64),
        holdout_percent=np.array([np.nan if v is None else float(v) for v in percent], dtype=np.float64),
        reason=np.array(reason, dtype=object),
        first_send_us=np.array([-1 if v is None else int(v) for v in first], dtype=np.int64),
        exited_us=np.array([-1 if v is None else int(v) for v in exited], dtype=np.int64),
    )


@dataclass(frozen=True)
class CustomerConversion:
    """A conversion of one of a customer's instances."""

    instance_id: int
    journey_id: str
    converted_us: int
    revenue: float
    holdout: bool


def customer_conversions(
    conn: Connection, customer_key: int, journey_id: str | None = None
) -> list[CustomerConversion]:
    """The conversions of one customer (in ``journey_id`` only, when given), in the order they happened."""
    only = " AND journey_id = :j" if journey_id else ""
    rows = conn.execute(
        text(
            "SELECT instance_id, journey_id, converted_us, revenue, holdout FROM conversions "
            "WHERE customer_key = :k" + only + " ORDER BY converted_us"
        ),
        {"k": int(customer_key), "j": journey_id},
    ).all()
    return [
        CustomerConversion(
            instance_id=int(r.instance_id),
            journey_id=r.journey_id,
            converted_us=r.converted_us,
            revenue=float(r.revenue),
            holdout=bool(r.holdout),
        )
        for r in rows
    ]
