"""Ingest: files and in-memory records into the store, with rejected rows counted and explained."""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from alembic import command
from sqlalchemy import select, text
from tables import row, table

from orchestrator.clock import to_us
from orchestrator.engine._snapshot import load_customer_frame, load_event_frame
from orchestrator.ingest import IngestError, ingest_events_records, ingest_file
from orchestrator.store import Store, open_store, sqlite_url
from orchestrator.store._customers import CUSTOMERS, customer_records, ensure_customer_keys, max_key
from orchestrator.store._db import open_engine
from orchestrator.store._events import EVENTS
from orchestrator.store._schema import alembic_config
from orchestrator.store._tables import IngestBatch

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

INGEST_BATCHES = IngestBatch.__table__  # type: ignore[attr-defined]

NOW = to_us(datetime(2023, 11, 15, tzinfo=UTC))
FAR = NOW + 10**15
REFBENCH = Path("/work/shared/bench/refbench.py")


def _us(text: str) -> int:
    return to_us(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _events(store: Store) -> list[dict[str, Any]]:
    """Stored events in id order with the customer's id and the parsed properties."""
    with store.connect() as conn:
        ids: dict[int, str] = dict(conn.execute(select(CUSTOMERS.c.key, CUSTOMERS.c.id)).all())
        rows = conn.execute(
            select(EVENTS.c.customer_key, EVENTS.c.type_id, EVENTS.c.ts_us, EVENTS.c.properties).order_by(
                EVENTS.c.id
            )
        ).all()
        frame = load_event_frame(conn, FAR, [])
    names = {i: frame.type_names[c] for i, c in zip([r[1] for r in rows], frame.type.tolist(), strict=True)}
    return [
        {"customer": ids[r[0]], "event": names[r[1]], "ts": r[2], "properties": orjson.loads(r[3])}
        for r in rows
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ JSONL


def test_jsonl_round_trip(store: Store, tmp_path: Path) -> None:
    lines = [
        {
            "customer_id": "a",
            "event": "purchase",
            "ts": "2023-11-01T10:00:00.123456Z",
            "properties": {"amount": 31.5},
        },
        {
            "customer_id": 42,
            "event": "view",
            "ts": "2023-11-01T12:00:00+02:00",
            "properties": {"sku": "x", "n": 2},
        },
        {"customer_id": "a", "event": "view", "ts": "2023-11-02T00:00:00Z"},
        {
            "customer_id": "b",
            "event": "view",
            "ts": "2023-11-02T00:00:00Z",
            "properties": None,
            "channel": "web",
        },
    ]
    path = _write(tmp_path / "e.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    report = ingest_file(store, path, now_us=NOW)
    assert (report.kind, report.accepted, report.rejected) == ("events", 4, 0)
    assert report.reasons == {} and report.examples == []
    got = _events(store)
    assert [e["customer"] for e in got] == ["a", "42", "a", "b"]
    assert [e["event"] for e in got] == ["purchase", "view", "view", "view"]
    assert [e["ts"] for e in got] == [
        _us("2023-11-01T10:00:00.123456Z"),
        _us("2023-11-01T10:00:00Z"),
        _us("2023-11-02T00:00:00Z"),
        _us("2023-11-02T00:00:00Z"),
    ]
    assert got[0]["ts"] % 1_000_000 == 123456
    assert [e["properties"] for e in got] == [{"amount": 31.5}, {"sku": "x", "n": 2}, {}, {"channel": "web"}]
    with store.connect() as conn:
        assert max_key(conn) == 3
        keys: dict[str, int] = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.key)).all())
        frame = load_event_frame(conn, FAR, ["amount"])
    assert keys == {"a": 1, "42": 2, "b": 3}  # dense, in order of first appearance
    assert frame.customer.tolist() == [1, 2, 1, 3]
    assert frame.values("amount")[0] == 31.5 and np.isnan(frame.values("amount")[1:]).all()


MALFORMED = [
    '{"customer_id": "c1", "event": "view", "ts": "2023-11-01T00:00:00Z", "properties": {"k": 1}}',  # 1 ok
    '{"customer_id": "c1", "event": "view", ',  # 2 bad JSON
    '{"customer_id": "c2", "event": "view", "ts": "2023-11-01T00:00:01Z", "properties": {"k": 3}}',  # 3 ok
    "[1, 2]",  # 4 not an object
    "   ",  # 5 blank: skipped, not a reject
    '{"event": "view", "ts": "2023-11-01T00:00:00Z"}',  # 6 missing customer_id
    '{"customer_id": 4.5, "event": "view", "ts": "2023-11-01T00:00:00Z"}',  # 7 bad customer_id
    '{"customer_id": "c1", "event": "", "ts": "2023-11-01T00:00:00Z"}',  # 8 empty event name
    '{"customer_id": "c1", "event": "  ", "ts": "2023-11-01T00:00:00Z"}',  # 9 empty event name
    '{"customer_id": "c1", "event": "view"}',  # 10 missing ts
    '{"customer_id": "c1", "event": "view", "ts": "2023-11-01T10:00:00"}',  # 11 no time zone
    '{"customer_id": "c1", "event": "view", "ts": "yesterday"}',  # 12 unparseable
    '{"customer_id": "c1", "event": "view", "ts": "2023-11-01T00:00:00Z", "properties": [1]}',  # 13
    # 14 ok, with an extra top-level field that joins the properties
    '{"customer_id": 14, "event": "buy", "ts": "2023-11-01T00:00:02Z", "properties": {"k": 14}, "x": 0}',
    '{"customer_id": "c1", "event": "view", "ts": 1700000000}',  # 15 bad ts
    # 16 ok
    '{"customer_id": "c3", "event": "view", "ts": "2023-11-01T02:00:03.000007+02:00", "properties": {"k": 16}'
    "}",
]


@pytest.mark.parametrize("chunk_rows", [4, 50_000])
def test_jsonl_malformed_rows_are_rejected_with_lines_and_reasons(
    store: Store, tmp_path: Path, chunk_rows: int
) -> None:
    path = _write(tmp_path / "bad.jsonl", "\n".join(MALFORMED) + "\n")
    report = ingest_file(store, path, now_us=NOW, chunk_rows=chunk_rows)
    assert report.accepted == 4
    assert report.rejected == 11
    assert [line for line, _ in report.examples] == [2, 4, 6, 7, 8, 9, 10, 11, 12, 13, 15]
    reasons = [message.split(":")[0] for _, message in report.examples]
    assert reasons == [
        "bad JSON",
        "not an object",
        "missing customer_id",
        "bad customer_id",
        "empty event name",
        "empty event name",
        "missing ts",
        "ts without a time zone",
        "ts unparseable",
        "properties not an object",
        "bad ts",
    ]
    assert report.reasons == {
        "bad JSON": 1,
        "not an object": 1,
        "missing customer_id": 1,
        "bad customer_id": 1,
        "empty event name": 2,
        "missing ts": 1,
        "ts without a time zone": 1,
        "ts unparseable": 1,
        "properties not an object": 1,
        "bad ts": 1,
    }
    assert "'yesterday'" in dict(report.examples)[12]
    got = _events(store)
    assert [e["properties"] for e in got] == [{"k": 1}, {"k": 3}, {"k": 14, "x": 0}, {"k": 16}]
    assert [e["customer"] for e in got] == ["c1", "c2", "14", "c3"]
    assert got[3]["ts"] == _us("2023-11-01T00:00:03.000007Z")


def test_reject_examples_are_capped_but_all_counted(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", "\n".join(MALFORMED) + "\n")
    report = ingest_file(store, path, now_us=NOW, max_reject_examples=3, chunk_rows=5)
    assert report.rejected == 11 and sum(report.reasons.values()) == 11
    assert [line for line, _ in report.examples] == [2, 4, 6]


def test_ingest_batches_row_is_written(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", "\n".join(MALFORMED) + "\n")
    report = ingest_file(store, path, now_us=NOW)
    with store.connect() as conn:
        rows = conn.execute(select(INGEST_BATCHES)).all()
    assert len(rows) == 1
    batch = rows[0]
    assert (batch.source, batch.kind, batch.accepted, batch.rejected, batch.started_us) == (
        str(path),
        "events",
        4,
        11,
        NOW,
    )
    as_dict = report.to_dict()
    assert as_dict["rejected"] == 11 and as_dict["examples"][0] == [2, report.examples[0][1]]
    assert json.loads(json.dumps(as_dict))["reasons"]["bad ts"] == 1


# ------------------------------------------------------------------------------------------ CSV


def test_csv_round_trip_with_numbers_quotes_and_rejects(store: Store, tmp_path: Path) -> None:
    text = (
        "customer_id,event,ts,amount,sku,note\n"  # 1
        "c1,purchase,2023-11-01T10:00:00.000001Z,31.5,007,\n"  # 2
        'c2,view,2023-11-01T11:00:00+01:00,3,,"hello, ""world"""\n'  # 3
        'c1,view,2023-11-01T12:00:00Z,1e3,-0.5,"multi\n'  # 4
        'line"\n'  # 5
        "c3,view,2023-11-01T12:00:00Z\n"  # 6 wrong number of fields
        ",view,2023-11-01T12:00:00Z,,,\n"  # 7 missing customer_id
        "c4,view,2023-11-01 12:00,,,\n"  # 8 no time zone
        "c4,view,2023-11-01T12:00:00Z,NaN,1_000,+5\n"  # 9
    )
    report = ingest_file(store, _write(tmp_path / "e.csv", text), now_us=NOW)
    assert (report.kind, report.accepted, report.rejected) == ("events", 4, 3)
    assert [line for line, _ in report.examples] == [6, 7, 8]
    assert report.reasons == {
        "wrong number of fields": 1,
        "missing customer_id": 1,
        "ts without a time zone": 1,
    }
    got = _events(store)
    assert [e["properties"] for e in got] == [
        {"amount": 31.5, "sku": "007"},
        {"amount": 3, "note": 'hello, "world"'},
        {"amount": 1000.0, "sku": -0.5, "note": "multi\nline"},
        {"amount": "NaN", "sku": "1_000", "note": "+5"},
    ]
    assert isinstance(got[1]["properties"]["amount"], int)
    assert isinstance(got[2]["properties"]["amount"], float)
    assert [e["ts"] for e in got] == [
        _us("2023-11-01T10:00:00.000001Z"),
        _us("2023-11-01T10:00:00Z"),
        _us("2023-11-01T12:00:00Z"),
        _us("2023-11-01T12:00:00Z"),
    ]
    assert [e["customer"] for e in got] == ["c1", "c2", "c1", "c4"]


def test_csv_events_without_ts_column_is_refused(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", "customer_id,event,when\nc1,view,2023-11-01T00:00:00Z\n")
    with pytest.raises(IngestError, match="ts"):
        ingest_file(store, path, now_us=NOW)
    with store.connect() as conn:
        assert conn.execute(select(EVENTS.c.id)).all() == []


# ------------------------------------------------------------------------------------------ Parquet


def test_parquet_round_trip_types_and_rejects(store: Store, tmp_path: Path) -> None:
    base = _us("2023-11-01T10:00:00Z") * 1000
    table = pa.table(
        {
            "customer_id": pa.array([7, 8, None, 7, 9, 10], pa.int64()),
            "event": pa.array(["buy", "view", "view", "", "view", None]),
            "ts": pa.array(
                [base + 123_456_789, base, base, base, None, base], pa.timestamp("ns", tz="Europe/Paris")
            ),
            "amount": pa.array([3.0, None, 1.0, 2.0, 2.0, 2.0]),
            "ratio": pa.array([float("nan"), 0.1, 0.0, 0.0, 0.0, 0.0]),
            "qty": pa.array([1, None, 3, 4, 5, 6], pa.int32()),
            "flag": pa.array([True, False, None, None, None, None]),
            "label": pa.array(['say "hi" \\ é', None, "x", "x", "x", "x"]),
            "note": pa.array(["a\nb", None, None, None, None, None]),
            "day": pa.array([datetime(2023, 11, 1).date(), None, None, None, None, None], pa.date32()),
            "tags": pa.array([["p", "q"], None, None, None, None, None], pa.list_(pa.string())),
        }
    )
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    report = ingest_file(store, path, now_us=NOW, chunk_rows=4)
    assert (report.accepted, report.rejected) == (2, 4)
    assert report.examples == [
        (3, "missing customer_id"),
        (4, "empty event name"),
        (5, "missing ts"),
        (6, "missing event"),
    ]
    got = _events(store)
    assert [e["customer"] for e in got] == ["7", "8"]
    assert [e["ts"] for e in got] == [base // 1000 + 123_456, base // 1000]
    first = got[0]["properties"]
    assert first == {
        "amount": 3.0,
        "qty": 1,
        "flag": True,
        "label": 'say "hi" \\ é',
        "note": "a\nb",
        "day": "2023-11-01",
        "tags": ["p", "q"],
    }
    assert isinstance(first["amount"], float) and isinstance(first["qty"], int)
    assert got[1]["properties"] == {"ratio": 0.1, "flag": False}


def test_parquet_text_timestamps_and_naive_timestamps(store: Store, tmp_path: Path) -> None:
    table = pa.table(
        {
            "customer_id": ["a", "b", "c", "d"],
            "event": ["view"] * 4,
            "ts": ["2023-11-01T00:00:00Z", "2023-11-01T00:00:00", "soon", "2023-11-01T01:00:00.5+01:00"],
        }
    )
    pq.write_table(table, tmp_path / "text.parquet")
    report = ingest_file(store, tmp_path / "text.parquet", now_us=NOW)
    assert (report.accepted, report.rejected) == (2, 2)
    assert [(line, msg.split(":")[0]) for line, msg in report.examples] == [
        (2, "ts without a time zone"),
        (3, "ts unparseable"),
    ]
    assert [e["ts"] for e in _events(store)] == [_us("2023-11-01T00:00:00Z"), _us("2023-11-01T00:00:00.5Z")]

    naive = pa.table({"customer_id": ["a"], "event": ["view"], "ts": pa.array([0], pa.timestamp("us"))})
    pq.write_table(naive, tmp_path / "naive.parquet")
    report = ingest_file(store, tmp_path / "naive.parquet", now_us=NOW)
    assert (report.accepted, report.rejected, report.reasons) == (0, 1, {"ts without a time zone": 1})


# ------------------------------------------------------------------------------------------ customers


def test_customers_csv_then_jsonl_upsert_merges(store: Store, tmp_path: Path) -> None:
    csv_text = (
        "customer_id,email,consent_email,consent_sms,timezone,plan,ltv\n"
        "c1,a@x.io,yes,0,Europe/Paris,gold,120.5\n"
        "c2,,No,TRUE,,silver,\n"
        "c3,b@x.io,maybe,1,,bronze,3\n"
        "c4,,1,1,Mars/Olympus,,\n"
        "c5,,,,,,\n"
    )
    report = ingest_file(store, _write(tmp_path / "people.csv", csv_text), now_us=NOW)
    assert (report.kind, report.accepted, report.rejected) == ("customers", 3, 2)
    assert [(line, msg.split(":")[0]) for line, msg in report.examples] == [
        (4, "bad consent"),
        (5, "unknown time zone"),
    ]

    jsonl = [
        {"id": "c1", "ltv": 130, "city": "Lyon", "consent_push": 0},
        {"customer_id": 2, "consent_push": False, "attributes": {"segment": "new"}},
        {"customer_id": "c2", "plan": None, "consent_sms": "nah"},
        {"customer_id": "c9", "id": "c8"},
        {"email": "x@y"},
        {"customer_id": "c5", "phone": 612345678},
    ]
    path = _write(tmp_path / "people.jsonl", "".join(json.dumps(x) + "\n" for x in jsonl))
    report = ingest_file(store, path, now_us=NOW + 1)
    assert (report.kind, report.accepted, report.rejected) == ("customers", 2, 4)
    assert report.reasons == {
        "bad consent": 1,
        "conflicting customer_id and id": 1,
        "missing customer_id": 1,
        "bad phone": 1,
    }
    assert [line for line, _ in report.examples] == [3, 4, 5, 6]

    with store.connect() as conn:
        keys: dict[str, int] = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.key)).all())
        records = customer_records(conn, list(keys.values()))
        frame = load_customer_frame(conn, ["ltv", "plan", "consent_sms"])
    assert set(keys) == {"c1", "c2", "c5", "2"}
    c1, c2, c5, two = (records[keys[k]] for k in ("c1", "c2", "c5", "2"))
    assert c1["email"] == "a@x.io" and c1["timezone"] == "Europe/Paris" and c1["plan"] == "gold"
    assert c1["ltv"] == 130 and c1["city"] == "Lyon"
    assert (c1["consent_email"], c1["consent_sms"], c1["consent_push"]) == (True, False, False)
    assert (c2["consent_email"], c2["consent_sms"], c2["consent_push"]) == (False, True, None)
    assert c2["plan"] == "silver" and "ltv" not in c2 and c2["email"] is None
    assert c5["consent_email"] is None  # nothing on record
    assert set(c5) == {
        "key",
        "id",
        "email",
        "phone",
        "push_token",
        "timezone",
        "consent_email",
        "consent_sms",
        "consent_push",
    }
    assert two["segment"] == "new" and two["consent_push"] is False
    assert frame.columns["ltv"][keys["c1"]] == 130 and math.isnan(frame.columns["ltv"][keys["c2"]])
    assert frame.columns["plan"][keys["c2"]] == "silver" and frame.columns["plan"][keys["c5"]] is None
    consent_sms = frame.columns["consent_sms"]
    assert consent_sms[keys["c1"]] is False and consent_sms[keys["c5"]] is None


def test_customer_records_carry_their_time_and_an_old_export_never_overwrites(
    store: Store, tmp_path: Path
) -> None:
    today = _write(
        tmp_path / "today.csv",
        "customer_id,consent_email,plan,updated_at\n"
        "c1,false,gold,2023-11-10T12:00:00Z\n"
        "c2,true,silver,2023-11-10T13:00:00+01:00\n"
        "c3,true,gold,2023-11-10T12:00:00\n"  # no time zone
        "c4,true,gold,2023-11-17T12:00:00Z\n"  # two days after the ingest: from the future
        "c5,true,gold,yesterday\n",
    )
    report = ingest_file(store, today, now_us=NOW)
    assert (report.accepted, report.stale, report.rejected) == (2, 0, 3)
    assert report.reasons == {
        "updated_at without a time zone": 1,
        "updated_at in the future": 1,
        "updated_at unparseable": 1,
    }
    # Replaying last month's export re-subscribes nobody: every row is older than what is stored.
    old = [
        {"customer_id": "c1", "consent_email": True, "plan": "bronze", "updated_at": "2023-10-01T00:00:00Z"},
        {"customer_id": "c2", "consent_email": False, "updated_at": "2023-11-10T11:59:59Z"},
    ]
    path = _write(tmp_path / "old.jsonl", "".join(json.dumps(x) + "\n" for x in old))
    report = ingest_file(store, path, now_us=NOW + 1)
    assert (report.accepted, report.stale, report.rejected) == (0, 2, 0)
    assert report.to_dict()["stale"] == 2
    # A row as new as the stored one applies; a row without updated_at takes the ingest's time.
    newer = [
        {"customer_id": "c2", "plan": "gold", "updated_at": "2023-11-10T12:00:00Z"},
        {"customer_id": "c1", "consent_email": True},
    ]
    path = _write(tmp_path / "newer.jsonl", "".join(json.dumps(x) + "\n" for x in newer))
    report = ingest_file(store, path, now_us=NOW + 2)
    assert (report.accepted, report.stale) == (2, 0)
    with store.connect() as conn:
        keys: dict[str, int] = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.key)).all())
        stamps = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.record_us)).all())
        records = customer_records(conn, list(keys.values()))
    c1, c2 = records[keys["c1"]], records[keys["c2"]]
    assert (c1["consent_email"], c1["plan"]) == (True, "gold")
    assert (c2["consent_email"], c2["plan"]) == (True, "gold")
    assert stamps == {"c1": NOW + 2, "c2": _us("2023-11-10T12:00:00Z")}
    assert "updated_at" not in c1 and "updated_at" not in c2  # the record's time, not an attribute


def test_customers_file_needs_an_id_column(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="customer_id"):
        ingest_file(store, _write(tmp_path / "c.csv", "email,plan\na@b,gold\n"), now_us=NOW)


def test_kind_and_format_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="unknown file type"):
        ingest_file(store, _write(tmp_path / "e.txt", "x"), now_us=NOW)
    path = _write(tmp_path / "e.jsonl", '{"customer_id": "a", "event": "x", "ts": "2023-11-01T00:00:00Z"}\n')
    with pytest.raises(IngestError, match="kind"):
        ingest_file(store, path, kind="orders", now_us=NOW)
    report = ingest_file(store, path, kind="customers", now_us=NOW)  # forced: "event" becomes an attribute
    assert (report.kind, report.accepted) == ("customers", 1)


# ------------------------------------------------------------------------------------------ records


class _Record(dict):  # a Mapping that is not exactly a dict takes the slow path
    pass


def test_ingest_events_records_validates_like_files(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    records: list[Any] = [
        {"customer_id": "a", "event": "view", "ts": datetime(2023, 11, 1, 1, 0, 0, 5, tzinfo=paris)},
        {"customer_id": np.int64(5), "event": "buy", "ts": "2023-11-01T00:00:00Z", "properties": {"v": 1}},
        {"customer_id": "a", "event": "view", "ts": datetime(2023, 11, 1)},  # naive
        "not a record",
        _Record(customer_id="b", event="view", ts="2023-11-01T00:00:00Z", properties={"w": [1]}),
        {"customer_id": "c", "event": "view", "ts": "2023-11-01T00:00:00Z", "properties": {"s": {1, 2}}},
    ]
    report = ingest_events_records(store, iter(records), NOW, source="demo")
    assert (report.source, report.accepted, report.rejected) == ("demo", 3, 3)
    assert [(line, msg.split(":")[0]) for line, msg in report.examples] == [
        (3, "ts without a time zone"),
        (4, "not an object"),
        (6, "properties not serialisable"),
    ]
    got = _events(store)
    assert [e["customer"] for e in got] == ["a", "5", "b"]
    assert got[0]["ts"] == _us("2023-11-01T00:00:00.000005Z")
    assert got[2]["properties"] == {"w": [1]}


# ------------------------------------------------------------------------------------------ refbench


def _refbench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("refbench", REFBENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def refdata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not REFBENCH.exists():
        pytest.skip("refbench.py is not available")
    out = tmp_path_factory.mktemp("refbench")
    rb = _refbench()
    rb.write(rb.generate(2000), str(out), jsonl=True)
    yield out


def test_refbench_parquet_frame_matches_the_data(refdata: Path, tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "p.db"))
    try:
        report = ingest_file(store, refdata / "events.parquet", now_us=NOW)
        meta = json.loads((refdata / "meta.json").read_text())
        assert (report.accepted, report.rejected) == (meta["events"], 0)
        with store.connect() as conn:
            frame = load_event_frame(conn, FAR, ["category", "amount", "score"])
            customers = load_customer_frame(conn, ["id"])
    finally:
        store.dispose()
    table = pq.read_table(refdata / "events.parquet")
    expected = {d["values"]: d["counts"] for d in pc.value_counts(table["event"]).to_pylist()}
    counted = np.bincount(frame.type, minlength=len(frame.type_names))
    assert {name: int(counted[i]) for i, name in enumerate(frame.type_names)} == expected
    assert customers.n == 2001 == frame.n_customers and int(customers.exists.sum()) == 2000

    z = np.load(refdata / "events.npz")
    ids = customers.columns["id"]
    assert (ids[frame.customer].astype(int) == z["customer_id"]).all()
    per_customer = np.bincount(ids[frame.customer].astype(int), minlength=2000)
    assert (per_customer == np.bincount(z["customer_id"], minlength=2000)).all()
    assert (frame.ts == z["ts"] * 1_000_000).all()
    np.testing.assert_array_equal(frame.values("amount"), z["amount"])
    np.testing.assert_array_equal(frame.values("score"), np.where(z["score"] < 0, np.nan, z["score"]))
    cats = np.array([None if c < 0 else f"cat{c:02d}" for c in z["category"]], dtype=object)
    assert (frame.values("category") == cats).all()


def test_refbench_jsonl_and_parquet_store_identical_events(refdata: Path, tmp_path: Path) -> None:
    stored = []
    for name in ("events.parquet", "events.jsonl"):
        store = open_store(sqlite_url(tmp_path / f"{name}.db"))
        try:
            ingest_file(store, refdata / name, now_us=NOW, chunk_rows=7_000)
            with store.connect() as conn:
                stored.append(
                    conn.execute(
                        select(
                            EVENTS.c.customer_key, EVENTS.c.type_id, EVENTS.c.ts_us, EVENTS.c.properties
                        ).order_by(EVENTS.c.id)
                    ).all()
                )
        finally:
            store.dispose()
    assert len(stored[0]) > 30_000
    assert stored[0] == stored[1]


# ------------------------------------------------------------------------------------------ bad values


def _jsonl(path: Path, records: list[Any]) -> Path:
    return _write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def _event(
    cid: Any = "c1", event: Any = "view", ts: str = "2023-11-01T00:00:00Z", **props: Any
) -> dict[str, Any]:
    return {"customer_id": cid, "event": event, "ts": ts, "properties": props}


def test_control_characters_big_integers_and_times_out_of_range_reject_their_row(
    store: Store, tmp_path: Path
) -> None:
    path = _jsonl(
        tmp_path / "e.jsonl",
        [
            _event("c1"),  # 1 ok
            _event("se\x00cret"),  # 2
            _event("sec\nret"),  # 3
            _event("c1", "vi\x01ew"),  # 4
            {"customer_id": "c1", "event": "view", "ts": "2023-11-01T00:00:00Z", "properties": {"a\x00b": 1}},
            '{"customer_id": 123456789012345678901234567890, "event": "view", "ts": "2023-11-01T00:00:00Z"}',
            '{"customer_id": "c1", "event": "view", "ts": "2023-11-01T00:00:00Z", '
            '"properties": {"n": 99999999999999999999}}',
            _event("c1", ts="0001-01-01T00:00:00Z"),  # 8
            _event("c1", ts="9999-12-31T00:00:00Z"),  # 9
            _event("c1", ts="2023-11-16T00:00:01Z"),  # 10: more than a day after NOW
            _event(
                "c2", ts="2023-11-16T00:00:00Z", big="1234567890123456789012", n=9223372036854775807
            ),  # ok
            _event("c\u2028x"),  # 12
        ],
    )
    report = ingest_file(store, path, now_us=NOW, chunk_rows=4)
    assert (report.accepted, report.rejected) == (2, 10)
    assert [(line, message.split(":")[0]) for line, message in report.examples] == [
        (2, "customer_id contains a control character"),
        (3, "customer_id contains a control character"),
        (4, "event name contains a control character"),
        (5, "property name contains a control character"),
        (6, "integer beyond 64 bits"),
        (7, "integer beyond 64 bits"),
        (8, "ts out of range"),
        (9, "ts out of range"),
        (10, "ts out of range"),
        (12, "customer_id contains a control character"),
    ]
    assert all("secret" not in m and "sec\nret" not in m for _, m in report.examples)  # no customer values
    got = _events(store)
    assert [e["customer"] for e in got] == ["c1", "c2"]
    assert got[1]["properties"] == {"big": "1234567890123456789012", "n": 9223372036854775807}


def test_time_range_is_configurable(store: Store, tmp_path: Path) -> None:
    from orchestrator.ingest._pipeline import time_range

    path = _jsonl(
        tmp_path / "e.jsonl",
        [
            _event(ts="1960-01-01T00:00:00Z"),
            _event(ts="2023-11-01T00:00:00Z"),
            _event(ts="2023-11-20T00:00:00Z"),
        ],
    )
    report = ingest_file(store, path, now_us=NOW)
    assert (report.accepted, report.rejected) == (1, 2)
    wide = time_range(NOW, min_us=_us("1950-01-01T00:00:00Z"), max_future_us=30 * 86_400_000_000)
    report = ingest_file(store, path, now_us=NOW, times=wide)
    assert (report.accepted, report.rejected, report.duplicates) == (2, 0, 1)
    narrow = time_range(NOW, min_us=_us("2023-11-02T00:00:00Z"))
    assert ingest_file(store, path, now_us=NOW, times=narrow).rejected == 3
    report = ingest_file(store, path, now_us=NOW, times=wide)  # every line is stored now: nothing again
    assert (report.accepted, report.rejected, report.duplicates) == (0, 0, 3)
    assert _count(store) == 3


def test_lines_rejected_before_are_stored_once_checks_accept_them(store: Store, tmp_path: Path) -> None:
    # Chunks of two lines: the first chunk is all rejects, the second stored, under the default range.
    from orchestrator.ingest._pipeline import time_range

    old, fine = "1960-01-01T00:00:00Z", "2023-11-01T00:00:00Z"
    path = _jsonl(tmp_path / "e.jsonl", [_event(ts=old), _event(ts=old), _event(ts=fine), _event(ts=old)])
    report = ingest_file(store, path, now_us=NOW, chunk_rows=2)
    assert (report.accepted, report.rejected, report.duplicates) == (1, 3, 0)
    report = ingest_file(store, path, now_us=NOW, chunk_rows=3)  # the same checks: the same outcome
    assert (report.accepted, report.rejected, report.duplicates) == (0, 3, 1)
    wide = time_range(NOW, min_us=_us("1950-01-01T00:00:00Z"))
    for chunk_rows, expected in ((1, (3, 0, 1)), (2, (0, 0, 4))):
        report = ingest_file(store, path, now_us=NOW, times=wide, chunk_rows=chunk_rows)
        assert (report.accepted, report.rejected, report.duplicates) == expected
    assert _count(store) == 4


def test_csv_and_parquet_bad_values_are_rejected_column_wise(store: Store, tmp_path: Path) -> None:
    csv_path = _write(
        tmp_path / "e.csv",
        "customer_id,event,ts,n\n"
        "c1,view,2023-11-01T00:00:00Z,1\n"
        "c\x00x,view,2023-11-01T00:00:00Z,1\n"
        '"c\nx",view,2023-11-01T00:00:00Z,1\n'
        "c1,view,2023-11-01T00:00:00Z,123456789012345678901\n"
        "c1,view,1900-01-01T00:00:00Z,1\n",
    )
    report = ingest_file(store, csv_path, now_us=NOW)
    assert (report.accepted, report.rejected) == (1, 4)
    assert [(line, m.split(":")[0]) for line, m in report.examples] == [
        (3, "customer_id contains a control character"),
        (4, "customer_id contains a control character"),
        (6, "integer beyond 64 bits"),
        (7, "ts out of range"),
    ]
    base = _us("2023-11-01T00:00:00Z")
    table = pa.table(
        {
            "customer_id": ["p1", "p\x00", "p3", "p4", "p5"],
            "event": ["view", "view", "vi\x1bew", "view", "view"],
            "ts": pa.array([base, base, base, base, -(10**15)], pa.timestamp("us", tz="UTC")),
            "n": pa.array([1, 1, 1, 2**64 - 1, 1], pa.uint64()),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    report = ingest_file(store, tmp_path / "e.parquet", now_us=NOW)
    assert (report.accepted, report.rejected) == (1, 4)
    assert [(line, m.split(":")[0]) for line, m in report.examples] == [
        (2, "customer_id contains a control character"),
        (3, "event name contains a control character"),
        (4, "integer beyond 64 bits"),
        (5, "ts out of range"),
    ]
    bad_name = pa.table(
        {
            "customer_id": ["a"],
            "event": ["v"],
            "ts": pa.array([base], pa.timestamp("us", "UTC")),
            "x\x00": [1],
        }
    )
    pq.write_table(bad_name, tmp_path / "bad.parquet")
    with pytest.raises(IngestError, match="control character"):
        ingest_file(store, tmp_path / "bad.parquet", now_us=NOW)


def test_customer_rows_with_control_characters_are_rejected(store: Store, tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "c.jsonl",
        [
            {"customer_id": "ok", "plan": "gold"},
            {"customer_id": "bad\x00id", "plan": "gold"},
            {"customer_id": "ok2", "pl\nan": "gold"},
            {"customer_id": "ok3", "ltv": 2**70},
            {"customer_id": "ok4", "phone": 612345678},
        ],
    )
    report = ingest_file(store, path, kind="customers", now_us=NOW)
    assert (report.accepted, report.rejected) == (1, 4)
    assert [m for _, m in report.examples] == [
        "customer_id contains a control character",
        "attribute name contains a control character",
        "integer beyond 64 bits: ltv",
        "bad phone: must be a string, not int",
    ]


# ------------------------------------------------------------------------------------------ idempotence


def _count(store: Store) -> int:
    with store.connect() as conn:
        return len(conn.execute(select(EVENTS.c.id)).all())


def test_the_same_file_twice_stores_each_event_once_and_identical_lines_both_count(
    store: Store, tmp_path: Path
) -> None:
    same = _event("c1", "view", "2023-11-01T00:00:00Z")
    path = _jsonl(tmp_path / "e.jsonl", [same, same, _event("c2"), "not json", same])
    first = ingest_file(store, path, now_us=NOW, chunk_rows=2)
    assert (first.accepted, first.rejected, first.duplicates) == (4, 1, 0)
    again = ingest_file(store, path, now_us=NOW, chunk_rows=3)
    assert (again.accepted, again.rejected, again.duplicates) == (0, 1, 4)
    assert _count(store) == 4
    assert again.to_dict()["duplicates"] == 4
    with store.connect() as conn:
        batches = conn.execute(select(INGEST_BATCHES.c.accepted, INGEST_BATCHES.c.duplicates)).all()
    assert [tuple(b) for b in batches] == [(4, 0), (0, 4)]
    # A copy under another name is the same content: the same events.
    copy = _write(tmp_path / "copy.jsonl", path.read_text())
    assert ingest_file(store, copy, now_us=NOW).duplicates == 4
    # One more line is another file: without ids its events are new.
    longer = _write(tmp_path / "longer.jsonl", path.read_text() + json.dumps(same) + "\n")
    assert ingest_file(store, longer, now_us=NOW).accepted == 5


def test_customers_stored_before_keep_their_keys_when_a_later_chunk_names_them(
    store: Store, tmp_path: Path
) -> None:
    # The first chunk names only new customers, so the next ones are created without a look-up first:
    # "old", stored before the ingest and named in the second chunk only, must keep its key all the same.
    with store.begin() as conn:
        (old,) = ensure_customer_keys(conn, ["old"], NOW).tolist()
    records = [_event("c1"), _event("c2"), _event("c3"), _event("old"), _event("c2"), _event("c4")]
    report = ingest_file(store, _jsonl(tmp_path / "e.jsonl", records), now_us=NOW, chunk_rows=2)
    assert report.accepted == 6
    assert [e["customer"] for e in _events(store)] == ["c1", "c2", "c3", "old", "c2", "c4"]
    with store.connect() as conn:
        keys = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.key)).all())
        assert conn.execute(select(EVENTS.c.customer_key).where(EVENTS.c.id == 4)).scalar_one() == old
    assert keys["old"] == old and len(keys) == 5 and len(set(keys.values())) == 5


def test_message_ids_are_keys_across_files_and_formats(store: Store, tmp_path: Path) -> None:
    a = _jsonl(
        tmp_path / "a.jsonl",
        [
            {**_event("c1"), "message_id": "m1"},
            {**_event("c1"), "messageId": "m2"},
            {**_event("c1"), "event_id": 3},
            {**_event("c1"), "message_id": "m1"},  # the same id again in the file
            {**_event("c9"), "message_id": ["no"]},
        ],
    )
    report = ingest_file(store, a, now_us=NOW, chunk_rows=2)
    assert (report.accepted, report.rejected, report.duplicates) == (3, 1, 1)
    assert report.reasons == {"bad message id": 1}
    assert all("message_id" not in e["properties"] for e in _events(store))
    b = _write(
        tmp_path / "b.csv",
        "customer_id,event,ts,message_id\nc1,view,2023-11-01T00:00:00Z,m2\nc1,view,2023-11-01T00:00:00Z,\n",
    )
    report = ingest_file(store, b, now_us=NOW)
    assert (report.accepted, report.duplicates) == (1, 1)
    base = _us("2023-11-01T00:00:00Z")
    table = pa.table(
        {
            "customer_id": ["c1", "c1"],
            "event": ["view", "view"],
            "ts": pa.array([base, base], pa.timestamp("us", tz="UTC")),
            "event_id": pa.array([3, 4], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    report = ingest_file(store, tmp_path / "c.parquet", now_us=NOW)
    assert (report.accepted, report.duplicates) == (1, 1)
    records = [{**_event("c1"), "message_id": "m1"}, {**_event("c1"), "message_id": "m9"}]
    report = ingest_events_records(store, records, NOW)
    assert (report.accepted, report.duplicates) == (1, 1)
    assert _count(store) == 6


def test_records_are_keyed_by_a_named_batch_only(store: Store) -> None:
    same = _event("c1")
    assert ingest_events_records(store, [same, same], NOW).accepted == 2
    assert ingest_events_records(store, [same, same], NOW).accepted == 2  # no key: both calls count
    assert ingest_events_records(store, [same, same], NOW, batch_id="req-1").accepted == 2
    report = ingest_events_records(store, [same, same, same], NOW, batch_id="req-1")
    assert (report.accepted, report.duplicates) == (1, 2)
    assert _count(store) == 7


def test_a_rerun_after_a_failure_midway_stores_only_the_rest(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.ingest import _pipeline as load
    from orchestrator.ingest._pipeline import IngestedEvents

    path = _jsonl(
        tmp_path / "e.jsonl", [_event(f"c{i % 5}", ts=f"2023-11-01T00:00:{i % 60:02d}Z") for i in range(25)]
    )
    real = load.insert_new_events
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(load, "insert_new_events", failing)
    with pytest.raises(RuntimeError):
        ingest_file(store, path, now_us=NOW, chunk_rows=10)
    monkeypatch.setattr(load, "insert_new_events", real)
    assert _count(store) == 10
    # The thread reading the file ahead ended with the ingest.
    assert not [t for t in threading.enumerate() if t.name == "ingest-reader"]
    handed: list[IngestedEvents] = []
    report = ingest_file(store, path, now_us=NOW, chunk_rows=4, on_events=handed.append)
    assert (report.accepted, report.duplicates) == (15, 10)
    assert _count(store) == 25
    # What the engine is handed is exactly what was stored, with the ids it was stored under.
    assert sum(len(h.ts_us) for h in handed) == 15
    assert all(len(h.ts_us) == h.last_id - h.first_id + 1 == len(h.properties) for h in handed)
    assert [h.first_id for h in handed] == [11, 13, 17, 21, 25]  # the third chunk: 2 of 4 were stored
    assert handed[0].ts_us.tolist() == [_us("2023-11-01T00:00:10Z"), _us("2023-11-01T00:00:11Z")]
    with store.connect() as conn:
        ids = [r[0] for r in conn.execute(select(EVENTS.c.id).order_by(EVENTS.c.id)).all()]
    assert ids == list(range(1, 26))


def test_kill_9_midway_then_rerun_stores_each_event_once(
    make_store_url: Callable[[str], str], tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    n = 800_000
    base = _us("2023-11-01T00:00:00Z") // 1_000_000
    table = pa.table(
        {
            "customer_id": pa.array(np.arange(n) % 5000, pa.int64()),
            "event": pa.array(np.where(np.arange(n) % 3 == 0, "view", "buy")),
            "ts": pa.array((base + np.arange(n) // 7) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "amount": pa.array(np.arange(n) % 100, pa.int64()),
        }
    )
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=50_000)
    # Sixteen chunks (one per row group), whatever the backend's default chunk. The ingest runs at the
    # lowest priority, so that this test's polls come between its commits; should an ingest still finish
    # between two polls, the kill is tried again on a fresh store (a few times at most).
    for attempt in range(3):
        url = make_store_url(f"kill{attempt}")
        store = open_store(url)
        command = [
            sys.executable, "-m", "orchestrator.cli", "ingest", str(path),
            "--db", url, "--chunk-rows", "50000",
        ]  # fmt: skip
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.nice(19)
        )
        deadline = time.monotonic() + 120
        # Kill at the first commit seen: the other fifteen chunks take far longer than one poll.
        while _count(store) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = _count(store)
        if stored < n:
            break
        store.dispose()
    assert 0 < stored < n, stored  # killed midway
    done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["accepted"] + result["duplicates"] == n and result["duplicates"] == stored
    assert result["files"][0]["duplicates"] == stored
    assert _count(store) == n
    store.dispose()


# ------------------------------------------------------------------------------------------ kinds


def test_a_jsonl_file_mixing_events_and_customers_is_refused(store: Store, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "e.jsonl", [{"customer_id": "c1", "plan": "gold"}, _event("c1"), _event("c2")])
    with pytest.raises(IngestError, match="mixes events and customers"):
        ingest_file(store, path, now_us=NOW)
    assert _count(store) == 0
    with store.connect() as conn:
        assert conn.execute(select(CUSTOMERS.c.id)).all() == []
    report = ingest_file(store, path, kind="events", now_us=NOW)
    assert (report.accepted, report.rejected, report.reasons) == (2, 1, {"missing event": 1})
    # A customers file whose attributes mention "event" is still a customers file.
    people = _jsonl(
        tmp_path / "p.jsonl", [{"customer_id": "c1", "attributes": {"event": "x"}}, {"customer_id": "c2"}]
    )
    assert ingest_file(store, people, now_us=NOW).kind == "customers"


def test_an_events_file_whose_first_record_lacks_event_is_still_events(store: Store, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "e.jsonl", [{"customer_id": "c1", "ts": "2023-11-01T00:00:00Z"}, _event("c1")])
    report = ingest_file(store, path, now_us=NOW)
    assert (report.kind, report.accepted, report.rejected, report.reasons) == (
        "events",
        1,
        1,
        {"missing event": 1},
    )
    with store.connect() as conn:
        records = customer_records(conn, [1])
    assert "ts" not in records[1] and "event" not in records[1]  # nothing became a customer attribute


def test_cli_prints_duplicates_and_json_totals(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    url = store.engine.url.render_as_string(hide_password=False)
    now = datetime.now(UTC)
    path = _jsonl(
        tmp_path / "e.jsonl",
        [
            _event("c1", ts=(now - timedelta(days=1)).isoformat()),
            _event("c1", ts=(now - timedelta(days=1)).isoformat()),
            _event("c2", ts=(now + timedelta(days=3)).isoformat()),
        ],
    )
    assert main(["ingest", str(path), "--db", url]) == 0
    out = capsys.readouterr()
    counted = row(out.out, "file", str(path))
    assert (counted["accepted"], counted["rejected"], counted["duplicates"]) == ("2", "1", "0")
    assert "ts out of range" in out.err
    assert main(["ingest", str(path), str(path), "--db", url, "--format", "json", "--max-future", "4d"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["accepted"], result["rejected"], result["duplicates"]) == (1, 0, 5)
    assert [(f["accepted"], f["duplicates"]) for f in result["files"]] == [(1, 2), (0, 3)]
    assert main(["ingest", str(path), str(path), "--db", url, "--max-future", "4d"]) == 0
    rows = table(capsys.readouterr().out, "file")  # a row per file, and their total
    assert [(r["file"], r["accepted"], r["duplicates"]) for r in rows] == [
        (str(path), "0", "3"),
        (str(path), "0", "3"),
        ("total", "0", "6"),
    ]
    assert main(["ingest", str(path), "--db", url, "--min-time", "yesterday"]) == 2


def test_a_store_from_before_event_keys_opens_and_keeps_its_events(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("postgres_url") if backend == "postgres" else sqlite_url(tmp_path / "old.db")
    )
    old = open_engine(url)
    with old.begin() as conn:  # the schema before event keys (whose versions kept no revision), one event
        command.upgrade(alembic_config(conn), "0005")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO events (id, customer_key, type_id, ts_us, properties) VALUES (1, 1, 1, 5, '{}')"
            )
        )
    old.dispose()
    store = open_store(url)
    try:
        path = _jsonl(tmp_path / "e.jsonl", [_event("c1"), _event("c1")])
        assert ingest_file(store, path, now_us=NOW).accepted == 2
        assert ingest_file(store, path, now_us=NOW).duplicates == 2
        with store.connect() as conn:
            rows = conn.execute(select(EVENTS.c.id, EVENTS.c.event_key).order_by(EVENTS.c.id)).all()
        assert (
            [r[0] for r in rows] == [1, 2, 3] and rows[0][1] is None and None not in (rows[1][1], rows[2][1])
        )
    finally:
        store.dispose()
