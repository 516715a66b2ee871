"""The daemon: ticks on an APScheduler 3.x schedule until SIGTERM or SIGINT, then stops cleanly (a second
signal shortens the stop: see ``run_daemon``).

APScheduler only times the ticks; durable per-customer waits live in the instances table (``wake_at_us``),
never in the scheduler. The tick job coalesces missed runs and never overlaps itself.

A daemon that starts first reconciles from the ledger, before the first tick: messages left ``queued`` by a
process that stopped are dispatched, and those it left ``sending`` (handed to the provider, answer not
recorded) are sent again with their ledger key on ``at_least_once`` channels, or recorded ``uncertain`` on
``at_most_once`` ones (``engine.dispatch``).

For crash tests the daemon can run on a simulated clock that moves a fixed step per tick and resumes
after the last stored tick, can log every delivery attempt (``AttemptLog``) and can deliver to a local
SMTP server or SMS API that does not de-duplicate (``crash_test_provider``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import orjson
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from orchestrator.channels.base import Adapter, DeliveryResult, OutgoingMessage
from orchestrator.clock import SimulatedClock, from_us
from orchestrator.engine.tick import ClockBehind, failure_text
from orchestrator.store import Store
from orchestrator.store import journeys as sj

log = logging.getLogger("orchestrator.daemon")


def run_daemon(
    tick: Callable[[], object],
    interval_seconds: float,
    *,
    max_ticks: int | None = None,
    on_start: Callable[[], object] | None = None,
    hurry: threading.Event | None = None,
) -> int:
    """Run ``on_start`` once (reconciliation), then ``tick`` every ``interval_seconds`` (first run at once)
    until a stop signal; returns the number of ticks run.

    The first SIGTERM or SIGINT lets the tick in progress (or the reconciliation) finish, then stops. A
    second one sets ``hurry``, which the dispatch in progress reads before each group of provider calls:
    it records the group in flight and takes no more (what it did not reach stays queued for the next
    start). Later signals are only logged. The handlers only set flags; the main thread, waiting in short
    steps, stops the scheduler and waits for the tick, so no signal lands in the middle of a shutdown."""
    scheduler = BackgroundScheduler(timezone="UTC")
    count = 0
    stopping = threading.Event()  # a stop signal arrived, or max_ticks were run
    idle = threading.Event()  # no tick is running
    idle.set()
    signals_seen = 0
    failing: str | None = None  # the last tick's failure, logged once while it repeats

    def job() -> None:
        nonlocal count, failing
        idle.clear()
        try:
            if stopping.is_set():
                return
            try:
                tick()
            except Exception as exc:
                text = failure_text(exc)
                if text != failing:
                    log.error("tick failed; the next tick will try again: %s", text)
                    failing = text
                log.debug("the tick's traceback", exc_info=True)
            else:
                if failing is not None:
                    log.warning("ticks work again")
                    failing = None
            count += 1  # one job at a time (max_instances=1)
            if max_ticks is not None and count >= max_ticks:
                stopping.set()
        finally:
            idle.set()

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.warning("received %s: finishing the current tick, then stopping", name)
            stopping.set()
        elif signals_seen == 2:
            log.warning(
                "received %s again: stopping once the messages in flight are recorded; the rest stay "
                "queued for the next start",
                name,
            )
            if hurry is not None:
                hurry.set()
        else:
            log.warning("received %s: already stopping once the messages in flight are recorded", name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_start is not None:
            on_start()
        if stopping.is_set():
            return 0
        scheduler.add_job(
            job,
            IntervalTrigger(seconds=interval_seconds),
            id="tick",
            coalesce=True,  # a backlog of missed runs becomes one run
            max_instances=1,  # never two ticks at once
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),  # the scheduler's own timing is wall-clock by nature
        )
        scheduler.start()
        try:
            while not stopping.wait(0.1):  # short waits: the main thread stays free for signals
                pass
        finally:
            scheduler.shutdown(wait=False)
            while not idle.wait(0.1):  # the tick in progress finishes (a job starting now does nothing)
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return count


def resume_simulated_clock(store: Store, clock: SimulatedClock, start: datetime, step: timedelta) -> None:
    """Set ``clock`` to ``start``, or one ``step`` after the last tick stored if that is later (a restarted
    daemon carries on where the previous one got to)."""
    with store.connect() as conn:
        last = sj.last_tick(conn) if store.is_initialised() else None
    clock.set(start if last is None else max(start, from_us(last[0]) + step))


def waiting_for_clock(tick: Callable[[], object]) -> Callable[[], object]:
    """``tick``, skipped while the clock is before the last stored tick (``ClockBehind``: the clock stepped
    back): the daemon waits for its clock to pass the last tick, saying so once when it starts waiting and
    once when it ticks again."""
    waiting = False

    def run() -> object:
        nonlocal waiting
        try:
            report = tick()
        except ClockBehind as exc:
            if not waiting:
                log.warning("%s; skipping ticks until the clock passes the last tick", exc)
            waiting = True
            return None
        if waiting:
            log.warning("the clock has passed the last tick; ticking again")
            waiting = False
        return report

    return run


def advancing(tick: Callable[[], object], clock: SimulatedClock, step: timedelta) -> Callable[[], object]:
    """``tick`` followed by moving ``clock`` one ``step`` on (only after a tick that completed)."""

    def run() -> object:
        report = tick()
        clock.advance(step)
        return report

    return run


class AttemptLog:
    """An adapter that appends every delivery attempt (key, customer, journey, step, channel) as one JSON
    line to ``path`` before handing the message to ``inner``: a provider's view of what it was asked,
    repeats included. Each line is one ``write`` to a file opened for appending, so a process killed
    mid-attempt leaves whole lines."""

    def __init__(self, inner: Adapter, path: Path) -> None:
        self.inner = inner
        self.channels = inner.channels
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        line = {
            "key": message.idempotency_key,
            "customer": message.customer_id,
            "journey": message.journey_id,
            "step": message.step,
            "channel": message.channel,
        }
        os.write(self._fd, orjson.dumps(line) + b"\n")
        return self.inner.send(message)


def crash_test_provider(url: str | None, outbox: Path) -> Adapter:
    """The adapter the crash tests deliver through: the file outbox (``url`` None, no fsync: the tests
    kill processes, not the machine), an SMTP server without TLS (``smtp://HOST:PORT``: the email
    channel) or a Twilio-style SMS API (``http://HOST:PORT/PATH``). The network ones do not de-duplicate
    across processes: a key sent again after a restart reaches the server again."""
    from urllib.parse import urlsplit

    from orchestrator.channels.outbox import OutboxAdapter

    if url is None:
        return OutboxAdapter(outbox, durable=False)
    parts = urlsplit(url)
    if parts.scheme == "smtp" and parts.hostname and parts.port:
        from orchestrator.channels.mail import EmailSettings
        from orchestrator.channels.smtp import SmtpAdapter, SmtpSettings

        return SmtpAdapter(
            SmtpSettings(parts.hostname, parts.port, security="none"),
            EmailSettings(sender="Crash Test <crash@example.com>", message_id_domain="example.com"),
        )
    if parts.scheme in ("http", "https"):
        from orchestrator.channels.sms import HttpSmsAdapter

        return HttpSmsAdapter(url, sender="+12025550100", account_sid="crash", auth_token="test")
    raise ValueError(f"{url!r}: expected smtp://HOST:PORT or http://HOST:PORT/PATH")
