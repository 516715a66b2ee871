"""The daemon: ticks on an APScheduler 3.x schedule until SIGTERM or SIGINT, then stops cleanly.

APScheduler only times the ticks; durable per-customer waits live in the instances table (``wake_at_us``),
never in the scheduler. The tick job coalesces missed runs and never overlaps itself.

A daemon that starts first reconciles from the ledger: messages left ``queued`` by a process that died
(between the tick's commit and the provider's answer being recorded) are dispatched again with their
ledger key, which the provider recognises, before the first tick.

For crash tests the daemon can run on a simulated clock that moves a fixed step per tick and resumes
after the last stored tick, and can log every delivery attempt (``AttemptLog``).
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
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from orchestrator.channels.base import Adapter, DeliveryResult, OutgoingMessage
from orchestrator.clock import SimulatedClock, from_us
from orchestrator.engine.tick import ClockBehind
from orchestrator.store import Store
from orchestrator.store import journeys as sj

log = logging.getLogger("orchestrator.daemon")


def run_daemon(
    tick: Callable[[], object],
    interval_seconds: float,
    *,
    max_ticks: int | None = None,
    on_start: Callable[[], object] | None = None,
) -> int:
    """Run ``on_start`` once (reconciliation), then ``tick`` every ``interval_seconds`` (first run at once)
    until a stop signal; returns the number of ticks run. A tick in progress when the signal arrives
    finishes before the process stops."""
    if on_start is not None:
        on_start()
    scheduler = BlockingScheduler(timezone="UTC")
    count = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal count
        try:
            tick()
        except Exception:
            log.exception("tick failed; the next tick will try again")
        with lock:
            count += 1
            done = max_ticks is not None and count >= max_ticks
        if done:
            scheduler.shutdown(wait=False)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, finishing the current tick and stopping", signal.Signals(signum).name)
        scheduler.shutdown(wait=True)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    scheduler.add_job(
        job,
        IntervalTrigger(seconds=interval_seconds),
        id="tick",
        coalesce=True,  # a backlog of missed runs becomes one run
        max_instances=1,  # never two ticks at once
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),  # the scheduler's own timing is wall-clock by nature
    )
    try:
        scheduler.start()
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
