"""Crash safety on the default SQLite store: a send whose delivery was not recorded is re-dispatched with
the same key after a restart; the daemon killed with SIGKILL at random points loses and doubles nothing at
the file outbox, and against an SMTP server that does not de-duplicate it keeps the promise of each
delivery mode (small runs of ``benchmarks/crash.py``); a second SIGTERM shortens the drain and records
what was sent."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter, DeliveryResult, OutgoingMessage
from orchestrator.channels._outbox import OutboxAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine._daemon import AttemptLog, advancing, resume_simulated_clock
from orchestrator.engine._dispatch import DispatchContext
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import open_store, sqlite_url
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import T0, at, write_files

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = """\
id: hello
version: 1
entry:
  segment: cohort == "x"
holdout: 0
steps:
  - id: greet
    send: {channel: webhook, endpoint: crm, template: m.json}
"""


class ProcessDies(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


class DiesAfterDelivering:
    """Delivers through ``inner``, then the process "dies" before the dispatcher records the answer."""

    def __init__(self, inner: AttemptLog) -> None:
        self.inner = inner
        self.channels = inner.channels

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        self.inner.send(message)
        raise ProcessDies


def test_a_delivery_not_recorded_is_sent_again_with_its_key_on_restart(tmp_path: Path) -> None:
    write_files(tmp_path, {"journeys/hello.yaml": JOURNEY, "templates/m.json": '{"c": "{{ customer.id }}"}'})
    store = open_store(sqlite_url(tmp_path / "s.db"))
    with store.begin() as conn:
        upsert_customers(conn, [{"id": "ann", "cohort": "x"}], now_us=to_us(T0))
    outbox, attempts = tmp_path / "outbox", tmp_path / "attempts.jsonl"
    workspace = load_workspace([tmp_path / "journeys"])
    dying = DiesAfterDelivering(AttemptLog(OutboxAdapter(outbox, durable=False), attempts))
    with pytest.raises(ProcessDies):
        Engine(store, workspace, ChannelRouter([dying]), SimulatedClock(T0)).tick()
    with store.connect() as conn:
        # Marked in flight before the provider call, in a commit of its own: the answer was never recorded.
        assert conn.execute(text("SELECT status FROM messages")).scalars().all() == ["sending"]

    restarted = Engine(
        store,
        workspace,
        ChannelRouter([AttemptLog(OutboxAdapter(outbox, durable=False), attempts)]),
        SimulatedClock(T0),
    )
    report = restarted.dispatch()  # what the daemon does before its first tick
    assert (report.requeued, report.delivered) == (1, 1)  # at_least_once: sent again, same key
    with store.connect() as conn:
        key, status = conn.execute(text("SELECT idempotency_key, status FROM messages")).one()
    assert status == "sent"
    logged = [orjson.loads(line)["key"] for line in attempts.read_bytes().splitlines()]
    assert logged == [key, key]  # the same key twice: the provider's record, not a second message
    assert len(list((outbox / "webhook").iterdir())) == 1
    store.dispose()


def test_simulated_daemon_clock_resumes_after_the_last_stored_tick(tmp_path: Path) -> None:
    write_files(tmp_path, {"journeys/hello.yaml": JOURNEY, "templates/m.json": "{}"})
    store = open_store(sqlite_url(tmp_path / "s.db"))
    clock = SimulatedClock(T0)
    engine = Engine(store, load_workspace([tmp_path / "journeys"]), ChannelRouter(), clock)
    step = at("2024-05-01T15:00:00Z") - T0
    tick = advancing(engine.tick, clock, step)
    tick()
    tick()
    assert clock.now() == T0 + 2 * step
    later = SimulatedClock(T0)
    resume_simulated_clock(store, later, T0, step)
    assert later.now() == T0 + 2 * step  # one step after the second (last) tick
    store.dispose()


@pytest.mark.slow
def test_daemon_killed_at_random_points_delivers_everything_once(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "crash.py"), "--customers", "300", "--kills", "8",
         "--max-delay", "1.5", "--seed", "7", "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["expected"] == figures["delivered"] == 900
    assert (figures["duplicates"], figures["lost"], figures["unexpected"]) == (0, 0, 0)
    assert figures["ledger"] == {"sent": 900} and figures["ledger_duplicate_steps"] == 0
    assert figures["instances"] == {"completed": 300}
    assert figures["kills"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["at_least_once", "at_most_once"])
def test_killed_daemon_against_an_smtp_server_keeps_the_promise_of_its_delivery_mode(
    tmp_path: Path, mode: str
) -> None:
    # The server (in the benchmark process) counts every message it receives and keeps no memory of keys;
    # it answers 20 ms after receiving, and each kill comes after 1..150 more receipts: in dispatch.
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "crash.py"), "--customers", "200", "--kills", "5",
         "--provider", "smtp", "--mode", mode, "--provider-delay", "0.02", "--kill-at-receipts", "150",
         "--max-delay", "20", "--seed", "7", "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    f = json.loads(out.stdout.strip().splitlines()[-1])
    assert f["expected"] == 600 and f["kills"] == 5 and f["lost"] == 0 and f["sent_not_received"] == 0
    assert f["instances"] == {"completed": 200} and f["ledger_duplicate_steps"] == 0
    assert f["kills_with_rows_in_flight"] >= 3  # the kills did land while messages were in flight
    # At most one group in doubt: at_most_once keeps the smallest group (8); at_least_once groups grow
    # while commits cost more than a tenth of the provider calls (a loaded machine), up to the dispatch's
    # largest group (engine._dispatch._send_batch), since a message sent again keeps its key.
    assert f["max_in_flight_at_a_kill"] <= (8 if mode == "at_most_once" else DispatchContext.max_group)
    if mode == "at_least_once":
        assert f["uncertain"] == 0 and f["ledger"] == {"sent": 600} and f["delivered"] == 600
        assert f["duplicates"] <= f["in_flight_at_kills"]
    else:
        assert f["duplicates"] == 0 and 0 < f["uncertain"] <= f["in_flight_at_kills"]
        assert f["ledger"] == {"sent": 600 - f["uncertain"], "uncertain": f["uncertain"]}
        assert f["expected"] == f["delivered"] + f["uncertain"] - f["uncertain_received"]


def _crash_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_benchmark", ROOT / "benchmarks" / "crash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.mark.slow
def test_a_second_sigterm_shortens_the_drain_and_records_what_was_sent(tmp_path: Path) -> None:
    crash = _crash_benchmark()
    customers = 2000
    url = crash.setup(tmp_path, customers, "smtp")
    server = crash.SmtpProvider(delay_s=0.005)
    provider = server.start()
    try:
        proc = crash.daemon(tmp_path, url, provider, "email", "at_least_once")
        receipts = server.receipts
        _wait(lambda: receipts.total() >= 100, 120, "the first 100 deliveries")
        proc.send_signal(signal.SIGTERM)  # finish the current tick...
        first = receipts.total()
        _wait(lambda: receipts.total() >= first + 20, 30, "20 more deliveries")
        proc.send_signal(signal.SIGTERM)  # ...no: stop once the messages in flight are recorded
        assert proc.wait(timeout=60) == 0
        log = (tmp_path / "daemon.log").read_text()
        assert "Traceback" not in log and "stopped cleanly" in log and "received SIGTERM again" in log
        store = open_store(url, create=False)
        with store.connect() as conn:
            rows = conn.execute(text("SELECT idempotency_key, status FROM messages")).all()
        ledger: dict[str, str] = {str(key): str(status) for key, status in rows}
        store.dispose()
        got = dict(receipts.by_key)
        # Every delivery the server got is recorded sent; nothing is left in flight; the rest waits.
        assert {ledger[key] for key in got} == {"sent"}
        assert sum(1 for status in ledger.values() if status == "sent") == len(got)
        assert "sending" not in ledger.values()
        queued = sum(1 for status in ledger.values() if status == "queued")
        assert queued > 0 and len(got) + queued == customers
        assert max(got.values()) == 1

        # Restarted, the daemon sends what was left, once.
        proc = crash.daemon(tmp_path, url, provider, "email", "at_least_once")
        _wait(lambda: len(receipts.by_key) >= customers, 300, "the rest of the welcome messages")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert sum(receipts.by_key.values()) - len(receipts.by_key) <= 8  # at most one group in doubt
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
