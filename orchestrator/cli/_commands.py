"""The commands behind ``orchestrator <command>``: each takes its resolved arguments (``settings.Args``)
and returns an exit code. Loaded only when a command runs (it imports the core)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, cast

import numpy as np

from orchestrator.channels import ChannelRouter, OutboxAdapter
from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._settings import Args
from orchestrator.clock import Clock, SimulatedClock, SystemClock, parse_instant, to_us
from orchestrator.engine import ClockBehind, Engine, TickReport, Workspace, load_workspace, validate_paths
from orchestrator.language import SpecError
from orchestrator.store import Holding, Store, StoreHeld, database_url, hold, open_store

if TYPE_CHECKING:  # the ingest modules load pyarrow: only the commands that ingest import them
    from orchestrator.channels import DeliveryMode, MessageLinks
    from orchestrator.engine import SnapshotSettings, WorkspaceFiles
    from orchestrator.ingest import Inbox, IngestReport, TimeRange


__all__ = ["Failure", "UsageError"]  # with the cmd_* functions


def _instant(text: str | None, what: str = "--now") -> Clock:
    if text is None:
        return SystemClock()
    try:
        return SimulatedClock(parse_instant(text))
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not an ISO-8601 instant with a time zone: {exc}") from None


def outbox_router(folder: Path) -> ChannelRouter:
    return ChannelRouter([OutboxAdapter(folder)])


def _router(args: Args, clock: Clock) -> ChannelRouter:
    """The providers of the workspace config (every channel to the outbox folder without one)."""
    from orchestrator.channels import ProviderSetupError, build_router

    config = getattr(args, "workspace_config", None)
    if config is None:
        return outbox_router(args.outbox)
    try:
        return build_router(config, outbox=args.outbox, clock=clock)
    except ProviderSetupError as exc:
        raise Failure(f"a provider cannot be set up: {exc}") from None


def _links(args: Args) -> MessageLinks | None:
    """The unsubscribe and tracking links of the workspace config, if it has them."""
    from orchestrator.channels import message_links

    config = getattr(args, "workspace_config", None)
    if config is None:
        return None
    try:
        return message_links(config.file)
    except ValueError as exc:
        raise Failure(f"the links cannot be set up: {exc}") from None


def _workspace(args: Args) -> Workspace:
    try:
        workspace = load_workspace(args.journeys, args.templates)
    except SpecError as exc:
        raise Failure(f"the journeys are not valid:\n{exc}") from None
    if not workspace.plans:
        raise UsageError(f"no journey files found in {' '.join(args.journeys)}")
    return workspace


def _engine(args: Args, clock: Clock) -> Engine:
    workspace = _workspace(args)
    links = _links(args)
    router = _router(args, clock)
    # The global holdout and the delivery modes were resolved (and checked) with the other settings.
    return Engine(
        open_store(args.db),
        workspace,
        router,
        clock,
        global_holdout=args.global_holdout,
        delivery=args.delivery,
        links=links,
        snapshot=_snapshot(args),
        **_workers(args),
    )


def _workers(args: Args) -> dict[str, Any]:
    """How this engine shares a PostgreSQL store with other workers (the config's ``workers`` section)."""
    config = getattr(args, "workspace_config", None)
    if config is None or not config.partitions:
        return {}
    return {"partitions": config.partitions, "lease_seconds": config.worker_lease_seconds}


def _snapshot(args: Args) -> SnapshotSettings | None:
    """Where the engine snapshots its signal state (the workspace config's ``snapshot`` section)."""
    config = getattr(args, "workspace_config", None)
    if config is None:
        return None
    path = config.snapshot_path(args.db)
    if path is None:
        return None
    from orchestrator.engine import SnapshotSettings

    return SnapshotSettings(path, config.snapshot_every_seconds)


def _hold(args: Args, command: str) -> Holding:
    """This process as the one engine on a SQLite store, for its whole life (a no-op on PostgreSQL)."""
    try:
        return hold(database_url(args.db), command, SystemClock().now())
    except StoreHeld as exc:
        raise Failure(str(exc)) from None


# ---------------------------------------------------------------------------------------------- commands


def cmd_validate(args: Args) -> int:
    from orchestrator.config import routes_of
    from orchestrator.engine import Routes, unsubscribe_warnings

    config = args.workspace_config
    routes = None if config is None or config.path is None else Routes(*routes_of(config))
    files, problems = validate_paths(args.paths, args.templates, routes)
    notes: list[str] = []
    warnings: list[str] = []
    if config is not None and config.path is not None and files:
        # Marketing email through a real provider without unsubscribe links, and the like.
        warnings += [str(w) for w in unsubscribe_warnings(args.paths, config, args.templates)]
    if files and getattr(args, "db", None) and not problems:
        from orchestrator.engine import missing_customer_attributes, store_problems

        try:
            store = open_store(args.db, create=False)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        try:
            # Errors: a version that changed without a bump, names no stored data has ever carried.
            problems, notes = store_problems(args.paths, store)
            # Warnings: a message whose template reads an attribute its customer lacks fails (is recorded).
            workspace = load_workspace(args.paths, args.templates)
            warnings += [str(missing) for missing in missing_customer_attributes(workspace, store)]
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


def cmd_ingest(args: Args) -> int:
    from orchestrator.cli._output import Progress
    from orchestrator.durations import parse_duration
    from orchestrator.ingest import time_range

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
    reports: list[IngestReport] = []
    error = None
    sizes = [path.stat().st_size for path in args.files]
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(args.rejects.open("a")) if args.rejects else None
        bar = stack.enter_context(Progress("ingest"))
        for i, path in enumerate(args.files):
            before, total = sum(sizes[:i]), sum(sizes)

            def told(
                done: int, _size: int, before: int = before, total: int = total, name: str = path.name
            ) -> None:
                bar.update(before + done, total, f"ingest {name}")

            try:
                report = _ingest_one(
                    store,
                    path,
                    args.kind,
                    now_us,
                    sink,
                    times,
                    quiet=as_json,
                    progress=told,
                    chunk_rows=getattr(args, "chunk_rows", None),
                )
            except Failure as exc:
                error = str(exc)
                break
            reports.append(report)
    if as_json:
        totals = {
            key: sum(getattr(r, key) for r in reports) for key in ("accepted", "rejected", "duplicates")
        }
        print(
            json.dumps(
                {**totals, "files": [r.to_dict() for r in reports], **({"error": error} if error else {})}
            )
        )
    elif reports:
        _print_ingest_table(reports)
    if error:
        if as_json:
            return 1
        raise Failure(error)  # after the table of the files that were ingested
    return 1 if (args.strict and sum(r.rejected for r in reports)) else 0


def _ingest_one(
    store: Store,
    path: Path,
    kind: str | None,
    now_us: int,
    sink: TextIO | None,
    times: TimeRange,
    quiet: bool = False,
    progress: Callable[[int, int], object] | None = None,
    chunk_rows: int | None = None,
) -> IngestReport:
    """Ingest one file and, unless ``quiet``, print its first rejects."""
    from orchestrator.ingest import ingest_file

    try:
        report = ingest_file(
            store,
            path,
            kind=kind,
            now_us=now_us,
            rejects=sink,
            times=times,
            progress=progress,
            chunk_rows=chunk_rows,
        )
    except ValueError as exc:
        raise Failure(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    if quiet:
        return report
    for line, reason in report.examples:
        print(f"  {path}:{line}: {reason}", file=sys.stderr)
    if report.rejected > len(report.examples):
        print(f"  ... and {report.rejected - len(report.examples)} more", file=sys.stderr)
    return report


def _print_ingest_table(reports: list[IngestReport]) -> None:
    """One row per file (and a total row for several): rows accepted, rejected, duplicates skipped
    (events) and stale (customer rows older than the stored record, not applied)."""
    from orchestrator.cli._output import print_table

    def row(name: str, kind: str, items: list[IngestReport]) -> list[object]:
        events = kind != "customers"
        return [
            name,
            kind,
            sum(r.accepted for r in items),
            sum(r.rejected for r in items),
            sum(r.duplicates for r in items) if events else "-",
            sum(r.stale for r in items),
            f"{sum(r.seconds for r in items):.2f}s",
        ]

    rows = [row(r.source, r.kind, [r]) for r in reports]
    if len(reports) > 1:
        kinds = {r.kind for r in reports}
        rows.append(row("total", kinds.pop() if len(kinds) == 1 else "", reports))
    columns: list[tuple[str, Literal["left", "right"]]] = [
        ("file", "left"),
        ("kind", "left"),
        ("accepted", "right"),
        ("rejected", "right"),
        ("duplicates", "right"),
        ("stale", "right"),
        ("time", "right"),
    ]
    print_table(columns, rows)


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


def cmd_run(args: Args) -> int:
    from orchestrator.cli._output import Progress

    if not args.once:
        raise UsageError("--once is required: it runs exactly one tick (the daemon runs ticks on a schedule)")
    clock = _instant(args.now)
    with _hold(args, "run --once"):
        engine = _engine(args, clock)
        try:
            with Progress("tick", unit=None) as bar:
                report = engine.tick(
                    progress=lambda what, done, total: bar.update(done, total, f"tick: {what}")
                )
        except ClockBehind as exc:
            raise Failure(str(exc)) from None
        finally:
            engine.save_signal_state()
            engine.leave()  # partitioned: the daemons take its partitions at their next tick
            engine.router.close()
            engine.store.dispose()
    print(f"tick at {clock.now().isoformat()}")
    _print_tick(report)
    for journey_id, error in report.failed.items():
        print(f"orchestrator run: journey {journey_id} failed: {error}", file=sys.stderr)
    return 1 if report.failed else 0  # the other journeys ran, and dispatch


def cmd_daemon(args: Args) -> int:
    simulated = _simulated_clock(args)
    from orchestrator.logs import setup_logging

    setup_logging(args.log_format, args.log_level)  # every daemon line in the chosen format
    with _hold(args, "daemon"):  # until the daemon stops
        return _daemon(args, simulated)


def _inbox(folder: Path | None) -> Inbox | None:
    """The daemon's inbox (ingest is imported only when there is one: it loads pyarrow)."""
    if folder is None:
        return None
    from orchestrator.ingest import Inbox

    return Inbox(folder)


def _daemon(args: Args, simulated: tuple[SimulatedClock, datetime, timedelta] | None) -> int:
    from orchestrator.cli._weekly import weekly_schedule
    from orchestrator.engine import DaemonSettings, WorkspaceFiles, serve

    engine = _engine(args, SystemClock() if simulated is None else simulated[0])
    if args.attempt_log is not None or args.provider is not None:
        from orchestrator.engine import AttemptLog, crash_test_provider

        # The crash test kills processes, not the machine: files need no fsync to survive that.
        try:
            adapter = crash_test_provider(args.provider, args.outbox)
        except ValueError as exc:
            raise UsageError(f"--provider: {exc}") from None
        engine.router = ChannelRouter(
            [adapter if args.attempt_log is None else AttemptLog(adapter, args.attempt_log)]
        )
    files = WorkspaceFiles.of(args.journeys, args.templates)
    load = apply = None
    config = args.workspace_config
    if config.path is not None and args.provider is None and args.attempt_log is None:
        # The config is watched with the journeys: a changed provider, webhook or link section is
        # checked and set up before it replaces the running one; the rest of it needs a restart.
        files = WorkspaceFiles(files.journeys, files.templates, extra=(config.path,))
        load, apply = _config_reload(args, engine, files)
    predict = config.file.predict
    settings = DaemonSettings(
        interval=args.interval,
        store_url=database_url(args.db),
        max_ticks=args.max_ticks,
        inbox=_inbox(args.inbox),
        simulated=simulated,
        files=files,
        watch_seconds=args.watch,
        load=load,
        apply=apply,
        refit_every=predict.refit_every if predict.refit else None,
        weekly=weekly_schedule(config),
    )
    service = None
    try:
        if args.serve:
            from orchestrator.http import start_in_thread

            try:
                service = start_in_thread(args.workspace_config, engine.store)
            except (RuntimeError, ValueError) as exc:
                raise Failure(str(exc)) from None
        serve(engine, settings)
    finally:
        if service is not None:
            service.stop()
        engine.router.close()
        engine.store.dispose()
    return 0


def _config_reload(
    args: Args, engine: Engine, files: WorkspaceFiles
) -> tuple[Callable[[], Workspace], Callable[[Workspace], None]]:
    """The daemon's reload of the workspace config beside its journeys: ``load`` checks the journeys and
    the config and sets up the config's providers (any problem refuses the whole reload, the running
    version goes on); ``apply`` hands the engine both."""
    from orchestrator.channels import ProviderSetupError, build_router, message_links
    from orchestrator.config import ConfigError, load_config
    from orchestrator.language import Problem

    path = args.workspace_config.path
    assert path is not None
    applied = [path.read_bytes()]
    pending: list[tuple[ChannelRouter, MessageLinks | None, dict[str, DeliveryMode], bytes]] = []

    def load() -> Workspace:
        workspace = files.load()
        text = path.read_bytes()
        if text == applied[0]:
            return workspace
        try:
            config = load_config(path, require_secrets=True)
            links = message_links(config.file)
            router = build_router(config, outbox=args.outbox, clock=engine.clock)
        except ConfigError:
            raise
        except (ProviderSetupError, ValueError) as exc:
            raise SpecError([Problem(str(path), 1, 1, str(exc))]) from None
        # Delivery modes from the config, unless --delivery (or its variable) set them for this process.
        keep = args.delivery_source not in (None, "config")
        modes = engine.delivery if keep else dict(config.delivery_modes())
        for old in pending:
            old[0].close()
        pending[:] = [(router, links, cast("dict[str, DeliveryMode]", modes), text)]
        return workspace

    def apply(workspace: Workspace) -> None:
        engine.replace_workspace(workspace)
        if pending:
            router, links, modes, text = pending.pop()
            engine.replace_delivery(router, links, modes)
            applied[0] = text

    return load, apply


def cmd_retire(args: Args) -> int:
    from orchestrator.store import retire_journey, retirement

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
            already = retirement(conn, args.journey)
            done = None if already else retire_journey(conn, args.journey, to_us(SystemClock().now()))
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


def _simulated_clock(args: Args) -> tuple[SimulatedClock, datetime, timedelta] | None:
    if args.simulated_clock is None:
        return None
    from orchestrator.durations import parse_duration

    try:
        start, step = parse_instant(args.simulated_clock), parse_duration(args.simulated_step)
    except ValueError as exc:
        raise UsageError(f"--simulated-clock/--simulated-step: {exc}") from None
    return SimulatedClock(start), start, step


def cmd_report(args: Args) -> int:
    from orchestrator.cli._lift import run_report

    return run_report(args)


def cmd_backtest(args: Args) -> int:
    from orchestrator.cli._backtest import run_backtest

    return run_backtest(args)


def cmd_weekly_report(args: Args) -> int:
    from orchestrator.cli._weekly import run_weekly_report

    return run_weekly_report(args)


def cmd_analytics(args: Args) -> int:
    from orchestrator.cli._analytics import run_analytics

    return run_analytics(args)


def cmd_lift(args: Args) -> int:
    from orchestrator.cli._lift import run_lift

    return run_lift(args)


def cmd_predict_fit(args: Args) -> int:
    from orchestrator.cli._predict import run_predict_fit

    return run_predict_fit(args)


def cmd_predict_scores(args: Args) -> int:
    from orchestrator.cli._predict import run_predict_scores

    return run_predict_scores(args, to_us(_instant(args.now).now()))


def cmd_privacy_export(args: Args) -> int:
    from orchestrator.cli._privacy import run_privacy_export

    return run_privacy_export(args)


def cmd_audience(args: Args) -> int:
    from orchestrator.cli._audience import run_audience

    return run_audience(args)


def cmd_plan(args: Args) -> int:
    from orchestrator.cli._plan_and_status import run_plan

    return run_plan(args)


def cmd_diagram(args: Args) -> int:
    from orchestrator.cli._diagram import run_diagram

    return run_diagram(args)


def cmd_status(args: Args) -> int:
    from orchestrator.cli._plan_and_status import run_status

    return run_status(args)


def cmd_test(args: Args) -> int:
    from orchestrator.cli._journey_tests import run_test

    return run_test(args)


def cmd_why(args: Args) -> int:
    from orchestrator.cli._why import run_why

    return run_why(args)


def cmd_preview(args: Args) -> int:
    from orchestrator.cli._why import run_preview

    return run_preview(args)


def cmd_demo(args: Args) -> int:
    from orchestrator.cli._output import LiveStdout, Progress
    from orchestrator.demo import run_demo

    with Progress("demo: simulated days", unit="ticks") as bar:
        return run_demo(
            args.dir,
            args.data,
            args.journeys,
            days=args.days,
            ticks_per_day=args.ticks_per_day,
            global_holdout=args.global_holdout,
            out=cast(TextIO, LiveStdout()),  # its lines go above the bar
            progress=bar.update,
        )


def cmd_evaluate(args: Args) -> int:
    import tempfile
    import time

    from orchestrator.engine import load_frames, prediction_fits, signal_matches
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
            fits, missing = prediction_fits(conn, workspace.plans)
        if missing:
            store.dispose()
            hint = "" if args.db else " (--db names a store that holds one)"
            raise Failure("a journey reads a prediction without its fit" + hint + ":\n" + "\n".join(missing))
        loaded = time.perf_counter()
        matches = signal_matches(workspace.plans, events, customers, now_us, fits)
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


def cmd_init(args: Args) -> int:
    from orchestrator.config import WorkspaceExists, init_workspace

    try:
        written = init_workspace(args.folder, SystemClock().now())
    except WorkspaceExists as exc:
        raise Failure(str(exc)) from None
    folder = args.folder
    print(f"created a workspace in {folder}:")
    for path in written:
        print(f"  {path.relative_to(folder)}")
    where = "" if folder.resolve() == Path.cwd().resolve() else f"cd {folder} && "
    print("next:")
    print(f"  {where}orchestrator validate")
    print("  orchestrator test                # the welcome journey's tests (journeys/welcome.test.yaml)")
    print("  orchestrator ingest sample/customers.csv sample/events.jsonl")
    print("  orchestrator run --once          # the welcome emails land in outbox/")
    return 0


def cmd_config(args: Args) -> int:
    from orchestrator.config import effective

    config = args.workspace_config
    overrides = {
        "store": args.db,
        "journeys": [str(p) for p in args.journeys],
        "templates": args.templates,
        "outbox": args.outbox,
        "global_holdout": args.global_holdout,
    }
    data = effective(config, overrides)
    for channel, mode in args.delivery.items():  # --delivery / $ORCHESTRATOR_DELIVERY
        section = data["channels"].get(channel)
        if isinstance(section, dict):
            section["delivery"] = mode
    if args.format == "json":
        print(json.dumps(data, indent=2, default=str))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), end="")
    sys.stdout.flush()
    for name in config.unset_secrets:
        print(f"warning: {name} is not set in the environment", file=sys.stderr)
    return 0


def cmd_outbox_unpack(args: Args) -> int:
    from orchestrator.channels import CHANNELS
    from orchestrator.channels._spool import unpack_spools

    for name in args.channels or ():
        if name not in CHANNELS:
            raise UsageError(f"--channel {name}: unknown channel; expected one of {', '.join(CHANNELS)}")
    if not args.outbox.is_dir():
        raise UsageError(f"{args.outbox}: no such outbox folder")
    try:
        written = unpack_spools(args.outbox, args.channels)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot unpack the spools of {args.outbox}: {exc}") from None
    print(f"wrote {written} message file{'s' if written != 1 else ''} under {args.outbox}")
    return 0


def cmd_send_test(args: Args) -> int:
    from orchestrator.engine import PreviewError, send_test

    workspace = _workspace(args)
    clock = SystemClock()
    links = _links(args)
    try:
        store = open_store(args.db)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    router = _router(args, clock)
    try:
        sent = send_test(
            workspace, store, router, args.journey, args.step, args.to, clock, args.customer, links
        )
    except PreviewError as exc:
        raise UsageError(str(exc)) from None
    finally:
        router.close()
        store.dispose()
    row, result = sent.row, sent.result
    channel = row["channel"]
    who = "sample data" if args.customer is None else f"customer {args.customer}"
    if result.ok:
        print(
            f"sent {args.journey}/{args.step} ({channel}, rendered for {who}) to {args.to}: "
            f"provider id {result.provider_id}; recorded as a test, {sent.key}"
        )
        return 0
    kind = "will not" if result.outcome == "permanent" else "may"
    print(
        f"orchestrator send-test: not sent ({result.code or result.status}): {result.error}; a retry {kind} "
        f"help; recorded as a test, {sent.key}",
        file=sys.stderr,
    )
    return 1


def cmd_serve(args: Args) -> int:
    from orchestrator.http import serve
    from orchestrator.logs import setup_logging

    setup_logging(args.log_format, args.log_level)
    try:
        serve(args.workspace_config, args.db, args.host, args.port)
    except (RuntimeError, ValueError) as exc:
        raise Failure(str(exc)) from None
    return 0
