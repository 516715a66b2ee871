"""Crash safety on the default SQLite store: a send whose delivery was not recorded is re-dispatched with
the same key after a restart, and the daemon killed with SIGKILL at random points loses and doubles
nothing (a small run of ``benchmarks/crash.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from steps_world import at, write_files

from orchestrator.channels.base import ChannelRouter, DeliveryResult, OutgoingMessage
from orchestrator.channels.outbox import OutboxAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine.daemon import AttemptLog, advancing, resume_simulated_clock
from orchestrator.engine.tick import Engine
from orchestrator.engine.workspace import load_workspace
from orchestrator.store import open_store, sqlite_url
from orchestrator.store.customers import upsert_customers

ROOT = Path(__file__).resolve().parents[1]
T0 = at("2024-05-01T09:00:00Z")
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
