"""Holdout assignments: each customer's arm for a journey, decided once at entry and stored.

Rows are only inserted, never changed, so the arm a customer got stays the arm the send path checks
(``ledger.due_messages`` joins it) and the lift report reads. Runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
from sqlalchemy import Connection

from orchestrator.store._bulk import column, copy_rows, executemany, fetch
from orchestrator.store._customers import chunked


def holdout_assignments(
    conn: Connection, journey_id: str, keys: Sequence[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(keys, is_holdout) of every customer already assigned for the journey (only those among ``keys``,
    when given), in key order."""
    if keys is None:
        rows = fetch(
            conn,
            "SELECT customer_key, arm FROM holdout_assignments WHERE journey_id = :j ORDER BY customer_key",
            {"j": journey_id},
        )
    else:
        sqlite = conn.dialect.name == "sqlite"
        wanted = "IN (SELECT value FROM json_each(:keys))" if sqlite else "= ANY(CAST(:keys AS BIGINT[]))"
        rows = []
        for part in chunked(np.asarray(keys, dtype=np.int64).tolist()):
            listed = orjson.dumps(list(part)).decode() if sqlite else list(part)
            rows += fetch(
                conn,
                "SELECT customer_key, arm FROM holdout_assignments "
                f"WHERE journey_id = :j AND customer_key {wanted}",
                {"j": journey_id, "keys": listed},
            )
        rows.sort(key=lambda r: int(r[0]))
    keys = column(rows, 0, np.int64)
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
    columns = ("journey_id", "customer_key", "arm", "bucket", "percent", "assigned_us", "reason", "layer")
    aligned = zip(
        keys.tolist(),
        arm.tolist(),
        bucket.tolist(),
        percent.tolist(),
        reason.tolist(),
        layer.tolist(),
        strict=True,
    )
    rows = ((journey_id, int(k), a, float(b), float(p), now_us, r, lay) for k, a, b, p, r, lay in aligned)
    if copy_rows(conn, "holdout_assignments", columns, rows):  # PostgreSQL
        return
    names, values = ", ".join(columns), ", ".join(f":{c}" for c in columns)
    executemany(
        conn,
        f"INSERT INTO holdout_assignments ({names}) VALUES ({values})",
        [dict(zip(columns, row, strict=True)) for row in rows],
    )
