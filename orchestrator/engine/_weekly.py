"""The weekly report the daemon emails (``reports: {weekly: ...}`` in ``orchestrator.yaml``): when it is
due, and sending it once.

The report is due at the declared local day and hour of each week (``day: monday``, ``at: "08:00"``,
``timezone: Europe/Paris``); the daemon sends it at its first tick at or after that instant. After each
tick the daemon asks the ``WeeklyReporter`` for the latest due instant not later than the tick's; when that
week's report has not been sent, it builds and sends it in a thread of its own, so the tick never waits for
the report's queries or the mail server (the report reads the store and sends through the adapters the
ticks use; a thread, not a child process like the refit, because it must send through the very adapter
and sender the workspace configured, and because a report reads far less than a fit computes).

Sent once, across restarts and workers: the week's row in ``report_sends`` (``store._reports``) is claimed
before anything is sent, by the one statement only one writer can win, and on PostgreSQL while holding the
``weekly_report`` session lock, so a second worker leaves it to the first. Each recipient reached is
recorded as it is reached; the row ends ``sent``. A recipient the mail server refuses for good (5xx) is
not tried again (the row says why). A transient failure (the server down, a 4xx) leaves the row
``failed`` with its cause, logged in one line, and a later tick (``RETRY_AFTER`` on, by the engine's
clock) tries the recipients not yet reached. A row left ``sending`` by a process that stopped mid-send is
taken up by the next start: on an ``at_least_once`` email channel (the default) the recipients not
recorded are sent to again with the same idempotency key (the same Message-ID, so a mail system can drop
a duplicate of the one message that may have been in flight); on an ``at_most_once`` channel the week is
recorded ``uncertain`` and nothing more is sent.

The report itself (the portfolio and the engagement summary) is built by the function the faces pass in
(``orchestrator.measure.weekly_email``): the engine reaches into no measurement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from orchestrator.channels import ChannelRouter, OutgoingMessage
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._tick import failure_text
from orchestrator.store import Store, claim_report_send, update_report_send
from orchestrator.store import _leases as leases
from orchestrator.zones import local_wall, wall_to_us, zone_or_none

log = logging.getLogger("orchestrator.reports")

REPORT = "weekly"
#: After a failed send, the next try waits this long by the engine's clock (then the next tick).
RETRY_AFTER = timedelta(minutes=5)
#: How long the daemon waits, when it stops, for a report being sent.
STOP_SECONDS = 30.0


class ReportEmail(Protocol):
    """What the report's builder answers: the subject, the text part and the HTML part."""

    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def html(self) -> str: ...


#: Builds the report from the store as of an instant (``orchestrator.measure.weekly_email``, bound by the
#: faces to the config's subject and console link).
BuildReport = Callable[[Store, int], ReportEmail]


@dataclass(frozen=True)
class WeeklySchedule:
    """To whom, and when: the local ``weekday`` (Monday 0) and second of the day in ``timezone``."""

    to: tuple[str, ...]
    weekday: int
    seconds_of_day: int
    timezone: str
    build: BuildReport


def due_instant(schedule: WeeklySchedule, now_us: int) -> tuple[str, int]:
    """The latest instant the report fell due at, not after ``now_us``, and its week's name: the local
    date of that day (ISO), which keys the week's row."""
    zone = zone_or_none(schedule.timezone)
    today = local_wall(zone, now_us).date()
    day = today - timedelta(days=(today.weekday() - schedule.weekday) % 7)
    due = wall_to_us(schedule.timezone, day, schedule.seconds_of_day)
    if due > now_us:
        day -= timedelta(days=7)
        due = wall_to_us(schedule.timezone, day, schedule.seconds_of_day)
    return day.isoformat(), due


@dataclass(frozen=True)
class ReportOutcome:
    """What came of one try: ``sent`` (every recipient reached, or refused for good), ``failed`` (some
    to try again), ``uncertain``, ``done`` (already sent or claimed elsewhere), ``busy`` (another worker
    holds the lock); ``detail`` the cause of a failure."""

    week: str
    status: str
    delivered: tuple[str, ...] = ()
    attempt: int = 0
    detail: str = ""


def report_message(
    email: ReportEmail, recipient: str, key: str, now_us: int, *, week: str
) -> OutgoingMessage:
    """The report as a message to one recipient (transactional: no unsubscribe headers; the list is the
    workspace's own)."""
    return OutgoingMessage(
        idempotency_key=key,
        channel="email",
        recipient=recipient,
        customer_id=recipient,
        journey_id="weekly_report",
        step=week,
        body=email.text,
        subject=email.subject,
        html=email.html,
        created_us=now_us,
        transactional=True,
    )


def send_weekly_report(
    store: Store, router: ChannelRouter, schedule: WeeklySchedule, now_us: int, *, at_most_once: bool = False
) -> ReportOutcome:
    """Send the report of the week due last (``due_instant``) if it has not been: claim, build, send to
    each recipient not yet reached, record (see the module docstring)."""
    week, due_us = due_instant(schedule, now_us)
    with leases.session_singleton(store.engine, "weekly_report") as mine:
        if not mine:
            return ReportOutcome(week, "busy")
        with store.begin() as conn:
            claim = claim_report_send(conn, REPORT, week, due_us, now_us)
        if claim is None:
            return ReportOutcome(week, "done")
        delivered = list(claim.row.delivered)
        attempt = claim.row.attempts

        def record(status: str, error: str | None = None) -> None:
            with store.begin() as conn:
                update_report_send(
                    conn, REPORT, week, status=status, delivered=delivered, now_us=now_us, error=error
                )

        if claim.previous == "sending" and at_most_once:
            detail = "a process stopped while sending it, and the email channel is at_most_once"
            record("uncertain", detail)
            return ReportOutcome(week, "uncertain", tuple(delivered), attempt, detail)
        try:
            email = schedule.build(store, now_us)
            adapter = router.route("email")
        except Exception as exc:
            detail = f"the report could not be built: {failure_text(exc)}"
            record("failed", detail)
            return ReportOutcome(week, "failed", tuple(delivered), attempt, detail)
        refused: list[str] = []  # the causes only: the log shows no address
        failed: list[str] = []
        for recipient in schedule.to:
            if recipient in delivered:
                continue
            key = f"report-{REPORT}-{week}-{recipient}"
            result = adapter.send(report_message(email, recipient, key, now_us, week=week))
            if result.ok:
                delivered.append(recipient)
                record("sending")  # reached: never sent to again for this week
            elif result.outcome == "permanent":
                refused.append(result.error or result.code or "refused")
            else:
                failed.append(result.error or result.code or "failed")
        if failed:
            detail = f"{len(failed)} of {len(schedule.to)} recipient(s) not reached: " + "; ".join(
                dict.fromkeys(failed + refused)
            )
            record("failed", detail)
            return ReportOutcome(week, "failed", tuple(delivered), attempt, detail)
        detail = ""
        if refused:
            detail = f"{len(refused)} recipient(s) refused for good: " + "; ".join(dict.fromkeys(refused))
        record("sent", detail or None)
        return ReportOutcome(week, "sent", tuple(delivered), attempt, detail)


class WeeklyReporter:
    """Checks after each tick whether the week's report is due and unsent, and sends it in a thread; the
    tick never waits for it."""

    def __init__(
        self,
        store: Store,
        router: Callable[[], ChannelRouter],
        schedule: WeeklySchedule,
        at_most_once: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.router = router
        self.schedule = schedule
        self.at_most_once = at_most_once
        self._thread: threading.Thread | None = None
        self._done: str | None = None  # the last week known sent (or left)
        self._not_before_us = 0
        #: Every try's outcome, oldest first (for tests and the log).
        self.outcomes: list[ReportOutcome] = []

    def check(self, now_us: int) -> None:
        """Start the week's report in a thread when it is due, not known done and no try is running."""
        if self._thread is not None:
            if self._thread.is_alive():
                return
            self._thread = None
        week, _due = due_instant(self.schedule, now_us)
        if week == self._done or now_us < self._not_before_us:
            return
        self._thread = threading.Thread(
            target=self._run, args=(now_us,), name="orchestrator-weekly-report", daemon=True
        )
        self._thread.start()

    def _run(self, now_us: int) -> None:
        try:
            outcome = send_weekly_report(
                self.store, self.router(), self.schedule, now_us, at_most_once=self.at_most_once()
            )
        except Exception as exc:  # the store unreachable: the next check tries again
            week, _due = due_instant(self.schedule, now_us)
            outcome = ReportOutcome(week, "failed", detail=failure_text(exc))
        self.outcomes.append(outcome)
        fields = {"week": outcome.week, "status": outcome.status, "attempt": outcome.attempt,
                  "recipients": len(outcome.delivered)}  # fmt: skip
        if outcome.status == "sent":
            self._done = outcome.week
            refused = f"; {outcome.detail}" if outcome.detail else ""
            log.info("weekly report of the week of %s sent to %d recipient(s)%s", outcome.week,
                     len(outcome.delivered), refused, extra={"fields": fields})  # fmt: skip
        elif outcome.status == "failed":
            self._not_before_us = now_us + int(RETRY_AFTER.total_seconds() * US_PER_SECOND)
            log.warning(
                "weekly report of the week of %s not sent (try %d): %s; a later tick tries again",
                outcome.week,
                outcome.attempt,
                outcome.detail,
                extra={"fields": {**fields, "reason": outcome.detail}},
            )
        elif outcome.status == "uncertain":
            self._done = outcome.week
            log.warning("weekly report of the week of %s is uncertain, not sent again: %s", outcome.week,
                        outcome.detail, extra={"fields": fields})  # fmt: skip
        elif outcome.status == "done":
            self._done = outcome.week
        # busy: another worker holds the lock; this one looks again after its next tick

    def wait(self, seconds: float = STOP_SECONDS) -> None:
        """Wait for a report being sent (the daemon stops after it)."""
        thread = self._thread
        if thread is not None:
            thread.join(seconds)
