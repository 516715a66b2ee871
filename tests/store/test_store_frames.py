"""The store's set-based helpers: customer keys, upserts, events, and the frames the evaluator reads."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from sqlalchemy import select

from orchestrator.engine._snapshot import load_customer_frame, load_event_frame
from orchestrator.signals._frame import NULL_CODE, Categorical, CustomerFrame, EventFrame
from orchestrator.store import Store
from orchestrator.store import _events as events_module
from orchestrator.store._customers import (
    CUSTOMERS,
    IN_CHUNK,
    CustomerWrites,
    customer_records,
    ensure_customer_keys,
    load_customer_values,
    max_key,
    upsert_customers,
)
from orchestrator.store._events import (
    EVENTS,
    EventColumns,
    TextColumn,
    event_type_ids,
    insert_events,
    insert_new_events,
    load_events,
)

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

NOW = 1_700_000_000_000_000


def _add_events(store: Store, rows: list[tuple[str, str, int, dict]]) -> None:
    """(customer id, event name, ts_us, properties) rows, through the public helpers."""
    with store.begin() as conn:
        keys = ensure_customer_keys(conn, [r[0] for r in rows], NOW)
        types = event_type_ids(conn, [r[1] for r in rows])
        insert_events(
            conn,
            keys,
            np.array([types[r[1]] for r in rows], np.int64),
            np.array([r[2] for r in rows], np.int64),
            [orjson.dumps(r[3]).decode() for r in rows],
        )


# ------------------------------------------------------------------------------------------ customers


def test_ensure_customer_keys_is_aligned_dense_and_idempotent(store: Store) -> None:
    with store.begin() as conn:
        keys = ensure_customer_keys(conn, ["a", "b", "a", "c", "b"], NOW)
    assert keys.dtype == np.int64
    assert keys.tolist() == [1, 2, 1, 3, 2]
    with store.begin() as conn:
        again = ensure_customer_keys(conn, ["c", "d", "a"], NOW + 1)
        assert again.tolist() == [3, 4, 1]
        assert max_key(conn) == 4
        rows = conn.execute(select(CUSTOMERS)).mappings().all()
    by_id = {r["id"]: r for r in rows}
    assert by_id["d"]["updated_us"] == NOW + 1 and by_id["a"]["updated_us"] == NOW
    assert by_id["d"]["consent_email"] is None and by_id["d"]["attributes"] == "{}"  # none on record
    assert by_id["d"]["record_us"] == 0  # no customer record applied yet


def test_ensure_customer_keys_many_ids_across_chunks(store: Store) -> None:
    ids = [f"c{i}" for i in range(2 * IN_CHUNK + 17)]
    with store.begin() as conn:
        first = ensure_customer_keys(conn, ids, NOW)
    with store.begin() as conn:
        second = ensure_customer_keys(conn, list(reversed(ids)), NOW)
    assert first.tolist() == list(range(1, len(ids) + 1))
    assert second.tolist() == first.tolist()[::-1]


def test_max_key_empty_store(store: Store) -> None:
    with store.connect() as conn:
        assert max_key(conn) == 0


def test_upsert_customers_merges_attributes_and_keeps_unset_columns(store: Store) -> None:
    with store.begin() as conn:
        n = upsert_customers(
            conn,
            [
                {"id": "u1", "email": "a@x.io", "consent_sms": False, "plan": "gold", "ltv": 10},
                {"id": "u2", "phone": "+331", "attributes": {"vip": True}},
            ],
            NOW,
        )
    assert n == CustomerWrites(written=2, stale=0)
    with store.begin() as conn:
        n = upsert_customers(
            conn,
            [
                {"id": "u1", "ltv": 12.5, "city": None},
                {"id": "u1", "timezone": "Europe/Paris"},  # same id again: applies after the first
                {"id": "u3", "consent_push": False},
            ],
            NOW + 5,
        )
    assert n == CustomerWrites(written=2, stale=0)
    with store.connect() as conn:
        keys = ensure_customer_keys(conn, ["u1", "u2", "u3"], NOW)
        records = customer_records(conn, keys.tolist())
    u1, u2, u3 = (records[int(k)] for k in keys)
    assert u1["email"] == "a@x.io" and u1["timezone"] == "Europe/Paris"
    assert u1["consent_sms"] is False and u1["consent_email"] is None
    assert u1["plan"] == "gold" and u1["ltv"] == 12.5 and "city" in u1 and u1["city"] is None
    assert u2["phone"] == "+331" and u2["vip"] is True and u2["email"] is None
    assert u3["consent_push"] is False and u3["id"] == "u3"
    with store.connect() as conn:
        stamps: dict[str, int] = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.updated_us)).all())
    assert stamps == {"u1": NOW + 5, "u2": NOW, "u3": NOW + 5}


def test_upsert_customers_refuses_bad_rows(store: Store) -> None:
    with store.begin() as conn, pytest.raises(ValueError, match="consent_email"):
        upsert_customers(conn, [{"id": "x", "consent_email": "yes"}], NOW)
    with store.begin() as conn, pytest.raises(ValueError, match="id"):
        upsert_customers(conn, [{"email": "a@b"}], NOW)
    with store.begin() as conn, pytest.raises(ValueError, match="key"):
        upsert_customers(conn, [{"id": "x", "key": 5}], NOW)


def test_customer_records_standard_columns_win(store: Store) -> None:
    with store.begin() as conn:
        row = {"id": "r1", "email": "real@x.io", "attributes": {"email": "fake", "n": 3}}
        upsert_customers(conn, [row], NOW)
        key = int(ensure_customer_keys(conn, ["r1"], NOW)[0])
        records = customer_records(conn, [key, key, 999])
    assert list(records) == [key]
    assert records[key]["email"] == "real@x.io" and records[key]["n"] == 3 and records[key]["key"] == key


def test_load_customer_frame_places_values_at_keys(store: Store) -> None:
    with store.begin() as conn:
        upsert_customers(
            conn,
            [
                {"id": "k1", "ltv": 10, "tier": "gold", "vip": True, "email": "a@x.io"},
                {"id": "k2", "tier": None, "vip": False, "consent_email": False},
                {"id": "k3", "ltv": 2.5, "vip": True, "tags": ["a", "b"]},
            ],
            NOW,
        )
        names = ["ltv", "tier", "vip", "email", "consent_email", "id", "tags", "nope"]
        frame = load_customer_frame(conn, names)
    assert frame.n == 4
    assert frame.exists.tolist() == [False, True, True, True]
    ltv = frame.columns["ltv"]
    assert ltv.dtype == np.float64 and ltv[1] == 10 and ltv[3] == 2.5
    assert math.isnan(ltv[2]) and math.isnan(ltv[0])
    assert frame.columns["tier"].dtype == object
    assert frame.columns["tier"].tolist() == [None, "gold", None, None]
    vip = frame.columns["vip"]
    assert vip.dtype == bool and vip.tolist() == [False, True, False, True]
    assert frame.columns["email"].tolist() == [None, "a@x.io", None, None]
    assert frame.columns["consent_email"].dtype == object  # booleans, and None where none is on record
    assert frame.columns["consent_email"].tolist() == [None, None, False, None]
    assert frame.columns["id"].tolist() == [None, "k1", "k2", "k3"]
    assert frame.columns["tags"].tolist() == [None, None, None, ["a", "b"]]
    assert np.isnan(frame.columns["nope"]).all() and len(frame.columns["nope"]) == 4


def test_load_customer_frame_mixed_bool_and_missing_is_object(store: Store) -> None:
    with store.begin() as conn:
        upsert_customers(conn, [{"id": "a", "vip": True}, {"id": "b"}], NOW)
        frame = load_customer_frame(conn, ["vip"])
    assert frame.columns["vip"].dtype == object
    assert frame.columns["vip"].tolist() == [None, True, None]


# ------------------------------------------------------------------------------------------ events


def test_event_type_ids_creates_missing_only(store: Store) -> None:
    with store.begin() as conn:
        first = event_type_ids(conn, ["view", "buy", "view"])
    with store.begin() as conn:
        second = event_type_ids(conn, ["buy", "open"])
    assert set(first) == {"view", "buy"} and len(set(first.values())) == 2
    assert second["buy"] == first["buy"] and second["open"] not in first.values()


def test_insert_events_commits_through_the_callers_transaction(store: Store) -> None:
    with store.connect() as conn:
        keys = ensure_customer_keys(conn, ["a"], NOW)
        types = event_type_ids(conn, ["x"])
        ids = insert_events(conn, keys, np.array([types["x"]]), np.array([NOW]), ['{"v": 1}'])
        conn.commit()
    assert ids == (1, 1)
    with store.connect() as conn:
        rows = conn.execute(select(EVENTS.c.customer_key, EVENTS.c.ts_us, EVENTS.c.properties)).all()
    assert [tuple(r) for r in rows] == [(1, NOW, '{"v": 1}')]


def test_insert_events_numbers_ids_in_commit_order(store: Store) -> None:
    with store.begin() as conn:
        keys = ensure_customer_keys(conn, ["a", "b"], NOW)
        x = event_type_ids(conn, ["x"])["x"]
        first = insert_events(conn, keys, np.array([x, x]), np.array([NOW, NOW - 5]), ["{}", "{}"])
    with store.begin() as conn:
        second = insert_events(conn, keys[:1], np.array([x]), np.array([NOW - 9]), ["{}"])
    assert first == (1, 2) and second == (3, 3)
    with store.connect() as conn:
        rows = conn.execute(select(EVENTS.c.id, EVENTS.c.ts_us).order_by(EVENTS.c.id)).all()
    assert [tuple(r) for r in rows] == [(1, NOW), (2, NOW - 5), (3, NOW - 9)]


def test_insert_new_events_stores_every_row_in_order_across_statements(store: Store) -> None:
    """More rows than one statement holds (several statements and a remainder), some keyed and some
    not, some left out as already stored: each stored row keeps its values, key and place."""
    n = 1000
    with store.begin() as conn:
        keys = ensure_customer_keys(conn, [f"c{i % 37}" for i in range(n)], NOW)
        x = event_type_ids(conn, ["x", "y"])
        types = np.where(np.arange(n) % 3 == 0, x["x"], x["y"]).astype(np.int64)
        ts = NOW - np.arange(n, dtype=np.int64) * 7
        props = [orjson.dumps({"i": i}).decode() for i in range(n)]
        own = -(np.arange(n, dtype=np.int64) + 1)  # events with their own id
        keyed = np.arange(n) % 4 != 0
        first, last, rows = insert_new_events(conn, keys, types, ts, props, own, keyed)
    assert (first, last) == (1, n) and np.array_equal(rows, np.arange(n))
    with store.begin() as conn:  # the keyed rows are stored: only the unkeyed ones and a new one are new
        more = np.append(own, -(n + 1))
        mask = np.append(keyed, True)
        again = insert_new_events(
            conn, np.append(keys, keys[0]), np.append(types, x["x"]), np.append(ts, NOW), [*props, "{}"],
            more, mask,
        )  # fmt: skip
    expected_rows = np.append(np.flatnonzero(~keyed), n)
    assert again[0] == n + 1 and again[1] == n + len(expected_rows)
    assert np.array_equal(again[2], expected_rows)
    with store.connect() as conn:
        stored = conn.execute(
            select(EVENTS.c.id, EVENTS.c.customer_key, EVENTS.c.type_id, EVENTS.c.ts_us, EVENTS.c.properties,
                   EVENTS.c.event_key).order_by(EVENTS.c.id)
        ).all()  # fmt: skip
    want = [
        (i + 1, int(keys[i]), int(types[i]), int(ts[i]), props[i], int(own[i]) if keyed[i] else None)
        for i in range(n)
    ]
    want += [
        (n + 1 + j, int(keys[i]), int(types[i]), int(ts[i]), props[i], None)
        for j, i in enumerate(np.flatnonzero(~keyed).tolist())
    ]
    want.append((n + len(expected_rows), int(keys[0]), x["x"], NOW, "{}", -(n + 1)))
    assert [tuple(r) for r in stored] == want


def test_insert_events_rolls_back_with_the_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        insert_events(conn, np.array([1]), np.array([1]), np.array([NOW]), ["{}"])
        raise RuntimeError("abort")
    with store.connect() as conn:
        assert conn.execute(select(EVENTS.c.id)).all() == []


def test_insert_events_checks_lengths(store: Store) -> None:
    with store.begin() as conn, pytest.raises(ValueError):
        insert_events(conn, np.array([1, 2]), np.array([1]), np.array([NOW]), ["{}"])


def test_load_event_frame_window_is_half_open(store: Store) -> None:
    since, until = NOW - 100, NOW
    _add_events(
        store,
        [
            ("a", "view", since - 1, {"i": 0}),
            ("a", "view", since, {"i": 1}),
            ("b", "buy", until - 1, {"i": 2}),
            ("b", "view", until, {"i": 3}),
            ("c", "view", until + 1, {"i": 4}),
        ],
    )
    with store.connect() as conn:
        frame = load_event_frame(conn, until, ["i"], since_us=since)
        unbounded = load_event_frame(conn, until, ["i"])
    assert frame.values("i").tolist() == [1.0, 2.0]
    assert frame.ts.tolist() == [since, until - 1]
    assert frame.customer.tolist() == [1, 2]
    assert unbounded.values("i").tolist() == [0.0, 1.0, 2.0]
    assert frame.ts.dtype == np.int64 and frame.customer.dtype == np.int64 and frame.type.dtype == np.int32


def test_load_event_frame_types_properties_and_slots(store: Store) -> None:
    _add_events(
        store,
        [
            ("a", "buy", NOW - 3, {"amount": 10.5, "cat": "shoes", "gift": True, "n": 2}),
            ("b", "view", NOW - 2, {"cat": "hats"}),
            ("a", "open", NOW - 1, {"amount": 3}),
        ],
    )
    with store.begin() as conn:
        ensure_customer_keys(conn, ["d", "e"], NOW)  # customers without events still count for slots
        frame = load_event_frame(conn, NOW, ["amount", "cat", "missing", "n"])
        bigger = load_event_frame(conn, NOW, [], n_customers=50)
        smaller = load_event_frame(conn, NOW, [], n_customers=2)
        empty = load_event_frame(conn, NOW - 10, ["amount"])
    assert frame.type_names == ["buy", "view", "open"]
    assert frame.type.tolist() == [0, 1, 2]
    assert frame.type_code("open") == 2 and frame.type_code("never") == NULL_CODE
    amount = frame.values("amount")
    assert amount.dtype == np.float64 and amount[0] == 10.5 and math.isnan(amount[1]) and amount[2] == 3.0
    assert isinstance(frame.prop("cat"), Categorical) and frame.values("cat").dtype == object
    assert frame.values("cat").tolist() == ["shoes", "hats", None]
    assert np.isnan(frame.values("missing")).all()
    assert frame.values("n").tolist()[0] == 2.0
    assert frame.n_customers == 5  # keys 1..4 plus slot 0
    assert bigger.n_customers == 50 and smaller.n_customers == 5
    assert len(empty) == 0 and empty.n_customers == 5 and empty.values("amount").dtype == np.float64
    assert empty.type_names == ["buy", "view", "open"]


def test_load_events_of_some_types_only(store: Store) -> None:
    _add_events(
        store,
        [
            ("a", "buy", NOW - 4, {"amount": 10.5}),
            ("b", "view", NOW - 3, {"amount": 99.0}),
            ("a", "refund", NOW - 2, {"amount": 4.0}),
            ("b", "buy", NOW - 1, {"amount": 2.0}),
        ],
    )
    with store.connect() as conn:
        bought = load_events(conn, NOW, ["amount"], only=["buy"])
        two = load_events(conn, None, ["amount"], only=["buy", "refund"], since_us=NOW - 3)
        unknown = load_events(conn, NOW, ["amount"], only=["never"])
        every = load_events(conn, NOW, ["amount"])
    assert bought.properties["amount"].tolist() == [10.5, 2.0]  # type: ignore[union-attr]
    assert bought.customer.tolist() == [1, 2] and bought.ts.tolist() == [NOW - 4, NOW - 1]
    assert [bought.type_names[t] for t in bought.type] == ["buy", "buy"]
    assert [two.type_names[t] for t in two.type] == ["refund", "buy"]
    assert len(unknown.customer) == 0 and len(unknown.properties["amount"]) == 0
    assert unknown.type_names == every.type_names == ["buy", "view", "refund"]
    assert len(every.customer) == 4


def test_load_events_narrows_customer_keys_while_they_fit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``narrow_keys`` the customer column is int32 while every key fits, and widens to int64, with
    every key read so far, when a later block holds a larger key (blocks of two rows here)."""
    _add_events(store, [("a", "buy", NOW - 3, {}), ("b", "buy", NOW - 2, {})])
    monkeypatch.setattr(events_module, "_FETCH_ROWS", 2)
    with store.connect() as conn:
        narrow = load_events(conn, None, [], narrow_keys=True)
        plain = load_events(conn, None, [])
    assert narrow.customer.dtype == np.int32 and plain.customer.dtype == np.int64
    assert narrow.customer.tolist() == plain.customer.tolist() == [1, 2]
    with store.begin() as conn:
        buy = event_type_ids(conn, ["buy"])["buy"]
        insert_events(conn, np.array([2**31, 3]), np.array([buy, buy]), np.array([NOW - 1, NOW]), ["{}"] * 2)
    with store.connect() as conn:
        wide = load_events(conn, None, [], narrow_keys=True)
    assert wide.customer.dtype == np.int64 and wide.customer.tolist() == [1, 2, 2**31, 3]


def test_the_store_reads_plain_columns_that_frames_share(store: Store) -> None:
    _add_events(store, [("a", "buy", NOW - 2, {"amount": 10.5, "cat": "shoes"}), ("b", "view", NOW - 1, {})])
    with store.connect() as conn:
        columns = load_events(conn, NOW, ["amount", "cat"])
        customers = load_customer_values(conn, ["id"])
    assert type(columns) is EventColumns and type(columns.properties["cat"]) is TextColumn
    cat_column = columns.properties["cat"]
    assert cat_column.values.tolist() == ["shoes"] and cat_column.codes.tolist() == [0, -1]
    frame = EventFrame.from_columns(*columns)
    assert frame.customer is columns.customer and frame.ts is columns.ts and frame.type is columns.type
    assert frame.prop("amount") is columns.properties["amount"]
    cat = frame.prop("cat")
    assert isinstance(cat, Categorical) and cat.codes is cat_column.codes
    assert customers.n == 3 and customers.keys.tolist() == [1, 2] and customers.values == {"id": ["a", "b"]}
    assert CustomerFrame.from_values(*customers).columns["id"].tolist() == [None, "a", "b"]
