#!/usr/bin/env python3
"""Do the lift report's intervals cover the true effect? A simulated shop with a declared effect, run
through the whole engine under many seeds.

    python benchmarks/coverage.py [--runs 200] [--customers 4000] [--workers 2] [--effect 0.03]

The shop's story, declared before anything runs (``Story``): each customer visits once, at a time drawn
uniformly over the first ``arrival_days``; the visit enters them into one journey (``entry: {event:
visit}``, holdout 50%, one email, goal ``purchase`` within 7 days). A customer the engine held out buys
within the 7 days after entry with probability ``base``; one it messaged with probability ``base +
effect``: the true effect on the conversion rate is ``effect``, exactly, in every run. A purchase falls at
a uniform instant inside the window. The engine ticks every 12 hours on a simulated clock and sees each
event only once its instant has passed (as the backtest feeds them); nothing but the engine decides who is
held out (its deterministic hash of journey and customer id, the ids new in every run).

Each run reads the engine's own lift report (``measure.journey_report``) as an analyst would:

- every simulated day from the first day an entry's window closes, the always-valid interval of the
  absolute lift: the run covers when every one of those daily intervals holds the true effect;
- after the last window closed, the fixed 95% interval of the absolute lift, and the sample-ratio check.

Prints one JSON line per run with ``--verbose``, then one line with ``runs``, ``coverage_fixed``,
``coverage_always_valid``, ``srm_false_alarm_rate`` (each with its 95% Wilson interval), the mean daily
looks per run and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.clock import to_us
from orchestrator.testing import T0, World, customer, event, write_files

JOURNEY = """\
id: trial
version: 1
entry: {{event: visit}}
holdout: {holdout}
steps:
  - send: {{channel: email, subject: "Something for you", template: offer.txt}}
goal: {{event: purchase, within: 7d}}
"""
TICK = timedelta(hours=12)
WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Story:
    """The declared truth of the simulated shop."""

    customers: int = 4000
    arrival_days: int = 14
    base: float = 0.10  # the chance a held-out customer buys within 7 days of entry
    effect: float = 0.03  # what the message adds to it: the true absolute lift
    holdout: int = 50  # percent


@dataclass(frozen=True)
class RunResult:
    seed: int
    entries: int
    treated: int
    held_out: int
    treated_conversions: int
    held_out_conversions: int
    drawn_treated: int  # purchases the story drew for messaged entries (each inside its window)
    drawn_held_out: int
    lift: float | None
    fixed_low: float | None
    fixed_high: float | None
    fixed_covers: bool
    looks: int
    always_valid_covers: bool
    always_valid_misses: int
    srm_p: float | None
    srm_flagged: bool
    seconds: float


def run_once(story: Story, seed: int) -> RunResult:
    """One shop under ``seed``, from the first visit to the close of the last goal window."""
    from orchestrator.measure import journey_report

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    ids = [f"s{seed}-c{i}" for i in range(story.customers)]
    arrivals = rng.uniform(0.0, story.arrival_days * 86400.0, story.customers)
    pending: list[tuple[float, dict[str, Any]]] = [
        (a, event(cid, "visit", T0 + timedelta(seconds=float(a))))
        for cid, a in zip(ids, arrivals, strict=True)
    ]
    end = T0 + timedelta(days=story.arrival_days) + WINDOW + TICK
    looks = misses = 0
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_files(
            root,
            {"journeys/trial.yaml": JOURNEY.format(holdout=story.holdout), "templates/offer.txt": "Hi"},
        )
        world = World(root)
        try:
            world.add_customers(*(customer(cid) for cid in ids))
            drawn = {True: 0, False: 0}
            previous = now = T0
            next_look = T0 + WINDOW + timedelta(days=1)
            while now <= end:
                offset = (now - T0).total_seconds()
                due = [record for at, record in pending if at < offset]
                pending = [(at, record) for at, record in pending if at >= offset]
                if due:
                    world.add_events(*due)
                world.clock.set(now)
                world.tick()
                # Entries on a visit are stamped with the visit's instant: those of the visits just added.
                for instance in world.instances(entered_since=previous):
                    chance = story.base + (0.0 if instance.holdout else story.effect)
                    if rng.random() < chance:
                        drawn[instance.holdout] += 1
                        at = instance.entered + rng.uniform(1.0, WINDOW.total_seconds() - 1.0) * timedelta(
                            seconds=1
                        )
                        pending.append(((at - T0).total_seconds(), event(instance.customer, "purchase", at)))
                if now >= next_look:
                    comparison = journey_report(world.store, "trial", to_us(now)).lift
                    interval = None
                    if comparison is not None and (c := comparison.comparison()) is not None:
                        interval = c.always_valid_ci
                    if interval is not None:
                        looks += 1
                        misses += not (interval.low <= story.effect <= interval.high)
                    next_look += timedelta(days=1)
                previous, now = now, now + TICK
            report = journey_report(world.store, "trial", to_us(end))
        finally:
            world.close()
    lift = report.lift
    comparison = None if lift is None else lift.comparison()
    rate = None if comparison is None else comparison.lift
    srm = None if lift is None else lift.analysis.srm
    arms = {arm.name: arm for arm in lift.arms} if lift is not None else {}
    low = None if rate is None else rate.absolute_ci.low
    high = None if rate is None else rate.absolute_ci.high
    return RunResult(
        seed=seed,
        entries=report.matured,
        treated=arms["treatment"].n if "treatment" in arms else 0,
        held_out=arms["holdout"].n if "holdout" in arms else 0,
        treated_conversions=arms["treatment"].conversions if "treatment" in arms else 0,
        held_out_conversions=arms["holdout"].conversions if "holdout" in arms else 0,
        drawn_treated=drawn[False],
        drawn_held_out=drawn[True],
        lift=None if rate is None else rate.absolute,
        fixed_low=low,
        fixed_high=high,
        fixed_covers=low is not None and high is not None and low <= story.effect <= high,
        looks=looks,
        always_valid_covers=looks > 0 and misses == 0,
        always_valid_misses=misses,
        srm_p=None if srm is None else srm.p_value,
        srm_flagged=srm is not None and srm.flagged,
        seconds=time.perf_counter() - started,
    )


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _run(args: tuple[Story, int]) -> RunResult:
    return run_once(*args)


def summarize(results: list[RunResult], story: Story, seconds: float) -> dict[str, Any]:
    n = len(results)
    fixed = sum(r.fixed_covers for r in results)
    always = sum(r.always_valid_covers for r in results)
    srm = sum(r.srm_flagged for r in results)

    def rate(k: int) -> dict[str, float]:
        low, high = wilson(k, n)
        return {"rate": k / n if n else math.nan, "low": round(low, 4), "high": round(high, 4)}

    return {
        "runs": n,
        "coverage_fixed": fixed / n if n else None,
        "coverage_always_valid": always / n if n else None,
        "srm_false_alarm_rate": srm / n if n else None,
        "intervals": {
            "coverage_fixed": rate(fixed),
            "coverage_always_valid": rate(always),
            "srm_false_alarm_rate": rate(srm),
        },
        "mean_looks": round(sum(r.looks for r in results) / n, 2) if n else None,
        "mean_entries": round(sum(r.entries for r in results) / n, 1) if n else None,
        "mean_lift": round(float(np.mean([r.lift for r in results if r.lift is not None])), 5) if n else None,
        "story": asdict(story),
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--customers", type=int, default=Story.customers)
    parser.add_argument("--effect", type=float, default=Story.effect)
    parser.add_argument("--base", type=float, default=Story.base)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="one JSON line per run as well")
    args = parser.parse_args()
    story = Story(customers=args.customers, base=args.base, effect=args.effect)
    seeds = range(args.first_seed, args.first_seed + args.runs)
    started = time.perf_counter()
    with get_context("spawn").Pool(args.workers) as pool:
        results = []
        for result in pool.imap_unordered(_run, [(story, s) for s in seeds]):
            results.append(result)
            if args.verbose:
                print(json.dumps(asdict(result)), flush=True)
    print(json.dumps(summarize(sorted(results, key=lambda r: r.seed), story, time.perf_counter() - started)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
