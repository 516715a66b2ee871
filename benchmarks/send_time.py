#!/usr/bin/env python3
"""Best time against sending at once, in the engine's own lift report, on a simulated shop.

    python benchmarks/send_time.py [--customers 3000] [--seeds 1 2 3 4 5] [--compare 50]

The shop's response model is declared before any policy (``orchestrator.demo._timing.ResponseModel``):
each customer reads in a two-hour window of their own local day (evening, morning or lunchtime, in London,
New York or Tokyo); a message that arrives in it converts with chance 20%, otherwise 4%. The same shop
without that structure (opens at any hour, 8% whatever the hour) is the check for a false gain. For each
seed and each model the engine runs a journey whose one send is ``at: best_time`` with ``compare: 50``, and
the figures are read from its report's send-policy comparison (best time against the share sent at once):
the rates, the absolute lift and its 95% interval. Prints a table, then one JSON line with every figure;
exits with an error unless every structured run's interval lies above zero and every run without
structure has an interval covering zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.demo._timing import ResponseModel, simulate_send_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--compare", type=float, default=50)
    args = parser.parse_args()
    rows = []
    print(f"{'model':13s} {'seed':>4s} {'best_time':>10s} {'immediate':>10s} {'lift':>9s}  95% interval")
    for structured in (True, False):
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as folder:
                run = simulate_send_time(
                    Path(folder),
                    args.customers,
                    seed,
                    ResponseModel(structured=structured),
                    compare=args.compare,
                )
            (policy,) = run.report.send_policies
            metric = policy.analysis.metric("conversion")
            comparison = policy.comparison()
            assert comparison is not None and comparison.lift is not None
            lift = comparison.lift
            low, high = lift.absolute_ci.low, lift.absolute_ci.high
            row = {
                "model": "structured" if structured else "no structure",
                "seed": seed,
                "best_time_rate": metric.arm("best_time").mean,
                "immediate_rate": metric.arm("immediate").mean,
                "lift": lift.absolute,
                "ci": [low, high],
                "excludes_zero": bool(low > 0 or high < 0),
                "sent_in_reading_window": run.in_window,
                "sent": run.sent,
            }
            rows.append(row)
            print(
                f"{row['model']:13s} {seed:4d} {row['best_time_rate']:10.2%} {row['immediate_rate']:10.2%} "
                f"{lift.absolute * 100:+8.2f}p  [{low * 100:+.2f}, {high * 100:+.2f}] pts"
            )
    print(json.dumps({"customers": args.customers, "compare": args.compare, "runs": rows}))
    gains = all(r["ci"][0] > 0 for r in rows if r["model"] == "structured")
    no_false_gain = not any(r["excludes_zero"] for r in rows if r["model"] == "no structure")
    if not (gains and no_false_gain):
        sys.exit("best time did not beat sending at once with structure, or showed a gain without it")


if __name__ == "__main__":
    main()
