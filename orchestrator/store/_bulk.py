"""Column-at-a-time helpers shared by the journey store modules.

``fetch`` returns every row of a SELECT as tuples and ``executemany`` runs one statement over many rows of
named parameters; on SQLite both go through the DBAPI cursor, which binds rows in C. ``column`` and friends
turn fetched rows into numpy columns. None of them commits: they run in the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
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


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bool:
    """PostgreSQL through psycopg: insert ``rows`` (values in ``columns`` order) into ``table`` with ``COPY
    ... FROM STDIN`` in the caller's transaction, in order (a serial id follows it), several times faster
    than an INSERT per row. Returns False, writing nothing, on any other backend or driver: the caller
    then inserts another way. Only for plain inserts (no conflict clause)."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return False
    cursor = raw_cursor(conn, writing=True)
    try:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()
    return True


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


#: SQLite: ``UPDATE ... FROM`` (which ``RUNS_UPDATE`` needs) came with 3.33.
UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
#: SQLite: the runs of ids (``id_runs``) of a JSON parameter ``:runs``, as rows (lo, hi) to join on.
RUNS = "(SELECT json_extract(value, '$[0]') AS lo, json_extract(value, '$[1]') AS hi FROM json_each(:runs))"


def id_runs(ids: np.ndarray, most: float = 0.25) -> str | None:
    """Increasing ids as the JSON array of their runs of consecutive ids (``[[first, last], ...]``), when
    there are at most ``most`` runs per id; else None. Rows made together (instances entered at one tick,
    a batch's ledger rows) have consecutive ids, and a statement over a few ranges of row ids seeks each
    range once instead of looking up every id in a list."""
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return None
    breaks = np.flatnonzero(np.diff(ids) != 1)
    if len(breaks) + 1 > most * len(ids) or (np.diff(ids) <= 0).any():
        return None
    firsts = np.concatenate([ids[:1], ids[breaks + 1]])
    lasts = np.concatenate([ids[breaks], ids[-1:]])
    return orjson.dumps(np.stack([firsts, lasts], axis=1), option=orjson.OPT_SERIALIZE_NUMPY).decode()
