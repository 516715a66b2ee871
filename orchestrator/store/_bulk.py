"""Column-at-a-time helpers shared by the journey store modules.

``fetch`` returns every row of a SELECT as tuples and ``executemany`` runs one statement over many rows of
named parameters; on SQLite both go through the DBAPI cursor, which binds rows in C. ``column`` and friends
turn fetched rows into numpy columns. None of them commits: they run in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from orchestrator.store._customers import raw_cursor

CHUNK = 20_000


def column(rows: Sequence[Sequence[Any]], i: int, dtype: Any) -> np.ndarray:
    if not rows:
        return np.zeros(0, dtype=dtype)
    return np.fromiter((r[i] for r in rows), dtype=dtype, count=len(rows))


def objects(rows: Sequence[Sequence[Any]], i: int) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [r[i] for r in rows]
    return out


def optional_ints(rows: Sequence[Sequence[Any]], i: int, missing: int = -1) -> np.ndarray:
    return np.fromiter((missing if r[i] is None else r[i] for r in rows), dtype=np.int64, count=len(rows))


def executemany(conn: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> int:
    """Run ``sql`` (named ``:params``) once per row. On SQLite the rows go to the DBAPI cursor directly:
    binding a million rows through SQLAlchemy's executemany costs several times more. Returns the rows the
    statement changed in all, or -1 when the driver does not say."""
    if not rows:
        return 0
    changed = 0
    if conn.dialect.name == "sqlite":
        cursor = raw_cursor(conn, writing=True)
        try:
            for start in range(0, len(rows), 100_000):
                cursor.executemany(sql, rows[start : start + 100_000])
                changed = -1 if changed < 0 or cursor.rowcount < 0 else changed + cursor.rowcount
        finally:
            cursor.close()
        return changed
    for start in range(0, len(rows), CHUNK):
        count = conn.execute(text(sql), list(rows[start : start + CHUNK])).rowcount
        changed = -1 if changed < 0 or count is None or count < 0 else changed + count
    return changed


def fetch(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """All rows of a SELECT as plain tuples (through the DBAPI cursor on SQLite)."""
    if conn.dialect.name == "sqlite":
        cursor = raw_cursor(conn)
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()
    return [tuple(r) for r in conn.execute(text(sql), params).all()]
