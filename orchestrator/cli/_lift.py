"""``orchestrator report`` (a journey's lift, from the store) and ``orchestrator lift`` (an experiment table).

Both hand per-customer numpy columns to ``orchestrator.measure._stats.analyze``, so a journey and a CSV get
the same statistics. Errors in the input (a missing column, a control value that does not occur, a metric
cell that is not a number) are reported with the column, the line and the value
(``orchestrator.measure._experiment``).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._instants import as_of_us
from orchestrator.cli._settings import Args
from orchestrator.measure import DEFAULT_SEQUENTIAL_TAU, InputError, read_experiment


def _emit(args: Args, content: str) -> None:
    if args.output is None:
        sys.stdout.write(content if content.endswith("\n") else content + "\n")
        return
    args.output.write_text(content if content.endswith("\n") else content + "\n", encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- report


def run_report(args: Args) -> int:
    from orchestrator.durations import parse_duration
    from orchestrator.measure import (
        UpliftSetupError,
        export_entries,
        export_funnel,
        format_table,
        journey_report,
        render_journey_html,
    )

    if args.all:
        return _run_portfolio(args)
    if args.journey is None:
        raise UsageError("name a JOURNEY, or give --all for every journey side by side")
    for flag, given in (("--from", args.program_from), ("--program-goal", args.program_goal)):
        if given is not None:
            raise UsageError(f"{flag} is for the program's lift: add --all")
    if args.feature and not args.uplift:
        raise UsageError("--feature names what the uplift view models on: add --uplift")
    try:
        pre_period = parse_duration(args.pre_period)
    except (ValueError, OverflowError) as exc:
        raise UsageError(
            f"--pre-period {args.pre_period!r}: not a duration this engine can hold ({exc})"
        ) from None
    if args.export is not None and args.export.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"--export {args.export}: the file name must end in .parquet or .csv")
    as_of = as_of_us(args.now)
    store = _report_store(args.db)
    try:
        if args.by is not None:
            _check_attribute(store, args.by)
        for name in args.feature or ():
            _check_attribute(store, name, "--feature")
        try:
            report = journey_report(
                store,
                args.journey,
                as_of_us=as_of,
                alpha=args.alpha,
                power=args.power,
                sequential_tau=DEFAULT_SEQUENTIAL_TAU if args.tau is None else args.tau,
                cuped=args.cuped,
                pre_period=pre_period,
                segment_attribute=args.by,
                uplift=args.uplift,
                uplift_features=args.feature,
                uplift_learner=args.uplift_model,
                bayes=args.bayes,
                currency=args.currency,
            )
        except KeyError as exc:
            raise Failure(str(exc.args[0])) from None
        except UpliftSetupError as exc:  # --uplift without scikit-learn installed
            raise Failure(str(exc)) from None
    finally:
        store.dispose()
    if args.export is not None and report.rows is not None:
        count = export_entries(report.rows, args.export)
        print(f"exported {count} entries to {args.export}", file=sys.stderr)
        funnel_file = args.export.with_name(f"{args.export.stem}.funnel{args.export.suffix}")
        count = export_funnel(report.funnels, funnel_file)
        print(f"exported {count} funnel rows to {funnel_file}", file=sys.stderr)
    if args.format == "json":
        _emit(args, json.dumps(report.to_dict(), indent=2))
    elif args.format == "html":
        _emit(args, render_journey_html(report))
    elif args.output is not None:
        _emit(args, format_table(report))
    else:
        _print_report(report)
    return 0


def _run_portfolio(args: Args) -> int:
    """``report --all``: every journey's lift side by side, and the program's (``measure._portfolio``)."""
    from orchestrator.measure import portfolio, portfolio_lines, render_portfolio_html

    if args.journey is not None:
        raise UsageError("--all reports every journey: leave out JOURNEY")
    for flag, given in (("--export", args.export), ("--by", args.by), ("--uplift", args.uplift),
                        ("--cuped", args.cuped), ("--bayes", args.bayes)):  # fmt: skip
        if given:
            raise UsageError(f"{flag} is for one journey's report, not --all")
    as_of = as_of_us(args.now)
    since = _program_from(args.program_from)
    if since is not None and as_of is not None and since >= as_of:
        raise UsageError(f"--from {args.program_from!r} is not before the report instant (--now)")
    store = _report_store(args.db)
    try:
        result = portfolio(
            store,
            as_of,
            args.alpha,
            program_goal=args.program_goal,
            program_since_us=since,
            global_percent=args.global_holdout,
            currency=args.currency,
        )
    finally:
        store.dispose()
    if not result.rows:
        raise Failure("no journey has run in this store yet")
    if args.format == "json":
        _emit(args, json.dumps(result.to_dict(), indent=2))
    elif args.format == "html":
        _emit(args, render_portfolio_html(result))
    else:
        _emit(args, "\n".join(portfolio_lines(result)))
    return 0


def _program_from(text: str | None) -> int | None:
    """``--from`` as microseconds: an ISO-8601 instant with a time zone, or a day (its midnight, UTC)."""
    from datetime import UTC, date, datetime

    from orchestrator.clock import parse_instant, to_us

    if text is None:
        return None
    try:
        return to_us(parse_instant(text))
    except ValueError:
        pass
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--from {text!r} is not a day (2024-03-01) or an ISO-8601 instant with a time zone"
        ) from None
    return to_us(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _report_store(db: str | None) -> Any:
    """The store a report reads: it must exist and hold the engine's tables."""
    from orchestrator.store import open_store

    try:
        store = open_store(db, create=False)
    except FileNotFoundError as exc:
        raise Failure(f"{exc}; ingest data and run the engine first") from None
    if not store.is_initialised():
        store.dispose()
        raise Failure("the store is empty; ingest data and run the engine first")
    return store


def _print_report(report: Any) -> None:
    """The report's text with its arms as a rich table (see ``measure._text.report_text``)."""
    from orchestrator.cli._output import print_table
    from orchestrator.measure import report_text

    parts = report_text(report)
    print("\n".join(parts.head))
    if parts.rows:
        print()
        print_table(parts.columns, parts.rows, indent=2)
    if parts.tail:
        print("\n".join(parts.tail))


def _check_attribute(store: Any, name: str, option: str = "--by") -> None:
    """``--by`` (or ``--feature``) must name an attribute some customer has (a typo would put everyone
    under "missing")."""
    import difflib

    from orchestrator.engine import stored_attributes

    known = sorted(stored_attributes(store))
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known[:30])})"
    raise UsageError(f"{option} {name!r}: no customer in the store has this attribute{hint}")


# ------------------------------------------------------------------------------------------------ lift


def _split(entries: list[str] | None) -> dict[str, float] | None:
    if not entries:
        return None
    shares: dict[str, float] = {}
    for entry in entries:
        name, sep, weight = entry.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--split {entry!r}: write ARM=WEIGHT, e.g. --split 'No E-Mail=1'")
        try:
            value = float(weight)
        except ValueError:
            raise UsageError(f"--split {entry!r}: the weight {weight!r} is not a number") from None
        if not (value >= 0.0 and math.isfinite(value)):
            raise UsageError(f"--split {entry!r}: the weight must be zero or positive")
        shares[name] = value
    return shares


def run_lift(args: Args) -> int:
    from orchestrator.measure import analyze, format_analysis, render_analysis_html

    if args.arm in args.metric:
        raise UsageError(f"--arm {args.arm!r} cannot also be a --metric")
    features = _check_uplift_options(args)
    shares = _split(args.split)
    try:
        data = read_experiment(
            args.file, args.arm, args.control, args.metric, args.covariate, args.by, features
        )
    except InputError as exc:
        raise Failure(str(exc)) from None
    if args.treatment is not None and not (data.arm == args.treatment).any():
        raise Failure(f"--treatment {args.treatment!r} does not occur in column {args.arm!r}")
    if shares is not None:
        undeclared = sorted(set(data.arm.tolist()) - set(shares))
        if undeclared:
            raise UsageError(f"--split declares no share for arm(s) {', '.join(map(repr, undeclared))}")
    covariates = (
        None if data.covariate is None else {name: (args.covariate, data.covariate) for name in data.metrics}
    )
    analysis = analyze(
        data.arm,
        args.control,
        data.metrics,
        expected_shares=shares,
        covariates=covariates,
        segments=None if data.segment is None else (args.by, data.segment),
        alpha=args.alpha,
        power=args.power,
        sequential_tau=DEFAULT_SEQUENTIAL_TAU if args.tau is None else args.tau,
        bayes=args.bayes,
    )
    uplift = _lift_uplift(data, args) if args.uplift else None
    source = {
        "file": str(args.file),
        "rows": data.rows,
        "arm_column": args.arm,
        "covariate": args.covariate,
        "by": args.by,
    }
    if args.format == "json":
        out = {"source": source, **analysis.to_dict()}
        if uplift is not None:
            out["uplift"] = uplift.to_dict()
        _emit(args, json.dumps(out, indent=2))
    elif args.format == "html":
        title = f"Lift: {args.file.name}"
        subtitle = f"{data.rows} rows; arms from column {args.arm!r}"
        _emit(args, render_analysis_html(analysis, title, subtitle, uplift))
    else:
        title = f"Lift: {args.file} ({data.rows} rows, arms from {args.arm!r})"
        _emit(args, format_analysis(analysis, title, uplift))
    return 0


def _check_uplift_options(args: Args) -> list[str]:
    """The features of ``--uplift`` (none without it), after checking the options that go with it."""
    features = list(dict.fromkeys(args.feature or ()))
    if not args.uplift:
        if features or args.treatment is not None:
            given = "--feature" if features else "--treatment"
            raise UsageError(f"{given} is read by the uplift view: add --uplift")
        return []
    if not features:
        raise UsageError("--uplift needs at least one --feature COLUMN known before the experiment")
    for name in features:
        if name == args.arm or name in args.metric:
            what = "the arm column" if name == args.arm else "a --metric"
            raise UsageError(f"--feature {name!r} cannot be {what}: a feature is known before the experiment")
    if args.treatment is not None and args.treatment == args.control:
        raise UsageError(f"--treatment {args.treatment!r} is the control")
    return features


def _lift_uplift(data: Any, args: Args) -> Any:
    """The uplift view of every 0/1 metric, for each treated arm (or ``--treatment``) against the control;
    an arm or metric the model cannot be fitted on is told in a note, and if none can, the command fails."""
    import numpy as np

    from orchestrator.measure import UpliftSetupError, UpliftView, uplift_estimate

    arms = [args.treatment] if args.treatment else sorted(set(data.arm.tolist()) - {args.control})
    results, notes = [], []
    for metric, values in data.metrics.items():
        if not np.isin(values, (0.0, 1.0)).all():
            notes.append(f"{metric}: not a 0/1 outcome, so no uplift view")
            continue
        for arm in arms:
            rows = (data.arm == arm) | (data.arm == args.control)
            try:
                result = uplift_estimate(
                    {name: column[rows] for name, column in data.features.items()},
                    values[rows],
                    data.arm[rows] == arm,
                    metric=metric,
                    treatment=arm,
                    control=args.control,
                    learner=args.uplift_model,
                )
            except InputError as exc:
                notes.append(f"{metric}, {arm} vs {args.control}: no uplift view: {exc}")
                continue
            except UpliftSetupError as exc:
                raise Failure(str(exc)) from None
            results.append(result)
    if not results:
        raise Failure("no uplift view: " + "; ".join(notes))
    return UpliftView(tuple(results), tuple(notes))
