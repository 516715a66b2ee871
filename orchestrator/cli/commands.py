"""The commands behind ``orchestrator <command>``; each returns an exit code."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from orchestrator.channels.base import ChannelRouter
from orchestrator.channels.delivery import DeliveryMode, parse_delivery_modes
from orchestrator.channels.outbox import OutboxAdapter
from orchestrator.clock import Clock, SimulatedClock, SystemClock, parse_instant, to_us
from orchestrator.engine.tick import ClockBehind, Engine, TickReport
from orchestrator.engine.workspace import load_workspace, validate_paths
from orchestrator.spec import SpecError
from orchestrator.store import Store, database_url, open_store
from orchestrator.store.holder import Holding, StoreHeld, hold

if TYPE_CHECKING:  # the ingest modules load pyarrow: only the commands that ingest import them
    from orchestrator.ingest.readers import TimeRange
    from orchestrator.ingest.report import IngestReport


class UsageError(Exception):
    """Bad arguments (exit 2)."""


class Failure(Exception):
    """The command ran and found problems (exit 1)."""


def _instant(text: str | None, what: str = "--now") -> Clock:
    if text is None:
        return SystemClock()
    try:
        return SimulatedClock(parse_instant(text))
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not an ISO-8601 instant with a time zone: {exc}") from None


def outbox_router(folder: Path) -> ChannelRouter:
    return ChannelRouter([OutboxAdapter(folder)])


def _engine(args: argparse.Namespace, clock: Clock) -> Engine:
    try:
        workspace = load_workspace(args.journeys, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    if not workspace.plans:
        raise UsageError(f"no journey files found in {' '.join(args.journeys)}")
    router = outbox_router(args.outbox)
    holdout, delivery = _global_holdout(args), _delivery_modes(args)  # checked before the store is opened
    return Engine(open_store(args.db), workspace, router, clock, global_holdout=holdout, delivery=delivery)


def _delivery_modes(args: argparse.Namespace) -> dict[str, DeliveryMode]:
    """``--delivery CHANNEL=MODE`` (repeatable), else ``$ORCHESTRATOR_DELIVERY``; unnamed channels are
    at_least_once. A plain mapping, which a workspace configuration file can fill as well."""
    specs = args.delivery
    source = "--delivery"
    if specs is None:
        specs, source = [os.environ.get("ORCHESTRATOR_DELIVERY", "")], "ORCHESTRATOR_DELIVERY"
    try:
        return parse_delivery_modes(specs)
    except ValueError as exc:
        raise UsageError(f"{source}: {exc}") from None


def _hold(args: argparse.Namespace, command: str) -> Holding:
    """This process as the one engine on a SQLite store, for its whole life (a no-op on PostgreSQL)."""
    try:
        return hold(database_url(args.db), command, SystemClock().now())
    except StoreHeld as exc:
        raise Failure(str(exc)) from None


def _global_holdout(args: argparse.Namespace) -> float:
    value = args.global_holdout
    if value is None:
        text = os.environ.get("ORCHESTRATOR_GLOBAL_HOLDOUT", "").strip()
        try:
            value = float(text) if text else 0.0
        except ValueError:
            raise UsageError(f"ORCHESTRATOR_GLOBAL_HOLDOUT={text!r} is not a percent") from None
    if not 0.0 <= value <= 100.0:
        raise UsageError(f"the global holdout is a percent between 0 and 100, not {value:g}")
    return float(value)


# ---------------------------------------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    files, problems = validate_paths(args.paths, args.templates)
    notes: list[str] = []
    warnings: list[str] = []
    if files and getattr(args, "db", None) and not problems:
        from orchestrator.engine.template_data import missing_customer_attributes
        from orchestrator.engine.validation import store_problems

        try:
            store = open_store(args.db, create=False)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        try:
            # Errors: a version that changed without a bump, names no stored data has ever carried.
            problems, notes = store_problems(args.paths, store)
            # Warnings: a message whose template reads an attribute its customer lacks fails (is recorded).
            workspace = load_workspace(args.paths, args.templates)
            warnings = [str(missing) for missing in missing_customer_attributes(workspace, store)]
        finally:
            store.dispose()
    for problem in problems:
        print(problem, file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not files:
        raise UsageError(f"no journey files found in {' '.join(args.paths)}")
    bad = {p.file for p in problems}
    print(
        f"{len(files) - len(bad)} of {len(files)} journey files valid"
        + (f", {len(problems)} problem(s)" if problems else "")
    )
    for warning in warnings:
        print(f"warning: {warning}")
    return 1 if problems else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from orchestrator.durations import parse_duration
    from orchestrator.ingest.load import time_range

    for path in args.files:
        if not path.exists():
            raise UsageError(f"{path}: no such file")
    now_us = to_us(SystemClock().now())
    min_us = None if args.min_time is None else to_us(_instant(args.min_time, "--min-time").now())
    try:
        max_future_us = round(parse_duration(args.max_future).total_seconds() * 1_000_000)
    except ValueError as exc:
        raise UsageError(f"--max-future: {exc}") from None
    times = time_range(now_us, min_us, max_future_us)
    store = open_store(args.db)
    as_json = args.format == "json"
    reports: list[dict[str, object]] = []
    totals = {"accepted": 0, "rejected": 0, "duplicates": 0}
    error = None
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(args.rejects.open("a")) if args.rejects else None
        for path in args.files:
            try:
                report = _ingest_one(store, path, args.kind, now_us, sink, times, quiet=as_json)
            except Failure as exc:
                if not as_json:
                    raise
                error = str(exc)
                break
            reports.append(report.to_dict())
            totals["accepted"] += report.accepted
            totals["rejected"] += report.rejected
            totals["duplicates"] += report.duplicates
    if as_json:
        print(json.dumps({**totals, "files": reports, **({"error": error} if error else {})}))
        if error:
            return 1
    return 1 if (args.strict and totals["rejected"]) else 0


def _ingest_one(
    store: Store,
    path: Path,
    kind: str | None,
    now_us: int,
    sink: TextIO | None,
    times: TimeRange,
    quiet: bool = False,
) -> IngestReport:
    """Ingest one file and, unless ``quiet``, print its counts and first rejects."""
    from orchestrator.ingest import ingest_file

    try:
        report = ingest_file(store, path, kind=kind, now_us=now_us, rejects=sink, times=times)
    except ValueError as exc:
        raise Failure(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    if quiet:
        return report
    counts = f"{report.accepted} {report.kind} accepted, {report.rejected} rejected"
    if report.kind == "events":
        counts += f", {report.duplicates} duplicates skipped"
    if report.stale:
        counts += f", {report.stale} stale (older than the stored record, not applied)"
    print(f"{path}: {counts} in {report.seconds:.2f}s")
    for line, reason in report.examples:
        print(f"  {path}:{line}: {reason}", file=sys.stderr)
    if report.rejected > len(report.examples):
        print(f"  ... and {report.rejected - len(report.examples)} more", file=sys.stderr)
    return report


def _print_tick(report: TickReport) -> None:
    d = report.delivery
    for journey_id, j in report.journeys.items():
        if j.error is not None:
            print(f"  {journey_id}: FAILED, its work at this tick undone: {j.error}")
            continue
        finished = ", ".join(f"{k} {v}" for k, v in sorted(j.finished.items())) or "none"
        print(
            f"  {journey_id}: entered {j.entered} (holdout {j.entered_holdout}), stepped {j.stepped}, "
            f"queued {j.queued}, converted {j.converted}, finished: {finished}"
        )
    settled = ""
    if d.requeued or d.uncertain:
        settled = f", left in flight by a stopped process: {d.requeued} sent again, {d.uncertain} uncertain"
    print(
        f"  delivered {d.delivered}, suppressed {d.suppressed}, delayed {d.delayed}, failed {d.failed}, "
        f"retries {d.retry}, refused {d.refused}{settled}; {report.timings.get('total', 0):.3f}s"
    )


def cmd_run(args: argparse.Namespace) -> int:
    clock = _instant(args.now)
    with _hold(args, "run --once"):
        engine = _engine(args, clock)
        try:
            report = engine.tick()
        except ClockBehind as exc:
            raise Failure(str(exc)) from None
        finally:
            engine.store.dispose()
    print(f"tick at {clock.now().isoformat()}")
    _print_tick(report)
    for journey_id, error in report.failed.items():
        print(f"orchestrator run: journey {journey_id} failed: {error}", file=sys.stderr)
    return 1 if report.failed else 0  # the other journeys ran, and dispatch


def cmd_daemon(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    if args.watch < 0:
        raise UsageError("--watch must be 0 (only on SIGHUP) or positive")
    simulated = _simulated_clock(args)
    from orchestrator.logs import setup_logging

    setup_logging(args.log_format, args.log_level)  # every daemon line in the chosen format
    with _hold(args, "daemon"):  # until the daemon stops
        return _daemon(args, simulated)


def _daemon(args: argparse.Namespace, simulated: tuple[SimulatedClock, datetime, timedelta] | None) -> int:
    from orchestrator.engine.daemon import DaemonSettings, serve
    from orchestrator.engine.reload import WorkspaceFiles

    engine = _engine(args, SystemClock() if simulated is None else simulated[0])
    if args.attempt_log is not None or args.provider is not None:
        from orchestrator.engine.daemon import AttemptLog, crash_test_provider

        # The crash test kills processes, not the machine: files need no fsync to survive that.
        try:
            adapter = crash_test_provider(args.provider, args.outbox)
        except ValueError as exc:
            raise UsageError(f"--provider: {exc}") from None
        engine.router = ChannelRouter(
            [adapter if args.attempt_log is None else AttemptLog(adapter, args.attempt_log)]
        )
    settings = DaemonSettings(
        interval=args.interval,
        store_url=database_url(args.db),
        max_ticks=args.max_ticks,
        inbox=args.inbox,
        simulated=simulated,
        files=WorkspaceFiles.of(args.journeys, args.templates),
        watch_seconds=args.watch,
    )
    try:
        serve(engine, settings)
    finally:
        engine.store.dispose()
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    from orchestrator.store import journeys as sj

    try:
        store = open_store(args.db, create=False)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    initialised = store.is_initialised()
    store.dispose()
    if not initialised:
        raise Failure("no store with engine tables here; nothing to retire")
    store = open_store(args.db)  # adds the retired_journeys table to a store made by an earlier version
    try:
        with store.begin() as conn:
            already = sj.retirement(conn, args.journey)
            done = None if already else sj.retire_journey(conn, args.journey, to_us(SystemClock().now()))
    finally:
        store.dispose()
    if already is not None:
        print(f"journey {args.journey!r} was already retired at version {already.version}")
        return 0
    if done is None:
        raise Failure(f"no journey {args.journey!r} has run on this store")
    print(
        f"retired journey {args.journey!r} (version {done.version}): {done.cancelled} queued message(s) "
        f"cancelled, {done.finished} active instance(s) finished; it runs again only from version "
        f"{done.version + 1}"
    )
    return 0


def _simulated_clock(args: argparse.Namespace) -> tuple[SimulatedClock, datetime, timedelta] | None:
    if args.simulated_clock is None:
        return None
    from orchestrator.durations import parse_duration

    try:
        start, step = parse_instant(args.simulated_clock), parse_duration(args.simulated_step)
    except ValueError as exc:
        raise UsageError(f"--simulated-clock/--simulated-step: {exc}") from None
    return SimulatedClock(start), start, step


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.cli.lift import run_report

    return run_report(args)


def cmd_lift(args: argparse.Namespace) -> int:
    from orchestrator.cli.lift import run_lift

    return run_lift(args)


def cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.cli.runtime import run_plan

    return run_plan(args)


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator.cli.runtime import run_status

    return run_status(args)


def cmd_why(args: argparse.Namespace) -> int:
    from orchestrator.cli.why import run_why

    return run_why(args)


def cmd_preview(args: argparse.Namespace) -> int:
    from orchestrator.cli.why import run_preview

    return run_preview(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.demo.run import run_demo

    return run_demo(args.dir, args.data, args.journeys, days=args.days, ticks_per_day=args.ticks_per_day)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from orchestrator.engine.frames import load_frames, signal_matches
    from orchestrator.ingest import ingest_file
    from orchestrator.store import sqlite_url

    now_us = to_us(_instant(args.now).now())
    try:
        workspace = load_workspace(args.journeys, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    with tempfile.TemporaryDirectory() as scratch:
        url = args.db or sqlite_url(Path(scratch) / "evaluate.db")
        store = open_store(url)
        for path in args.events:
            if not path.exists():
                raise UsageError(f"{path}: no such file")
            report = ingest_file(store, path, kind="events", now_us=now_us)
            if report.rejected:
                print(f"{path}: {report.rejected} rows rejected", file=sys.stderr)
        started = time.perf_counter()
        with store.connect() as conn:
            events, customers = load_frames(conn, workspace.plans, now_us)
            ids = customers.column("id")
        loaded = time.perf_counter()
        matches = signal_matches(workspace.plans, events, customers, now_us)
        evaluated = time.perf_counter()
        store.dispose()
    result: dict[str, dict[str, int | None]] = {}
    for journey_id, mask in matches.items():
        matched = ids[mask]
        result[journey_id] = {"count": int(mask.sum()), "id_sum": _integer_sum(matched)}
    if args.format == "json":
        print(
            json.dumps(
                {
                    "now": args.now,
                    "customers": int(customers.exists.sum()),
                    "events": len(events),
                    "load_seconds": round(loaded - started, 4),
                    "evaluate_seconds": round(evaluated - loaded, 4),
                    "journeys": result,
                }
            )
        )
    else:
        for journey_id, figures in result.items():
            id_sum = "n/a" if figures["id_sum"] is None else figures["id_sum"]
            print(f"{journey_id:28s} {figures['count']:10d} customers  id sum {id_sum}")
    return 0


def _integer_sum(ids: np.ndarray) -> int | None:
    """Sum of customer ids when every id is an integer (as in the benchmark data), else None."""
    text = ids.astype(str)
    unsigned = np.char.lstrip(text, "-")
    if len(text) and not bool(np.all(np.char.isdigit(unsigned))):
        return None
    return int(text.astype(np.int64).sum()) if len(text) else 0
