"""The daemon's inbox: files dropped in a folder are ingested before each tick, their events handed to
the signal state as they commit, and the files moved out of the way."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from orchestrator.clock import parse_instant, to_us
from orchestrator.engine.inbox import drain_inbox, waiting_files
from orchestrator.engine.signal_state import SignalState
from orchestrator.engine.workspace import load_workspace
from orchestrator.store import Store

ROOT = Path(__file__).resolve().parents[1]
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
