"""``orchestrator backtest``: past events replayed through the journeys, and the report printed.

The command reads the input (event files and a customers file through ingest, or a workspace's store),
hands it to ``orchestrator.engine.backtest`` and prints the report that measure lays out: tables, JSON or
one HTML page. With ``--compare`` it runs the same window with another journeys folder and prints both
side by side; with ``--save`` it keeps the report in the workspace's store.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._output import Progress, print_table
from orchestrator.cli._settings import Args
from orchestrator.clock import SystemClock, parse_instant, to_us


def _instant(option: str, text: str) -> datetime:
    try:
        return parse_instant(text if "T" in text else f"{text}T00:00:00Z")
    except ValueError as exc:
        raise UsageError(
            f"{option} {text!r} is not a date (2024-01-16) or an ISO-8601 instant: {exc}"
        ) from None


def _tick(text: str) -> timedelta:
    from orchestrator.durations import parse_duration

    try:
        tick = parse_duration(text)
    except (ValueError, OverflowError) as exc:
        raise UsageError(f"--tick {text!r}: not a duration ({exc})") from None
    if tick <= timedelta(0):
        raise UsageError(f"--tick {text!r}: the tick must be longer than zero")
    return tick


def _input(args: Args, end: datetime) -> tuple[Any, Any]:
    """The events to replay and the loader of the customers, from files or from the store."""
    from orchestrator.ingest import IngestError, ingest_file, read_events
    from orchestrator.store import customer_rows, open_store, stored_history, upsert_customers

    if args.events:
        try:
            read = read_events(args.events)
        except IngestError as exc:
            raise Failure(str(exc)) from None
        for report in read.reports:
            if report.rejected:
                print(f"{report.source}: {report.rejected} rows rejected", file=sys.stderr)
        customers_file = args.customers

        def load_customers(store: Any, now_us: int) -> None:
            if customers_file is None:
                return
            report = ingest_file(store, customers_file, kind="customers", now_us=now_us)
            if report.rejected:
                print(f"{customers_file}: {report.rejected} rows rejected", file=sys.stderr)

        return read.events, load_customers
    try:
        source = open_store(args.db, create=False)
    except FileNotFoundError as exc:
        raise Failure(f"{exc}; give the past with --events FILE (and --customers FILE) or --db URL") from None
    try:
        with source.connect() as conn:
            history = stored_history(conn, to_us(end))
            rows = customer_rows(conn)
    finally:
        source.dispose()

    def copy_customers(store: Any, now_us: int) -> None:
        with store.begin() as conn:
            upsert_customers(conn, rows, now_us)

    return history, copy_customers


def _run(
    args: Args,
    journeys: list[str],
    label: str,
    start: datetime,
    end: datetime,
    tick: timedelta,
    events: Any,
    customers: Any,
) -> Any:
    from orchestrator.engine import backtest, load_workspace, tick_instants
    from orchestrator.language import SpecError
    from orchestrator.measure import backtest_report

    try:
        workspace = load_workspace(journeys, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys ({label}) are not valid:\n{exc}") from None
    tick_instants(start, end, tick)  # a window that is empty or a tick that is not: refused here
    with Progress(f"backtest {label}", unit="ticks") as bar:
        run = backtest(
            workspace,
            events,
            backtest_report,
            start=start,
            end=end,
            tick=tick,
            customers=customers,
            global_holdout=args.global_holdout or 0.0,
            progress=bar.update,
            label=label,
        )
    return run.report.with_timings(run.seconds, run.delivered)


def _print_sections(sections: Any) -> None:
    for section in sections:
        print(f"\n{section.title}")
        print_table(section.columns, section.rows, indent=2)
        for note in section.notes:
            print(f"  ({note})")


def run_backtest(args: Args) -> int:
    from orchestrator.measure import (
        backtest_heading,
        backtest_html,
        backtest_sections,
        compare_backtests,
        comparison_html,
        comparison_sections,
    )

    if args.events and args.from_db:
        raise UsageError("give --events FILE... or --db URL, not both")
    if args.customers is not None and not args.events:
        raise UsageError("--customers goes with --events (with --db the store's customers are used)")
    if args.output is not None and args.format != "html":
        raise UsageError("--output is for --format html")
    start, end = _instant("--from", args.start), _instant("--to", args.end)
    if end <= start:
        raise UsageError(f"--to {args.end} is not after --from {args.start}")
    tick = _tick(args.tick)
    for path in [*args.events, *([args.customers] if args.customers else [])]:
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    events, customers = _input(args, end)
    label = " ".join(args.journeys)
    report = _run(args, args.journeys, label, start, end, tick, events, customers)
    result: dict[str, Any] = report.data
    other = None
    if args.compare:
        other = _run(args, args.compare, " ".join(args.compare), start, end, tick, events, customers)
        result = compare_backtests(report, other)
    if args.save:
        _save(args, start, end, tick, result)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    elif args.format == "html":
        page = comparison_html(result) if other is not None else backtest_html(report)
        if args.output is None:
            sys.stdout.write(page)
        else:
            args.output.write_text(page, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
    elif other is not None:
        for line in backtest_heading(report) + backtest_heading(other):
            print(line)
        _print_sections(comparison_sections(result))
    else:
        for line in backtest_heading(report):
            print(line)
        _print_sections(backtest_sections(report))
    return 0


def _save(args: Args, start: datetime, end: datetime, tick: timedelta, result: dict[str, Any]) -> None:
    from orchestrator.store import open_store, save_backtest

    parameters = {
        "from": args.start,
        "to": args.end,
        "tick": args.tick,
        "journeys": args.journeys,
        "compare": args.compare or None,
        "events": [str(p) for p in args.events] or None,
        "customers": str(args.customers) if args.customers else None,
    }
    store = open_store(args.save_db)
    try:
        with store.begin() as conn:
            saved = save_backtest(
                conn, to_us(SystemClock().now()), json.dumps(parameters), json.dumps(result)
            )
    finally:
        store.dispose()
    print(f"saved as backtest {saved} in the store", file=sys.stderr)
