"""Set-based writes and columnar reads of events.

Events are written in bulk (one executemany per call) and read back as plain columns (``EventColumns``)
per evaluation: a single SELECT over a time window, converted to numpy columns without building a Python
object per event beyond the DBAPI's own row tuples. The evaluator's frame is built from these columns on
its own side (``orchestrator.signals.EventFrame.from_columns``), sharing the arrays.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import Connection, delete, func, insert, select, text, update

from orchestrator.store._bulk import copy_rows
from orchestrator.store._customers import (
    chunked,
    insert_ignoring_conflicts,
    json_path,
    max_key,
    raw_cursor,
)
from orchestrator.store._partitions import Ownership, owned_clause
from orchestrator.store._tables import Event, EventSource, EventSourceReject, EventType

EVENTS = Event.__table__  # type: ignore[attr-defined]
EVENT_TYPES = EventType.__table__  # type: ignore[attr-defined]
EVENT_SOURCES = EventSource.__table__  # type: ignore[attr-defined]
SOURCE_REJECTS = EventSourceReject.__table__  # type: ignore[attr-defined]
#: The low bits of a derived event key hold the line; the high bits the source (see ``ingest._keys``).
LINE_BITS = 32

_SQLITE_INSERT_HEAD = "INSERT INTO events (customer_key, type_id, ts_us, properties, event_key) VALUES "
_SQLITE_ROW = "(?, ?, ?, ?, ?)"
#: Rows per INSERT statement on SQLite: 750 parameters, under the oldest limit (999). One statement per row
#: pays SQLite's per-statement reset and step for every event; a statement of many rows pays it once.
_SQLITE_ROWS = 150
_SQLITE_INSERT_ROWS = _SQLITE_INSERT_HEAD + ", ".join([_SQLITE_ROW] * _SQLITE_ROWS)
_SQLITE_LAST_ID = "SELECT COALESCE(MAX(id), 0) FROM events"
#: Rows fetched at a time while reading events: each row is a Python tuple until its block is in the columns.
_FETCH_ROWS = 50_000
_SQLITE_STORED_KEYS = (
    "SELECT event_key FROM events WHERE event_key < 0 AND event_key IN (SELECT value FROM json_each(?))"
)


def _type_ids_for(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in chunked(names):
        rows = conn.execute(select(EVENT_TYPES.c.name, EVENT_TYPES.c.id).where(EVENT_TYPES.c.name.in_(part)))
        out.update((name, int(tid)) for name, tid in rows)
    return out


def event_type_ids(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """The id of every distinct name in ``names``, creating the event types that do not exist yet."""
    distinct = list(dict.fromkeys(names))
    for name in distinct:
        if not isinstance(name, str) or not name:
            raise ValueError(f"event type name must be a non-empty string, got {name!r}")
    if not distinct:
        return {}
    known = _type_ids_for(conn, distinct)
    missing = [name for name in distinct if name not in known]
    if missing:
        conn.execute(insert_ignoring_conflicts(conn, EVENT_TYPES, ["name"]), [{"name": n} for n in missing])
        known.update(_type_ids_for(conn, missing))
    return known


def insert_events(
    conn: Connection,
    customer_keys: np.ndarray,
    type_ids: np.ndarray,
    ts_us: np.ndarray,
    properties_json: Sequence[str],
) -> tuple[int, int]:
    """Insert one event per position of the four aligned sequences, without keys, with ids
    ``first..last`` in order; returns ``(first, last)`` (``(0, -1)`` for none). See ``insert_new_events``."""
    first, last, _ = insert_new_events(conn, customer_keys, type_ids, ts_us, properties_json)
    return first, last


def event_source(conn: Connection, digest: bytes, now_us: int) -> int:
    """The number of the event source with this content digest, recorded when new (see
    ``ingest._keys``)."""
    col = EVENT_SOURCES.c
    found = conn.execute(select(col.id).where(col.digest == digest)).scalar()
    if found is None:
        conn.execute(
            insert_ignoring_conflicts(conn, EVENT_SOURCES, ["digest"]),
            [{"digest": digest, "first_us": now_us}],
        )
        found = conn.execute(select(col.id).where(col.digest == digest)).scalar_one()
    return int(found)


def insert_new_events(
    conn: Connection,
    customer_keys: np.ndarray,
    type_ids: np.ndarray,
    ts_us: np.ndarray,
    properties_json: Sequence[str],
    event_keys: np.ndarray | None = None,
    keyed: np.ndarray | None = None,
    *,
    source: int | None = None,
    lines: np.ndarray | None = None,
    rejected_lines: Sequence[int] = (),
) -> tuple[int, int, np.ndarray]:
    """Insert the events of the aligned sequences that are not stored yet; returns ``(first, last,
    rows)``: the stored events have ids ``first..last`` (``(0, -1)`` for none) and are the given rows at
    positions ``rows``, in order.

    ``event_keys`` holds each event's int64 key (see ``ingest._keys``), ``keyed`` is a boolean mask of the
    rows that have one (None: all of them; no keys: none); the keys are stored with the events. What is
    not stored again:

    - with ``source`` (the number of the file or named batch, see ``event_source``) and each row's line in
      ``lines``: rows at or before the source's last line done, unless that line was rejected then. A
      source's rows arrive in line order, and the last line of each chunk (``lines`` and the chunk's
      ``rejected_lines``) is recorded in the chunk's own transaction with the lines it rejected, so a rerun
      after a crash, or the same file ingested again, skips exactly what was stored, and stores a line
      rejected before that the checks now accept. This needs no index over every event;
    - events with their own id (negative keys): an id stored already, or repeated earlier in the chunk,
      found through the unique index over those keys only.

    Rows without a key are always stored. ``properties_json`` holds each event's properties as JSON object
    text (``"{}"`` for none); it is stored as given. Ids are given explicitly, one more than the largest so
    far, while the writer holds the table: so ids grow in commit order, which is what lets a reader keep a
    copy current by reading the ids above the last it saw (and lets the writer hand the same events to an
    in-memory copy itself). On SQLite the transaction already holds the database's write lock; elsewhere
    the table is locked before anything is looked up. So the look-ups are exact, and the insert needs no
    conflict clause: an id stored meanwhile would be a broken lock, and fails the transaction rather than
    leave a gap in the ids.
    """
    n = len(ts_us)
    if not (len(customer_keys) == len(type_ids) == len(properties_json) == n):
        raise ValueError("insert_events needs sequences of equal length")
    if event_keys is not None and len(event_keys) != n:
        raise ValueError("insert_events needs a key per event")
    if source is not None and (lines is None or len(lines) != n):
        raise ValueError("insert_events needs a line per event of a source")
    if n == 0 and not (source is not None and len(rejected_lines)):
        return 0, -1, np.zeros(0, np.int64)
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
    new = np.ones(n, bool)
    retried = np.zeros(0, np.int64)  # lines rejected before, stored now
    if source is not None and lines is not None:
        lines = np.asarray(lines, dtype=np.int64)
        done = _lines_done(conn, source)
        old = lines <= done
        if old.any():
            again = _rejected_lines(conn, source, int(lines[old].min()), int(lines[old].max()))
            new &= ~old | np.isin(lines, again)
            retried = lines[old & new]
        rejected = np.asarray(rejected_lines, dtype=np.int64)
        _record_lines(
            conn,
            source,
            retried,
            rejected[rejected > done],
            max(done, int(lines.max(initial=0)), int(rejected.max(initial=0))),
        )
    key_col: list[int | None] | None = None
    if event_keys is not None:
        event_keys = np.asarray(event_keys, dtype=np.int64)
        has_key = np.ones(n, bool) if keyed is None else np.asarray(keyed, dtype=bool)
        own = np.flatnonzero(new & has_key & (event_keys < 0))  # events with their own id
        if len(own):
            _, first_of = np.unique(event_keys[own], return_index=True)
            if len(first_of) < len(own):  # an id repeated within the chunk: keep the first
                repeated = np.ones(len(own), bool)
                repeated[first_of] = False
                new[own[repeated]] = False
                own = own[~repeated]
            stored = _stored_ids(conn, event_keys[own])
            if len(stored):
                new[own[np.isin(event_keys[own], stored)]] = False
    rows = np.flatnonzero(new)
    m = len(rows)
    if m == 0:
        return 0, -1, rows
    if event_keys is not None:
        key_col = event_keys[rows].tolist()
        if keyed is not None and not has_key[rows].all():
            key_col = [k if h else None for k, h in zip(key_col, has_key[rows].tolist(), strict=True)]
    if m < n:
        customer_keys, type_ids, ts_us = customer_keys[rows], type_ids[rows], ts_us[rows]
        properties_json = [properties_json[i] for i in rows.tolist()]
    keys = np.asarray(customer_keys, dtype=np.int64).tolist()
    types = np.asarray(type_ids, dtype=np.int64).tolist()
    times = np.asarray(ts_us, dtype=np.int64).tolist()
    if conn.dialect.name == "sqlite":
        first = _sqlite_insert(conn, keys, types, times, properties_json, key_col, m)
    else:
        event_key_col: Iterable[int | None] = key_col if key_col is not None else itertools.repeat(None, m)
        first = int(conn.execute(select(func.coalesce(func.max(EVENTS.c.id), 0))).scalar_one()) + 1
        rows_in = zip(
            range(first, first + m), keys, types, times, properties_json, event_key_col, strict=True
        )
        columns = ("id", "customer_key", "type_id", "ts_us", "properties", "event_key")
        if not copy_rows(conn, "events", columns, rows_in):
            conn.execute(
                insert(EVENTS),
                [dict(zip(columns, row, strict=True)) for row in rows_in],
            )
    return first, first + m - 1, rows


def _sqlite_insert(
    conn: Connection,
    keys: list[int],
    types: list[int],
    times: list[int],
    properties_json: Sequence[str],
    event_keys: list[int | None] | None,
    m: int,
) -> int:
    """Append ``m`` events on SQLite through the DBAPI cursor (a statement built by SQLAlchemy costs more
    than SQLite's look-up of the max), many rows per statement; returns the id of the first.

    The ids are SQLite's own for a rowid table without AUTOINCREMENT: one more than the largest so far,
    row after row, as the transaction holds the write lock (an explicit id would cost SQLite a look-up per
    row). The largest id is read again after the insert: anything but ``first + m - 1`` would be a broken
    lock, and fails the transaction rather than hand out wrong ids."""
    cursor = raw_cursor(conn, writing=True)
    try:
        first = int(cursor.execute(_SQLITE_LAST_ID).fetchone()[0]) + 1
        flat: list[Any] = [None] * (5 * m)  # the rows' parameters end to end, built column by column
        flat[0::5] = keys
        flat[1::5] = types
        flat[2::5] = times
        flat[3::5] = properties_json
        if event_keys is not None:  # else None, as the list starts
            flat[4::5] = event_keys
        full = m - m % _SQLITE_ROWS
        if full:
            params = iter(flat[: 5 * full])
            cursor.executemany(_SQLITE_INSERT_ROWS, zip(*[params] * (5 * _SQLITE_ROWS), strict=True))
        if full < m:
            rest = _SQLITE_INSERT_HEAD + ", ".join([_SQLITE_ROW] * (m - full))
            cursor.execute(rest, flat[5 * full :])
        last = int(cursor.execute(_SQLITE_LAST_ID).fetchone()[0])
    finally:
        cursor.close()
    if last != first + m - 1:
        raise RuntimeError(f"events got ids {first}..{last} for {m} rows: another writer held the table")
    return first


def _lines_done(conn: Connection, source: int) -> int:
    col = EVENT_SOURCES.c
    return int(conn.execute(select(col.lines_done).where(col.id == source)).scalar_one() or 0)


def _rejected_lines(conn: Connection, source: int, low: int, high: int) -> np.ndarray:
    col = SOURCE_REJECTS.c
    query = select(col.line).where(col.source_id == source, col.line.between(low, high))
    return np.asarray(conn.execute(query).scalars().all(), dtype=np.int64)


def _record_lines(
    conn: Connection, source: int, stored: np.ndarray, rejected: np.ndarray, last_line: int
) -> None:
    """Lines rejected before and stored now leave the source's rejects; lines rejected past its last line
    done join them; the last line done moves on."""
    col = SOURCE_REJECTS.c
    for part in chunked(stored.tolist()):
        conn.execute(delete(SOURCE_REJECTS).where(col.source_id == source, col.line.in_(part)))
    if len(rejected):
        conn.execute(
            insert(SOURCE_REJECTS), [{"source_id": source, "line": line} for line in rejected.tolist()]
        )
    sources = EVENT_SOURCES.c
    conn.execute(
        update(EVENT_SOURCES)
        .where(sources.id == source, sources.lines_done < last_line)
        .values(lines_done=last_line)
    )


def _stored_ids(conn: Connection, event_keys: np.ndarray) -> np.ndarray:
    """Which of these keys of events with their own id (negative) the events table holds. The condition
    ``event_key < 0`` is the one of the partial index over those keys, so the look-up uses it."""
    col = EVENTS.c.event_key
    found: list[int] = []
    if conn.dialect.name == "sqlite":
        # One statement whatever the number of keys: the list travels as one JSON array parameter.
        cursor = raw_cursor(conn)
        try:
            for part in chunked(event_keys.tolist(), 200_000):
                cursor.execute(_SQLITE_STORED_KEYS, (orjson.dumps(part).decode(),))
                found += [row[0] for row in cursor.fetchall()]
        finally:
            cursor.close()
        return np.asarray(found, dtype=np.int64)
    for part in chunked(event_keys.tolist()):
        found += conn.execute(select(col).where(col < 0, col.in_(part))).scalars().all()
    return np.asarray(found, dtype=np.int64)


class TextColumn(NamedTuple):
    """A dictionary-encoded property column: ``values[codes[i]]`` is row i's value, code -1 means null."""

    codes: np.ndarray  # int32
    values: np.ndarray  # object array of distinct values


#: A property column as read: float64 (NaN for null) when every value is a number or null, else text codes.
PropertyColumn = np.ndarray | TextColumn


class EventColumns(NamedTuple):
    """Events as plain columns, one array element per event, in id (arrival) order.

    ``customer`` holds customer keys (``0 <= key < n_customers``; int64, or int32 when read with
    ``narrow_keys`` and every key fits), ``ts`` microseconds since the epoch,
    ``type`` (int32) indexes ``type_names`` (-1: an id missing from the event types). ``properties`` holds
    the requested property columns by name.
    """

    customer: np.ndarray
    ts: np.ndarray
    type: np.ndarray
    type_names: list[str]
    n_customers: int
    properties: dict[str, PropertyColumn]


class _PropertyColumn:
    """Builds one property column block by block into an array of its final size, so that a large load
    holds no Python object per value: numbers go into float64 (NaN for null); as soon as a non-number
    appears the column becomes int32 codes into a dictionary, the numbers read so far included."""

    def __init__(self, total: int) -> None:
        self.numbers: np.ndarray | None = np.empty(total, np.float64)
        self.codes: np.ndarray | None = None
        self.table: dict[Any, int] = {}
        self.filled = 0

    def add(self, values: Sequence[Any]) -> None:
        start, end = self.filled, self.filled + len(values)
        if self.numbers is not None:
            kinds = set(map(type, values))
            kinds.discard(type(None))
            if kinds <= {int, float}:
                self.numbers[start:end] = np.array(values, dtype=np.float64)  # None becomes NaN
                self.filled = end
                return
            read = self.numbers[:start]
            self.codes = np.empty(len(self.numbers), np.int32)
            self.codes[:start] = self._encode([None if v != v else _plain(v) for v in read.tolist()])
            self.numbers = None
        assert self.codes is not None
        self.codes[start:end] = self._encode(values)
        self.filled = end

    def _encode(self, values: Sequence[Any]) -> np.ndarray:
        code = self.table.setdefault
        return np.fromiter(
            (-1 if v is None or v == "" else code(v, len(self.table)) for v in values), np.int32, len(values)
        )

    def column(self) -> PropertyColumn:
        if self.numbers is not None:
            return self.numbers[: self.filled]
        assert self.codes is not None
        values = np.empty(len(self.table), dtype=object)
        values[:] = list(self.table)
        return TextColumn(self.codes[: self.filled], values)


def _plain(value: float) -> Any:
    """A whole float read back as the int JSON had (json_extract gives 3 for 3, 3.5 for 3.5)."""
    return int(value) if value.is_integer() else value


def load_events(
    conn: Connection,
    until_us: int | None,
    properties: Iterable[str],
    since_us: int | None = None,
    n_customers: int | None = None,
    after_id: int | None = None,
    up_to_id: int | None = None,
    only: Iterable[str] | None = None,
    ownership: Ownership | None = None,
    *,
    narrow_keys: bool = False,
) -> EventColumns:
    """Every event with ``since_us <= ts_us < until_us`` (a None bound is no bound), and, when given,
    ``after_id < id <= up_to_id``, and only of the event types named in ``only`` (none when no stored event
    has one of those names), and with ``ownership`` only of customers in its partitions.

    ``type`` codes index ``type_names``, which lists every known event type in id order. ``n_customers`` is
    one more than the largest customer key (of the customers table and of the loaded events), or the given
    value when that is larger. Each requested property becomes a column: float64 (NaN for missing) when
    every value is a number or null, ``TextColumn`` codes otherwise. On SQLite values come from
    ``json_extract``, so JSON booleans read as 1 and 0 and JSON objects/arrays as their JSON text. Events
    come in id (arrival) order. With ``narrow_keys`` the customer column is int32 when every key fits
    (customers below 2^31: half the memory of int64 for a large load), int64 otherwise.
    """
    names = list(dict.fromkeys(properties))
    type_rows = conn.execute(select(EVENT_TYPES.c.id, EVENT_TYPES.c.name).order_by(EVENT_TYPES.c.id)).all()
    type_names = [name for _, name in type_rows]
    type_ids = None
    if only is not None:
        wanted = set(only)
        type_ids = [int(tid) for tid, name in type_rows if name in wanted]
    customer, type_id, ts, prop_values = _fetch_events(
        conn, until_us, since_us, names, after_id, up_to_id, type_ids, ownership, narrow_keys
    )
    max_type = max(max((int(tid) for tid, _ in type_rows), default=0), int(type_id.max(initial=0)))
    code_of = np.full(max_type + 1, -1, np.int32)  # an id missing from event_types reads as NULL_CODE
    for code, (tid, _) in enumerate(type_rows):
        code_of[int(tid)] = code
    types = _recoded(type_id, code_of)

    n = max_key(conn) + 1
    if len(customer):
        n = max(n, int(customer.max()) + 1)
    if n_customers is not None:
        n = max(n, int(n_customers))
    return EventColumns(
        customer=customer,
        ts=ts,
        type=types,
        type_names=type_names,
        n_customers=n,
        properties=dict(zip(names, prop_values, strict=True)),
    )


def _recoded(ids: np.ndarray, code_of: np.ndarray) -> np.ndarray:
    """``code_of[ids]`` as int32, written over ``ids`` a block at a time when it is int32 already (no
    second column for a large load)."""
    if ids.dtype != np.int32 or not ids.flags.writeable:
        return code_of[ids].astype(np.int32, copy=False)
    for start in range(0, len(ids), 1 << 20):
        block = ids[start : start + (1 << 20)]
        block[...] = code_of[block]
    return ids


def load_new_events(
    conn: Connection,
    after_id: int,
    properties: Iterable[str],
    ownership: Ownership | None = None,
    *,
    narrow_keys: bool = False,
) -> tuple[EventColumns, int]:
    """Every event with ``id > after_id`` whatever its time (with ``ownership``, of customers in its
    partitions), as columns like ``load_events`` gives, and the largest id of the store (``after_id`` when
    there is none). Events are append-only, so a reader that remembers the id can keep an in-memory copy
    current by reading only what arrived since."""
    last = conn.execute(select(func.max(EVENTS.c.id))).scalar()
    last_id = int(last) if last is not None else after_id
    columns = load_events(
        conn,
        until_us=None,
        properties=properties,
        after_id=after_id,
        up_to_id=last_id,
        ownership=ownership,
        narrow_keys=narrow_keys,
    )
    return columns, max(last_id, after_id)


def _fetch_events(
    conn: Connection,
    until_us: int | None,
    since_us: int | None,
    names: Sequence[str],
    after_id: int | None = None,
    up_to_id: int | None = None,
    type_ids: Sequence[int] | None = None,
    ownership: Ownership | None = None,
    narrow_keys: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[PropertyColumn]]:
    """customer and ts columns as int64 arrays (customer as int32 with ``narrow_keys`` where every key
    fits), type_id as int64 or int32, plus one column per property; with ``type_ids``, only events of
    those types."""
    if type_ids is not None and not type_ids:
        empty = np.empty(0, np.int64)
        return empty, empty, empty, [_PropertyColumn(0).column() for _ in names]
    if conn.dialect.name == "sqlite":
        cols = ["customer_key", "type_id", "ts_us"] + ["json_extract(properties, ?)"] * len(names)
        conditions: list[str] = []
        params: list[Any] = [json_path(name) for name in names]
        for sql_condition, value in (
            ("ts_us < ?", until_us),
            ("ts_us >= ?", since_us),
            ("id > ?", after_id),
            ("id <= ?", up_to_id),
        ):
            if value is not None:
                conditions.append(sql_condition)
                params.append(int(value))
        if type_ids is not None:
            conditions.append(f"type_id IN ({', '.join('?' * len(type_ids))})")
            params.extend(int(t) for t in type_ids)
        if ownership is not None:
            conditions.append(owned_clause("customer_key", ownership))
        where = " AND ".join(conditions) or "1 = 1"
        sql = f"SELECT {', '.join(cols)} FROM events WHERE {where} ORDER BY id"
        cursor = raw_cursor(conn)
        try:
            # Counting first lets every column be allocated once, at its final size.
            cursor.execute(f"SELECT COUNT(*) FROM events WHERE {where}", params[len(names) :])
            total = int(cursor.fetchone()[0])
            cursor.execute(sql, params)
            return _columns(cursor, len(names), total, narrow_keys)
        finally:
            cursor.close()
    return _fetch_postgres(
        conn, until_us, since_us, names, after_id, up_to_id, type_ids, ownership, narrow_keys
    )


def _fetch_postgres(
    conn: Connection,
    until_us: int | None,
    since_us: int | None,
    names: Sequence[str],
    after_id: int | None,
    up_to_id: int | None,
    type_ids: Sequence[int] | None,
    ownership: Ownership | None,
    narrow_keys: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[PropertyColumn]]:
    """``_fetch_events`` on PostgreSQL: counted, then read through a server-side cursor block by block
    into columns of their final size (no Python object per event kept), each event's properties parsed
    once when any is asked for, with SQLite's ``json_extract`` meanings (booleans as 1 and 0, objects and
    lists as their compact JSON text)."""
    if up_to_id is None:  # ids grow in commit order: bounding them fixes the set the count and read see
        up_to_id = int(conn.execute(select(func.coalesce(func.max(EVENTS.c.id), 0))).scalar_one())
    conditions = ["id <= %s"]
    params: list[Any] = [int(up_to_id)]
    for sql_condition, value in (("ts_us < %s", until_us), ("ts_us >= %s", since_us), ("id > %s", after_id)):
        if value is not None:
            conditions.append(sql_condition)
            params.append(int(value))
    if type_ids is not None:
        conditions.append("type_id = ANY(%s)")
        params.append([int(t) for t in type_ids])
    if ownership is not None:
        conditions.append(owned_clause("customer_key", ownership))
    where = " AND ".join(conditions)
    cursor = raw_cursor(conn)
    try:
        cursor.execute(f"SELECT COUNT(*) FROM events WHERE {where}", params)
        total = int(cursor.fetchone()[0])
    finally:
        cursor.close()
    columns = "customer_key, type_id, ts_us" + (", properties" if names else "")
    dbapi: Any = conn.connection.dbapi_connection
    reader = dbapi.cursor(name="load_events")
    try:
        reader.itersize = _FETCH_ROWS
        reader.execute(f"SELECT {columns} FROM events WHERE {where} ORDER BY id", params)
        return _columns(_PropertyRows(reader, names), len(names), total, narrow_keys)
    finally:
        reader.close()


class _PropertyRows:
    """A cursor whose rows end with a JSON document, read as rows ending with the values of ``names``:
    each block's documents parsed once, each name's values taken as a column, and only a column holding a
    boolean, an object or a list converted value by value (``_as_sqlite``)."""

    def __init__(self, cursor: Any, names: Sequence[str]) -> None:
        self.cursor = cursor
        self.names = list(names)

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        rows = self.cursor.fetchmany(size)
        if not self.names or not rows:
            return rows
        docs = [orjson.loads(doc or "{}") for doc in map(itemgetter(3), rows)]
        docs = [doc if type(doc) is dict else {} for doc in docs]
        columns = []
        for name in self.names:
            values = [doc.get(name) for doc in docs]
            if not set(map(type, values)) <= _PLAIN:
                values = [_as_sqlite(v) for v in values]
            columns.append(values)
        firsts = (list(map(itemgetter(i), rows)) for i in range(3))  # customer, type, instant
        return list(zip(*firsts, *columns, strict=True))


#: JSON values SQLite's ``json_extract`` gives as they are.
_PLAIN = {str, int, float, type(None)}


def _as_sqlite(value: Any) -> Any:
    """A JSON value as SQLite's ``json_extract`` gives it: booleans as 1 and 0, objects and lists as
    their compact JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def _columns(
    cursor: Any, n_props: int, total: int, narrow_keys: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[PropertyColumn]]:
    """Drain a DBAPI cursor of at most ``total`` (customer, type, ts, props...) rows into columns, each
    allocated once at its final size and filled a block at a time. With ``narrow_keys`` the customer
    column is int32 until a key does not fit (it is then widened once, to int64)."""
    # Type ids are few and small: int32 from the start spares a load a column of int64.
    customer = np.empty(total, np.int32 if narrow_keys else np.int64)
    type_id = np.empty(total, np.int32)
    ts = np.empty(total, np.int64)
    props = [_PropertyColumn(total) for _ in range(n_props)]
    filled = 0
    while True:
        rows = cursor.fetchmany(_FETCH_ROWS)
        if not rows:
            break
        end = filled + len(rows)
        if end > total:
            raise RuntimeError("more events than counted: the read was not one snapshot")
        # itemgetter over the row list: no intermediate tuple per column (zip(*rows) costs 10x more).
        keys = np.fromiter(map(itemgetter(0), rows), np.int64, len(rows))
        if customer.dtype == np.int32 and not _fits_int32(keys):
            wide = np.empty(total, np.int64)
            wide[:filled] = customer[:filled]
            customer = wide
        customer[filled:end] = keys
        type_id[filled:end] = np.fromiter(map(itemgetter(1), rows), np.int32, len(rows))
        ts[filled:end] = np.fromiter(map(itemgetter(2), rows), np.int64, len(rows))
        for j in range(n_props):
            props[j].add(list(map(itemgetter(3 + j), rows)))
        filled = end
    return customer[:filled], type_id[:filled], ts[:filled], [p.column() for p in props]


def _fits_int32(keys: np.ndarray) -> bool:
    return not len(keys) or (
        int(keys.min()) >= np.iinfo(np.int32).min and int(keys.max()) <= np.iinfo(np.int32).max
    )


@dataclass(frozen=True)
class TimedEvents:
    """Events of one type as aligned columns: customer key, instant and JSON properties text (or None)."""

    customer_key: np.ndarray  # int64
    ts_us: np.ndarray  # int64
    properties: list[str | None]

    def __len__(self) -> int:
        return len(self.properties)


def events_between(conn: Connection, name: str, from_us: int, until_us: int) -> TimedEvents:
    """The events named ``name`` with ``from_us <= ts_us < until_us`` (none when no event has that name):
    one query for the type's id, one for the events."""
    type_id = conn.execute(text("SELECT id FROM event_types WHERE name = :n"), {"n": name}).scalar()
    rows: Sequence[Any] = []
    if type_id is not None:
        rows = conn.execute(
            text(
                "SELECT customer_key, ts_us, properties FROM events "
                "WHERE type_id = :t AND ts_us >= :a AND ts_us < :b"
            ),
            {"t": type_id, "a": from_us, "b": until_us},
        ).all()
    return TimedEvents(
        customer_key=np.fromiter((r.customer_key for r in rows), np.int64, len(rows)),
        ts_us=np.fromiter((r.ts_us for r in rows), np.int64, len(rows)),
        properties=[r.properties for r in rows],
    )


def events_fingerprint(conn: Connection, last_id: int) -> str:
    """A digest of a few of the events with ids up to ``last_id`` (the first, the last and seven between,
    each with its customer, type and instant), so that an in-memory copy of the events up to ``last_id``
    can tell the store it was read from from another one (a store made again, or restored from a backup,
    whose ids mean other events). Nine look-ups by primary key."""
    ids = sorted({max(1, last_id * k // 8) for k in range(9)} | {last_id}) if last_id > 0 else []
    rows: list[Any] = []
    if ids:
        rows = list(
            conn.execute(
                select(EVENTS.c.id, EVENTS.c.customer_key, EVENTS.c.ts_us, EVENT_TYPES.c.name)
                .join(EVENT_TYPES, EVENT_TYPES.c.id == EVENTS.c.type_id, isouter=True)
                .where(EVENTS.c.id.in_(ids))
                .order_by(EVENTS.c.id)
            ).all()
        )
    text_rows = [[int(i), int(c), int(t), n] for i, c, t, n in rows]
    return hashlib.sha256(orjson.dumps([last_id, text_rows])).hexdigest()
