"""The daemon's inbox: files dropped in a folder are ingested before each tick, their events handed to
the signal state as they commit, and the files moved out of the way."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from orchestrator.clock import parse_instant, to_us
from orchestrator.engine._signal_state import SignalState
from orchestrator.engine._workspace import load_workspace
from orchestrator.ingest._inbox import drain_inbox, waiting_files
from orchestrator.store import Store

ROOT = Path(__file__).resolve().parents[2]
NOW = to_us(parse_instant("2024-03-01T00:00:00Z"))


def events_file(path: Path, n: int, bad_every: int = 0) -> int:
    """``n`` lines of events, every ``bad_every``-th one malformed; returns the number of good ones."""
    lines, good = [], 0
    for i in range(n):
        if bad_every and i % bad_every == 0:
            lines.append('{"customer_id": "c1", "event": "session_start", "ts": "not a time"}')
            continue
        event = {"customer_id": f"c{i % 7}", "event": "add_to_cart", "ts": f"2024-02-29T{i % 24:02d}:00:00Z"}
        lines.append(json.dumps({**event, "properties": {"category": "shoes"}}))
        good += 1
    path.write_text("\n".join(lines) + "\n")
    return good


def test_drain_ingests_in_name_order_hands_events_over_and_moves_files(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good_b = events_file(inbox / "b.jsonl", 30, bad_every=10)
    good_a = events_file(inbox / "a.jsonl", 20)
    (inbox / "c.jsonl.part").write_text("still being written")
    (inbox / ".hidden.jsonl").write_text("{}")
    (inbox / "notes.txt").write_text("not an event file")
    (inbox / "d.csv").write_text("who,what\n1,2\n")  # no customer_id/event/ts columns: unreadable
    assert [p.name for p in waiting_files(inbox)] == ["a.jsonl", "b.jsonl", "d.csv"]

    plans = load_workspace([ROOT / "journeys"]).plans
    state = SignalState(plans)
    handed = []
    reports = drain_inbox(store, inbox, now_us=NOW, on_events=lambda e: handed.append(state.accept(e)))

    assert [r.source for r in reports] == [str(inbox / "a.jsonl"), str(inbox / "b.jsonl")]
    assert [r.accepted for r in reports] == [good_a, good_b] and reports[1].rejected == 3
    assert handed == [True, True]  # each file's one chunk followed on from the log
    assert sorted(p.name for p in (inbox / "done").iterdir()) == [
        "a.jsonl",
        "b.jsonl",
        "b.jsonl.rejects.jsonl",
    ]
    rejects = [
        json.loads(line) for line in (inbox / "done" / "b.jsonl.rejects.jsonl").read_text().splitlines()
    ]
    assert len(rejects) == 3 and all("ts" in r["reason"] for r in rejects)
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["d.csv", "d.csv.error"]
    assert "customer_id" in (inbox / "failed" / "d.csv.error").read_text()
    assert {p.name for p in inbox.iterdir()} == {
        "done",
        "failed",
        "c.jsonl.part",
        ".hidden.jsonl",
        "notes.txt",
    }

    # The tick reads nothing back from the store: the state already holds every committed event.
    with store.connect() as conn:
        refresh = state.refresh(conn, NOW)
    assert refresh.new_events == good_a + good_b
    assert len(state.log) == good_a + good_b
    restarted = SignalState(plans)
    with store.connect() as conn:
        restarted.refresh(conn, NOW)
    for call, values in state.aggregates.values.items():
        assert values.tolist() == restarted.aggregates.values[call].tolist(), call


def test_daemon_drains_its_inbox_before_ticking(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = events_file(inbox / "events.jsonl", 12)
    db = tmp_path / "o.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "daemon",
            "--interval",
            "60",
            "--max-ticks",
            "1",
            "--inbox",
            str(inbox),
            "--journeys",
            str(ROOT / "journeys"),
            "--outbox",
            str(tmp_path / "outbox"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ORCHESTRATOR_DB": f"sqlite:///{db}"},
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (inbox / "done" / "events.jsonl").exists() and not (inbox / "events.jsonl").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == good
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 1


def _count(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM events")).scalar_one())


def test_a_bad_file_goes_to_failed_and_the_others_go_on(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "events").mkdir(parents=True)
    pq.write_table(
        pa.table({"customer_id": ["a"], "event": ["view"], "ts": ["2024-02-29T00:00:00Z"]}),
        inbox / "a.parquet",
    )
    (inbox / "a.parquet").write_bytes((inbox / "a.parquet").read_bytes()[:40] + b"\0" * 200)  # corrupt
    event = {"event": "add_to_cart", "ts": "2024-02-29T10:00:00Z"}
    lines = [
        {"customer_id": "c1", **event},
        {"customer_id": "x\x00y", **event},
        {"customer_id": "c2", **event},
    ]
    (inbox / "events" / "b.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    good = events_file(inbox / "c.events.jsonl", 10)
    with caplog.at_level(logging.INFO, logger="orchestrator.inbox"):
        reports = drain_inbox(store, inbox, now_us=NOW)
    assert [Path(r.source).name for r in reports] == ["b.jsonl", "c.events.jsonl"]
    assert (reports[0].accepted, reports[0].rejected) == (2, 1)
    assert reports[0].reasons == {"customer_id contains a control character": 1}
    assert _count(store) == 2 + good
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["a.parquet", "a.parquet.error"]
    assert (inbox / "failed" / "a.parquet.error").read_text().strip()
    assert (inbox / "done" / "events" / "b.jsonl").exists() and (inbox / "done" / "c.events.jsonl").exists()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "a.parquet" in errors[0].getMessage() and errors[0].exc_info is None
    assert "\n" not in errors[0].getMessage()


def _failing_after(first_chunks: int, error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make event files read in chunks of 4 rows, failing with ``error`` after ``first_chunks`` of them."""
    from orchestrator.ingest import _pipeline as load

    real = load.event_chunks

    def chunks(path: Path, fmt: str, chunk_rows: int, times: Any) -> Iterator[Any]:
        for i, chunk in enumerate(real(path, fmt, 4, times)):
            if i == first_chunks:
                raise error
            yield chunk

    monkeypatch.setattr(load, "event_chunks", chunks)


def test_a_file_failing_midway_is_failed_and_sending_it_again_stores_nothing_twice(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "events").mkdir(parents=True)
    good = events_file(inbox / "events" / "big.jsonl", 20)
    events_file(inbox / "events" / "next.jsonl", 3)
    _failing_after(2, RuntimeError("unexpected"), monkeypatch)
    reports = drain_inbox(store, inbox, now_us=NOW)
    assert [Path(r.source).name for r in reports] == ["next.jsonl"]  # the next file went on
    note = (inbox / "failed" / "events" / "big.jsonl.error").read_text()
    assert note.startswith("unexpected") and "8 events of this file were stored" in note
    assert _count(store) == 8 + 3
    monkeypatch.undo()
    (inbox / "failed" / "events" / "big.jsonl").rename(inbox / "events" / "big.jsonl")
    (report,) = drain_inbox(store, inbox, now_us=NOW)
    assert (report.accepted, report.duplicates) == (good - 8, 8)
    assert _count(store) == good + 3


def test_a_database_error_leaves_the_file_and_the_retry_stores_nothing_twice(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = events_file(inbox / "events.jsonl", 20)
    _failing_after(3, sqlite3.OperationalError("disk I/O error"), monkeypatch)
    with pytest.raises(sqlite3.OperationalError):
        drain_inbox(store, inbox, now_us=NOW)
    assert (inbox / "events.jsonl").exists() and not (inbox / "failed").exists()
    assert _count(store) == 12
    monkeypatch.undo()
    (report,) = drain_inbox(store, inbox, now_us=NOW)
    assert (report.accepted, report.duplicates) == (good - 12, 12)
    assert _count(store) == good


def test_the_kind_comes_from_the_folder_or_the_name_never_from_the_first_record(
    store: Store, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    for folder in ("events", "customers"):
        (inbox / folder).mkdir(parents=True)
    event = {"event": "add_to_cart", "ts": "2024-02-29T10:00:00Z"}
    first_lacks_event = [{"customer_id": "c1", "ts": "2024-02-29T10:00:00Z"}, {"customer_id": "c1", **event}]
    text_of = "".join(json.dumps(x) + "\n" for x in first_lacks_event)
    (inbox / "events" / "e.jsonl").write_text(text_of)
    (inbox / "x.events.jsonl").write_text(text_of)
    (inbox / "mixed.jsonl").write_text(json.dumps({"customer_id": "c9", "plan": "gold"}) + "\n" + text_of)
    (inbox / "customers" / "people.csv").write_text("customer_id,plan\nc1,gold\n")
    (inbox / "vip.customers.jsonl").write_text(json.dumps({"customer_id": "c2", "plan": "vip"}) + "\n")
    events_file(inbox / "plain.jsonl", 5)
    assert [str(p.relative_to(inbox)) for p in waiting_files(inbox)] == [
        "customers/people.csv",
        "events/e.jsonl",
        "mixed.jsonl",
        "plain.jsonl",
        "vip.customers.jsonl",
        "x.events.jsonl",
    ]
    reports = drain_inbox(store, inbox, now_us=NOW)
    assert [(Path(r.source).name, r.kind, r.accepted, r.rejected) for r in reports] == [
        ("people.csv", "customers", 1, 0),
        ("e.jsonl", "events", 1, 1),
        ("plain.jsonl", "events", 5, 0),
        ("vip.customers.jsonl", "customers", 1, 0),
        ("x.events.jsonl", "events", 0, 1),  # the same events as e.jsonl: one duplicate, one reject
    ]
    assert reports[-1].duplicates == 1
    assert "mixes events and customers" in (inbox / "failed" / "mixed.jsonl.error").read_text()
    assert (inbox / "done" / "customers" / "people.csv").exists()
    with store.connect() as conn:
        ids = sorted(r[0] for r in conn.execute(text("SELECT id FROM customers")).all())
    assert ids == ["c0", "c1", "c2", "c3", "c4"]  # nothing of "ts" or "event" became a customer attribute
