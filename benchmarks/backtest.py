#!/usr/bin/env python3
"""A 30-day backtest with hourly ticks, against one full signal evaluation of the same journeys.

    python benchmarks/backtest.py [--customers 100000] [--days 30] [--scaling] [--seed 42]

1. Generates the reference workload (``refbench.generate`` from ``../shared/bench``: about 20 events per
   customer over the 90 days before 2023-11-15), with the customers' contact details and consents. Not
   timed.
2. Times ``orchestrator.engine.backtest`` over the last ``--days`` days (hourly ticks: 720 for 30 days),
   the earlier 60 days being history: three journeys (a win-back signal over ``since``, a browse signal
   over ``top_count`` and ``count``, a cart-abandonment signal, each sending email after a wait, one also
   SMS), under a contact policy with a weekly cap. Phases: loading (customers and history into the scratch
   store and the signal state), ticks, report.
3. Times one full signal evaluation of the same journeys over the same events at the window's end (a
   fresh event log, every aggregate computed from scratch, every entry condition evaluated), the median
   of three; ``ratio_to_evaluation`` is the backtest's seconds over it.

With ``--scaling`` it also runs the backtest at a quarter and half the customers (same events per
customer) and over half the days, and prints their seconds: the cost follows events and ticks, not ticks
times customers.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.clock import from_us  # noqa: E402
from orchestrator.engine import backtest, load_workspace  # noqa: E402
from orchestrator.engine._signal_state import SignalState  # noqa: E402
from orchestrator.ingest import EventChunk  # noqa: E402
from orchestrator.measure import backtest_report  # noqa: E402
from orchestrator.signals import AggregateCache, Categorical, CustomerFrame, Evaluator, EventFrame  # noqa: E402
from orchestrator.store import upsert_customers  # noqa: E402

JOURNEYS = {
    "winback.yaml": """\
id: winback
version: 1
signal: since(session_start, email_click, purchase) > 30d
segment: consent_email
holdout: 10
steps:
  - id: offer
    send: {channel: email, subject: "We miss you", template: offer.txt}
  - wait: 3d
  - branch: {if: since(session_start) < 3d, then: exit}
  - id: nudge
    send: {channel: email, subject: "Still here", template: offer.txt}
goal: {event: purchase, within: 14d, revenue: amount}
reentry: {cooldown: 30d}
""",
    "browse.yaml": """\
id: browse
version: 1
signal: top_count(product_view.category, within=14d) >= 4 and count(wishlist_add, within=14d) >= 2
holdout: 10
steps:
  - wait: 2h
  - id: picks
    send: {channel: email, subject: "Picked for you", template: offer.txt}
goal: {event: purchase, within: 7d}
reentry: {cooldown: 14d}
""",
    "cart.yaml": """\
id: cart
version: 1
signal: cart_abandoned(add_to_cart, purchase, within=24h)
holdout: 10
steps:
  - wait: 4h
  - id: reminder
    send: {channel: email, subject: "Your cart", template: offer.txt}
  - wait: 1d
  - branch: {if: since(purchase) < 1d, then: exit}
  - id: last_call
    send: {channel: sms, template: sms.txt}
goal: {event: purchase, within: 3d, revenue: amount}
reentry: after_exit
""",
    "policy.yaml": "caps:\n  all: {per_week: 2}\n",
}
TEMPLATES = {"offer.txt": "Hi {{ customer.first_name }}, come and see.", "sms.txt": "Your cart is waiting."}


def load_refbench(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("refbench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workload(refbench: Any, n: int, seed: int) -> tuple[EventChunk, list[dict[str, Any]]]:
    data = refbench.generate(n, seed=seed)
    ts = data["ts"].astype(np.int64) * 1_000_000
    etype = data["etype"].astype(np.int64)
    category, amount, score = data["category"], data["amount"], data["score"]
    props = np.full(len(ts), "{}", dtype=object)
    has_cat = np.flatnonzero(category >= 0)
    props[has_cat] = [f'{{"category":"c{c}"}}' for c in category[has_cat].tolist()]
    has_amount = np.flatnonzero(~np.isnan(amount))
    props[has_amount] = [orjson.dumps({"amount": a}).decode() for a in amount[has_amount].tolist()]
    has_score = np.flatnonzero(score >= 0)
    props[has_score] = [f'{{"score":{s}}}' for s in score[has_score].tolist()]
    events = EventChunk(
        customer_ids=[str(i) for i in range(n)],
        customer_codes=data["customer_id"].astype(np.int64),
        event_names=list(refbench.TYPES),
        event_codes=etype,
        ts_us=ts,
        properties=props.tolist(),
    )
    customers = [
        {
            "id": str(i),
            "first_name": f"Name{i}",
            "email": f"c{i}@example.com",
            "phone": f"+1415555{i % 10000:04d}",
            "timezone": "UTC",
            "consent_email": True,
            "consent_sms": i % 3 != 0,
            "consent_push": True,
        }
        for i in range(n)
    ]
    return events, customers


def run_backtest(
    folder: Path, events: EventChunk, customers: list[dict[str, Any]], end_us: int, days: int
) -> tuple[float, float, Any]:
    workspace = load_workspace([folder / "journeys"])

    def load(store: Any, now_us: int) -> None:
        with store.begin() as conn:
            upsert_customers(conn, customers, now_us)

    end = from_us(end_us)
    started, cpu = time.perf_counter(), time.process_time()
    run = backtest(
        workspace, events, backtest_report, start=end - timedelta(days=days), end=end, customers=load
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return seconds, cpu, run.report.with_timings(run.seconds, run.delivered)


def full_evaluation(folder: Path, events: EventChunk, n: int, now_us: int) -> float:
    """One evaluation of every journey's entry condition from scratch over the events before ``now_us``."""
    plans = load_workspace([folder / "journeys"]).plans
    keep = np.flatnonzero(events.ts_us < now_us)
    docs = [orjson.loads(events.properties[i]) for i in keep.tolist()]
    category = np.empty(len(docs), dtype=object)
    category[:] = [d.get("category") for d in docs]
    amount = np.array([d.get("amount", np.nan) for d in docs], dtype=np.float64)
    frame = EventFrame(
        customer=events.customer_codes[keep] + 1,  # keys from 1, as in a fresh store
        ts=events.ts_us[keep],
        type=events.event_codes[keep].astype(np.int32),
        type_names=list(events.event_names),
        n_customers=n + 1,
        properties={"category": Categorical.encode(category), "amount": amount},
    )
    runs = []
    for _ in range(3):
        state = SignalState(plans)
        state.log.append_frame(frame, len(frame))
        started = time.perf_counter()
        state.aggregates.advance(now_us)
        cache = AggregateCache()
        state.fill(cache)
        customers = CustomerFrame(n + 1, np.arange(n + 1) > 0)
        for plan in plans:
            assert plan.signal is not None
            Evaluator(EventFrame.empty(n + 1), customers, now_us, plan.metrics, cache).condition(plan.signal)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--scaling", action="store_true", help="also run at 1/4 and 1/2 the customers and days"
    )
    parser.add_argument("--refbench", type=Path, default=ROOT.parent / "shared" / "bench" / "refbench.py")
    args = parser.parse_args()
    refbench = load_refbench(args.refbench)
    end_us = int(refbench.NOW) * 1_000_000
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "journeys").mkdir()
        (folder / "templates").mkdir()
        for name, text in JOURNEYS.items():
            (folder / "journeys" / name).write_text(text)
        for name, text in TEMPLATES.items():
            (folder / "templates" / name).write_text(text)
        events, customers = workload(refbench, args.customers, args.seed)
        seconds, cpu, report = run_backtest(folder, events, customers, end_us, args.days)
        evaluation = full_evaluation(folder, events, args.customers, end_us)
        totals = report.totals
        result: dict[str, Any] = {
            "customers": args.customers,
            "events": len(events.ts_us),
            "window_events": int((events.ts_us >= end_us - args.days * 86_400_000_000).sum()),
            "ticks": report.data["window"]["ticks"],
            "seconds": round(seconds, 2),
            # On a shared machine: the process's CPU seconds, what the run costs whatever else runs.
            "cpu_seconds": round(cpu, 2),
            "evaluation_seconds": round(evaluation, 4),
            "ratio_to_evaluation": round(seconds / evaluation, 1),
            "phases": report.data["timings"],
            "per_tick_ms": round(1000 * report.data["timings"]["ticks"] / report.data["window"]["ticks"], 2),
            "entries": totals["entries"],
            "sent": totals["sent"],
            "suppressed": totals["suppressed"],
            "caps_hit": totals["caps_hit"],
        }
        if args.scaling:
            scaling = []
            for fraction in (4, 2):
                n = args.customers // fraction
                ev, cu = workload(refbench, n, args.seed)
                took, took_cpu, rep = run_backtest(folder, ev, cu, end_us, args.days)
                scaling.append(
                    {
                        "customers": n,
                        "events": len(ev.ts_us),
                        "ticks": rep.data["window"]["ticks"],
                        "seconds": round(took, 2),
                        "cpu_seconds": round(took_cpu, 2),
                        "ticks_seconds": rep.data["timings"]["ticks"],
                    }
                )
            scaling.append(
                {
                    "customers": args.customers,
                    "events": len(events.ts_us),
                    "ticks": result["ticks"],
                    "seconds": result["seconds"],
                    "cpu_seconds": result["cpu_seconds"],
                    "ticks_seconds": result["phases"]["ticks"],
                }
            )
            took, took_cpu, rep = run_backtest(folder, events, customers, end_us, args.days // 2)
            scaling.append(
                {
                    "customers": args.customers,
                    "events": len(events.ts_us),
                    "ticks": rep.data["window"]["ticks"],
                    "seconds": round(took, 2),
                    "cpu_seconds": round(took_cpu, 2),
                    "ticks_seconds": rep.data["timings"]["ticks"],
                }
            )
            result["scaling"] = scaling
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
