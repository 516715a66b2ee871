"""``orchestrator predict fit``: the churn and lifetime-value models fitted on the store's purchases
(``predict.fit_history``), printed as a short table or as JSON."""

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
