#!/usr/bin/env python3
"""Best time against sending at once, and best channel against one fixed channel, in the engine's own lift
report, on a simulated shop.

    python benchmarks/send_time.py [--customers 3000] [--seeds 1 2 3 4 5] [--compare 50] [--only time|channel]

The shop's response model is declared before any policy (``orchestrator.demo._timing.ResponseModel``):
each customer reads in a two-hour window of their own local day (evening, morning or lunchtime, in London,
New York or Tokyo); a message that arrives in it converts with chance 20%, otherwise 4%. Each customer
also prefers one channel (email 40%, push 35%, SMS 25%): four weeks of newsletters sent by the engine on
channels it picks at random are answered 50% of the time on that channel and 8% on others, and an offer
converts with chance 20% on it and 5% on others. The same shop without that structure (opens at any
hour, every channel answered alike, 8% whatever the hour or channel) is the check for a false gain.

For each seed and model the engine runs a journey whose one send is ``at: best_time`` (or on ``channel:
best(email, push, sms)``) with ``compare: 50``, and the figures are read from its report's send-policy
comparison: the rates, the absolute lift and its 95% interval. Prints a table, then one JSON line with
every figure; exits with an error unless every structured run's interval lies above zero and every run
without structure has an interval covering zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.demo._timing import ResponseModel, simulate_send_channel, simulate_send_time

POLICIES = {"time": ("best_time", "immediate"), "channel": ("best_channel", "fixed:email")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--compare", type=float, default=50)
    parser.add_argument("--only", choices=sorted(POLICIES))
    args = parser.parse_args()
    rows = []
    print(
        f"{'choice':8s} {'model':13s} {'seed':>4s} {'chosen':>8s} {'compared':>9s} {'lift':>9s}  95% interval"
    )
    for choice in [args.only] if args.only else list(POLICIES):
        simulate = simulate_send_time if choice == "time" else simulate_send_channel
        chosen, control = POLICIES[choice]
        for structured in (True, False):
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as folder:
                    run = simulate(
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
                assert lift.absolute_ci is not None
                low, high = lift.absolute_ci.low, lift.absolute_ci.high
                row = {
                    "choice": choice,
                    "model": "structured" if structured else "no structure",
                    "seed": seed,
                    "chosen": chosen,
                    "control": control,
                    "chosen_rate": metric.arm(chosen).mean,
                    "control_rate": metric.arm(control).mean,
                    "lift": lift.absolute,
                    "ci": [low, high],
                    "excludes_zero": bool(low > 0 or high < 0),
                    "sent": run.sent,
                    # messages in the reading window (time) or on the preferred channel (channel)
                    "sent_as_preferred": run.in_window,
                }
                rows.append(row)
                print(
                    f"{choice:8s} {row['model']:13s} {seed:4d} {row['chosen_rate']:8.2%} "
                    f"{row['control_rate']:9.2%} {lift.absolute * 100:+8.2f}p  [{low * 100:+.2f}, "
                    f"{high * 100:+.2f}] pts"
                )
    print(json.dumps({"customers": args.customers, "compare": args.compare, "runs": rows}))
    gains = all(r["ci"][0] > 0 for r in rows if r["model"] == "structured")
    no_false_gain = not any(r["excludes_zero"] for r in rows if r["model"] == "no structure")
    if not (gains and no_false_gain):
        sys.exit("a choice did not beat its comparison with structure, or showed a gain without it")


if __name__ == "__main__":
    main()
