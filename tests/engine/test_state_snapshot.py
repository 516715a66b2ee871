"""The signal state's snapshot: a state loaded from it, with the events stored after it read from the store,
evaluates exactly as one rebuilt from the store; a missing, damaged or stale snapshot is said in one log
line and the state rebuilt from the store; writes run beside the tick, one at a time; a daemon writes one
when stopped and restarts from the older one when killed."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from orchestrator.clock import to_us
from orchestrator.demo._population import HISTORY_END, make_population, simulate_day
from orchestrator.engine import _state_snapshot as snapshots
from orchestrator.engine._signal_state import SignalState
from orchestrator.engine._snapshot import load_frames, signal_matches
from orchestrator.engine._state_snapshot import SnapshotSettings, StateFile, read_header
from orchestrator.engine._workspace import load_workspace
from orchestrator.ingest import ingest_events_records
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import EventFrame
from orchestrator.store import Store, open_store

pytestmark = pytest.mark.backends("sqlite", "postgres")

ROOT = Path(__file__).resolve().parents[2]
START = HISTORY_END - timedelta(days=30)


def bundled_plans() -> list[Any]:
    return load_workspace([ROOT / "journeys", ROOT / "examples" / "reference"]).plans


def day_us(day: float) -> int:
    return to_us(START + timedelta(days=day))


class Shop:
    """A simulated shop's behaviour, a day at a time (late events included), into a store."""

    def __init__(self, customers: int = 150, seed: int = 3) -> None:
        self.population = make_population(customers, seed=seed)
        self.rng = np.random.default_rng(seed + 2)

    def day(self, day: int) -> list[dict[str, Any]]:
        events = simulate_day(self.population, START + timedelta(days=day), day, self.rng)
        for event in events[::25]:  # some arrive late, stamped days earlier
            stamped = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")) - timedelta(days=3)
            event["ts"] = stamped.isoformat()
        return events

    def ingest(self, store: Store, days: range, on_events: Any = None) -> None:
        for day in days:
            ingest_events_records(store, self.day(day), now_us=day_us(day), on_events=on_events)


def matches(state: SignalState, store: Store, plans: list[Any], now_us: int) -> dict[str, np.ndarray]:
    """Each journey's signal (and segment) over the state, after a refresh at ``now_us``."""
    with store.connect() as conn:
        state.refresh(conn, now_us)
        _, customers = load_frames(conn, plans, now_us)
    cache = AggregateCache()
    state.fill(cache)
    out = {}
    for plan in plans:
        evaluator = Evaluator(EventFrame.empty(customers.n), customers, now_us, plan.metrics, cache)
        condition = evaluator.condition(plan.signal)
        if plan.segment is not None:
            condition &= evaluator.condition(plan.segment)
        out[plan.id] = condition
    return out


def scratch(store: Store, plans: list[Any], now_us: int) -> dict[str, np.ndarray]:
    with store.connect() as conn:
        events, customers = load_frames(conn, plans, now_us)
    return signal_matches(plans, events, customers, now_us)


def assert_same_state(loaded: SignalState, rebuilt: SignalState) -> None:
    """Every aggregate of every customer equal, and the logs holding the same events."""
    assert loaded.log.last_id == rebuilt.log.last_id
    assert len(loaded.log) == len(rebuilt.log)
    assert loaded.aggregates.calls == rebuilt.aggregates.calls
    for call in rebuilt.aggregates.calls:
        a, b = loaded.aggregates.value(call), rebuilt.aggregates.value(call)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), call


def assert_same_matches(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    for journey, mask in expected.items():
        assert np.array_equal(got[journey], mask), journey


def snapshot_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "orchestrator.snapshot"]


def written_state(store: Store, path: Path, plans: list[Any], now_us: int) -> SignalState:
    """A state read from the store at ``now_us`` whose snapshot was just written (and its path let go)."""
    state = SignalState(plans, StateFile(SnapshotSettings(path)))
    with store.connect() as conn:
        state.refresh(conn, now_us)
        assert state.save(conn)
    assert state.snapshot is not None
    state.snapshot.close()
    return state


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *argv], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_a_state_from_the_snapshot_and_newer_events_evaluates_as_one_rebuilt_from_the_store(
    store: Store, store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.snapshot")
    plans = bundled_plans()
    shop = Shop()
    shop.ingest(store, range(20))
    path = tmp_path / "state.signals"
    first = written_state(store, path, plans, day_us(20))
    assert read_header(path)["last_id"] == first.log.last_id > 0

    # Another process stores two more days while no engine runs.
    events = tmp_path / "later.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for d in (20, 21) for e in shop.day(d)))
    done = run_cli("ingest", str(events), "--kind", "events", "--db", store_url)
    assert done.returncode == 0, done.stderr

    caplog.clear()
    loaded = SignalState(plans, StateFile(SnapshotSettings(path)))
    rebuilt = SignalState(plans)
    now_us = day_us(22)
    got = matches(loaded, store, plans, now_us)
    expected = matches(rebuilt, store, plans, now_us)
    assert loaded.snapshot is not None and loaded.snapshot.loaded is not None
    assert loaded.snapshot.loaded.last_id == first.log.last_id < loaded.log.last_id  # newer events read
    [line] = snapshot_lines(caplog)
    assert line.startswith(f"signal state loaded from {path}: ") and f"up to id {first.log.last_id} " in line
    assert_same_state(loaded, rebuilt)
    assert_same_matches(got, expected)
    assert_same_matches(got, scratch(store, plans, now_us))
    assert sum(int(m.sum()) for m in expected.values()) > 0  # the journeys do match someone

    # It goes on as the rebuilt one does: events handed over as this process commits them (the rebuilt
    # state reads them from the store), and a tick later.
    ingest_events_records(store, shop.day(22), now_us=day_us(22), on_events=loaded.accept)
    assert loaded.accepted > 0
    now_us = day_us(23.5)
    assert_same_matches(matches(loaded, store, plans, now_us), matches(rebuilt, store, plans, now_us))
    assert_same_state(loaded, rebuilt)
    assert_same_matches(matches(loaded, store, plans, now_us), scratch(store, plans, now_us))


def test_the_snapshot_holds_the_log_exactly(store: Store, tmp_path: Path) -> None:
    plans = bundled_plans()
    shop = Shop()
    path = tmp_path / "state.signals"
    written = SignalState(plans, StateFile(SnapshotSettings(path)))
    for day in range(0, 12, 2):  # the log in several segments, as ticks leave it
        shop.ingest(store, range(day, day + 2))
        with store.connect() as conn:
            written.refresh(conn, day_us(day + 2))
    assert len(written.log.segments) > 1
    with store.connect() as conn:
        assert written.save(conn)
    assert written.snapshot is not None
    written.snapshot.close()
    loaded = SignalState(plans, StateFile(SnapshotSettings(path)))
    with store.connect() as conn:
        loaded.refresh(conn, day_us(12))
    original, copy = written.log, loaded.log
    assert set(vars(copy)) == set(vars(original)) == snapshots.LOG_ATTRIBUTES
    for name in snapshots.LOG_ATTRIBUTES - {"segments", "fresh"}:
        assert getattr(copy, name) == getattr(original, name), name
    assert len(copy.segments) == len(original.segments)
    for mine, theirs in zip(copy.segments, original.segments, strict=True):
        for (name, a), (_, b) in zip(
            snapshots._segment_fields(mine), snapshots._segment_fields(theirs), strict=True
        ):
            pairs = [(a, b)] if not isinstance(a, dict) else [(a[k], b[k]) for k in b]
            assert not isinstance(a, dict) or a.keys() == b.keys(), name
            for x, y in pairs:
                assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
                assert not x.flags.writeable  # as the log's own: never changed in place
    assert copy.fresh == []  # the loaded state's aggregates start from the whole log


# ---------------------------------------------------------------------------------------------- damage


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def damaged(kind: str) -> Callable[[Path], None]:
    def truncate(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    def version(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[16:20] = struct.pack("<I", snapshots.FORMAT + 1)
        path.write_bytes(bytes(data))

    return {
        "truncated": truncate,
        "cut at the end": lambda p: p.write_bytes(p.read_bytes()[:-1]),
        "first data byte": lambda p: flip(p, 20),
        "middle data byte": lambda p: flip(p, (20 + read_header(p)["payload_bytes"]) // 2),
        "last data byte": lambda p: flip(p, 19 + read_header(p)["payload_bytes"]),
        "header byte": lambda p: flip(p, p.stat().st_size - 30),
        "trailer byte": lambda p: flip(p, p.stat().st_size - 2),
        "magic": lambda p: flip(p, 3),
        "wrong version": version,
        "missing": lambda p: p.unlink(),
        "empty": lambda p: p.write_bytes(b""),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("truncated", "is corrupt: it is truncated"),
        ("cut at the end", "is corrupt: it is truncated or damaged"),
        ("first data byte", "is corrupt: its data fails its checksum"),
        ("middle data byte", "is corrupt: its data fails its checksum"),
        ("last data byte", "is corrupt: its data fails its checksum"),
        ("header byte", "is corrupt: its header fails its checksum"),
        ("trailer byte", "is corrupt: "),
        ("magic", "is corrupt: it is not a signal state snapshot"),
        ("wrong version", f"is stale: it was written in format {snapshots.FORMAT + 1}; this version reads"),
        ("missing", "no signal state snapshot at"),
        ("empty", "is corrupt: it is truncated (0 bytes)"),
    ],
)
def test_a_damaged_or_missing_snapshot_is_said_in_one_line_and_the_state_rebuilt(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, said: str
) -> None:
    plans = bundled_plans()
    shop = Shop(80)
    shop.ingest(store, range(10))
    path = tmp_path / "state.signals"
    written_state(store, path, plans, day_us(10))
    shop.ingest(store, range(10, 12))
    damaged(kind)(path)
    caplog.set_level(logging.INFO, logger="orchestrator.snapshot")
    state = SignalState(plans, StateFile(SnapshotSettings(path)))
    rebuilt = SignalState(plans)
    got = matches(state, store, plans, day_us(12))
    assert_same_matches(got, matches(rebuilt, store, plans, day_us(12)))
    assert_same_state(state, rebuilt)
    assert state.snapshot is not None and state.snapshot.loaded is None
    [line] = snapshot_lines(caplog)
    assert str(path) in line and said in line, line
    assert line.endswith("reading every event from the store")
    assert all(r.exc_info is None for r in caplog.records)
    # A new snapshot is written at the next tick (the state has none usable), and is read back.
    with store.connect() as conn:
        assert state.save_if_due(conn)
    state.snapshot.close()
    assert read_header(path)["last_id"] == state.log.last_id


def test_a_stale_snapshot_is_said_in_one_line_and_the_state_rebuilt(
    store: Store,
    make_store_url: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: Any,
) -> None:
    plans = bundled_plans()
    shop = Shop(80)
    shop.ingest(store, range(10))
    path = tmp_path / "state.signals"
    written_state(store, path, plans, day_us(10))
    caplog.set_level(logging.INFO, logger="orchestrator.snapshot")

    def load_once(state_plans: list[Any], on: Store = store) -> str:
        caplog.clear()
        state = SignalState(state_plans, StateFile(SnapshotSettings(path)))
        matches(state, on, state_plans, day_us(10))
        assert state.snapshot is not None
        state.snapshot.close()
        assert_same_state(state, _rebuilt(state_plans, on))
        [line] = snapshot_lines(caplog)
        return line

    def _rebuilt(state_plans: list[Any], on: Store) -> SignalState:
        out = SignalState(state_plans)
        matches(out, on, state_plans, day_us(10))
        return out

    pristine = path.read_bytes()
    assert load_once(plans).startswith("signal state loaded from")

    # Another schema revision of the store.
    with monkeypatch.context() as patch:
        patch.setattr(snapshots, "schema_version", lambda: "9999")
        line = load_once(plans)
    assert "is stale: it was built for another store schema or another layout" in line

    # Another layout of the log: a dtype changed in the code since.
    original = snapshots.layout

    def int64_customers(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> dict[str, Any]:
        found = original(numeric, categorical)
        assert found["segment"]["customer"] == np.dtype(np.int32).str  # the log's keys today
        return {**found, "segment": {**found["segment"], "customer": np.dtype(np.int64).str}}

    with monkeypatch.context() as patch:
        patch.setattr(snapshots, "layout", int64_customers)
        line = load_once(plans)
    assert "is stale: it was built for another store schema or another layout" in line

    # A journey that reads an event property the snapshot's log never kept.
    folder = tmp_path / "edited"
    shutil.copytree(ROOT / "examples" / "reference", folder)
    r1 = folder / "r1_recency.yaml"
    r1.write_text(r1.read_text().replace("> 30d", "> 30d and sum(purchase.shipping, within=30d) >= 0"))
    path.write_bytes(pristine)
    line = load_once(load_workspace([ROOT / "journeys", folder]).plans)
    assert "is stale: the journeys read event properties it does not keep (shipping)" in line

    # Another store (made again at the same place, restored...): the ids it holds are other events.
    other = open_store(make_store_url("other"))
    try:
        Shop(80, seed=11).ingest(other, range(10))
        path.write_bytes(pristine)
        line = load_once(plans, other)
    finally:
        other.dispose()
    assert "is stale: the store does not hold the events it was built from" in line


def test_a_journey_edit_reading_the_same_properties_keeps_the_snapshot(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plans = bundled_plans()
    shop = Shop(80)
    shop.ingest(store, range(10))
    path = tmp_path / "state.signals"
    written_state(store, path, plans, day_us(10))
    folder = tmp_path / "edited"
    shutil.copytree(ROOT / "examples" / "reference", folder)
    r1 = folder / "r1_recency.yaml"
    r1.write_text(r1.read_text().replace("> 30d", "> 20d").replace("version: 1", "version: 2"))
    edited = load_workspace([ROOT / "journeys", folder]).plans
    dropped = [p for p in edited if p.id != "r4_browse_intent"]  # a journey removed: fewer properties
    caplog.set_level(logging.INFO, logger="orchestrator.snapshot")
    for journeys in (edited, dropped):
        caplog.clear()
        state = SignalState(journeys, StateFile(SnapshotSettings(path)))
        got = matches(state, store, journeys, day_us(11))
        assert state.snapshot is not None and state.snapshot.loaded is not None
        state.snapshot.close()
        [line] = snapshot_lines(caplog)
        assert line.startswith("signal state loaded from")
        assert_same_matches(got, scratch(store, journeys, day_us(11)))


def test_a_leftover_temporary_file_is_ignored(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plans = bundled_plans()
    Shop(60).ingest(store, range(8))
    path = tmp_path / "state.signals"
    temporary = path.with_name(path.name + ".tmp")
    caplog.set_level(logging.INFO, logger="orchestrator.snapshot")
    # Only a temporary file (a first write cut short): no snapshot.
    temporary.write_bytes(b"ORCHESTRATOR-SIG half a write")
    state = SignalState(plans, StateFile(SnapshotSettings(path)))
    matches(state, store, plans, day_us(8))
    assert state.snapshot is not None
    state.snapshot.close()
    assert [line.split(":")[0] for line in snapshot_lines(caplog)] == [f"no signal state snapshot at {path}"]
    # A snapshot and a temporary file beside it (a later write cut short): the snapshot is used.
    written_state(store, path, plans, day_us(8))
    assert path.stat().st_mode & 0o777 == 0o600  # every customer's events: readable by the owner only
    temporary.write_bytes(path.read_bytes()[:100])
    caplog.clear()
    state = SignalState(plans, StateFile(SnapshotSettings(path)))
    assert_same_matches(matches(state, store, plans, day_us(8)), scratch(store, plans, day_us(8)))
    assert state.snapshot is not None and state.snapshot.loaded is not None
    state.snapshot.close()
    [line] = snapshot_lines(caplog)
    assert line.startswith("signal state loaded from") and not temporary.exists()


def test_a_second_process_on_the_same_path_keeps_no_snapshot(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plans = bundled_plans()
    Shop(40).ingest(store, range(5))
    path = tmp_path / "state.signals"
    first = written_state(store, path, plans, day_us(5))
    holder = StateFile(SnapshotSettings(path))
    with store.connect() as conn:
        assert holder.load(conn, set(), set()) is not None  # holds the path now
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from orchestrator.engine._state_snapshot import SnapshotSettings, StateFile\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "print(StateFile(SnapshotSettings(Path(sys.argv[1])))._claim())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.strip() == "False", done.stderr
    assert f"signal state snapshot {path} is used by another process: this one keeps no snapshot" in (
        done.stderr
    )
    holder.close()
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.strip() == "True", done.stderr  # let go: usable again
    assert first.log.last_id == read_header(path)["last_id"]


# ---------------------------------------------------------------------------------------------- writing


def test_writes_run_beside_the_tick_one_at_a_time(store: Store, tmp_path: Path, monkeypatch: Any) -> None:
    plans = bundled_plans()
    shop = Shop(60)
    shop.ingest(store, range(8))
    path = tmp_path / "state.signals"
    now = [0.0]
    state = SignalState(plans, StateFile(SnapshotSettings(path, every_seconds=60), monotonic=lambda: now[0]))
    assert state.snapshot is not None
    started, release = threading.Event(), threading.Event()
    real_write = snapshots.write_snapshot
    calls = []

    def slow_write(view: Any, target: Path) -> int:
        calls.append(view.last_id)
        started.set()
        assert release.wait(120)
        return real_write(view, target)

    monkeypatch.setattr(snapshots, "write_snapshot", slow_write)
    with store.connect() as conn:
        state.refresh(conn, day_us(8))  # no snapshot: one is due at once
        assert state.save_if_due(conn)  # returns while the write is held up
    assert started.wait(120) and state.snapshot.writing
    shop.ingest(store, range(8, 10))
    now[0] = 1000.0  # due again, but one is being written: not a second one
    with store.connect() as conn:
        state.refresh(conn, day_us(10))
        assert not state.save_if_due(conn)
    release.set()
    state.snapshot.wait()
    assert read_header(path)["last_id"] == calls[0] < state.log.last_id
    with store.connect() as conn:
        assert state.save_if_due(conn)  # due, none running, the log moved on
    state.snapshot.wait()
    assert read_header(path)["last_id"] == state.log.last_id
    now[0] = 5000.0
    with store.connect() as conn:
        assert not state.save_if_due(conn)  # due, but nothing new
        assert not state.save(conn)  # at shutdown: nothing new either
    assert calls == [calls[0], state.log.last_id]
    written = state.snapshot.written
    assert written is not None and written.events == len(state.log) and written.bytes == path.stat().st_size
    state.snapshot.close()


def test_a_state_never_refreshed_writes_nothing(store: Store, tmp_path: Path) -> None:
    plans = bundled_plans()
    Shop(40).ingest(store, range(5))
    path = tmp_path / "state.signals"
    written_state(store, path, plans, day_us(5))
    before = path.read_bytes()
    state = SignalState(plans, StateFile(SnapshotSettings(path)))
    with store.connect() as conn:
        assert not state.save(conn)  # its log is empty: the snapshot on disk stays
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------------- a daemon

JOURNEY = """\
id: twice
version: 1
entry:
  signal: count(visit, within=30d) >= 2
holdout: 0
steps:
  - id: hello
    send:
      channel: email
      subject: "Hello"
      template: hello.txt
"""


def daemon_workspace(folder: Path) -> None:
    (folder / "journeys").mkdir()
    (folder / "templates").mkdir()
    (folder / "journeys" / "twice.yaml").write_text(JOURNEY)
    (folder / "templates" / "hello.txt").write_text("Hi {{ customer.first_name }}\n")
    (folder / "orchestrator.yaml").write_text(
        "store: sqlite:///o.db\ninbox: inbox\ntick: 1s\nsnapshot:\n  every: 1d\n"
    )
    customers = "".join(f"c{i},Ann{i},person{i}@example.com,true\n" for i in range(6))
    drop(folder, "customers", "people.csv", "customer_id,first_name,email,consent_email\n" + customers)


def drop(folder: Path, kind: str, name: str, text: str) -> None:
    inbox = folder / "inbox" / kind
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / f"{name}.part").write_text(text)
    (inbox / f"{name}.part").rename(inbox / name)


def visits(*customers: int, hour: int = 8) -> str:
    return "".join(
        orjson.dumps(
            {"customer_id": f"c{c}", "event": "visit", "ts": f"2024-05-01T{hour:02d}:{i:02d}:00Z"}
        ).decode()
        + "\n"
        for i, c in enumerate(customers)
    )


def greeted(folder: Path) -> list[str]:
    if not (folder / "o.db").exists():
        return []
    try:
        with sqlite3.connect(folder / "o.db") as db:
            rows = db.execute(
                "SELECT c.id FROM messages m JOIN customers c ON c.key = m.customer_key "
                "WHERE m.status = 'sent' ORDER BY c.id"
            ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [row[0] for row in rows]


class Daemon:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.log_path = folder, folder / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "daemon", "--simulated-clock", "2024-05-01T09:00:00Z",
                 "--simulated-step", "1m", "--interval", "0.2"],
                stdout=subprocess.DEVNULL, stderr=log, cwd=folder, env=env,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            assert self.proc.poll() is None, f"the daemon stopped while waiting for {what}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {what} after 120 s:\n{self.log()}"
            time.sleep(0.05)

    def ticks(self) -> int:
        return self.log().count("orchestrator.daemon: tick")


@pytest.mark.backends("sqlite")
def test_a_stopped_daemon_writes_a_snapshot_and_a_killed_one_restarts_from_the_older_one(
    tmp_path: Path,
) -> None:
    daemon_workspace(tmp_path)
    path = tmp_path / "o.db.signals"
    drop(tmp_path, "events", "first.jsonl", visits(0, 0, 1, 2, 2))  # c0 and c2 twice, c1 once
    first = Daemon(tmp_path, "first")
    try:
        # No snapshot at the start: one is written at the first ticks (then not for a day).
        first.wait_for("c0 and c2 greeted", lambda: greeted(tmp_path) == ["c0", "c2"])
        first.wait_for("the first snapshot", lambda: "signal state snapshot written" in first.log())
        older = read_header(path)["last_id"]
        assert older == 5
        drop(tmp_path, "events", "second.jsonl", visits(3, 3, hour=7))  # c3 twice: after the snapshot
        first.wait_for("c3 greeted", lambda: greeted(tmp_path) == ["c0", "c2", "c3"])
    finally:
        first.proc.kill()  # -9: no snapshot at the end
        first.proc.wait()
    assert read_header(path)["last_id"] == older  # the older one, from before the kill
    assert "no signal state snapshot at" in first.log()

    # Restarted: the older snapshot, then every newer event from the store (c3's, and c1's second visit).
    drop(tmp_path, "events", "third.jsonl", visits(1, 4, hour=6))
    second = Daemon(tmp_path, "second")
    try:
        second.wait_for("c1 greeted", lambda: greeted(tmp_path) == ["c0", "c1", "c2", "c3"])
        seen = second.ticks()
        second.wait_for("two more ticks", lambda: second.ticks() >= seen + 2)
    finally:
        second.proc.send_signal(signal.SIGTERM)
        second.proc.wait(timeout=120)
    log = second.log()
    assert second.proc.returncode == 0, log
    assert f"signal state loaded from {path}: 5 events up to id 5 in " in log
    assert "Traceback" not in log and "person" not in log
    assert greeted(tmp_path) == ["c0", "c1", "c2", "c3"]  # c3 once, c4 (one visit) not at all
    # Stopped with SIGTERM: the last snapshot holds every stored event.
    assert read_header(path)["last_id"] == 9 == read_header(path)["events"]
    assert log.count("signal state snapshot written") == 1  # the one at the stop (the first was fresh)
    assert log.index("signal state snapshot written") < log.index("daemon stopped cleanly")


def test_a_failed_write_is_one_line_and_leaves_the_older_snapshot(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    plans = bundled_plans()
    shop = Shop(40)
    shop.ingest(store, range(5))
    path = tmp_path / "state.signals"
    written_state(store, path, plans, day_us(5))
    before = path.read_bytes()

    def disk_full(temporary: Path, *_: Any) -> int:
        temporary.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots, "_write_file", disk_full)
    caplog.set_level(logging.INFO, logger="orchestrator.snapshot")
    state = SignalState(plans, StateFile(SnapshotSettings(path)))
    for day in (6, 7):
        shop.ingest(store, range(day - 1, day))
        with store.connect() as conn:
            state.refresh(conn, day_us(day))
            assert not state.save(conn)
    assert state.snapshot is not None
    state.snapshot.close()
    failed = [line for line in snapshot_lines(caplog) if "was not written" in line]
    assert failed == [
        f"the signal state snapshot {path} was not written: OSError: [Errno 28] No space left on device"
    ]
    assert path.read_bytes() == before and not path.with_name(path.name + ".tmp").exists()
