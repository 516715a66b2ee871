#!/usr/bin/env python3
"""What the richer parts of the language cost, as ratios to a plain count measured in the same run.

    python benchmarks/expressions.py [--customers 1000000] [--seed 7] [--repeat 3] [--only NAME ...]

The reference workload (``../shared/bench/refbench.py``: about 20 events per customer over 90 days) is
generated in memory and given what the richer expressions read: a category on purchases (half of them
in the customer's favourite category, as the generator does for views), a session id on every event (a
new session at each ``session_start``) and a time zone per customer (UTC, Paris, New York or Tokyo).

Each expression is timed two ways, each as the median of ``--repeat`` runs:

- **from scratch**: one ``Evaluator`` pass over every event for every customer at NOW (what a restart or a
  backtest's first tick pays);
- **tick**: the incremental aggregates brought from one hour before NOW to NOW after 1% more events
  arrived in that hour, and the value read for every customer (what the daemon pays at each tick).

and printed as a ratio to ``count(product_view, within=30d)`` timed the same way in the same run. An
expression the language does not accept is reported as such instead of timed. One JSON line per
expression, then one with the totals.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.signals import (  # noqa: E402
    AggregateCache,
    BetaGeo,
    Categorical,
    CustomerFrame,
    Evaluator,
    EventFrame,
    EventLog,
    ExpressionError,
    Fit,
    GammaGamma,
    IncrementalAggregates,
    lang,
    property_uses,
)

HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
REFERENCE = "count(product_view, within=30d)"
#: The purchase models' fit the predictions read (the CDNOW parameters; time in weeks).
FITS = {("purchase", "amount"): Fit(BetaGeo(0.243, 4.414, 0.793, 2.426), GammaGamma(6.25, 3.74, 15.44))}
EXPRESSIONS = {
    "count": REFERENCE,
    "count_7d": "count(product_view, within=7d)",
    "where_literal": 'count(product_view, within=30d, where=product_view.category == "c3")',
    "where_number": "sum(purchase.amount, within=30d, where=purchase.amount >= 50)",
    "where_customer_value": (
        "count(purchase, within=30d, where=purchase.category == top_value(product_view.category, within=14d))"
    ),
    "sequence": "sequence(product_view, add_to_cart, not_followed_by=purchase, for=7d, within=30d)",
    "sequence_gap": "sequence(session_start, product_view, add_to_cart, gap=1h, within=30d)",
    "sessions_without": "sessions(without=product_view, within=30d)",
    "this_week": "count(product_view, within=this_week)",
    "since_first": "since_first()",
    "p_alive": "p_alive(purchase)",
    "predicted_clv": "predicted_clv(purchase.amount, 365d)",
}
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]


def load_refbench(path: Path) -> Any:
    if not path.exists():
        sys.exit(f"reference workload generator not found at {path} (pass --refbench)")
    spec = importlib.util.spec_from_file_location("refbench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workload(refbench: Any, n: int, seed: int) -> tuple[EventFrame, CustomerFrame, int]:
    """The events (time order) and customers, and NOW in microseconds."""
    data = refbench.generate(n, seed=seed)
    customer = data["customer_id"].astype(np.int64)
    ts = data["ts"].astype(np.int64) * 1_000_000
    etype = data["etype"].astype(np.int32)
    rng = np.random.default_rng(seed + 1)
    category = data["category"].astype(np.int32)
    purchase = etype == refbench.TYPES.index("purchase")
    # Purchases get a category as the generator gives views one: the customer's most viewed half the time.
    viewed = category >= 0
    favourite = np.zeros(n, np.int32)
    favourite[customer[viewed]] = category[viewed]
    category[purchase] = np.where(
        rng.random(int(purchase.sum())) < 0.5,
        favourite[customer[purchase]],
        rng.integers(0, refbench.N_CAT, int(purchase.sum())),
    )
    names = np.array([f"c{i}" for i in range(refbench.N_CAT)], dtype=object)
    # A session id per event: the number of session_start events the customer had up to it (time order).
    starts = (etype == refbench.TYPES.index("session_start")).astype(np.int64)
    order = np.lexsort((ts, customer))
    running = np.cumsum(starts[order])
    first = np.searchsorted(customer[order], customer[order], side="left")
    before = np.concatenate([[0], running])[first]
    session = np.empty(len(ts))
    session[order] = (running - before).astype(np.float64)
    frame = EventFrame(
        customer=customer,
        ts=ts,
        type=etype,
        type_names=list(refbench.TYPES),
        n_customers=n,
        properties={
            "category": Categorical(category, names),
            "amount": data["amount"].astype(np.float64),
            "session_id": session,
        },
    )
    zones = np.array(ZONES, dtype=object)[rng.integers(0, len(ZONES), n)]
    customers = CustomerFrame(n, np.ones(n, bool), {"timezone": zones})
    return frame, customers, int(refbench.NOW) * 1_000_000


def take(frame: EventFrame, rows: np.ndarray) -> EventFrame:
    props = {
        k: Categorical(v.codes[rows], v.values) if isinstance(v, Categorical) else v[rows]
        for k, v in frame.properties.items()
    }
    return EventFrame(
        frame.customer[rows], frame.ts[rows], frame.type[rows], frame.type_names, frame.n_customers, props
    )


def from_scratch(node: Any, events: EventFrame, customers: CustomerFrame, now_us: int, repeat: int) -> float:
    warm = Evaluator(events, customers, now_us, cache=AggregateCache(), fits=FITS)
    warm.values(node)  # numpy's first calls
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        Evaluator(events, customers, now_us, cache=AggregateCache(), fits=FITS).values(node)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def one_tick(
    node: Any, events: EventFrame, customers: CustomerFrame, now_us: int, extra: EventFrame, repeat: int
) -> float:
    """The incremental aggregates of ``node`` advanced from NOW - 1h to NOW over 1% more events."""
    calls = lang.aggregates(node)
    times = []
    for _ in range(repeat):
        numeric, categorical = property_uses(calls)
        log = EventLog(numeric, categorical)
        aggregates = IncrementalAggregates(calls, log)
        aggregates.set_fits(FITS)
        log.append_frame(take(events, np.arange(len(events))), len(events))
        aggregates.advance(now_us - HOUR_US)
        for call in calls:
            aggregates.value(call)
        log.append_frame(take(extra, np.arange(len(extra))), len(events) + len(extra))
        started = time.perf_counter()
        aggregates.advance(now_us)
        cache = AggregateCache()
        aggregates.fill(cache)
        no_events = EventFrame.empty(events.n_customers)
        Evaluator(no_events, customers, now_us, cache=cache, fits=FITS).values(node)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="names of expressions to time")
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()

    refbench = load_refbench(args.refbench)
    events, customers, now_us = workload(refbench, args.customers, args.seed)
    # 1% more events in the hour before NOW: copies of random events, moved into that hour.
    rng = np.random.default_rng(args.seed + 2)
    picked = np.sort(rng.choice(len(events), len(events) // 100, replace=False))
    extra = take(events, picked)
    extra.ts[:] = now_us - HOUR_US + rng.integers(0, HOUR_US, len(picked))
    everything = take(events, np.arange(len(events)))
    both = EventFrame(
        np.concatenate([everything.customer, extra.customer]),
        np.concatenate([everything.ts, extra.ts]),
        np.concatenate([everything.type, extra.type]),
        events.type_names,
        events.n_customers,
        {
            k: Categorical(np.concatenate([v.codes, extra.properties[k].codes]), v.values)  # type: ignore[union-attr]
            if isinstance(v, Categorical)
            else np.concatenate([v, extra.properties[k]])
            for k, v in everything.properties.items()
        },
    )
    # Warm the allocator and numpy's first calls on the reference, so that it is not timed cold.
    from_scratch(lang.parse(REFERENCE), both, customers, now_us, args.repeat)
    names = args.only or list(EXPRESSIONS)
    if "count" not in names:
        names = ["count", *names]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        text = EXPRESSIONS[name]
        try:
            node = lang.parse(text)
        except ExpressionError as exc:
            results[name] = {"expression": text, "accepted": False, "error": exc.message}
            print(json.dumps({"name": name, **results[name]}), flush=True)
            continue
        scratch = from_scratch(node, both, customers, now_us, args.repeat)
        tick = one_tick(node, events, customers, now_us, extra, args.repeat)
        results[name] = {"expression": text, "accepted": True, "from_scratch_s": scratch, "tick_s": tick}
        reference = results["count"]
        results[name]["from_scratch_ratio"] = round(scratch / reference["from_scratch_s"], 2)
        results[name]["tick_ratio"] = round(tick / reference["tick_s"], 2)
        print(json.dumps({"name": name, **results[name]}), flush=True)
    print(
        json.dumps(
            {
                "customers": args.customers,
                "events": len(both),
                "reference": REFERENCE,
                "ratios": {
                    k: (v["from_scratch_ratio"], v["tick_ratio"]) for k, v in results.items() if v["accepted"]
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
