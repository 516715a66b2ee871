"""Calendar periods (``within=this_week`` ...) against hand-computed values in several time zones: Tokyo,
New York across the March change of clocks, UTC, a missing and an unknown zone; week, month and year
boundaries; rates per day in ``change()``; incremental equal to from scratch across local midnights; and
the mistakes a marketer can make, reported at the right column."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals._calendar import PERIODS, day_start_us, zone_bounds
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame, column_from_values
from orchestrator.signals._incremental import IncrementalAggregates
from orchestrator.signals._kept_conditions import IncrementalConditions
from orchestrator.signals._log import EventLog, property_uses

S = 1_000_000
H = 3600 * S
DAY = 24 * H
TYPES = ["product_view", "purchase"]


def at(text: str) -> int:
    """Microseconds of an ISO instant with its offset."""
    return round(datetime.fromisoformat(text).timestamp() * S)


Row = tuple[int, str, str, dict[str, Any]]  # customer key, event, ISO instant, properties


def frame(rows: list[Row], n: int) -> EventFrame:
    return EventFrame(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([at(r[2]) for r in rows], dtype=np.int64),
        type=np.array([TYPES.index(r[1]) for r in rows], dtype=np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={"amount": column_from_values([r[3].get("amount") for r in rows])},
    )


def people(zones: list[Any]) -> CustomerFrame:
    """Slot 0 is empty; customer k has the zone ``zones[k - 1]``."""
    n = len(zones) + 1
    column = np.empty(n, dtype=object)
    column[1:] = zones
    exists = np.ones(n, bool)
    exists[0] = False
    return CustomerFrame(n, exists, {"timezone": column})


def evaluate(rows: list[Row], zones: list[Any], now: str, text: str) -> list[Any]:
    """The expression's value per customer (slot 0 left out), from scratch; checked against the
    incremental aggregates fed the same events."""
    customers = people(zones)
    events = frame(rows, customers.n)
    node = lang.parse(text)
    scratch = Evaluator(events, customers, at(now), cache=AggregateCache()).values(node)
    calls = lang.aggregates(node)
    numeric, categorical = property_uses(calls)
    log = EventLog(numeric, categorical)
    log.append_frame(frame(rows, customers.n), 1)
    aggregates = IncrementalAggregates(calls, log)
    aggregates.advance(at(now))
    aggregates.set_time_zones(customers.column("timezone"))
    cache = AggregateCache()
    aggregates.fill(cache)
    kept = Evaluator(EventFrame.empty(customers.n), customers, at(now), cache=cache).values(node)
    got = [None if isinstance(v, float) and v != v else v for v in scratch.tolist()[1:]]
    assert got == [None if isinstance(v, float) and v != v else v for v in kept.tolist()[1:]]
    return got


# Wednesday 13 March 2024, 12:00 UTC: 21:00 in Tokyo (+9), 08:00 in New York (-4 since Sunday 10 March).
WEDNESDAY = "2024-03-13T12:00:00+00:00"


def test_weeks_start_at_local_monday_midnight() -> None:
    rows: list[Row] = [
        # UTC customer: exactly at Monday midnight is this week; a second earlier is last week.
        (1, "product_view", "2024-03-11T00:00:00+00:00", {}),
        (1, "product_view", "2024-03-10T23:59:59+00:00", {}),
        # Tokyo: Monday 00:00 local is Sunday 15:00 UTC (this week); 14:59:59 UTC is last week.
        (2, "product_view", "2024-03-10T15:00:00+00:00", {}),
        (2, "product_view", "2024-03-10T14:59:59+00:00", {}),
        # No zone and an unknown zone read in UTC: Sunday 15:00 UTC is still last week.
        (3, "product_view", "2024-03-10T15:00:00+00:00", {}),
        (4, "product_view", "2024-03-10T15:00:00+00:00", {}),
        # New York: Monday 00:00 local (EDT, -4) is 04:00 UTC.
        (5, "product_view", "2024-03-11T04:00:00+00:00", {}),
        (5, "product_view", "2024-03-11T03:59:59+00:00", {}),
        # Last week in New York began Monday 4 March 00:00 EST (-5) = 05:00 UTC, before the change.
        (5, "product_view", "2024-03-04T05:00:00+00:00", {}),
        (5, "product_view", "2024-03-04T04:59:59+00:00", {}),
        # An event at now is not yet in this week (half-open).
        (1, "product_view", WEDNESDAY, {}),
    ]
    zones = ["UTC", "Asia/Tokyo", None, "Not/AZone", "America/New_York"]
    assert evaluate(rows, zones, WEDNESDAY, "count(product_view, within=this_week)") == [1, 1, 0, 0, 1]
    assert evaluate(rows, zones, WEDNESDAY, "count(product_view, within=last_week)") == [1, 1, 1, 1, 2]


def test_days_months_and_years_in_tokyo_and_utc() -> None:
    # At 2024-02-29 20:00 UTC (a Thursday) it is already 05:00 on Friday 1 March in Tokyo.
    now = "2024-02-29T20:00:00+00:00"
    rows: list[Row] = [
        (1, "purchase", "2024-02-29T15:00:00+00:00", {"amount": 10}),  # Tokyo: 1 March 00:00
        (1, "purchase", "2024-02-29T14:00:00+00:00", {"amount": 20}),  # Tokyo: 29 February 23:00
        (1, "purchase", "2024-01-31T15:00:00+00:00", {"amount": 40}),  # Tokyo: 1 February 00:00
        (1, "purchase", "2023-12-31T14:59:59+00:00", {"amount": 80}),  # Tokyo: last second of 2023
        (2, "purchase", "2024-02-29T15:00:00+00:00", {"amount": 10}),  # UTC: 29 February
        (2, "purchase", "2024-02-29T00:00:00+00:00", {"amount": 20}),  # UTC: 29 February 00:00
        (2, "purchase", "2024-02-28T23:59:59+00:00", {"amount": 40}),  # UTC: 28 February
        (2, "purchase", "2024-01-31T23:00:00+00:00", {"amount": 80}),  # UTC: 31 January
    ]
    zones = ["Asia/Tokyo", "UTC"]
    sums = {
        "today": [10, 30],
        "yesterday": [20, 40],
        "this_week": [30, 70],  # Monday 26 February onwards in both zones
        "last_week": [0, 0],
        "this_month": [10, 70],
        "last_month": [60, 80],
        "this_year": [70, 150],
        "last_year": [80, 0],
    }
    for period, want in sums.items():
        assert evaluate(rows, zones, now, f"sum(purchase.amount, within={period})") == want, period


def test_last_week_across_the_march_change_of_clocks_is_an_hour_short() -> None:
    # Monday 11 March 2024 12:00 UTC: last week in New York ran from Monday 4 March 00:00 EST (05:00 UTC)
    # to Monday 11 March 00:00 EDT (04:00 UTC): 7 days minus 1 hour.
    now = at("2024-03-11T12:00:00+00:00")
    start, end = zone_bounds("last_week", "America/New_York", now)
    assert (start, end) == (at("2024-03-04T05:00:00+00:00"), at("2024-03-11T04:00:00+00:00"))
    assert end - start == 7 * DAY - H
    # Tokyo keeps no daylight time: 7 days exactly.
    start, end = zone_bounds("last_week", "Asia/Tokyo", now)
    assert end - start == 7 * DAY
    # this_week in New York: from 04:00 UTC to now, 8 hours.
    assert zone_bounds("this_week", "America/New_York", now) == (at("2024-03-11T04:00:00+00:00"), now)


def test_a_missing_midnight_starts_the_day_at_the_jump() -> None:
    # Sao Paulo moved its clocks from 00:00 to 01:00 on 4 November 2018: that day began at 01:00 local
    # (-02:00), 03:00 UTC; the day before began at 00:00 local (-03:00), also 03:00 UTC.
    assert day_start_us("America/Sao_Paulo", date(2018, 11, 4)) == at("2018-11-04T03:00:00+00:00")
    assert day_start_us("America/Sao_Paulo", date(2018, 11, 3)) == at("2018-11-03T03:00:00+00:00")
    # Unknown zones are UTC.
    assert day_start_us("Not/AZone", date(2024, 1, 1)) == at("2024-01-01T00:00:00+00:00")


def test_change_uses_each_customers_own_period_lengths() -> None:
    # Wednesday 12:00 UTC. UTC: 2.5 days of this week gone; 3 views this week, 5 last week:
    # (3 / 2.5) / (5 / 7) - 1 = 0.68. Tokyo (21:00 Wednesday): 2.875 days gone; 1 view this week, 1 last
    # week: 7 / 2.875 - 1 = 1.434782609 (rounded to 9 decimals). New York (08:00 Wednesday, week started
    # Monday 04:00 UTC): 2 days 8 hours = 2.333... days; last week 7 days minus 1 hour = 6.958333 days;
    # 1 view each: 6.958333 / 2.333333 - 1 = 1.982142857.
    rows: list[Row] = [
        *[(1, "product_view", f"2024-03-1{d}T09:00:00+00:00", {}) for d in (1, 2, 3)],
        *[(1, "product_view", f"2024-03-0{d}T09:00:00+00:00", {}) for d in (4, 5, 6, 7, 8)],
        (2, "product_view", "2024-03-12T09:00:00+00:00", {}),
        (2, "product_view", "2024-03-05T09:00:00+00:00", {}),
        (3, "product_view", "2024-03-12T09:00:00+00:00", {}),
        (3, "product_view", "2024-03-05T09:00:00+00:00", {}),
        (4, "product_view", "2024-03-12T09:00:00+00:00", {}),  # nothing last week: null
    ]
    text = "change(count(product_view, within=this_week), count(product_view, within=last_week))"
    got = evaluate(rows, ["UTC", "Asia/Tokyo", "America/New_York", None], WEDNESDAY, text)
    assert got == [0.68, 1.434782609, 1.982142857, None]
    # "Browse frequency doubled this week against last week".
    doubled = evaluate(rows, ["UTC", "Asia/Tokyo", "America/New_York", None], WEDNESDAY, f"{text} >= 1")
    assert doubled == [False, True, True, False]


def test_change_is_null_at_the_first_instant_of_a_period() -> None:
    rows: list[Row] = [(1, "product_view", "2024-03-05T09:00:00+00:00", {})]
    text = "change(count(product_view, within=this_week), count(product_view, within=last_week))"
    assert evaluate(rows, ["UTC"], "2024-03-11T00:00:00+00:00", text) == [None]


def test_every_aggregate_takes_a_period() -> None:
    rows: list[Row] = [
        (1, "purchase", "2024-03-13T01:00:00+00:00", {"amount": 5}),
        (1, "purchase", "2024-03-12T23:00:00+00:00", {"amount": 7}),
    ]
    # Tokyo: 10:00 and 08:00 on 13 March, both today; UTC: one today, one yesterday.
    for text, want in [
        ("count(purchase, within=today)", [2, 1]),
        ("since(purchase, within=yesterday)", [float("inf"), 13 * 3600.0]),
        ("recency(purchase, within=today)", [11 / 24, 11 / 24]),
        ("mean(purchase.amount, within=today)", [6.0, 5.0]),
        ("min(purchase.amount, within=today)", [5.0, 5.0]),
        ("last(purchase.amount, within=yesterday)", [None, 7.0]),
        ("distinct_events(within=today)", [1, 1]),
        ("since_first(within=today)", [13 * 3600.0, 11 * 3600.0]),
        ("frequency(purchase, within=this_month)", [2, 2]),
    ]:
        both = [(k, e, t, p) for _, e, t, p in rows for k in (1, 2)]
        assert evaluate(both, ["Asia/Tokyo", "UTC"], WEDNESDAY, text) == want, text


def test_the_engine_reads_the_time_zone_when_a_period_is_used() -> None:
    names = [n.dotted for n in lang.free_names(lang.parse("count(product_view, within=this_week) > 2"))]
    assert names == ["timezone"]
    change = "change(count(x, within=today), count(x, within=yesterday)) > 1 and vip"
    assert {n.dotted for n in lang.free_names(lang.parse(change))} == {"timezone", "vip"}
    assert lang.free_names(lang.parse("count(product_view, within=7d) > 2")) == []


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("count(product_view, within=thsi_week)", "did you mean this_week?", 27),
        ("count(product_view, within=lastweek) > 1", "did you mean last_week?", 27),
        ("count(product_view, within=fortnight)", "takes a duration or a calendar period", 27),
        ("count(product_view, within=this_week, before=7d)", "write within=last_week", 45),
        ("sum(purchase.amount, within=today, before=1d)", "write within=yesterday", 42),
        ("count(product_view, within=last_month, before=1d)", "give a duration", 46),
        ("cart_abandoned(add_to_cart, purchase, within=today)", "needs a duration", 45),
    ],
)
def test_mistakes_point_at_the_culprit(text: str, message: str, column: int) -> None:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    assert message in info.value.message
    assert info.value.offset == column, info.value.message


def test_the_period_names_are_the_documented_ones() -> None:
    """The periods the parser takes are exactly those docs/metrics.md tables, in its order, and each
    parses as ``within=``."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    table = docs[docs.index("| period | events kept |") :].split("\n\n", 1)[0]
    assert tuple(re.findall(r"^\| `(\w+)` \|", table, flags=re.M)) == PERIODS
    for period in PERIODS:
        call = lang.parse(f"count(view, within={period})")
        assert isinstance(call, lang.Call)
        period_node = lang.period_of(call)
        assert period_node is not None and period_node.name == period


def test_incremental_equals_from_scratch_across_local_midnights() -> None:
    """Ticks every 3 hours for 12 days around the New York change of clocks, with events arriving late
    and a customer moving to another zone: every calendar aggregate, and kept conditions over them, equal
    a from-scratch evaluation at every tick (local midnights, Monday midnights and 1 March are crossed in
    every zone)."""
    rng = np.random.default_rng(7)
    texts = [
        "count(product_view, within=today)",
        "count(product_view, within=yesterday)",
        "count(product_view, purchase, within=this_week)",
        "count(product_view, within=last_week)",
        "sum(purchase.amount, within=this_month)",
        "sum(purchase.amount, within=last_month)",
        "since(purchase, within=this_year)",
        "change(count(product_view, within=this_week), count(product_view, within=last_week))",
    ]
    conditions = [
        "count(product_view, within=today) >= 2",
        "change(count(product_view, within=this_week), count(product_view, within=last_week)) >= 1",
        "count(purchase, within=last_month) > 0 and count(purchase, within=this_month) == 0",
    ]
    nodes = [lang.parse(t) for t in texts]
    kept_nodes = [lang.parse(t) for t in conditions]
    calls = list(dict.fromkeys(c for node in [*nodes, *kept_nodes] for c in lang.aggregates(node)))
    log = EventLog(*property_uses(calls))
    aggregates = IncrementalAggregates(calls, log)
    kept = IncrementalConditions(aggregates, horizon_us=6 * H)
    n = 60
    zone_names = np.array(
        ["Asia/Tokyo", "America/New_York", "UTC", None, "Not/AZone", "Australia/Lord_Howe"], dtype=object
    )
    zones = zone_names[np.arange(n) % len(zone_names)]
    exists = np.arange(n) > 0
    now = at("2024-02-26T01:30:00+00:00")
    last_id = 0
    for tick in range(12 * 8):
        now += 3 * H
        if tick == 40:
            zones = zones.copy()
            zones[7] = "Pacific/Kiritimati"  # a customer moves to +14
        k = int(rng.integers(0, 30))
        fresh = EventFrame(
            customer=rng.integers(1, n, k),
            # mostly just before now, some late by up to 3 days, some stamped in the future
            ts=now - rng.integers(-H, 3 * DAY, k),
            type=rng.integers(0, 2, k).astype(np.int32),
            type_names=TYPES,
            n_customers=n,
            properties={"amount": np.round(rng.uniform(1, 50, k), 2)},
        )
        last_id += k
        log.append_frame(fresh, last_id)
        aggregates.advance(now)
        customers = CustomerFrame(n, exists, {"timezone": zones})
        aggregates.set_time_zones(zones)
        cache = AggregateCache()
        aggregates.fill(cache)
        incremental = Evaluator(EventFrame.empty(n), customers, now, cache=cache)
        scratch = Evaluator(log.frame(log.range(None, None)), customers, now, cache=AggregateCache())
        for text, node in zip(texts, nodes, strict=True):
            got, want = incremental.values(node), scratch.values(node)
            assert np.array_equal(got, want, equal_nan=True), f"tick {tick}: {text}"
        for i, node in enumerate(kept_nodes):
            got = kept.condition(i, node, customers, changed=np.zeros(0, np.int64) if tick != 40 else None)
            assert np.array_equal(got, scratch.condition(node)), f"tick {tick}: {conditions[i]}"
    # The periods did hold events: the checks compared something.
    assert scratch.values(nodes[3]).sum() > 0 and scratch.values(nodes[5]).sum() > 0


def test_bounds_are_worked_out_once_per_zone() -> None:
    # 200,000 customers over three zones: the bounds are per zone, then gathered.
    n = 200_000
    zones = np.array(["Asia/Tokyo", None, "Europe/Paris"], dtype=object)[np.arange(n) % 3]
    customers = CustomerFrame(n, np.ones(n, bool), {"timezone": zones})
    evaluator = Evaluator(EventFrame.empty(n), customers, at(WEDNESDAY))
    start, end = evaluator.period_bounds("this_week")
    assert start[0] == at("2024-03-10T15:00:00+00:00")  # Tokyo
    assert start[1] == at("2024-03-11T00:00:00+00:00")  # no zone: UTC
    assert start[2] == at("2024-03-10T23:00:00+00:00")  # Paris (+1 in March)
    assert (end == at(WEDNESDAY)).all()
    assert np.array_equal(start[3:6], start[0:3])


def test_zone_bounds_of_each_period_at_a_new_year_in_tokyo() -> None:
    # 1 January 2025 00:30 in Tokyo = 31 December 2024 15:30 UTC.
    now = at("2024-12-31T15:30:00+00:00")
    tokyo = {p: zone_bounds(p, "Asia/Tokyo", now) for p in PERIODS}
    assert tokyo["today"] == (at("2025-01-01T00:00:00+09:00"), now)
    assert tokyo["yesterday"] == (at("2024-12-31T00:00:00+09:00"), at("2025-01-01T00:00:00+09:00"))
    assert tokyo["this_week"][0] == at("2024-12-30T00:00:00+09:00")  # Monday 30 December
    assert tokyo["last_month"] == (at("2024-12-01T00:00:00+09:00"), at("2025-01-01T00:00:00+09:00"))
    assert tokyo["last_year"] == (at("2024-01-01T00:00:00+09:00"), at("2025-01-01T00:00:00+09:00"))
    # The same instant in UTC is still 2024.
    assert zone_bounds("this_year", "UTC", now)[0] == at("2024-01-01T00:00:00+00:00")
    assert datetime.fromtimestamp(now / S, UTC).year == 2024
