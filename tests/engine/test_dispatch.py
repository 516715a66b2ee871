"""Dispatch after the tick: retries with backoff against a real local SMS provider, permanent failures that
suppress the number for later sends, giving up after the last attempt, a crash between the provider call
and the recording of it, and rendering that happens at dispatch (not in the stepping transaction)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from channel_servers import LocalHttpServer, Reply, Request
from sqlalchemy import Connection

from orchestrator.channels import HttpSmsAdapter, SmsRules
from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._delivery import Backoff
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.clock import to_us
from orchestrator.engine._dispatch import DispatchContext, DispatchReport, dispatch_queued
from orchestrator.store import Store
from orchestrator.testing import SimClock, World, at, write_files

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

JOURNEY = """\
id: texts
version: 1
segment: tier == "gold"
holdout: 0
steps:
  - id: first
    send: {channel: sms, template: t.txt}
  - wait: 1h
  - id: second
    send: {channel: sms, template: t.txt}
"""
GOOD, BAD = "+14155550123", "+14155550100"


class Provider:
    """A Twilio-style endpoint: the first request of each idempotency key answers 503, later ones 201;
    one number is refused for good (400, code 21211: not a valid number)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []  # (number, key)

    def __call__(self, request: Request) -> Reply:
        number = parse_qs(request.body.decode())["To"][0]
        key = request.headers["idempotency-key"]
        self.requests.append((number, key))
        self.seen[key] += 1
        if number == BAD:
            return Reply(400, b'{"code": 21211, "message": "The \'To\' number is not a valid phone number."}')
        if self.seen[key] == 1:
            return Reply(503, b"<html>Service Unavailable</html>")
        return Reply(201, json.dumps({"sid": f"SM{len(self.requests)}"}).encode())


@pytest.fixture
def provider() -> Iterator[tuple[Provider, LocalHttpServer]]:
    answers = Provider()
    with LocalHttpServer(answers) as server:
        yield answers, server


def sms_world(tmp_path: Path, store_url: str, server: LocalHttpServer) -> World:
    write_files(tmp_path, {"journeys/texts.yaml": JOURNEY, "templates/t.txt": "Hi {{ customer.id }}"})
    adapter = HttpSmsAdapter(
        server.url("/Messages.json"),
        sender="+14155550999",
        account_sid="AC1",
        auth_token="tok",
        rules=SmsRules(default_region="US"),
        timeout_s=2.0,
    )
    people = [
        {"id": "good", "tier": "gold", "consent_sms": True, "phone": GOOD},
        {"id": "bad", "tier": "gold", "consent_sms": True, "phone": BAD},
    ]
    made = World(tmp_path, store=store_url, clock=SimClock(at("2024-05-06T10:00:00Z")), adapter=adapter)
    made.add_customers(*people)
    return made


def rows(w: World) -> dict[tuple[str, str], tuple[Any, ...]]:
    found = w.rows(
        "SELECT c.id, m.step, m.status, m.reason, m.attempts, m.next_attempt_us, m.idempotency_key, m.body "
        "FROM messages m JOIN customers c ON c.key = m.customer_key"
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in found}


def test_transient_errors_are_retried_and_permanent_ones_suppress_the_number(
    tmp_path: Path, store_url: str, provider: tuple[Provider, LocalHttpServer]
) -> None:
    answers, server = provider
    w = sms_world(tmp_path, store_url, server)
    t0 = w.clock.now()
    w.tick()
    got = rows(w)
    status, reason, attempts, next_us, key, _ = got[("good", "first")]
    assert (status, attempts) == ("queued", 1) and "http_503" in reason
    # The default backoff: 30 s, less up to half of it as jitter.
    assert to_us(t0) + 15_000_000 <= next_us <= to_us(t0) + 30_000_000
    status, reason, attempts, *_ = got[("bad", "first")]
    assert (status, attempts) == ("failed", 1) and "not a valid phone number" in reason
    assert w.rows("SELECT channel, address FROM suppressions") == [("sms", BAD)]

    w.clock.advance(timedelta(seconds=10))  # not due yet: nothing is sent again
    w.tick()
    assert len(answers.requests) == 2
    w.clock.advance(timedelta(seconds=50))
    w.tick()
    status, _, attempts, _, key, body = rows(w)[("good", "first")]
    assert (status, attempts, body) == ("sent", 2, "Hi good")
    assert [k for n, k in answers.requests if n == GOOD] == [key, key]  # the same idempotency key twice

    w.clock.set(t0 + timedelta(hours=1, minutes=1))
    w.tick()
    status, reason, attempts, *_ = rows(w)[("bad", "second")]
    assert status == "suppressed" and reason.startswith("address on the suppression list")
    assert attempts == 0 and [n for n, _ in answers.requests].count(BAD) == 1  # never called again
    assert rows(w)[("good", "second")][0] == "queued"  # its own first attempt met a 503


def test_dispatch_gives_up_after_the_last_attempt(tmp_path: Path, store_url: str) -> None:
    write_files(tmp_path, {"journeys/texts.yaml": JOURNEY, "templates/t.txt": "Hi"})
    adapter = MemoryAdapter()
    w = World(tmp_path, store=store_url, clock=SimClock(at("2024-05-06T10:00:00Z")), adapter=adapter)
    w.add_customers({"id": "a", "tier": "gold", "consent_sms": True, "phone": GOOD})
    adapter.fail_next(10, "retry", "provider down")
    w.tick()  # first attempt (default backoff)
    plan = w.engine.workspace.plans[0]
    context = DispatchContext(
        plan_for=lambda _j, _v: plan,
        renderer_for=w.engine.workspace.renderers.get,
        metrics_for=lambda _p: {},
        backoff=Backoff(base_s=1, cap_s=1, max_attempts=3, jitter=0),
    )
    for _ in range(3):
        w.clock.advance(timedelta(minutes=1))
        dispatch_queued(w.store, ChannelRouter([adapter]), w.clock, context)
    status, reason, attempts, next_us, *_ = rows(w)[("a", "first")]
    assert (status, attempts, next_us) == ("failed", 3, None)
    assert reason == "gave up after 3 attempts: provider down" and len(adapter.attempts) == 3


class CrashOnRecord:
    """A store whose write transactions fail after the first ``allowed`` (settling rows left in flight,
    marking the group ``sending``): the process dies after the provider call, before its outcome is
    recorded."""

    def __init__(self, store: Store, allowed: int = 2) -> None:
        self.store = store
        self.connect = store.connect
        self.allowed = allowed

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        if self.allowed <= 0:
            raise RuntimeError("killed")
        self.allowed -= 1
        with self.store.begin() as conn:
            yield conn


def _crashed_world(tmp_path: Path, store_url: str, adapter: MemoryAdapter) -> tuple[World, DispatchContext]:
    """One message handed to ``adapter``, then the process "dies" before recording the answer."""
    write_files(tmp_path, {"journeys/texts.yaml": JOURNEY, "templates/t.txt": "Hi {{ customer.tier }}"})
    w = World(tmp_path, store=store_url, clock=SimClock(at("2024-05-06T10:00:00Z")), adapter=adapter)
    w.add_customers({"id": "a", "tier": "gold", "consent_sms": True, "phone": GOOD})
    # Stepping alone: the ledger row is queued, with no content yet (rendering waits for dispatch).
    w.engine.dispatch = lambda limit=None: DispatchReport()  # type: ignore[method-assign]
    w.tick()
    assert rows(w)[("a", "first")][0] == "queued" and rows(w)[("a", "first")][5] is None
    plan = w.engine.workspace.plans[0]
    context = DispatchContext(
        plan_for=lambda _j, _v: plan, renderer_for=w.engine.workspace.renderers.get, metrics_for=lambda _p: {}
    )
    with pytest.raises(RuntimeError, match="killed"):
        dispatch_queued(CrashOnRecord(w.store), ChannelRouter([adapter]), w.clock, context)  # type: ignore[arg-type]
    # The row says what happened: handed to the provider (attempt 1), its answer never recorded.
    assert rows(w)[("a", "first")][:3] == ("sending", None, 1) and len(adapter.attempts) == 1
    return w, context


def test_a_crash_before_recording_resends_with_the_same_key_and_delivers_once(
    tmp_path: Path, store_url: str
) -> None:
    adapter = MemoryAdapter()
    w, context = _crashed_world(tmp_path, store_url, adapter)
    report = dispatch_queued(w.store, ChannelRouter([adapter]), w.clock, context)  # at_least_once: default
    assert (report.requeued, report.uncertain, report.delivered) == (1, 0, 1)
    status, reason, attempts, _, key, body = rows(w)[("a", "first")]
    assert (status, attempts, body) == ("sent", 2, "Hi gold") and "sent again with the same key" in reason
    assert [m.idempotency_key for m in adapter.attempts] == [key, key] and len(adapter.sent) == 1


def test_at_most_once_a_message_in_flight_at_a_crash_is_uncertain_and_never_sent_again(
    tmp_path: Path,
    store_url: str,
) -> None:
    adapter = MemoryAdapter()
    w, context = _crashed_world(tmp_path, store_url, adapter)
    context.delivery = {"sms": "at_most_once"}
    report = dispatch_queued(w.store, ChannelRouter([adapter]), w.clock, context)
    assert (report.requeued, report.uncertain, report.delivered) == (0, 1, 0)
    status, reason, attempts, *_ = rows(w)[("a", "first")]
    assert (status, attempts) == ("uncertain", 1) and "not sent again (at_most_once)" in reason
    assert len(adapter.attempts) == 1
    again = dispatch_queued(w.store, ChannelRouter([adapter]), w.clock, context)
    assert (again.uncertain, again.delivered, len(adapter.attempts)) == (0, 0, 1)


class Watching(MemoryAdapter):
    """Records, at each provider call, how many ledger rows are marked in flight and how many are sent;
    each call takes ``delay_s`` (a network provider) or nothing (a local one)."""

    def __init__(self, store: Store, delay_s: float = 0.0) -> None:
        super().__init__()
        self.store = store
        self.delay_s = delay_s
        self.seen: list[tuple[int, int]] = []

    def send(self, message: Any) -> Any:
        with self.store.connect() as conn:
            counts: dict[str, int] = dict(
                conn.exec_driver_sql("SELECT status, COUNT(*) FROM messages GROUP BY status").all()
            )
        self.seen.append((int(counts.get("sending", 0)), int(counts.get("sent", 0))))
        time.sleep(self.delay_s)
        return super().send(message)


@pytest.mark.parametrize(
    ("mode", "delay_s", "window"),
    [("at_most_once", 0.0, 8), ("at_least_once", 0.2, 8), ("at_least_once", 0.0, 128)],
)
def test_each_small_group_is_marked_in_flight_before_the_provider_call_and_recorded_after(
    tmp_path: Path, store_url: str, mode: str, delay_s: float, window: int
) -> None:
    write_files(tmp_path, {"journeys/texts.yaml": JOURNEY, "templates/t.txt": "Hi"})
    people = [
        {"id": f"c{i}", "tier": "gold", "phone": f"+1415555{i:04d}", "consent_sms": True} for i in range(40)
    ]
    w = World(tmp_path, store=store_url, clock=SimClock(at("2024-05-06T10:00:00Z")))
    w.add_customers(*people)
    adapter = Watching(w.store, delay_s)
    w.engine.router = ChannelRouter([adapter])
    w.engine.delivery = {"sms": mode}  # type: ignore[dict-item]
    report = w.tick()
    assert report.delivery.delivered == 40
    # Every call sees its own group marked (at most the window: eight at most once or with a slow
    # provider; a fast provider's at_least_once groups may grow), and every earlier group recorded sent.
    assert all(0 < sending <= window for sending, _ in adapter.seen)
    if window == 8:
        assert max(sent for _, sent in adapter.seen) >= 40 - 8
    assert w.rows("SELECT COUNT(*) FROM messages WHERE status = 'sent' AND inflight_us IS NOT NULL") == [
        (40,)
    ]


OTHER = """id: other
version: 1
segment: tier == "gold"
holdout: 0
steps:
  - id: hello
    send: {channel: sms, template: t.txt}
"""


def test_messages_of_a_journey_left_out_of_the_workspace_stay_queued_without_starving_the_others(
    tmp_path: Path,
    store_url: str,
) -> None:
    write_files(
        tmp_path,
        {"journeys/texts.yaml": JOURNEY, "journeys/other.yaml": OTHER, "templates/t.txt": "Hi"},
    )
    people = [
        {"id": f"c{i}", "tier": "gold", "phone": f"+1415555{i:04d}", "consent_sms": True} for i in range(1200)
    ]
    w = World(tmp_path, store=store_url, clock=SimClock(at("2024-05-06T10:00:00Z")))
    w.add_customers(*people)
    w.engine.dispatch = lambda limit=None: DispatchReport()  # type: ignore[method-assign]
    w.tick()  # 1,200 queued rows per journey; "other" comes first in the ledger
    first = w.rows("SELECT journey_id FROM messages ORDER BY id LIMIT 1")
    assert first == [("other",)]
    w.restart(tmp_path / "journeys" / "texts.yaml")  # "other" is not in this workspace
    report = w.engine.dispatch(limit=1000)
    assert report.delivered == 1000 and report.failed == 0  # one batch, none of it spent on "other"
    w.engine.dispatch()
    counts = dict(w.rows("SELECT journey_id || ':' || status, COUNT(*) FROM messages GROUP BY 1"))
    assert counts == {"other:queued": 1200, "texts:sent": 1200}
    assert {m.journey_id for m in w.adapter.attempts} == {"texts"}  # type: ignore[attr-defined]
    w.restart(tmp_path / "journeys")  # it returns: its messages go out
    w.tick()
    counts = dict(w.rows("SELECT journey_id || ':' || status, COUNT(*) FROM messages GROUP BY 1"))
    assert counts == {"other:sent": 1200, "texts:sent": 1200}
