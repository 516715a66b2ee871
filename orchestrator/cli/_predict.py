"""``orchestrator predict fit``: the churn and lifetime-value models fitted on the store's purchases
(``predict.fit_history``), printed as a short table or as JSON; ``orchestrator predict scores``: every
customer's predictions from the newest kept fit (``predict.score_customers``), summed up, and written
one row per customer with ``--output``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from orchestrator.cli._errors import Failure, UsageError
from orchestrator.cli._settings import Args
from orchestrator.cli._stores import existing_store
from orchestrator.clock import SystemClock, to_us


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a day such as 1997-09-30") from None


def run_predict_fit(args: Args) -> int:
    from orchestrator.errors import InvalidInputError, SetupError
    from orchestrator.predict import fit_history, save_fit

    if args.calibration_end is None:
        calibration_end = datetime.now(UTC).date() - timedelta(days=1)
    else:
        calibration_end = _day(args.calibration_end, "--calibration-end")
    holdout_end = None if args.holdout_end is None else _day(args.holdout_end, "--holdout-end")
    store = existing_store(args.db, "the store is empty: ingest customers and events first")
    try:
        fit = fit_history(store, calibration_end, event=args.event, value=args.value, holdout_end=holdout_end)
        report = fit.to_dict()
        if args.save:
            report["saved"] = save_fit(store, fit, to_us(SystemClock().now()))
    except (InvalidInputError, SetupError) as exc:  # no history to fit, or the extra is not installed
        raise Failure(str(exc)) from None
    finally:
        store.dispose()
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"fitted on {report['customers']} customers ({report['repeat_customers']} with a repeat purchase), "
        f"{args.event} events to {report['calibration_end']} included, time in weeks, "
        f"in {report['fit_seconds']:.1f} s"
    )
    bg = "  ".join(f"{name} = {report[name]:.4f}" for name in ("r", "alpha", "a", "b"))
    print(f"BG/NBD       {bg}")
    if report["p"] is None:
        print("Gamma-Gamma  not fitted: no customer has two repeat purchases with a value")
    else:
        gg = "  ".join(f"{name} = {report[name]:.4f}" for name in ("p", "q", "gamma"))
        print(f"Gamma-Gamma  {gg}")
    holdout = report.get("holdout")
    if holdout is not None:
        expected, observed = holdout["expected_repeat_purchases"], holdout["observed_repeat_purchases"]
        gap = f" ({(expected - observed) / observed:+.1%})" if observed else ""
        print(
            f"holdout to {holdout['end']} ({holdout['weeks']:.1f} weeks): {expected:,.1f} repeat purchases "
            f"expected, {observed:,} observed{gap}"
        )
    if "saved" in report:
        print(f"kept in the store as fit {report['saved']}")
    return 0


def run_predict_scores(args: Args, now_us: int) -> int:
    from orchestrator.durations import parse_duration
    from orchestrator.errors import OrchestratorError
    from orchestrator.predict import export_scores, score_customers

    try:
        horizon = parse_duration(args.horizon)
    except ValueError as exc:
        raise UsageError(f"--horizon {args.horizon!r}: {exc}") from None
    if args.output is not None and args.output.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--output {args.output}: write a .csv or .parquet file")
    store = existing_store(args.db, "the store is empty: ingest customers and events first")
    try:
        scores = score_customers(
            store, now_us, event=args.event, value=args.value, horizon_days=horizon.total_seconds() / 86400
        )
    except OrchestratorError as exc:
        if isinstance(exc, UsageError):
            raise
        raise Failure(str(exc)) from None
    finally:
        store.dispose()
    summary = scores.summary()
    if args.output is not None:
        summary["rows_written"] = export_scores(scores, args.output)
        summary["output"] = str(args.output)
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return 0
    fit = scores.fit
    fitted = datetime.fromtimestamp(fit.fitted_us / 1e6, UTC).isoformat(timespec="seconds")
    made = f"made {fitted}, purchases to {summary['calibration_end']}"
    print(
        f"fit {fit.id} of {fit.event}.{fit.value} ({made}); {summary['customers']} customers who bought, "
        f"scored at {datetime.fromtimestamp(now_us / 1e6, UTC).isoformat(timespec='seconds')}"
    )
    quantiles = summary["p_alive_quantiles"]
    if quantiles:
        spread = "  ".join(f"{float(q):.0%} {v:.3f}" for q, v in quantiles.items())
        print(f"p_alive      {spread}; below 0.3: {summary['p_alive_below_0_3']}")
    print(f"over {args.horizon}: {summary['expected_purchases_total']:,.1f} purchases expected", end="")
    clv = summary["predicted_clv_total"]
    print("" if clv is None else f", value {clv:,.2f}")
    if args.output is not None:
        print(f"{summary['rows_written']} rows written to {args.output}")
    return 0
