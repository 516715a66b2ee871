"""One engine process per SQLite store: a second daemon (or ``run --once``) on a store that a live engine
holds is refused and names the holder, so no message reaches the provider twice; a killed holder's lock is
taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from orchestrator.cli import main
from orchestrator.clock import SystemClock
from orchestrator.store import open_store, sqlite_url
from orchestrator.store._customers import upsert_customers
from orchestrator.store._holder import StoreHeld, hold, holder, lock_path
from orchestrator.testing import write_files

JOURNEY = """\
id: hello
version: 1
entry:
  segment: cohort == "x"
holdout: 0
steps:
  - id: greet
    send: {channel: webhook, endpoint: crm, template: m.json}
  - wait: 1h
  - id: again
    send: {channel: webhook, endpoint: crm, template: m.json}
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    write_files(tmp_path, {"journeys/hello.yaml": JOURNEY, "templates/m.json": '{"c": "{{ customer.id }}"}'})
    store = open_store(sqlite_url(tmp_path / "s.db"))
    with store.begin() as conn:
        upsert_customers(conn, [{"id": f"c{i}", "cohort": "x"} for i in range(300)], now_us=0)
    store.dispose()
    return tmp_path


def daemon(folder: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "daemon", "--db", sqlite_url(folder / "s.db"),
         "--journeys", str(folder / "journeys"), "--outbox", str(folder / "outbox"),
         "--attempt-log", str(folder / f"attempts-{name}.jsonl"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder,
    )  # fmt: skip


def test_a_second_holder_in_this_process_is_refused_and_named(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    assert lock_path(url) == tmp_path / "s.db.lock"
    assert lock_path("postgresql://u@h/db") is None and lock_path("sqlite://") is None
    held = rf"pid {os.getpid()} on {socket.gethostname()} \(daemon, since "
    with hold(url, "daemon", SystemClock().now()), pytest.raises(StoreHeld, match=held):
        hold(url, "run --once", SystemClock().now())
    with hold(url, "run --once", SystemClock().now()):  # released: taken again
        found = holder(tmp_path / "s.db.lock")
        assert found is not None and found.command == "run --once"
    with hold("postgresql://u@h/db", "daemon", SystemClock().now()):  # PostgreSQL: leases, no lock
        pass


def test_run_once_is_refused_while_another_engine_holds_the_store(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(workspace / "s.db")
    args = ["run", "--once", "--db", url, "--journeys", str(workspace / "journeys"),
            "--outbox", str(workspace / "outbox"), "--now", "2024-05-01T09:00:00Z"]  # fmt: skip
    with hold(url, "daemon", SystemClock().now()):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"holds the store {workspace / 's.db'}: pid {os.getpid()} on " in err
        assert not (workspace / "outbox").exists()  # nothing ran
    assert main(args) == 0  # the holder is gone


def test_two_daemons_started_together_one_refuses_and_no_key_is_sent_twice(workspace: Path) -> None:
    common = ("--interval", "0.3", "--max-ticks", "6", "--simulated-clock", "2024-05-01T09:00:00Z")
    started = time.monotonic()
    procs = [daemon(workspace, "a", *common), daemon(workspace, "b", *common)]
    while all(p.poll() is None for p in procs) and time.monotonic() - started < 60:
        time.sleep(0.05)
    first_out = [p.poll() is not None for p in procs]
    results = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], results
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert first_out == [i == loser for i in range(2)]  # refused at start, while the other one runs
    err = results[loser][1]
    assert f"pid {procs[winner].pid} on {socket.gethostname()} (daemon, since " in err, err
    assert "Traceback" not in err and "stopped cleanly" not in err
    assert not (workspace / f"attempts-{'ab'[loser]}.jsonl").exists()  # it never reached a provider
    lines = (workspace / f"attempts-{'ab'[winner]}.jsonl").read_bytes().splitlines()
    keys = Counter(orjson.loads(line)["key"] for line in lines)
    assert len(keys) == 600  # both sends of every customer
    assert max(keys.values()) == 1


def test_a_killed_holders_lock_is_taken_over(workspace: Path) -> None:
    first = daemon(workspace, "a", "--interval", "60", "--simulated-clock", "2024-05-01T09:00:00Z")
    try:
        deadline = time.monotonic() + 60
        found = None
        while time.monotonic() < deadline and (found is None or found.pid != first.pid):
            time.sleep(0.1)
            found = holder(workspace / "s.db.lock")
        assert found is not None and found.pid == first.pid
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = daemon(workspace, "b", "--interval", "0.2", "--max-ticks", "2",
                    "--simulated-clock", "2024-05-01T09:00:00Z")  # fmt: skip
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "stopped cleanly after 2 tick(s)" in err and out == ""  # its lines are its log, on stderr
    found = holder(workspace / "s.db.lock")
    assert found is not None and found.pid == second.pid and found.command == "daemon"
