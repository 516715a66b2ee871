"""Set-based reads and writes of customers.

Customers are addressed by the business id (``id``) on the way in and by the dense integer ``key`` everywhere
else. Every function here takes an open SQLAlchemy ``Connection`` (the caller owns the transaction) and does
a bounded number of statements whatever the number of customers: bulk SELECTs over chunked ``IN`` lists and
one executemany per kind of write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import Connection, Insert, bindparam, false, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store._tables import ConsentChange, Customer

CUSTOMERS = Customer.__table__  # type: ignore[attr-defined]
CONSENT_CHANGES = ConsentChange.__table__  # type: ignore[attr-defined]

#: Bound parameters per ``IN`` list: below SQLite's and PostgreSQL's limits, large enough to be cheap.
IN_CHUNK = 5000

#: Columns of ``customers`` that a customer row may set directly; anything else is an attribute.
STANDARD_TEXT = ("email", "phone", "push_token", "timezone")
CONSENTS = ("consent_email", "consent_sms", "consent_push")
STANDARD = STANDARD_TEXT + CONSENTS
#: Columns ``read_customer_values`` reads directly rather than from the JSON attributes.
DIRECT_COLUMNS = ("id", *STANDARD)
_RESERVED = frozenset({"key", "updated_us", "revision"})
#: The key of an ``upsert_customers`` row that holds the record's time (its ``updated_at``).
RECORD_TIME = "record_us"


def chunked(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``values`` of at most ``size`` elements."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def insert_ignoring_conflicts(conn: Connection, table: Any, index_elements: list[str]) -> Insert:
    """An INSERT that skips rows whose unique key already exists (a concurrent writer won the race).

    SQLite and PostgreSQL get ``ON CONFLICT DO NOTHING``; other dialects a plain INSERT.
    """
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return insert(table)


_SQLITE_KEYS = "SELECT id, key FROM customers WHERE id IN (SELECT value FROM json_each(?))"
#: New customers from one JSON array of their ids, in its order (SQLite's own loop, no Python step per
#: row). ``WHERE true`` tells SQLite's parser that ``ON CONFLICT`` is the upsert clause, not a join's.
_SQLITE_CREATE = (
    "INSERT INTO customers (id, email, phone, push_token, timezone, consent_email, consent_sms,"
    " consent_push, attributes, updated_us, record_us, revision)"
    " SELECT value, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', ?, 0, ? FROM json_each(?)"
    " WHERE true ORDER BY key ON CONFLICT (id) DO NOTHING"
)
_SQLITE_MAX_KEY = "SELECT COALESCE(MAX(key), 0) FROM customers"


def next_revision(conn: Connection) -> int:
    """The revision for this transaction's customer writes: one more than the largest committed. On
    SQLite the writing transaction already holds the database's write lock; elsewhere the table is
    locked, so that revisions grow in commit order."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE customers IN SHARE ROW EXCLUSIVE MODE")
    return int(conn.execute(select(func.coalesce(func.max(CUSTOMERS.c.revision), 0))).scalar_one()) + 1


def max_revision(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(CUSTOMERS.c.revision), 0))).scalar_one())


def raw_cursor(conn: Connection, writing: bool = False) -> Any:
    """A DBAPI cursor on ``conn``'s connection (the caller closes it). ``writing`` first makes sure the
    SQLAlchemy transaction has begun, so that the caller's commit covers what the cursor writes."""
    if writing and not conn.in_transaction():
        conn.begin()
    return conn.connection.cursor()


def _keys_for(conn: Connection, ids: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    if conn.dialect.name == "sqlite":
        # One statement whatever the number of ids: the list travels as one JSON array parameter.
        cursor = raw_cursor(conn)
        try:
            for part in chunked(ids, 200_000):
                cursor.execute(_SQLITE_KEYS, (orjson.dumps(list(part)).decode(),))
                out.update(cursor.fetchall())
        finally:
            cursor.close()
        return out
    for part in chunked(ids):
        rows = conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.key).where(CUSTOMERS.c.id.in_(part)))
        out.update((cid, int(key)) for cid, key in rows)
    return out


def ensure_customer_keys(
    conn: Connection, ids: Sequence[str], now_us: int, *, likely_new: bool = False
) -> np.ndarray:
    """The int64 keys of ``ids`` (aligned with it, duplicates allowed), creating missing customers.

    A created customer has only its id, no consent on record (NULL: the policy decides), empty attributes,
    ``updated_us = now_us`` and ``record_us = 0`` (no record applied yet).

    ``likely_new`` says the caller expects none of the ids to be stored (an ingest's customers not seen
    before in it, into a store being filled): on SQLite they are then created at once, without being
    looked up first, and looked up only should some have been stored after all. Either way the result is
    the same; only the cost differs.
    """
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    distinct = list(dict.fromkeys(ids))
    for cid in distinct:
        if not isinstance(cid, str) or not cid:
            raise ValueError(f"customer id must be a non-empty string, got {cid!r}")
    sqlite_file = conn.dialect.name == "sqlite"
    known = {} if likely_new and sqlite_file else _keys_for(conn, distinct)
    missing = [cid for cid in distinct if cid not in known]
    revision = next_revision(conn) if missing else 0
    if missing and sqlite_file:
        known.update(_sqlite_create(conn, missing, int(now_us), revision))
    elif missing:
        conn.execute(
            insert_ignoring_conflicts(conn, CUSTOMERS, ["id"]),
            [
                {
                    "id": cid,
                    "email": None,
                    "phone": None,
                    "push_token": None,
                    "timezone": None,
                    "consent_email": None,
                    "consent_sms": None,
                    "consent_push": None,
                    "attributes": "{}",
                    "updated_us": int(now_us),
                    "record_us": 0,
                    "revision": revision,
                }
                for cid in missing
            ],
        )
        known.update(_keys_for(conn, missing))
    return np.fromiter((known[cid] for cid in ids), np.int64, len(ids))


def _sqlite_create(conn: Connection, ids: list[str], now_us: int, revision: int) -> dict[str, int]:
    """Create these customers (distinct, none stored as far as the caller knows) and return their keys.
    SQLite gives a rowid table's new rows one more than the largest key, row after row, so the keys are the
    ``len(ids)`` after the largest before, in order; they are read back only should the largest after say
    otherwise: some ids were stored already (and were left as they were)."""
    cursor = raw_cursor(conn, writing=True)
    try:
        first = int(cursor.execute(_SQLITE_MAX_KEY).fetchone()[0]) + 1
        for part in chunked(ids, 200_000):
            cursor.execute(_SQLITE_CREATE, (now_us, revision, orjson.dumps(list(part)).decode()))
        last = int(cursor.execute(_SQLITE_MAX_KEY).fetchone()[0])
    finally:
        cursor.close()
    if last != first + len(ids) - 1:
        return _keys_for(conn, ids)
    return dict(zip(ids, range(first, last + 1), strict=True))


def _check_standard(name: str, value: Any) -> None:
    if name in CONSENTS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean, got {value!r}")
    elif value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {value!r}")


@dataclass(frozen=True)
class CustomerWrites:
    """What ``upsert_customers`` did: distinct customers written, and rows not applied because the
    customer already had a newer record (``stale``)."""

    written: int
    stale: int
    # Consents a row would have given back that the customer withdrew (unsubscribed) after the row's time.
    kept_opt_outs: int = 0


def _split_row(row: Mapping[str, Any], now_us: int) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    """One row as (id, record time, standard columns, attributes); ValueError when malformed."""
    cid = row.get("id")
    if not isinstance(cid, str) or not cid:
        raise ValueError(f"customer row needs a non-empty string id, got {cid!r}")
    when = row.get(RECORD_TIME, now_us)
    if type(when) is not int:
        raise ValueError(f"{RECORD_TIME} must be integer microseconds, got {when!r}")
    std: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for name, value in row.items():
        if name in ("id", RECORD_TIME):
            continue
        if name in STANDARD:
            _check_standard(name, value)
            std[name] = value
        elif name == "attributes" and isinstance(value, Mapping):
            attrs.update(value)
        elif name in _RESERVED:
            raise ValueError(f"customer rows cannot set {name!r}")
        else:
            attrs[name] = value
    return cid, when, std, attrs


def upsert_customers(conn: Connection, rows: list[dict[str, Any]], now_us: int) -> CustomerWrites:
    """Create or update customers; returns the customers written and the rows skipped as stale.

    Each row has ``id`` (non-empty string) and any of the standard columns (``email``, ``phone``,
    ``push_token``, ``timezone`` as strings or None, ``consent_email/sms/push`` as booleans); a standard
    column absent from a row is left unchanged. Every other key is an attribute, merged into the stored
    JSON attributes (a None value is stored as JSON null, not removed); a key ``attributes`` holding a
    mapping is merged the same way. ``record_us`` is the time of the record (integer microseconds; default
    ``now_us``): a row older than the customer's newest record applied so far (stored in ``record_us``, or
    an earlier row of ``rows``) is skipped and counted as stale, so replaying an old export changes nothing;
    rows of equal time apply in order. ``key``, ``updated_us`` and ``revision`` are refused. Every customer
    written gets ``updated_us = now_us``, its newest ``record_us`` and the transaction's ``next_revision``;
    a customer whose rows are all stale is not written (its revision stays).

    A consent the customer withdrew through the engine (``consent_changes``: an unsubscribe link) is given
    back only by a row whose own ``record_us`` is later than the withdrawal: a ``consent_<channel>: true``
    of an older row, or of a row without ``record_us``, is left out of that row (the rest of the row
    applies) and counted in ``kept_opt_outs``.
    """
    parsed = [_split_row(row, now_us) for row in rows]
    if not parsed:
        return CustomerWrites(0, 0)
    ids = list(dict.fromkeys(cid for cid, _, _, _ in parsed))
    key_of = dict(zip(ids, ensure_customer_keys(conn, ids, now_us).tolist(), strict=True))
    # Before reading what is stored: on PostgreSQL this locks out other customer writers until commit,
    # so the attributes merged and the record times compared are the latest.
    revision = next_revision(conn)

    stored: dict[int, str] = {}
    newest: dict[int, int] = {}
    for part in chunked(list(key_of.values())):
        result = conn.execute(
            select(CUSTOMERS.c.key, CUSTOMERS.c.attributes, CUSTOMERS.c.record_us).where(
                CUSTOMERS.c.key.in_(part)
            )
        )
        for k, attributes, record_us in result:
            stored[int(k)] = attributes
            newest[int(k)] = int(record_us or 0)

    id_of = {key: cid for cid, key in key_of.items()}
    giving = sorted({key_of[p[0]] for p in parsed if any(p[2].get(name) is True for name in CONSENTS)})
    withdrawn = opt_outs(conn, giving) if giving else {}
    merged: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    stale = kept = 0
    for row, (cid, when, std_row, attrs_row) in zip(rows, parsed, strict=True):
        key = key_of[cid]
        if when < newest[key]:
            stale += 1
            continue
        newest[key] = when
        if withdrawn:
            timed = when if RECORD_TIME in row else None
            for name in CONSENTS:
                at = withdrawn.get((key, name))
                if at is not None and std_row.get(name) is True and (timed is None or timed <= at):
                    std_row = {k: v for k, v in std_row.items() if k != name}
                    kept += 1
        std, attrs = merged.setdefault(key, ({}, {}))
        std.update(std_row)
        attrs.update(attrs_row)

    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    fixed = ("p_key", "p_updated_us", "p_revision", "p_record_us")
    for key, (std, attrs) in merged.items():
        params: dict[str, Any] = {
            "p_key": key,
            "p_updated_us": int(now_us),
            "p_revision": revision,
            "p_record_us": newest[key],
        }
        if attrs:
            current = orjson.loads(stored.get(key) or "{}")
            if not isinstance(current, dict):
                raise ValueError(f"customer {id_of[key]!r} has attributes that are not a JSON object")
            current.update(attrs)
            params["p_attributes"] = orjson.dumps(current).decode()
        for name, value in std.items():
            params["p_" + name] = value
        shape = tuple(sorted(name[2:] for name in params if name not in fixed))
        groups.setdefault(shape, []).append(params)

    for shape, group in groups.items():
        sets: dict[str, Any] = {name: bindparam("p_" + name) for name in shape}
        sets["updated_us"] = bindparam("p_updated_us")
        sets["revision"] = bindparam("p_revision")
        sets["record_us"] = bindparam("p_record_us")
        # The database compares the record times too: a newer record is never overwritten.
        stmt = (
            update(CUSTOMERS)
            .where(CUSTOMERS.c.key == bindparam("p_key"), CUSTOMERS.c.record_us <= bindparam("p_record_us"))
            .values(sets)
        )
        conn.execute(stmt, group)
    return CustomerWrites(len(merged), stale, kept)


def opt_outs(conn: Connection, keys: Sequence[int]) -> dict[tuple[int, str], int]:
    """When each of these customers last withdrew a consent through the engine: ``(key,
    "consent_<channel>") -> at_us``. One cheap look first: a store where no one ever unsubscribed answers
    at once."""
    if not keys or conn.execute(select(CONSENT_CHANGES.c.id).limit(1)).first() is None:
        return {}
    col = CONSENT_CHANGES.c
    out: dict[tuple[int, str], int] = {}
    for part in chunked([int(k) for k in keys]):
        rows = conn.execute(
            select(col.customer_key, col.channel, func.max(col.at_us))
            .where(col.customer_key.in_(part), col.consent == false())
            .group_by(col.customer_key, col.channel)
        )
        out.update(((int(k), f"consent_{channel}"), int(at)) for k, channel, at in rows)
    return out


def max_key(conn: Connection) -> int:
    """The largest customer key, 0 when there is no customer."""
    value = conn.execute(select(func.max(CUSTOMERS.c.key))).scalar()
    return int(value) if value is not None else 0


def json_path(name: str) -> str:
    """The JSON path of top-level member ``name`` (quoted, so dots and spaces are part of the name)."""
    if '"' in name or "\\" in name:
        raise ValueError(f"attribute/property name {name!r} cannot contain quotes or backslashes")
    return f'$."{name}"'


def _sqlite_attribute_values(
    conn: Connection, names: Sequence[str], after_revision: int | None = None
) -> tuple[list[int], list[list[Any]]]:
    """Keys and, per name, the JSON attribute values with their JSON types (booleans stay booleans)."""
    exprs: list[str] = []
    params: list[str] = []
    for name in names:
        path = json_path(name)
        exprs.append("json_extract(attributes, ?)")
        exprs.append("json_type(attributes, ?)")
        params += [path, path]
    sql = f"SELECT key, {', '.join(exprs)} FROM customers"
    if after_revision is not None:
        sql += " WHERE revision > ?"
        params.append(after_revision)  # type: ignore[arg-type]
    rows = conn.exec_driver_sql(sql + " ORDER BY key", tuple(params)).all()
    keys = [r[0] for r in rows]
    out: list[list[Any]] = []
    for i in range(len(names)):
        vcol = 1 + 2 * i
        values: list[Any] = []
        for r in rows:
            v, kind = r[vcol], r[vcol + 1]
            if kind == "true":
                v = True
            elif kind == "false":
                v = False
            elif kind in ("object", "array"):
                v = orjson.loads(v)
            values.append(v)
        out.append(values)
    return keys, out


def _generic_attribute_values(
    conn: Connection, names: Sequence[str], after_revision: int | None = None
) -> tuple[list[int], list[list[Any]]]:
    stmt = select(CUSTOMERS.c.key, CUSTOMERS.c.attributes).order_by(CUSTOMERS.c.key)
    if after_revision is not None:
        stmt = stmt.where(CUSTOMERS.c.revision > after_revision)
    rows = conn.execute(stmt).all()
    keys = [int(r[0]) for r in rows]
    docs = [orjson.loads(r[1] or "{}") for r in rows]
    return keys, [[d.get(name) if isinstance(d, dict) else None for d in docs] for name in names]


class CustomerValues(NamedTuple):
    """Every customer's values of some attributes, as read: ``n`` key slots (the largest key + 1; key 0 is
    never a customer), the customers' ``keys`` in key order and, per requested name (in the order asked),
    their values aligned with ``keys`` (as ``read_customer_values`` gives them)."""

    n: int
    keys: np.ndarray
    values: dict[str, list[Any]]


def load_customer_values(conn: Connection, attributes: Iterable[str]) -> CustomerValues:
    """Every customer's values of ``attributes``: ``id`` and the standard columns are read directly, any
    other name from the JSON attributes (a customer without it holds None). The evaluator's frame is built
    from these on its own side (``orchestrator.signals.CustomerFrame.from_values``)."""
    names = list(dict.fromkeys(attributes))
    n = max_key(conn) + 1
    keys, values = read_customer_values(conn, names)
    return CustomerValues(n, keys, {name: values[name] for name in names})


def read_customer_values(
    conn: Connection, names: Sequence[str], after_revision: int | None = None
) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """Keys and, per name, the raw values of every customer (consents as booleans or None, attributes as
    JSON gives them), or only of those written after ``after_revision``."""
    direct = [name for name in names if name in DIRECT_COLUMNS]
    extra = [name for name in names if name not in DIRECT_COLUMNS]
    stmt = select(CUSTOMERS.c.key, *[CUSTOMERS.c[name] for name in direct]).order_by(CUSTOMERS.c.key)
    if after_revision is not None:
        stmt = stmt.where(CUSTOMERS.c.revision > after_revision)
    rows = conn.execute(stmt).all()
    keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    out: dict[str, list[Any]] = {}
    for i, name in enumerate(direct, start=1):
        column: list[Any] = [r[i] for r in rows]
        out[name] = [None if v is None else bool(v) for v in column] if name in CONSENTS else column
    if extra:
        if conn.dialect.name == "sqlite":
            akeys, per_name = _sqlite_attribute_values(conn, extra, after_revision)
        else:
            akeys, per_name = _generic_attribute_values(conn, extra, after_revision)
        if not np.array_equal(np.asarray(akeys, dtype=np.int64), keys):
            raise RuntimeError("customer reads disagree: read both inside one snapshot")
        out.update(zip(extra, per_name, strict=True))
    return keys, out


def customer_ids(conn: Connection, keys: Sequence[int]) -> np.ndarray:
    """The business ids of ``keys``, aligned with them (object array; None for an unknown key)."""
    found: dict[int, str] = {}
    for chunk in chunked([int(k) for k in keys]):  # plain ints: the driver cannot bind numpy integers
        found.update(
            conn.execute(select(CUSTOMERS.c.key, CUSTOMERS.c.id).where(CUSTOMERS.c.key.in_(chunk))).all()
        )
    out = np.empty(len(keys), dtype=object)
    out[:] = [found.get(int(k)) for k in keys]
    return out


def customer_records(conn: Connection, keys: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Plain dicts for rendering messages, by key, for the given keys that exist.

    Each holds ``key``, ``id``, the standard columns (consents as booleans, None when none is on record)
    and every JSON attribute at top level; a standard column wins over an attribute of the same name.
    """
    wanted = sorted({int(k) for k in keys})
    names = ("key", "id", *STANDARD)
    cols = [CUSTOMERS.c[name] for name in names]
    cols.append(CUSTOMERS.c.attributes)
    consents = [names.index(name) for name in CONSENTS]
    out: dict[int, dict[str, Any]] = {}
    if conn.dialect.name == "sqlite":
        # One statement through the DBAPI cursor, the keys as one JSON array: no IN list to compile.
        cursor = raw_cursor(conn)
        try:
            cursor.execute(
                f"SELECT {', '.join(names)}, attributes FROM customers "
                "WHERE key IN (SELECT value FROM json_each(?))",
                (orjson.dumps(wanted).decode(),),
            )
            rows: list[Any] = cursor.fetchall()
        finally:
            cursor.close()
        parts: Iterable[list[Any]] = [rows]
    else:
        parts = (
            list(conn.execute(select(*cols).where(CUSTOMERS.c.key.in_(part)))) for part in chunked(wanted)
        )
    for part_rows in parts:
        for row in part_rows:
            values = list(row)
            attrs = orjson.loads(values.pop() or "{}")
            for i in consents:
                if values[i] is not None:
                    values[i] = bool(values[i])
            values[0] = int(values[0])
            merged = attrs if isinstance(attrs, dict) else {}
            merged.update(zip(names, values, strict=True))
            out[values[0]] = merged
    return out


def customer_key(conn: Connection, customer_id: str) -> int | None:
    """The store's integer key of one customer id, or None when the store does not know it."""
    return _keys_for(conn, [customer_id]).get(customer_id)


def customer_keys_by_id(conn: Connection) -> dict[str, int]:
    """Every customer's key by business id (one query over the whole table)."""
    return {str(cid): int(key) for key, cid in conn.execute(select(CUSTOMERS.c.key, CUSTOMERS.c.id)).all()}


@dataclass(frozen=True)
class CustomerContact:
    """One customer's key, addresses and consents (None: no consent on record for the channel)."""

    key: int
    email: str | None
    phone: str | None
    push_token: str | None
    consent_email: bool | None
    consent_sms: bool | None
    consent_push: bool | None

    @property
    def consents(self) -> tuple[bool | None, bool | None, bool | None]:
        """The consents for email, SMS and push, in that order."""
        return (self.consent_email, self.consent_sms, self.consent_push)


def customer_contact(conn: Connection, customer_id: str) -> CustomerContact | None:
    """The key, addresses and consents of one customer id, or None when the store does not know it."""
    row = conn.execute(
        text(
            "SELECT key, email, phone, push_token, consent_email, consent_sms, consent_push "
            "FROM customers WHERE id = :c"
        ),
        {"c": customer_id},
    ).first()
    if row is None:
        return None
    return CustomerContact(
        key=int(row.key),
        email=row.email,
        phone=row.phone,
        push_token=row.push_token,
        consent_email=_optional_bool(row.consent_email),
        consent_sms=_optional_bool(row.consent_sms),
        consent_push=_optional_bool(row.consent_push),
    )


def _optional_bool(value: Any) -> bool | None:
    """A stored consent as a boolean (None: none on record)."""
    return None if value is None else bool(value)
