"""The daemon: a tick that keeps failing outside any journey (the store down, the disk full) is logged in
one line when its error appears or changes, never a traceback per tick, and the recovery is logged once;
a real daemon process logs one line per tick (text or JSON) and picks up journey edits on SIGHUP and when
the files change, while a broken edit is reported and the running version keeps sending."""

from __future__ import annotations

import contextlib
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.engine._daemon import TICK_COUNTS, TICK_TIMINGS, run_daemon


def test_a_failing_tick_is_one_line_per_change_not_a_traceback_per_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[BaseException | None] = [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database is locked"),
        ValueError("customer ann@example.com has a bad value"),  # a message that may hold customer data
        None,
        None,
    ]
    ran = []

    def tick() -> None:
        ran.append(1)
        outcome = outcomes[len(ran) - 1]
        if outcome is not None:
            raise outcome

    caplog.set_level(logging.INFO, logger="orchestrator.daemon")
    assert run_daemon(tick, 0.01, max_ticks=len(outcomes)) == len(outcomes)
    records = [r for r in caplog.records if r.name == "orchestrator.daemon"]
    failed = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert len(failed) == 2, failed  # the locked store once (three ticks), then the new error once
    assert failed[0].startswith("tick failed; the next tick will try again: OperationalError")
    assert failed[1].startswith("tick failed; the next tick will try again: ValueError")
    assert "ann@example.com" not in failed[1]
    assert all(r.exc_info is None for r in records if r.levelno >= logging.INFO)
    assert [r.getMessage() for r in records if r.levelno == logging.WARNING] == ["ticks work again"]


# ------------------------------------------------------------------------------------------ a real daemon
# A daemon process on a simulated clock (an hour per tick) ingesting customers dropped in its inbox, one
# email journey whose entrants are sent at once, the file outbox, its log in a file. Waits have a generous
# deadline; nothing asserts how long anything took.

JOURNEY = """\
id: welcome
version: 1
entry:
  segment: cohort == "x"
holdout: 0
steps:
  - id: greet
    send:
      channel: email
      subject: "Hello"
      template: welcome.txt
"""
V2 = JOURNEY.replace("version: 1", "version: 2").replace('"Hello"', '"Hello again, from version two"')


def workspace(folder: Path) -> Path:
    (folder / "journeys").mkdir()
    (folder / "templates").mkdir()
    (folder / "journeys" / "welcome.yaml").write_text(JOURNEY)
    (folder / "templates" / "welcome.txt").write_text("Hi {{ customer.first_name }}\n")
    return folder / "journeys" / "welcome.yaml"


def drop_customers(folder: Path, name: str, first: int, last: int) -> None:
    """Customers ``first`` to ``last - 1`` into the inbox (written under a ``.part`` name, then renamed)."""
    inbox = folder / "inbox" / "customers"
    inbox.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"cust-{i:04d},Ann{i},person{i}@example.com,true,x\n" for i in range(first, last))
    (inbox / f"{name}.csv.part").write_text("customer_id,first_name,email,consent_email,cohort\n" + rows)
    (inbox / f"{name}.csv.part").rename(inbox / f"{name}.csv")


def sent_by_version(folder: Path) -> dict[int, int]:
    if not (folder / "o.db").exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(folder / "o.db")) as conn:
            rows = conn.execute(
                "SELECT version, COUNT(*) FROM messages WHERE status = 'sent' GROUP BY version"
            ).fetchall()
    except sqlite3.OperationalError:  # the daemon has not made its tables yet
        return {}
    return dict(rows)


def subjects(folder: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in (folder / "outbox" / "email").glob("*.eml"):
        for line in path.read_text().splitlines():
            if line.startswith("Subject: "):
                found[line.removeprefix("Subject: ")] += 1
    return found


class Daemon:
    """``orchestrator daemon`` on ``folder``'s workspace, its log (stderr) in ``folder/daemon.log``."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.log_path = folder / "daemon.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "daemon", "--db", f"sqlite:///{folder / 'o.db'}",
                 "--journeys", str(folder / "journeys"), "--outbox", str(folder / "outbox"),
                 "--inbox", str(folder / "inbox"), "--interval", "0.2",
                 "--simulated-clock", "2024-05-01T09:00:00Z", *extra],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=folder,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text()

    def lines(self, containing: str) -> list[str]:
        return [line for line in self.log().splitlines() if containing in line]

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            assert self.proc.poll() is None, f"the daemon stopped while waiting for {what}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {what} after 120 s:\n{self.log()}"
            time.sleep(0.05)

    def ticks(self) -> int:
        """Tick lines so far, in either format."""
        return len(self.lines("orchestrator.daemon: tick ")) + len(self.lines('"msg":"tick"'))

    def stop(self) -> str:
        """SIGTERM, then the whole log once it stopped cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        log = self.log()
        assert self.proc.returncode == 0, log
        assert out == "" and "Traceback" not in log, log
        assert "person" not in log and "@example.com" not in log and "cust-" not in log  # no customer data
        return log


def test_a_journey_edit_is_picked_up_after_sighup(tmp_path: Path) -> None:
    path = workspace(tmp_path)
    daemon = Daemon(tmp_path, "--watch", "0")  # only SIGHUP reloads
    try:
        drop_customers(tmp_path, "first", 0, 3)
        daemon.wait_for("3 messages of version 1", lambda: sent_by_version(tmp_path) == {1: 3})
        path.write_text(V2)
        seen = daemon.ticks()
        daemon.wait_for("three more ticks", lambda: daemon.ticks() >= seen + 3)
        assert "workspace reloaded" not in daemon.log()  # --watch 0: the file alone changes nothing
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("the reload", lambda: bool(daemon.lines("workspace reloaded")))
        drop_customers(tmp_path, "second", 3, 6)
        daemon.wait_for("3 messages of version 2", lambda: sent_by_version(tmp_path) == {1: 3, 2: 3})
    finally:
        log = daemon.stop()
    assert subjects(tmp_path) == {"Hello": 3, "Hello again, from version two": 3}
    [line] = [line for line in log.splitlines() if "workspace reloaded" in line]
    assert "INFO orchestrator.reload: workspace reloaded; the next tick runs it trigger=sighup " in line
    assert 'versions=welcome:2 changes="welcome v1 -> v2"' in line
    assert "received SIGHUP: reloading the workspace" in log


def test_a_journey_edit_is_picked_up_when_its_file_changes(tmp_path: Path) -> None:
    path = workspace(tmp_path)
    daemon = Daemon(tmp_path)  # looks at the files every second
    try:
        drop_customers(tmp_path, "first", 0, 3)
        daemon.wait_for("3 messages of version 1", lambda: sent_by_version(tmp_path) == {1: 3})
        path.write_text(V2)
        daemon.wait_for("the reload", lambda: bool(daemon.lines("workspace reloaded")))
        drop_customers(tmp_path, "second", 3, 6)
        daemon.wait_for("3 messages of version 2", lambda: sent_by_version(tmp_path) == {1: 3, 2: 3})
    finally:
        log = daemon.stop()
    assert subjects(tmp_path) == {"Hello": 3, "Hello again, from version two": 3}
    [line] = [line for line in log.splitlines() if "workspace reloaded" in line]
    assert f'trigger=files versions=welcome:2 changes="welcome v1 -> v2" files={path}' in line


def test_a_broken_edit_is_reported_and_the_running_version_keeps_sending_until_fixed(tmp_path: Path) -> None:
    path = workspace(tmp_path)
    daemon = Daemon(tmp_path, "--watch", "0.2", "--log-format", "json")

    def records(msg: str) -> list[dict[str, Any]]:
        return [r for r in map(orjson.loads, daemon.log().splitlines()) if r["msg"].startswith(msg)]

    try:
        drop_customers(tmp_path, "first", 0, 3)
        daemon.wait_for("3 messages of version 1", lambda: sent_by_version(tmp_path) == {1: 3})
        path.write_text(V2.replace("holdout: 0", "holdout: [0"))  # a YAML error
        daemon.wait_for("the report", lambda: bool(records("workspace not reloaded")))
        drop_customers(tmp_path, "second", 3, 6)  # sent by the running version
        daemon.wait_for("3 more of version 1", lambda: sent_by_version(tmp_path) == {1: 6})
        seen = daemon.ticks()
        daemon.wait_for("five more ticks", lambda: daemon.ticks() >= seen + 5)
        path.write_text(V2.replace("  - id: greet", "  - id: greet\n    sned: x"))  # an unknown key
        daemon.wait_for("the second report", lambda: len(records("workspace not reloaded")) == 2)
        path.write_text(V2)
        daemon.wait_for("the reload", lambda: bool(records("workspace reloaded")))
        drop_customers(tmp_path, "third", 6, 9)
        daemon.wait_for("3 messages of version 2", lambda: sent_by_version(tmp_path) == {1: 6, 2: 3})
    finally:
        daemon.stop()
    yaml_error, unknown_key = records("workspace not reloaded")  # each problem set reported once
    assert yaml_error["level"] == "error" and yaml_error["logger"] == "orchestrator.reload"
    assert yaml_error["msg"] == "workspace not reloaded: 1 problem(s); the running journeys keep running"
    assert yaml_error["problems"] == [f"{path}:6:6: YAML syntax: expected ',' or ']', but got ':'"]
    assert yaml_error["versions"] == {"welcome": 1} and yaml_error["trigger"] == "files"
    assert unknown_key["problems"] == [f"{path}:8:5: unknown key 'sned'; did you mean 'send'?"]
    [reloaded] = records("workspace reloaded")
    assert reloaded["msg"] == "workspace reloaded (the earlier problems are fixed); the next tick runs it"
    assert reloaded["changes"] == ["welcome v1 -> v2"]
    assert subjects(tmp_path) == {"Hello": 6, "Hello again, from version two": 3}


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_one_log_line_per_tick_in_either_format(tmp_path: Path, log_format: str) -> None:
    workspace(tmp_path)
    drop_customers(tmp_path, "first", 0, 3)
    daemon = Daemon(tmp_path, "--max-ticks", "3", "--log-format", log_format)
    daemon.proc.wait(timeout=120)
    log = daemon.stop()
    lines = log.splitlines()
    if log_format == "json":
        records = [orjson.loads(line) for line in lines]  # every line is one JSON object
        assert all(list(r)[:4] == ["ts", "level", "logger", "msg"] for r in records)
        ticks = [r for r in records if r["msg"] == "tick"]
        assert [t["number"] for t in ticks] == [1, 2, 3]
        for tick in ticks:  # every tick line has every key
            assert set(TICK_COUNTS) | set(TICK_TIMINGS) | {"number", "at", "journeys", "idle"} <= set(tick)
        first, *idle = ticks
        assert (first["sent"], first["entered"], first["inbox_customers"], first["idle"]) == (3, 3, 3, False)
        assert first["at"] == "2024-05-01T09:00:00Z" and first["journeys"] == 1
        assert [t["idle"] for t in idle] == [True, True] and idle[1]["at"] == "2024-05-01T11:00:00Z"
        start = records[0]
        assert start["msg"].startswith("daemon started: 1 journeys, a tick every 0.2s")
        assert start["store"] == f"sqlite:///{tmp_path / 'o.db'}" and start["versions"] == {"welcome": 1}
        assert start["interval"] == 0.2 and start["watch"] == 1.0
        assert records[-1]["msg"] == "daemon stopped cleanly after 3 tick(s)"
    else:
        ticks = [line for line in lines if " INFO orchestrator.daemon: tick " in line]
        assert len(ticks) == 3
        assert " tick number=1 at=2024-05-01T09:00:00Z journeys=1 entered=3 stepped=3 " in ticks[0]
        assert " sent=3 " in ticks[0] and " dispatch_s=" in ticks[0] and " failed=" not in ticks[0]
        assert ticks[2].split(" INFO ")[1] == (
            f"orchestrator.daemon: tick number=3 at=2024-05-01T11:00:00Z idle=true {ticks[2].split()[-1]}"
        )
        assert ticks[2].split()[-1].startswith("seconds=")
        assert f"store=sqlite:///{tmp_path / 'o.db'} versions=welcome:1 interval=0.2" in lines[0]
