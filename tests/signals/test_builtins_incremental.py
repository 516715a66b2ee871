"""Every built-in metric gives the same answer from the engine's incremental aggregates as from a
from-scratch evaluation, tick after tick: with late events, ties at one instant, new customers, new
values, and a clock that steps back."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame
from orchestrator.signals._incremental import IncrementalAggregates
from orchestrator.signals._lang import FUNCTIONS
from orchestrator.signals._log import EventLog, property_uses

H = 3600 * 1_000_000
DAY = 24 * H
NOW_US = 1_700_000_000 * 1_000_000
TYPES = ["session", "buy", "cart", "nps", "csat", "ces", "refund", "click"]

METRICS = {
    "r": "quintile(-recency(buy))",
    "f": "quintile(frequency(buy, within=3d))",
    "m": "quintile(monetary(buy.amount, within=3d))",
    "days_quiet": "recency(session, buy, click)",
    "freq": "min(frequency(session, within=2d) / 10, 1)",
    "depth": "min(count(buy, cart, within=2d) / 20, 1)",
    "breadth": "distinct_events(session, buy, cart, nps, within=2d) / 8",
    "sentiment": "coalesce(mean(nps.score, within=2d) / 10, 0.5)",
}

EXPRESSIONS = [
    "recency(session, buy)",
    "recency(buy, within=1d)",
    "recency(cart, before=6h)",
    "frequency(session, buy, within=1d)",
    "frequency(session, within=1d, before=12h)",
    "monetary(buy.amount, within=2d)",
    "r",
    "f",
    "m",
    "rfm_segment(r, f)",
    'rfm_segment(r, f) in ["at_risk", "cannot_lose"]',
    "lifecycle_tier(days_quiet, frequency(session, buy, within=2d))",
    "lifecycle_tier(days_quiet, frequency(session, within=2d), highly_active=[6h, 3], at_risk=[2, 0])",
    "weighted(freq=0.4, depth=0.3, breadth=0.2, sentiment=0.1)",
    "change(count(session, within=1d), count(session, within=2d, before=1d))",
    "change(monetary(buy.amount, within=12h), sum(buy.amount, within=3d))",
    "cart_abandoned(cart, buy, within=10h)",
    "repeat_purchase(buy, within=2d)",
    "category_count(buy.cat, within=3d)",
    "nps_group(nps.score, within=2d)",
    "nps_group(nps.score)",
    "last(nps.score, within=1d, before=6h)",
    "last(buy.amount)",
    "csat(csat.score, within=2d)",
    "ces(ces.score)",
    "clv(buy.amount, refunds=refund.amount)",
    "tenure(session, buy)",
    "tenure()",
    "since_first(cart, before=6h)",
    "last(buy.cat, within=2d)",
]


def batch(
    rng: np.random.Generator, n_events: int, n_customers: int, lo: int, hi: int, cats: list[str]
) -> EventFrame:
    # Times on whole hours, so that many events of one customer share an instant (ties for last()).
    ts = (rng.integers(lo, hi, n_events) // H) * H
    values = np.empty(len(cats), dtype=object)
    values[:] = cats
    cat_codes = np.where(rng.random(n_events) < 0.8, rng.integers(0, len(cats), n_events), -1)
    amount = np.where(rng.random(n_events) < 0.8, np.round(rng.uniform(0, 100, n_events), 2), np.nan)
    score = np.where(rng.random(n_events) < 0.8, rng.integers(0, 11, n_events).astype(float), np.nan)
    return EventFrame(
        customer=rng.integers(1, n_customers, n_events),
        ts=ts,
        type=rng.integers(0, len(TYPES), n_events).astype(np.int32),
        type_names=TYPES,
        n_customers=n_customers,
        properties={"cat": Categorical(cat_codes.astype(np.int32), values), "amount": amount, "score": score},
    )


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return [None if v != v else v for v in a.tolist()] == [None if v != v else v for v in b.tolist()]
    return np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_builtins_incremental_equal_from_scratch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    metrics = {name: lang.parse(text) for name, text in METRICS.items()}
    parsed = [lang.parse(text) for text in EXPRESSIONS]
    calls = list(dict.fromkeys(c for node in [*parsed, *metrics.values()] for c in lang.aggregates(node)))
    assert any(c.func == "last" for c in calls)
    numeric, categorical = property_uses(calls)
    log = EventLog(numeric, categorical)
    aggregates = IncrementalAggregates(calls, log)
    # Everything the built-ins rest on is kept up to date incrementally; only min/max are recomputed.
    assert not aggregates._rebuilt
    now, n_customers, last_id = NOW_US, 30, 0
    cats = ["shoes", "bags"]
    checked = 0
    for i, step in enumerate([2 * H, 5 * H, 0, 2 * DAY, 7 * H, -9 * H, 1 * H, 4 * DAY, 3 * H]):
        now += step
        if i == 3:
            cats = [*cats, "aprons", "hats"]
        if i == 5:
            n_customers = 42
        fresh = batch(rng, 250, n_customers, now - 3 * DAY, now + 6 * H, cats)
        last_id += len(fresh)
        log.append_frame(fresh, last_id)
        aggregates.advance(now)

        n = log.n_customers
        exists = np.ones(n, bool)
        exists[0] = False
        people = CustomerFrame(n, exists)
        cache = AggregateCache()
        aggregates.fill(cache)
        incremental = Evaluator(EventFrame.empty(n), people, now, metrics, cache)
        scratch = Evaluator(log.frame(log.range(None, None)), people, now, metrics, AggregateCache())
        for text, node in zip(EXPRESSIONS, parsed, strict=True):
            got, expected = incremental.values(node), scratch.values(node)
            assert same(got, expected), f"tick {i}: {text}"
            checked += 1
    assert checked == 9 * len(EXPRESSIONS)


def test_every_public_builtin_is_covered() -> None:
    builtins = {name for name, spec in FUNCTIONS.items() if not spec.internal}
    core = {"count", "since", "distinct_events", "sum", "mean", "distinct", "top_count", "top_value"}
    core |= {"min", "max", "coalesce", "abs", "present", "median_gap"}  # median_gap: test_incremental
    # Recomputed from their window's events at every tick: test_incremental, test_sequences, test_sessions.
    core |= {"sequence", "sessions", "session_share"}
    # Read from a fit of the purchase models: test_predictions.
    core |= {"p_alive", "expected_purchases", "predicted_clv"}
    used = {text.split("(")[0] for text in [*EXPRESSIONS, *METRICS.values()] if "(" in text}
    used |= {"rfm_segment"}
    assert builtins - core <= used | {"quintile"}
