"""Conditions kept between ticks equal a full evaluation at every tick, while re-evaluating only the
customers whose inputs changed or whose result time alone may change before the horizon."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals import _incremental
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame
from orchestrator.signals._incremental import IncrementalAggregates
from orchestrator.signals._kept_conditions import IncrementalConditions
from orchestrator.signals._log import EventLog, property_uses

H = 3600 * 1_000_000
DAY = 24 * H
NOW_US = 1_700_000_000 * 1_000_000
TYPES = ["view", "buy", "cart", "survey"]

METRICS = {
    "quiet_days": "recency(view, buy)",
    "recent": "count(view, within=2d)",
    "prior": "count(view, within=4d, before=2d)",
    "freq": "min(count(view, within=3d) / 5, 1)",
    "sentiment": "coalesce(mean(survey.score, within=3d) / 10, 0.5)",
    "score": "weighted(freq=0.6, sentiment=0.4)",
    "tier": "lifecycle_tier(quiet_days, frequency(view, within=3d), highly_active=[1, 4], "
    "regularly_engaged=[2, 2], occasionally_active=[3, 1], at_risk=[5, 0])",
}
CONDITIONS = [
    "since(view, buy, cart) > 2d",
    "prior > 0 and 10 * recent < 3 * prior",
    "since(cart) <= 6h and since(buy) >= since(cart)",
    "cart_abandoned(cart, buy, within=12h)",
    "top_count(view.cat, within=2d) >= 3 and count(cart, within=2d) >= 1",
    "score < 0.4",
    'tier == "at_risk" or tier == "lapsed"',
    "since(buy, within=2d) < 1d or vip",
    "not (quiet_days <= 1.5) and max(last(survey.score, within=2d), 0) >= 5",
    "abs(since(view) - since(buy)) < 3h",
    "change(count(view, within=1d), count(view, within=2d, before=1d)) <= -0.5",
    "quintile(count(view, within=3d)) >= 4",
    "median_gap(view, within=3d, by=view.cat) < 8h",
    'count(view, within=2d, where=view.cat == "shoes") >= 2',
    "since(buy, within=3d, where=buy.score >= 5) < 1d",
    "count(view, within=3d, where=view.cat == top_value(buy.cat, within=3d)) >= 1",
    "since(view, where=view.score > sentiment * 10) < 12h",
    "count(view, within=2d, where=view.score > 5 and vip) >= 1",
    "count(view, within=3d, where=view.cat == favourite) >= 2",
    "count(view, within=today) >= 2 or count(buy, within=yesterday) >= 1",
    "change(count(view, within=this_week), count(view, within=last_week)) >= 1",
    "since_first() < 5d and not tenure(buy) <= 2",
    "since_first(cart, within=2d) > 1d",
    'last(view.cat, within=1d) == "shoes"',
]
# Recomputed from their window's events at every tick, so always evaluated in full.
RECOMPUTED = [
    "sequence(view, cart, not_followed_by=buy, for=6h, within=2d) and count(view, within=1d) >= 1",
    "sequence(view, cart, buy, gap=12h, within=3d) or since(view) > 1d",
    "session_share(without=buy, within=2d, by=cat) >= 0.5",
    "count(cart, by=cart.cat, within=2d) >= 2 or sessions(by=cat, with=view, within=1d) >= 3",
]
CONDITIONS += RECOMPUTED
ZONES = np.array(["Asia/Tokyo", "America/New_York", None, "Europe/Paris"], dtype=object)
FAVOURITES = np.array(["shoes", "hats", None, "belts", "", "bags"], dtype=object)


def batch(rng: np.random.Generator, n_events: int, n: int, lo: int, hi: int) -> EventFrame:
    cats = np.array(["shoes", "bags", "hats"], dtype=object)
    return EventFrame(
        customer=rng.integers(1, n, n_events),
        ts=rng.integers(lo, hi, n_events),
        type=rng.integers(0, len(TYPES), n_events).astype(np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={
            "cat": Categorical(rng.integers(-1, 3, n_events).astype(np.int32), cats),
            "score": np.where(
                rng.random(n_events) < 0.6, rng.integers(0, 11, n_events).astype(float), np.nan
            ),
        },
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_kept_conditions_equal_full_evaluations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    metrics = {name: lang.parse(text) for name, text in METRICS.items()}
    nodes = [lang.parse(text) for text in CONDITIONS]
    calls = list(dict.fromkeys(c for node in [*nodes, *metrics.values()] for c in lang.aggregates(node)))
    numeric, categorical = property_uses(calls)
    log = EventLog(numeric, categorical)
    aggregates = IncrementalAggregates(calls, log)
    kept = IncrementalConditions(aggregates, horizon_us=8 * H)
    n, now, last_id = 400, NOW_US, 0
    log.append_frame(batch(rng, 6000, n, now - 6 * DAY, now), last_id := last_id + 6000)
    vip = rng.random(n) < 0.1
    steps = [H, 30 * 60 * 1_000_000, 2 * H, 5 * H, H, 9 * H, -2 * H, H, 3 * H, 7 * H, H, H]
    partial = 0
    for i, step in enumerate(steps):
        now += step
        if i == 4:
            n = 450  # new customers
            vip = np.concatenate([vip, rng.random(50) < 0.1])
        changed = None
        if i == 6:
            vip = vip.copy()
            flip = rng.choice(n, 10, replace=False)
            vip[flip] = ~vip[flip]
            changed = flip
        fresh = batch(rng, int(rng.integers(0, 60)), n, now - 2 * DAY, now + H)
        log.append_frame(fresh, last_id := last_id + len(fresh))
        aggregates.advance(now)
        timezone = ZONES[np.arange(n) % len(ZONES)]
        favourite = FAVOURITES[np.arange(n) % len(FAVOURITES)]  # "belts": no event has it
        customers = CustomerFrame(
            n, np.arange(n) > 0, {"vip": vip[:n], "timezone": timezone, "favourite": favourite}
        )
        aggregates.set_time_zones(timezone)
        full_cache = AggregateCache()
        aggregates.fill(full_cache)
        before = kept.rows_evaluated
        for k, node in enumerate(nodes):
            got = kept.condition(k, node, customers, metrics, changed=changed if i != 5 else np.zeros(0, int))
            want = Evaluator(EventFrame.empty(n), customers, now, metrics, full_cache).condition(node)
            assert np.array_equal(got, want), f"tick {i}: {CONDITIONS[k]}"
        partial += kept.rows_evaluated - before < len(nodes) * n
    # Ticks inside the horizon re-evaluated only some customers; full evaluations came with a new horizon,
    # the clock stepping back, the quintile (a population function) and attributes of unknown change.
    assert partial >= 5
    assert kept.rows_evaluated < 0.75 * len(nodes) * sum(450 if i >= 4 else 400 for i in range(len(steps)))


def test_short_ticks_touch_few_customers() -> None:
    """Ticks every 15 minutes with a trickle of events: after the first, each tick re-evaluates a small
    share of the customers, and the answers stay those of a full evaluation."""
    rng = np.random.default_rng(5)
    metrics = {name: lang.parse(text) for name, text in METRICS.items()}
    kept_texts = [text for text in CONDITIONS if "quintile" not in text and "vip" not in text]
    nodes = [lang.parse(text) for text in kept_texts if text not in RECOMPUTED]
    calls = list(dict.fromkeys(c for node in [*nodes, *metrics.values()] for c in lang.aggregates(node)))
    log = EventLog(*property_uses(calls))
    aggregates = IncrementalAggregates(calls, log)
    # Conditions over aggregates recomputed from their window at each tick (a median, a filter on the
    # customer's values, a calendar period, a bounded first-seen) are evaluated in full at each tick.
    nodes = [node for node in nodes if all(aggregates.tracks(call) for call in lang.aggregates(node))]
    kept = IncrementalConditions(aggregates, horizon_us=6 * H)
    n, now, last_id = 2000, NOW_US, 0
    log.append_frame(batch(rng, 40_000, n, now - 6 * DAY, now), last_id := last_id + 40_000)
    shares = []
    for _ in range(20):
        now += H // 4
        fresh = batch(rng, 20, n, now - H // 4, now)
        log.append_frame(fresh, last_id := last_id + len(fresh))
        aggregates.advance(now)
        customers = CustomerFrame(n, np.arange(n) > 0)
        cache = AggregateCache()
        aggregates.fill(cache)
        before = kept.rows_evaluated
        for k, node in enumerate(nodes):
            want = Evaluator(EventFrame.empty(n), customers, now, metrics, cache).condition(node)
            assert np.array_equal(kept.condition(k, node, customers, metrics, changed=np.zeros(0, int)), want)
        shares.append((kept.rows_evaluated - before) / (len(nodes) * n))
    assert shares[0] == 1.0 and max(shares[1:]) < 0.5 and np.mean(shares[1:]) < 0.3, shares


def test_a_condition_reevaluates_only_customers_its_own_events_touched() -> None:
    """Events of a type a condition does not read leave it alone: after a tick with only ``buy`` events,
    a condition on ``view`` counts re-evaluates nobody, and one on ``buy`` counts only the buyers."""
    rng = np.random.default_rng(9)
    views, buys = lang.parse("count(view, within=2d) >= 2"), lang.parse("count(buy, within=2d) >= 1")
    calls = [*lang.aggregates(views), *lang.aggregates(buys)]
    log = EventLog(*property_uses(calls))
    aggregates = IncrementalAggregates(calls, log)
    kept = IncrementalConditions(aggregates, horizon_us=6 * H)
    n, now = 1000, NOW_US
    log.append_frame(batch(rng, 5000, n, now - DAY, now), 5000)
    aggregates.advance(now)
    customers = CustomerFrame(n, np.arange(n) > 0)
    none = np.zeros(0, np.int64)
    for key, node in (("views", views), ("buys", buys)):
        kept.condition(key, node, customers, changed=none)
    now += H // 4
    buyers = np.array([3, 17, 17, 404], dtype=np.int64)
    ts = now - H // 8 + np.arange(len(buyers), dtype=np.int64)
    log.append_frame(EventFrame(buyers, ts, np.full(4, 1, np.int32), TYPES, n), 5004)
    aggregates.advance(now)
    full = EventFrame.empty(n)
    cache = AggregateCache()
    aggregates.fill(cache)
    for key, node, reevaluated in (("views", views, 0), ("buys", buys, 3)):
        before = kept.rows_evaluated
        got = kept.condition(key, node, customers, changed=none)
        assert kept.rows_evaluated - before == reevaluated, key
        assert np.array_equal(got, Evaluator(full, customers, now, cache=cache).condition(node))


@pytest.mark.parametrize("wide", [False, True])
def test_counts_of_values_reevaluate_only_touched_customers_however_wide(
    monkeypatch: pytest.MonkeyPatch, wide: bool
) -> None:
    """Counts per value of a text property too wide for a matrix are read from the window's events, yet
    still tell whose values changed: a tick re-evaluates those customers only, as with a matrix, and the
    answers stay those of an evaluation from scratch over the whole log."""
    if wide:
        monkeypatch.setattr(_incremental, "MATRIX_CELLS", 8)
    rng = np.random.default_rng(11)
    nodes = [
        lang.parse("top_count(view.cat, within=2d) >= 3 and count(cart, within=2d) >= 1"),
        lang.parse("distinct(view.cat, within=1d) >= 2"),
        lang.parse('top_value(view.cat, within=3d) == "bags"'),
    ]
    calls = list(dict.fromkeys(c for node in nodes for c in lang.aggregates(node)))
    log = EventLog(*property_uses(calls))
    aggregates = IncrementalAggregates(calls, log)
    kept = IncrementalConditions(aggregates, horizon_us=6 * H)
    n, now, last_id = 2000, NOW_US, 0
    log.append_frame(batch(rng, 40_000, n, now - 6 * DAY, now), last_id := last_id + 40_000)
    shares = []
    for _ in range(8):
        now += H // 4
        fresh = batch(rng, 20, n, now - H // 4, now)
        log.append_frame(fresh, last_id := last_id + len(fresh))
        aggregates.advance(now)
        assert all(aggregates.tracks(call) for call in calls)
        customers = CustomerFrame(n, np.arange(n) > 0)
        everything = log.frame(log.range(None, None), n)
        before = kept.rows_evaluated
        for k, node in enumerate(nodes):
            want = Evaluator(everything, customers, now, cache=AggregateCache()).condition(node)
            assert np.array_equal(kept.condition(k, node, customers, changed=np.zeros(0, int)), want)
        shares.append((kept.rows_evaluated - before) / (len(nodes) * n))
    assert shares[0] == 1.0 and max(shares[1:]) < 0.5, shares
