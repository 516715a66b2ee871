"""Incremental aggregates give exactly what a from-scratch evaluation gives, tick after tick."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals import BetaGeo, Fit, GammaGamma
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame
from orchestrator.signals._incremental import IncrementalAggregates
from orchestrator.signals._log import EventLog, property_uses

H = 3600 * 1_000_000
DAY = 24 * H
NOW_US = 1_700_000_000 * 1_000_000

EXPRESSIONS = [
    "count(view, within=2d)",
    "count(view, buy, within=1d, before=12h)",
    "count(buy)",
    "since(buy)",
    "since(view, buy, within=3d)",
    "since(cart, before=6h)",
    "sum(buy.amount, within=2d)",
    "sum(buy.amount)",
    "mean(survey.score, within=4d)",
    "min(buy.amount, within=2d)",
    "max(buy.amount)",
    "distinct(view.cat, within=2d)",
    "top_count(view.cat, within=3d)",
    "top_value(view.cat, within=3d)",
    "top_value(cart.cat)",
    "distinct_events(within=1d)",
    "distinct_events(view, buy, survey, within=2d)",
    "median_gap(view, within=2d)",
    "median_gap(view, cart, by=view.cat)",
    # where= filters that read only the events (kept by bases of their own) ...
    'count(view, within=2d, where=view.cat == "shoes")',
    'count(view, buy, within=1d, where=buy.cat in ["shoes", "belts"])',
    "since(buy, within=3d, where=buy.amount > 50)",
    'sum(buy.amount, within=2d, where=buy.cat != "bags")',
    "mean(survey.score, where=survey.cat == null)",
    "top_value(view.cat, within=3d, where=view.amount >= 20)",
    'distinct(view.cat, within=2d, where=not (view.cat == "hats"))',
    'last(buy.amount, within=2d, where=buy.cat == "hats" or buy.amount < 10)',
    'max(buy.amount, within=2d, where=buy.cat == "shoes")',
    'median_gap(view, within=2d, where=view.cat == "bags")',
    'distinct_events(view, buy, within=2d, where=view.cat == "shoes")',
    "count(refund, where=refund.amount * 2 > 100)",
    # ... and filters that read the customer's own values (recomputed from the window each tick).
    "count(buy, within=2d, where=buy.cat == top_value(view.cat, within=3d))",
    "sum(buy.amount, where=buy.amount > mean(buy.amount, within=4d))",
    "since(view, where=view.cat == top_value(cart.cat))",
    "count(view, within=2d, where=view.cat == top_value(buy.cat, within=2d, where=buy.amount > 10))",
    # ``e.p == X`` with X the customer's value: read from a count matrix by value, in either order
    "count(buy, within=2d, where=top_value(view.cat, within=3d) == buy.cat)",
    "count(view, within=1d, before=6h, where=view.cat == last(cart.cat))",
    "count(survey, where=survey.cat == top_value(refund.cat, within=1d))",
    "count(buy, where=buy.amount == max(buy.amount, within=2d))",
    "count(view, within=2d, where=view.score == top_count(view.cat, within=2d))",
    "count(view, within=this_week)",
    "count(view, buy, within=yesterday)",
    "since(buy, within=today)",
    "sum(buy.amount, within=last_week)",
    "top_value(view.cat, within=this_month)",
    "distinct_events(within=this_month)",
    "last(view.cat, within=this_year)",
    "since_first()",
    "since_first(view, buy)",
    "since_first(cart, before=6h)",
    "since_first(view, within=2d)",
    "last(view.cat)",
    "last(cart.cat, within=1d, before=6h)",
    "sequence(view, cart, within=2d)",
    "sequence(view, cart, buy, gap=6h, within=3d, before=2h)",
    "sequence(view, view, not_followed_by=buy, within=1d)",
    "sequence(view, cart, not_followed_by=buy, for=5h, within=2d)",
    "sessions(by=cat, within=2d)",
    "sessions(by=cat, with=buy, without=[cart, refund], within=1d, before=6h)",
    "sessions(by=cat)",
    "session_share(without=buy, within=2d, by=cat)",
    "count(view, cart, by=view.cat, within=2d)",
    # read from a fit of the purchase models (``FITS``); view has none: null for everyone
    "p_alive(buy)",
    "expected_purchases(buy, 2d)",
    "predicted_clv(buy.amount, horizon=30d)",
    "p_alive(view)",
]
FITS = {("buy", "amount"): Fit(BetaGeo(r=0.5, alpha=3.0, a=0.8, b=2.4), GammaGamma(p=6.0, q=3.7, gamma=15.0))}
# Customers' time zones, for the calendar periods: a slot's zone is ZONES[key % len(ZONES)].
ZONES = ["Asia/Tokyo", "America/New_York", "UTC", None, "Not/AZone", "Australia/Lord_Howe"]


def zones(n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = [ZONES[k % len(ZONES)] for k in range(n)]
    return out


TYPES = ["view", "buy", "cart", "survey", "refund"]


def batch(
    rng: np.random.Generator,
    n_events: int,
    n_customers: int,
    lo: int,
    hi: int,
    cats: list[str],
    types: list[str],
) -> EventFrame:
    type_codes = rng.integers(0, len(types), n_events)
    cat_codes = np.where(rng.random(n_events) < 0.8, rng.integers(0, len(cats), n_events), -1).astype(
        np.int32
    )
    values = np.empty(len(cats), dtype=object)
    values[:] = cats
    amount = np.where(rng.random(n_events) < 0.7, np.round(rng.uniform(0, 100, n_events), 2), np.nan)
    score = np.where(rng.random(n_events) < 0.5, rng.integers(0, 11, n_events).astype(float), np.nan)
    return EventFrame(
        customer=rng.integers(1, n_customers, n_events),
        ts=rng.integers(lo, hi, n_events),
        type=type_codes.astype(np.int32),
        type_names=types,
        n_customers=n_customers,
        properties={"cat": Categorical(cat_codes, values), "amount": amount, "score": score},
    )


def piece(frame: EventFrame, rows: np.ndarray) -> EventFrame:
    """Some of a frame's events (a chunk, as ingest hands them over)."""
    props = {
        k: Categorical(v.codes[rows], v.values) if isinstance(v, Categorical) else v[rows]
        for k, v in frame.properties.items()
    }
    return EventFrame(
        frame.customer[rows], frame.ts[rows], frame.type[rows], frame.type_names, frame.n_customers, props
    )


def concat(frames: list[EventFrame], log: EventLog) -> EventFrame:
    """All batches as one frame in the log's codes (what a from-scratch evaluation would read)."""
    return log.frame(log.range(None, None))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.tolist() == b.tolist()
    return np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize(
    ("seed", "n_customers", "per_tick", "chunks"),
    [
        (1, 40, 300, 1),
        (2, 40, 300, 1),
        (3, 40, 300, 1),
        # Few events over many customers: the path a real tick takes (events folded in customer
        # order, cell by cell, the most frequent value kept up to date in place), also with each tick's
        # events appended in several chunks, as ingest hands them over.
        (4, 3000, 80, 1),
        (5, 3000, 80, 1),
        (6, 3000, 90, 3),
    ],
)
def test_incremental_equals_from_scratch(seed: int, n_customers: int, per_tick: int, chunks: int) -> None:
    rng = np.random.default_rng(seed)
    calls = list(dict.fromkeys(c for text in EXPRESSIONS for c in lang.aggregates(lang.parse(text))))
    numeric, categorical = property_uses(calls)
    log = EventLog(numeric, categorical)
    aggregates = IncrementalAggregates(calls, log)
    frames: list[EventFrame] = []
    now = NOW_US
    cats = ["shoes", "bags", "hats"]
    last_id = 0
    # More ticks than the log keeps segments, so merging happens while aggregates are kept current.
    steps = [3 * H, 5 * H, 0, 2 * DAY, 7 * H, -4 * H, 1 * H, 6 * DAY, 2 * H] + [H] * 8
    for i, step in enumerate(steps):
        now += step
        if i == 3:
            cats = [*cats, "belts", "aprons"]  # new values mid-way, some sorting before the old ones
        if i == 5:
            n_customers += 15  # new customers
        types = TYPES if i >= 2 else TYPES[:3]  # new event types appear later
        # Mostly recent events, some in the future of this tick, some late arrivals from days ago.
        fresh = batch(rng, per_tick, n_customers, now - 3 * DAY, now + 6 * H, cats, types)
        frames.append(fresh)
        for part in np.array_split(np.arange(len(fresh)), chunks):
            last_id += len(part)
            log.append_frame(piece(fresh, part), last_id)
        aggregates.advance(now)
        aggregates.set_time_zones(zones(log.n_customers))
        aggregates.set_fits(FITS)

        full = concat(frames, log)
        customers = CustomerFrame(
            full.n_customers, np.ones(full.n_customers, bool), {"timezone": zones(full.n_customers)}
        )
        scratch = Evaluator(full, customers, now, cache=AggregateCache(), fits=FITS)
        for call in calls:
            expected = scratch.values(call)
            got = aggregates.values[call]
            assert same(got, expected), f"tick {i}: {lang.FUNCTIONS[call.func].name} {call}"
            if call.func in lang.PREDICTIONS:  # a fit gives numbers to the buyers, none gives nulls
                fitted = lang.event_names(call) == {"buy"}
                assert np.isfinite(got).any() == fitted, call


def test_log_ranges_are_half_open_and_merge_segments() -> None:
    log = EventLog()
    for k in range(20):  # more batches than segments kept: they are merged
        ts = np.array([k * 10, k * 10 + 5], dtype=np.int64)
        log.append_frame(
            EventFrame(np.array([1, 2]), ts, np.zeros(2, np.int32), ["e"], 3), last_id=2 * (k + 1)
        )
        log.settle()  # as aggregates advancing over the log do; only settled segments are merged
    assert len(log.segments) <= 12
    assert len(log) == 40 and log.last_id == 40
    got = log.range(50, 100).ts
    assert sorted(got.tolist()) == [50, 55, 60, 65, 70, 75, 80, 85, 90, 95]
    assert len(log.range(None, 0)) == 0 and len(log.range(195, None)) == 1


@pytest.mark.parametrize("in_time_order", [True, False])
def test_log_groups_a_batch_by_type_and_time_and_recodes_its_text(in_time_order: bool) -> None:
    """A batch in id order is grouped by type, in time order inside a type (equal times keep their
    order), with every column moved alike and text codes in the log's dictionary."""
    rng = np.random.default_rng(7)
    n = 5000
    ts = np.sort(rng.integers(0, 400, n)) if in_time_order else rng.integers(0, 400, n)
    types = rng.integers(-1, 4, n).astype(np.int32)  # -1: a type missing from the store's names
    customer = np.arange(n, dtype=np.int64)  # each event's identity, to follow it
    values = np.array(["b", "a", "c"], dtype=object)
    codes = rng.integers(-1, 3, n).astype(np.int32)
    frame = EventFrame(
        customer.copy(),
        ts.copy(),
        types.copy(),
        ["p", "q", "r", "s"],
        n,
        {"cat": Categorical(codes.copy(), values)},
    )
    log = EventLog(categorical=["cat"])
    earlier = Categorical(np.array([0], np.int32), np.array(["c"], dtype=object))
    log.append_frame(
        EventFrame(np.array([0]), np.array([0]), np.zeros(1, np.int32), ["r"], n, {"cat": earlier}), 1
    )
    segment = log.append_frame(frame, 2)
    names = ["r", "p", "q", "s"]  # the log's codes: "r" came first
    log_types = np.array([-1 if t < 0 else names.index("pqrs"[t]) for t in types.tolist()])
    order = np.lexsort((np.arange(n), ts, log_types))  # by type, then time, then arrival
    assert np.array_equal(segment.customer, customer[order])
    assert np.array_equal(segment.ts, ts[order])
    assert np.array_equal(segment.type, log_types[order])
    dictionary = log.values["cat"]
    got = [None if c < 0 else dictionary[c] for c in segment.codes["cat"].tolist()]
    assert got == [None if c < 0 else values[c] for c in codes[order].tolist()]
    for code in range(-1, 4):
        run = segment.run(code)
        assert np.all(segment.type[run] == code) and np.all(np.diff(segment.ts[run]) >= 0)


def test_log_keeps_customer_keys_as_int32_while_they_fit() -> None:
    """Keys below 2^31 take 4 bytes an event in the log; a batch with a larger key keeps int64 keys, and
    frames for the evaluator always carry int64 keys (and int32 type codes), with the same values."""
    log = EventLog()
    small = np.array([3, 1, 2**31 - 1], dtype=np.int64)
    segment = log.append_frame(
        EventFrame(small.copy(), np.array([1, 2, 3]), np.zeros(3, np.int32), ["e"], 2**31), 3
    )
    assert segment.customer.dtype == np.int32
    assert segment.customer.tolist() == small.tolist()
    large = np.array([2**31, 5], dtype=np.int64)
    wide = log.append_frame(
        EventFrame(large.copy(), np.array([4, 5]), np.zeros(2, np.int32), ["e"], 2**31 + 1), 5
    )
    assert wide.customer.dtype == np.int64 and wide.customer.tolist() == large.tolist()
    assert segment.type.dtype == wide.type.dtype == np.int16  # and type codes in two bytes
    frame = log.frame(log.range(None, None))
    assert frame.customer.dtype == np.int64 and frame.type.dtype == np.int32
    assert sorted(frame.customer.tolist()) == sorted(small.tolist() + large.tolist())


def test_log_keeps_numbers_as_float32_only_where_they_are_exact() -> None:
    """A column whose every value is a float32 exactly (whole scores, missing values) is held as float32
    and read back as the same float64 numbers; one value that is not (0.1) keeps the column float64."""
    log = EventLog(numeric=["score"])
    exact = np.array([3.0, np.nan, 10.0, -0.5, 2.0**40])
    inexact = np.array([0.1, 1.0])
    for i, values in enumerate([exact, inexact]):
        n = len(values)
        log.append_frame(
            EventFrame(
                np.arange(n), np.arange(n) + 10 * i, np.zeros(n, np.int32), ["e"], n, {"score": values.copy()}
            ),
            i + 1,
        )
    first, second = log.segments
    assert first.numbers["score"].dtype == np.float32 and second.numbers["score"].dtype == np.float64
    assert np.array_equal(first.numbers_of("score"), exact, equal_nan=True)
    assert first.numbers_of("score").dtype == np.float64
    assert np.array_equal(second.numbers_of("score"), inexact)
    frame = log.frame(log.range(None, None))
    assert frame.properties["score"].dtype == np.float64
    assert sorted(frame.properties["score"][~np.isnan(frame.properties["score"])].tolist()) == sorted(
        [3.0, 10.0, -0.5, 2.0**40, 0.1, 1.0]
    )
