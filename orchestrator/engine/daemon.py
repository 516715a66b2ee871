"""The daemon: ticks on an APScheduler 3.x schedule until SIGTERM or SIGINT, then stops cleanly.

APScheduler only times the ticks; durable per-customer waits live in the instances table (``wake_at_us``),
never in the scheduler. The tick job coalesces missed runs and never overlaps itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("orchestrator.daemon")


def run_daemon(tick: Callable[[], object], interval_seconds: float, *, max_ticks: int | None = None) -> int:
    """Run ``tick`` every ``interval_seconds`` (first run at once) until a stop signal; returns the number
    of ticks run. A tick in progress when the signal arrives finishes before the process stops."""
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
