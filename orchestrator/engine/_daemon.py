"""The daemon: ticks on an APScheduler 3.x schedule until SIGTERM or SIGINT, then stops cleanly (a second
signal shortens the stop: see ``run_daemon``). ``serve`` puts it together for an engine: the start line,
the inbox before each tick, one log line per tick (``tick_fields``: counts and timings, no customer data),
the workspace reloaded on SIGHUP and when its files change (``engine._reload``), the purchase models
the journeys read refitted on schedule in a child process (``engine._refit``), and the weekly report
emailed once a week after a tick (``engine._weekly``).

APScheduler only times the ticks; durable per-customer waits live in the instances table (``wake_at_us``),
never in the scheduler. The tick job coalesces missed runs and never overlaps itself.

A daemon that starts first reconciles from the ledger, before the first tick: messages left ``queued`` by a
process that stopped are dispatched, and those it left ``sending`` (handed to the provider, answer not
recorded) are sent again with their ledger key on ``at_least_once`` channels, or recorded ``uncertain`` on
``at_most_once`` ones (``engine._dispatch``).

For crash tests the daemon can run on a simulated clock that moves a fixed step per tick and resumes
after the last stored tick, can log every delivery attempt (``AttemptLog``) and can deliver to a local
SMTP server or SMS API that does not de-duplicate (``crash_test_provider``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import orjson
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from orchestrator.channels import Adapter, DeliveryResult, OutgoingMessage
from orchestrator.clock import Clock, SimulatedClock, from_us, to_us
from orchestrator.engine._handover import IngestCount, Ingestor
from orchestrator.engine._refit import DEFAULT_REFIT_EVERY, Refitter
from orchestrator.engine._tick import ClockBehind, Engine, TickReport, failure_text
from orchestrator.engine._weekly import WeeklyReporter, WeeklySchedule
from orchestrator.logs import mask_url
from orchestrator.store import Store, last_tick
from orchestrator.store import _leases as leases

if TYPE_CHECKING:
    from orchestrator.engine._reload import WorkspaceFiles
    from orchestrator.engine._workspace import Workspace

log = logging.getLogger("orchestrator.daemon")


def run_daemon(
    tick: Callable[[], object],
    interval_seconds: float,
    *,
    max_ticks: int | None = None,
    on_start: Callable[[], object] | None = None,
    hurry: threading.Event | None = None,
    reload: Callable[[bool], object] | None = None,
    watch_seconds: float | None = None,
) -> int:
    """Run ``on_start`` once (reconciliation), then ``tick`` every ``interval_seconds`` (first run at once)
    until a stop signal; returns the number of ticks run.

    The first SIGTERM or SIGINT lets the tick in progress (or the reconciliation) finish, then stops. A
    second one sets ``hurry``, which the dispatch in progress reads before each group of provider calls:
    it records the group in flight and takes no more (what it did not reach stays queued for the next
    start). Later signals are only logged. The handlers only set flags; the main thread, waiting in short
    steps, stops the scheduler and waits for the tick, so no signal lands in the middle of a shutdown.

    With ``reload``, SIGHUP sets a flag too, and the main thread, between its waits, calls
    ``reload(True)`` once it sees it, and ``reload(False)`` every ``watch_seconds`` (None or 0: only on
    SIGHUP), while ticks run in the scheduler's thread (``engine._reload``: what it hands the engine is
    taken at the start of a tick). A reload that raises is logged in one line, once while it repeats."""
    scheduler = BackgroundScheduler(timezone="UTC")
    count = 0
    stopping = threading.Event()  # a stop signal arrived, or max_ticks were run
    idle = threading.Event()  # no tick is running
    idle.set()
    hangup = threading.Event()  # SIGHUP: reload now
    signals_seen = 0
    failing: str | None = None  # the last tick's failure, logged once while it repeats
    reload_failing: str | None = None

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

    def reload_now(_signum: int, _frame: FrameType | None) -> None:
        hangup.set()

    def reload_safely(forced: bool) -> None:
        nonlocal reload_failing
        assert reload is not None
        try:
            reload(forced)
        except Exception as exc:
            text = failure_text(exc)
            if text != reload_failing:
                log.error("reload failed; the running workspace keeps running: %s", text)
                reload_failing = text
            log.debug("the reload's traceback", exc_info=True)
        else:
            reload_failing = None

    handlers: dict[int, Callable[[int, FrameType | None], None]] = {signal.SIGTERM: stop, signal.SIGINT: stop}
    sighup = getattr(signal, "SIGHUP", None)  # not on Windows
    if reload is not None and sighup is not None:
        handlers[sighup] = reload_now
    previous = {s: signal.signal(s, handler) for s, handler in handlers.items()}
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
        next_look = time.monotonic() + (watch_seconds or 0.0)
        try:
            while not stopping.wait(0.1):  # short waits: the main thread stays free for signals
                if reload is None:
                    continue
                if hangup.is_set():
                    hangup.clear()
                    log.info("received SIGHUP: reloading the workspace")
                    reload_safely(True)
                elif watch_seconds and time.monotonic() >= next_look:
                    reload_safely(False)
                    next_look = time.monotonic() + watch_seconds
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
        last = last_tick(conn) if store.is_initialised() else None
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

    from orchestrator.channels import OutboxAdapter

    if url is None:
        return OutboxAdapter(outbox, durable=False)
    parts = urlsplit(url)
    if parts.scheme == "smtp" and parts.hostname and parts.port:
        from orchestrator.channels import EmailSettings, SmtpAdapter, SmtpSettings

        return SmtpAdapter(
            SmtpSettings(parts.hostname, parts.port, security="none"),
            EmailSettings(sender="Crash Test <crash@example.com>", message_id_domain="example.com"),
        )
    if parts.scheme in ("http", "https"):
        from orchestrator.channels import HttpSmsAdapter

        return HttpSmsAdapter(url, sender="+12025550100", account_sid="crash", auth_token="test")
    raise ValueError(f"{url!r}: expected smtp://HOST:PORT or http://HOST:PORT/PATH")


# ------------------------------------------------------------------------------------------ the daemon


@dataclass
class DaemonSettings:
    """What the daemon needs besides its engine. ``store_url`` is only shown (masked) in the start line;
    ``files``, where the workspace was read from, is reloaded on SIGHUP and, every ``watch_seconds``
    (None or 0: only on SIGHUP), when its files changed (``engine._reload``); without ``files`` nothing is
    reloaded. ``inbox`` is drained before each tick (the faces pass ``orchestrator.ingest.Inbox``).
    ``simulated`` is the crash tests' clock: (clock, start, step per tick)."""

    interval: float
    store_url: str = ""
    max_ticks: int | None = None
    inbox: Ingestor | None = None
    simulated: tuple[SimulatedClock, datetime, timedelta] | None = None
    files: WorkspaceFiles | None = None
    watch_seconds: float | None = 1.0
    # A workspace config watched with the files (in ``files.extra``): ``load`` reads the workspace and the
    # config, ``apply`` hands both to the engine (see ``engine._reload.Reloader``).
    load: Callable[[], Workspace] | None = None
    apply: Callable[[Workspace], None] | None = None
    # How old the newest fit of a purchase model the journeys read may grow before the daemon refits it
    # in a child process (``engine._refit``); None: never refit.
    refit_every: timedelta | None = DEFAULT_REFIT_EVERY
    # The weekly report emailed after the first tick at or after its local day and hour
    # (``engine._weekly``); None: no report.
    weekly: WeeklySchedule | None = None


@dataclass
class TickOutcome:
    """A daemon tick: the engine's report and what the inbox ingested before it."""

    report: TickReport
    inbox: Sequence[IngestCount] = field(default_factory=list)
    inbox_seconds: float = 0.0


def serve(engine: Engine, settings: DaemonSettings) -> int:
    """Run ``engine`` as the daemon until a stop signal (or ``max_ticks``): the start line, the
    reconciliation of what a stopped process left in flight, then a tick every ``interval`` seconds, each
    preceded by the inbox (when there is one) and followed by its log line, and the workspace reloaded on
    SIGHUP and when its files change. Returns the number of ticks run. The caller holds the store (SQLite)
    and disposes of it; logging is set up by the caller (``orchestrator.logs.setup_logging``)."""
    refitter = None
    if settings.refit_every is not None and settings.store_url:
        refitter = Refitter(engine.store, settings.store_url, settings.refit_every)
    reporter = None
    if settings.weekly is not None:
        reporter = WeeklyReporter(
            engine.store,
            lambda: engine.router,  # the router in use (a reload may replace it)
            settings.weekly,
            lambda: engine.delivery.get("email") == "at_most_once",
        )
    tick: Callable[[], object] = _engine_tick(engine, settings.inbox, refitter, reporter)
    tick = waiting_for_clock(tick)  # a clock that stepped back waits until it passes the last tick
    tick = logged_ticks(tick, engine.clock)
    if settings.simulated is not None:
        clock, start, step = settings.simulated
        resume_simulated_clock(engine.store, clock, start, step)
        tick = advancing(tick, clock, step)

    def reconcile() -> None:
        # Before the first tick: messages a killed process left queued go out again, with their ledger key;
        # under the dispatch lock, so a daemon starting beside a dispatching one does not send them twice.
        # A partitioned worker joins the live workers instead: its partitions' messages go at its ticks.
        if engine.partitioned:
            engine.join()
            return
        with leases.session_singleton(engine.store.engine, "dispatch") as dispatching:
            if dispatching:
                engine.dispatch()

    reloader = None
    if settings.files is not None:
        from orchestrator.engine._reload import Reloader, pin_templates

        pin_templates(engine.workspace)  # the running templates stay as validated until a reload
        reloader = Reloader(settings.files, engine, load=settings.load, apply=settings.apply)
    log_start(engine, settings, reloading=reloader is not None)
    try:
        ticks = run_daemon(
            tick,
            settings.interval,
            max_ticks=settings.max_ticks,
            on_start=reconcile,
            hurry=engine.hurry,
            reload=None if reloader is None else reloader.check,
            watch_seconds=settings.watch_seconds,
        )
    finally:
        if refitter is not None:
            refitter.stop()
        if reporter is not None:
            reporter.wait()
        # The signal state's snapshot, so the next start reads only newer events; not after a second stop
        # signal (the write in progress, if any, is still finished: a file cut short would only be ignored).
        engine.save_signal_state(write=not engine.hurry.is_set())
        engine.leave()  # partitioned: the others take this worker's partitions at their next tick
    log.info("daemon stopped cleanly after %d tick(s)", ticks, extra={"fields": {"ticks": ticks}})
    return ticks


def log_start(engine: Engine, settings: DaemonSettings, *, reloading: bool) -> None:
    """The start line: the store (its password masked), the journeys and their versions, the interval,
    the channels' adapters, the inbox and how the workspace is reloaded."""
    plans = engine.workspace.plans
    router = engine.router
    how = "; stop with SIGTERM or Ctrl-C"
    if reloading:
        how += ", reload with SIGHUP"
        if settings.watch_seconds:
            how += " or by editing the files"
    log.info(
        "daemon started: %d journeys, a tick every %gs%s",
        len(plans),
        settings.interval,
        how,
        extra={
            "fields": {
                "store": mask_url(settings.store_url),
                "versions": {p.id: p.version for p in plans},
                "interval": settings.interval,
                "channels": {c: type(router.route(c)).__name__ for c in sorted(router.channels)},
                "inbox": None if settings.inbox is None else settings.inbox.source,
                "watch": (settings.watch_seconds or 0) if reloading else None,
            }
        },
    )


def _engine_tick(
    engine: Engine,
    inbox: Ingestor | None,
    refitter: Refitter | None = None,
    reporter: WeeklyReporter | None = None,
) -> Callable[[], TickOutcome]:
    """The refit of stale purchase models started (or its report read; never waited for), the inbox
    drained (its events handed to the signal state as they commit), then the engine's tick, then the
    weekly report started in its thread when it is due (never waited for)."""

    def run() -> TickOutcome:
        if refitter is not None:
            refitter.check(engine.workspace.plans, to_us(engine.clock.now()))
        ingested: Sequence[IngestCount] = []
        started = time.perf_counter()
        if inbox is not None:
            ingested = inbox.drain(engine.store, to_us(engine.clock.now()), engine.signals.accept)
        inbox_seconds = time.perf_counter() - started
        report = engine.tick()
        if reporter is not None:
            reporter.check(report.now_us)
        return TickOutcome(report, ingested, inbox_seconds)

    return run


def logged_ticks(tick: Callable[[], object], clock: Clock) -> Callable[[], object]:
    """``tick`` followed by its log line (``tick_fields``): every tick that returns says so in one line,
    one skipped while the clock is behind (``waiting_for_clock`` returned None) in a short one. A tick
    that raises says nothing here: ``run_daemon`` logs failures, once per change."""
    number = 0

    def run() -> object:
        nonlocal number
        started = time.perf_counter()
        outcome = tick()
        seconds = time.perf_counter() - started
        number += 1
        if isinstance(outcome, TickOutcome):
            fields, text_fields = tick_fields(number, outcome, seconds)
            log.info("tick", extra={"fields": fields, "text_fields": text_fields})
        elif outcome is None:
            fields = {"number": number, "at": _instant(to_us(clock.now())), "reason": "clock_behind",
                      "seconds": round(seconds, 4)}  # fmt: skip
            log.info("tick skipped", extra={"fields": fields})
        return outcome

    return run


#: The per-tick counts, in the order a line shows them.
TICK_COUNTS = (
    "entered", "holdout", "migrated", "converted", "stepped", "finished", "queued",
    "sent", "failed", "retried", "suppressed", "delayed", "refused", "uncertain", "requeued",
    "events", "inbox_files", "inbox_events", "inbox_customers", "inbox_rejected", "failed_journeys",
)  # fmt: skip
#: The per-tick timings (seconds): the whole tick, then its phases.
TICK_TIMINGS = ("seconds", "inbox_s", "load_s", "signals_s", "enter_s", "step_s", "dispatch_s", "send_s")


def tick_fields(number: int, outcome: TickOutcome, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tick's log fields, for JSON (every key, every tick) and for text (the counts that are not zero
    and the timings; an idle tick, with nothing counted, only its number, instant and seconds). Counts
    and timings only: no customer id, address or message content.

    Counts: ``entered`` (``holdout``: of them, held out), ``migrated``, ``converted``, ``stepped``,
    ``finished`` instances; ``queued`` ledger rows written; the messages dispatched: ``sent``, ``failed``,
    ``retried`` (to be tried again), ``suppressed`` (policy, suppression list), ``delayed`` (quiet hours),
    ``refused``, ``uncertain`` and ``requeued`` (left in flight by a stopped process); ``events`` the tick
    took in (the inbox's and other writers'); the inbox's files, events, customers and rejected rows;
    ``failed_journeys``. Timings: ``seconds`` for the whole tick (inbox included), and ``inbox_s``,
    ``load_s`` (reading new events), ``signals_s``, ``enter_s`` (evaluate and enter), ``step_s`` (convert,
    exit, step), ``dispatch_s`` and, inside it, ``send_s`` (the providers' calls)."""
    report, delivery = outcome.report, outcome.report.delivery
    journeys = list(report.journeys.values())
    inbox = outcome.inbox
    counts = {
        "entered": sum(j.entered for j in journeys),
        "holdout": sum(j.entered_holdout for j in journeys),
        "migrated": sum(j.migrated for j in journeys),
        "converted": sum(j.converted for j in journeys),
        "stepped": sum(j.stepped for j in journeys),
        "finished": sum(sum(j.finished.values()) for j in journeys),
        "queued": sum(j.queued for j in journeys),
        "sent": delivery.delivered,
        "failed": delivery.failed,
        "retried": delivery.retry,
        "suppressed": delivery.suppressed,
        "delayed": delivery.delayed,
        "refused": delivery.refused,
        "uncertain": delivery.uncertain,
        "requeued": delivery.requeued,
        "events": report.new_events,
        "inbox_files": len(inbox),
        "inbox_events": sum(r.accepted for r in inbox if r.kind == "events"),
        "inbox_customers": sum(r.accepted for r in inbox if r.kind == "customers"),
        "inbox_rejected": sum(r.rejected for r in inbox),
        "failed_journeys": len(report.failed),
    }
    timings = report.timings
    phases = {
        "seconds": seconds,
        "inbox_s": outcome.inbox_seconds,
        "load_s": timings.get("load_events", 0.0),
        "signals_s": timings.get("signals", 0.0),
        "enter_s": timings.get("evaluate_and_enter", 0.0),
        "step_s": timings.get("convert_and_step", 0.0),
        "dispatch_s": timings.get("dispatch", 0.0),
        "send_s": delivery.seconds.get("send", 0.0),
    }
    rounded = {k: round(v, 4) for k, v in phases.items()}
    idle = not any(counts.values())
    head = {"number": number, "at": _instant(report.now_us), "journeys": len(journeys)}
    fields = {**head, **counts, "idle": idle, **rounded}
    if idle:
        return fields, {"number": number, "at": head["at"], "idle": True, "seconds": rounded["seconds"]}
    text = {**head, **{k: v for k, v in counts.items() if v}, **rounded}
    return fields, text


def _instant(us: int) -> str:
    return from_us(us).isoformat().replace("+00:00", "Z")
