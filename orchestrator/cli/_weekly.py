"""``orchestrator weekly-report``: the weekly report the daemon emails (``reports: {weekly: ...}`` in
``orchestrator.yaml``), built now to look at (its text, or its HTML with ``-o FILE.html``), or sent now to
the declared list with ``--send``; and the daemon's schedule of it (``weekly_schedule``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._instants import as_of_us
from orchestrator.cli._settings import Args
from orchestrator.cli._stores import existing_store
from orchestrator.clock import to_us

if TYPE_CHECKING:
    from orchestrator.config import WorkspaceConfig
    from orchestrator.engine import WeeklySchedule
    from orchestrator.measure import WeeklyEmail
    from orchestrator.store import Store


def weekly_schedule(config: WorkspaceConfig) -> WeeklySchedule | None:
    """The daemon's weekly report as the config declares it (None: not declared)."""
    weekly = config.file.reports.weekly
    if weekly is None:
        return None
    from orchestrator.engine import WeeklySchedule
    from orchestrator.measure import weekly_email

    def build(store: Store, now_us: int) -> WeeklyEmail:
        return weekly_email(
            store,
            now_us,
            subject=weekly.subject,
            console_url=weekly.console_url,
            currency=config.file.currency,
            global_percent=config.global_holdout,
        )

    return WeeklySchedule(
        to=tuple(weekly.to),
        weekday=weekly.weekday,
        seconds_of_day=weekly.seconds_of_day,
        timezone=weekly.timezone,
        build=build,
    )


def run_weekly_report(args: Args) -> int:
    from orchestrator.measure import weekly_email
    from orchestrator.store import max_tick_us

    config: WorkspaceConfig = args.workspace_config
    weekly = config.file.reports.weekly
    if args.send and weekly is None:
        raise UsageError(
            "--send: orchestrator.yaml declares no weekly report; add reports: {weekly: {to: [...]}}"
        )
    if args.output is not None and args.output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--output {args.output}: the report is written as HTML, name it FILE.html")
    store = existing_store(args.db, "the store is empty: run the engine first")
    try:
        now_us = as_of_us(args.now)
        if now_us is None:
            with store.connect() as conn:
                last = max_tick_us(conn)
            if last is None:
                raise UsageError("the store has no tick yet: run the engine, or give --now")
            now_us = last
        email = weekly_email(
            store,
            now_us,
            subject=None if weekly is None else weekly.subject,
            console_url=None if weekly is None else weekly.console_url,
            currency=config.file.currency,
            global_percent=config.global_holdout,
        )
    finally:
        store.dispose()
    if args.output is not None:
        args.output.write_text(email.html, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    elif not args.send:
        sys.stdout.write(email.text)
    if args.send:
        assert weekly is not None
        return _send_now(args, email, list(weekly.to), now_us)
    return 0


def _send_now(args: Args, email: WeeklyEmail, recipients: list[str], now_us: int) -> int:
    """Send the report now to each recipient through the configured email provider: a try, with its own
    keys, that leaves the daemon's week as it is."""
    from orchestrator.cli._commands import _router
    from orchestrator.clock import SystemClock
    from orchestrator.engine import report_message

    clock = SystemClock()
    router = _router(args, clock)
    sent_at = to_us(clock.now())
    failed = 0
    try:
        adapter = router.route("email")
        for recipient in recipients:
            key = f"report-weekly-try-{sent_at}-{recipient}"
            message = report_message(email, recipient, key, now_us, week="try")
            result = adapter.send(message)
            if result.ok:
                print(f"sent the weekly report to {recipient}: provider id {result.provider_id}")
            else:
                failed += 1
                print(
                    f"orchestrator weekly-report: not sent to {recipient} ({result.code or result.status}): "
                    f"{result.error}",
                    file=sys.stderr,
                )
    finally:
        router.close()
    if failed:
        raise Failure(f"{failed} of {len(recipients)} recipient(s) not reached")
    return 0
