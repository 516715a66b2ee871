"""Goal conversions: the instances not yet converted, and one conversion row per converted instance.

An instance converts at most once (the conversions table is keyed by instance); measurement reads these
rows, with the holdout flag copied from the instance, and nothing else. Runs in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from orchestrator.store.bulk import column, fetch, objects


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
    rows = fetch(
        conn,
        "SELECT i.id, i.customer_key, i.version, i.entered_us, i.holdout, i.status, i.entry_key, "
        + ("i.data " if with_data else "NULL ")
        + "FROM journey_instances i LEFT JOIN conversions c ON c.instance_id = i.id "
        "WHERE i.journey_id = :j AND i.entered_us >= :since AND c.instance_id IS NULL",
        {"j": journey_id, "since": entered_since_us},
    )
    return OpenInstances(
        ids=column(rows, 0, np.int64),
        keys=column(rows, 1, np.int64),
        versions=column(rows, 2, np.int64),
        entered_us=column(rows, 3, np.int64),
        holdout=np.array([bool(r[4]) for r in rows], dtype=bool),
        active=np.array([r[5] == "active" for r in rows], dtype=bool),
        entry_keys=objects(rows, 6),
        data=objects(rows, 7),
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
