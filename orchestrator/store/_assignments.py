"""Holdout assignments: each customer's arm for a journey, decided once at entry and stored.

Rows are only inserted, never changed, so the arm a customer got stays the arm the send path checks
(``ledger.due_messages`` joins it) and the lift report reads. Runs in the caller's transaction.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection

from orchestrator.store._bulk import column, executemany, fetch


def holdout_assignments(conn: Connection, journey_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, is_holdout) of every customer already assigned for the journey, in key order."""
    rows = fetch(
        conn,
        "SELECT customer_key, arm FROM holdout_assignments WHERE journey_id = :j ORDER BY customer_key",
        {"j": journey_id},
    )
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
    executemany(
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
