"""The built-in metrics against hand-computed values on small data, with their edges: no events, half-open
window boundaries, ties, nulls and customers who only answered surveys; the formulas they expand to; and
their mistakes, reported at the right column."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.signals import _builtin_values as builtin_values
from orchestrator.signals import _lang as lang
from orchestrator.signals._builtins import TIERS
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame, column_from_values

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000  # microseconds per second
H = 3600 * S
DAY = 24 * H
NOW = 1_700_000_000 * S
TYPES = [
    "session_start",
    "purchase",
    "refund",
    "add_to_cart",
    "nps_response",
    "csat_response",
    "ces_response",
    "email_click",
]

Row = tuple[int, str, int, dict[str, Any]]  # customer key, event, microseconds before NOW, properties


def frame(rows: list[Row], n: int) -> EventFrame:
    # The properties the tests read are always loaded (empty if no row has them), as the engine loads
    # every property its journeys read.
    props = sorted({k for *_, p in rows for k in p} | {"amount", "category", "score"})
    return EventFrame(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([NOW - r[2] for r in rows], dtype=np.int64),
        type=np.array([TYPES.index(r[1]) for r in rows], dtype=np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={k: column_from_values([r[3].get(k) for r in rows]) for k in props},
    )


def customers(n: int, **columns: list[Any]) -> CustomerFrame:
    """Slot 0 is empty (no customer), as in the store; slots 1..n-1 are customers."""
    exists = np.ones(n, bool)
    exists[0] = False
    return CustomerFrame(n, exists, {k: column_from_values(v) for k, v in columns.items()})


def values(
    rows: list[Row],
    expr: str,
    n: int,
    metrics: dict[str, str] | None = None,
    **columns: list[Any],
) -> list[Any]:
    """The expression for customers 1..n-1, nulls as None."""
    parsed = {k: lang.parse(v) for k, v in (metrics or {}).items()}
    out = Evaluator(frame(rows, n), customers(n, **columns), NOW, parsed).values(lang.parse(expr))
    return [None if isinstance(v, float) and v != v else v for v in out[1:].tolist()]


def holds(rows: list[Row], expr: str, n: int, **columns: list[Any]) -> list[bool]:
    ev = Evaluator(frame(rows, n), customers(n, **columns), NOW)
    return ev.condition(lang.parse(expr))[1:].tolist()


def error(text: str) -> tuple[str, int]:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    return info.value.message, info.value.offset


# ---------------------------------------------------------------------------------------------- recency


def test_recency_is_in_days_and_null_without_events() -> None:
    rows: list[Row] = [
        (1, "session_start", 1 * DAY, {}),
        (1, "purchase", 3 * DAY, {}),
        (2, "purchase", 36 * H, {}),
        (3, "session_start", 0, {}),  # at NOW exactly: not before the evaluation instant, so not seen
        (4, "email_click", 2 * DAY, {}),  # not one of the listed types
    ]
    assert values(rows, "recency(session_start, purchase)", 6) == [1.0, 1.5, None, None, None]
    # A window keeps only events in [now - 2d, now): 2 days ago is inside, 3 days ago is not.
    assert values(rows, "recency(purchase, within=2d)", 6) == [None, 1.5, None, None, None]
    assert values(rows, "recency(purchase, within=3d)", 6) == [3.0, 1.5, None, None, None]


def test_recency_writes_reference_r1_with_not() -> None:
    # R1 fires when the latest interaction is before NOW - 30d or there is none. A comparison with null
    # is false, so "not recency(...) <= 30" includes the customers with no interaction at all.
    rows: list[Row] = [
        (1, "session_start", 30 * DAY, {}),  # exactly 30 days: not quiet "for 30 days" yet
        (2, "purchase", 30 * DAY + 1, {}),  # one microsecond more: quiet
        (3, "email_click", 2 * DAY, {}),
        (5, "add_to_cart", 40 * DAY, {}),  # no listed interaction at all
    ]
    listed = "session_start, email_click, purchase"
    expected = holds(rows, f"since({listed}) > 30d", 6)
    assert expected == [False, True, False, True, True]
    assert holds(rows, f"not recency({listed}) <= 30", 6) == expected
    assert holds(rows, f"recency({listed}) > 30", 6) == [False, True, False, False, False]


# ---------------------------------------------------------------------------------------------- F and M


def test_frequency_and_monetary_over_half_open_windows() -> None:
    rows: list[Row] = [
        (1, "purchase", 7 * DAY, {"amount": 10.0}),  # exactly at now - 7d: inside within=7d
        (1, "purchase", 1 * H, {"amount": 2.5}),
        (1, "purchase", 0, {"amount": 1000.0}),  # at now: outside
        (2, "purchase", 7 * DAY + 1, {"amount": 4.0}),  # just before the window
        (2, "purchase", 2 * DAY, {}),  # no amount: counted by frequency, not summed
        (3, "session_start", 1 * DAY, {}),
    ]
    assert values(rows, "frequency(purchase, within=7d)", 5) == [2, 1, 0, 0]
    assert values(rows, "frequency(purchase, session_start, within=7d)", 5) == [2, 1, 1, 0]
    assert values(rows, "monetary(purchase.amount, within=7d)", 5) == [12.5, 0, 0, 0]
    assert values(rows, "monetary(purchase.amount)", 5) == [12.5, 4.0, 0, 0]
    # before= shifts the window: [now - 14d, now - 7d) holds the 7d+1µs purchase, not the 7d one.
    assert values(rows, "frequency(purchase, within=7d, before=7d)", 5) == [0, 1, 0, 0]


def test_frequency_and_monetary_are_count_and_sum() -> None:
    assert lang.parse("frequency(a, b, within=3d, before=1d)") == lang.parse(
        "count(a, b, within=3d, before=1d)"
    )
    assert lang.parse("monetary(p.amount, within=30d)") == lang.parse("sum(p.amount, within=30d)")


# ---------------------------------------------------------------------------------------------- quintile


def test_quintile_of_distinct_values() -> None:
    x = [None, *range(10, 0, -1)]  # slot 0 is empty
    assert values([], "quintile(x)", 11, x=x) == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_quintile_ties_share_the_score_of_their_first_rank() -> None:
    # m = 5 values; strictly smaller counts 0,0,0,3,4 -> 1 + floor(5 * s / 5)
    assert values([], "quintile(x)", 6, x=[None, 7, 7, 7, 8, 9]) == [1, 1, 1, 4, 5]
    # Everyone equal: everyone gets 1.
    assert values([], "quintile(x)", 4, x=[None, 3, 3, 3]) == [1, 1, 1]
    # One customer: 1.
    assert values([], "quintile(x)", 2, x=[None, 42]) == [1]


def test_quintile_leaves_nulls_out_of_the_ranking() -> None:
    # Four values among six customers: n = 4, smaller = 0,1,2,3 -> 1,2,3,4
    x = [None, 1.0, None, 2.0, 3.0, None, 4.0]
    assert values([], "quintile(x)", 7, x=x) == [1, None, 2, 3, None, 4]


def test_quintile_ranks_every_existing_customer_and_no_empty_slot() -> None:
    # The empty slot 0 has frequency 0 like customer 3; it must not count. Customers: 2, 1, 0, 5, 3
    # purchases -> smaller = 2, 1, 0, 4, 3 -> 1 + floor(5 * s / 5) = 3, 2, 1, 5, 4.
    rows: list[Row] = [(1, "purchase", H, {})] * 2 + [(2, "purchase", H, {})]
    rows += [(4, "purchase", H, {})] * 5 + [(5, "purchase", H, {})] * 3
    assert values(rows, "quintile(frequency(purchase))", 6) == [3, 2, 1, 5, 4]
    # A condition on it is still computed over the whole population, whoever is then read.
    mask = Evaluator(frame(rows, 6), customers(6), NOW).condition(
        lang.parse("quintile(count(purchase)) >= 4")
    )
    assert np.flatnonzero(mask).tolist() == [4, 5]


def test_quintile_of_recency_skips_customers_who_never_bought() -> None:
    rows: list[Row] = [
        (1, "purchase", 1 * DAY, {}),
        (2, "purchase", 10 * DAY, {}),
        (3, "session_start", 1 * DAY, {}),
        (4, "purchase", 5 * DAY, {}),
    ]
    # -recency: -1, -10, null, -5 over three buyers -> smaller 2, 0, -, 1 -> 1 + floor(5s/3) = 4, 1, -, 2
    assert values(rows, "quintile(-recency(purchase))", 5) == [4, 1, None, 2]


def test_population_results_are_shared_only_when_they_read_no_metric() -> None:
    rows: list[Row] = [(1, "purchase", H, {}), (2, "purchase", H, {}), (2, "purchase", H, {})]
    events, people = frame(rows, 3), customers(3)
    cache = AggregateCache()
    a = Evaluator(events, people, NOW, {"x": lang.parse("count(purchase)")}, cache)
    b = Evaluator(events, people, NOW, {"x": lang.parse("-count(purchase)")}, cache)
    assert a.values(lang.parse("quintile(x)"))[1:].tolist() == [1, 3]
    assert b.values(lang.parse("quintile(x)"))[1:].tolist() == [3, 1]  # not a's result
    a.values(lang.parse("quintile(count(purchase))"))
    assert ("population", lang.parse("quintile(count(purchase))")) in cache.values


def test_quintile_of_text_is_an_error() -> None:
    with pytest.raises(lang.ExpressionError, match="is text, not a number"):
        values([], "quintile(x)", 3, x=[None, "gold", "silver"])


# ---------------------------------------------------------------------------------------------- RFM


def test_rfm_grid_cells() -> None:
    r = [None, 5, 5, 5, 4, 4, 3, 3, 3, 2, 1, 2, 1, 1]
    f = [None, 5, 1, 2, 1, 4, 1, 3, 5, 1, 1, 3, 5, 4]
    assert values([], "rfm_segment(r, f)", 14, r=r, f=f) == [
        "champions",
        "new_customer",
        "potential_loyalist",
        "promising",
        "loyal",
        "about_to_sleep",
        "need_attention",
        "loyal",
        "hibernating",
        "lost",
        "at_risk",
        "cannot_lose",
        "at_risk",
    ]


def test_rfm_segment_is_null_unless_both_scores_are_1_to_5() -> None:
    r = [None, None, 3, 0, 6, 2.5, 3]
    f = [None, 3, None, 3, 3, 3, 3.0]
    assert values([], "rfm_segment(r, f)", 7, r=r, f=f) == [None, None, None, None, None, "need_attention"]


def test_rfm_grid_in_the_docs_is_the_grid_that_runs() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text[text.index("<!-- rfm-grid -->") : text.index("<!-- /rfm-grid -->")]
    rows = [line for line in table.splitlines() if re.match(r"^\| \*\*R[1-5]\*\*", line)]
    documented = {int(line[5]): [c.strip().strip("`") for c in line.split("|")[2:7]] for line in rows}
    assert {r: tuple(cells) for r, cells in documented.items()} == {
        r + 1: row for r, row in enumerate(builtin_values.RFM_GRID)
    }


def test_rfm_journey_example() -> None:
    # The worked example of docs/metrics.md, over 5 customers.
    rows: list[Row] = []
    # (days since each purchase) per customer
    history = {1: [1, 3, 5, 8], 2: [200], 3: [300, 310, 320, 330, 340], 4: [2], 5: [100, 150]}
    for key, ages in history.items():
        rows += [(key, "purchase", age * DAY, {"amount": 10.0 * len(ages)}) for age in ages]
    metrics = {
        "r": "quintile(-recency(purchase))",
        "f": "quintile(frequency(purchase, within=365d))",
        "m": "quintile(monetary(purchase.amount, within=365d))",
        "segment": "rfm_segment(r, f)",
    }
    # -recency: -1, -200, -300, -2, -100 -> smaller: 4, 1, 0, 3, 2 -> r = 5, 2, 1, 4, 3
    assert values(rows, "r", 6, metrics) == [5, 2, 1, 4, 3]
    # frequency: 4, 1, 5, 1, 2 -> smaller: 3, 0, 4, 0, 2 -> f = 4, 1, 5, 1, 3
    assert values(rows, "f", 6, metrics) == [4, 1, 5, 1, 3]
    # monetary: 160, 10, 250, 10, 40
    assert values(rows, "m", 6, metrics) == [4, 1, 5, 1, 3]
    assert values(rows, "segment", 6, metrics) == [
        "champions",
        "hibernating",
        "cannot_lose",
        "promising",
        "need_attention",
    ]
    assert values(rows, 'segment in ["at_risk", "cannot_lose"]', 6, metrics) == [
        False,
        False,
        True,
        False,
        False,
    ]


# ---------------------------------------------------------------------------------------------- lifecycle


def test_lifecycle_tiers_with_default_thresholds_and_their_boundaries() -> None:
    rd = [None, 7, 7, 7.001, 14, 14, 30, 30, 90, 90.001, None, 2]
    fq = [None, 8, 7.999, 8, 4, 3, 1, 0, 0, 50, 9, None]
    assert values([], "lifecycle_tier(rd, fq)", 12, rd=rd, fq=fq) == [
        "highly_active",
        "regularly_engaged",  # one event short of highly active
        "regularly_engaged",  # a little too long ago for highly active
        "regularly_engaged",
        "occasionally_active",
        "occasionally_active",
        "at_risk",
        "at_risk",
        "lapsed",
        "lapsed",  # no activity: null recency
        "lapsed",  # null frequency never holds
    ]


def test_lifecycle_thresholds_are_configurable_and_take_durations_in_days() -> None:
    rd = [None, 2, 5, 40]
    fq = [None, 10, 10, 1]
    expr = "lifecycle_tier(rd, fq, highly_active=[3d, 10], occasionally_active=[45, 1])"
    assert values([], expr, 4, rd=rd, fq=fq) == ["highly_active", "regularly_engaged", "occasionally_active"]
    assert lang.parse("lifecycle_tier(a, b, at_risk=[2w, 0])") == lang.parse(
        "lifecycle_tier(a, b, at_risk=[14, 0])"
    )


def test_lifecycle_tier_from_events() -> None:
    rows: list[Row] = [(1, "session_start", h * H, {}) for h in range(1, 10)]  # 9 sessions, latest 1h ago
    rows += [(2, "session_start", 20 * DAY, {})]
    rows += [(3, "purchase", 100 * DAY, {})]
    expr = "lifecycle_tier(recency(session_start, purchase), frequency(session_start, purchase, within=30d))"
    assert values(rows, expr, 5) == ["highly_active", "occasionally_active", "lapsed", "lapsed"]
    assert set(TIERS) == {"highly_active", "regularly_engaged", "occasionally_active", "at_risk"}


# ---------------------------------------------------------------------------------------------- weighted


R5_METRICS = {
    "frequency": "min(count(session_start, within=30d) / 10, 1)",
    "depth": "min(count(purchase, add_to_cart, within=30d) / 20, 1)",
    "breadth": "distinct_events(session_start, purchase, add_to_cart, nps_response, within=30d) / 8",
    "sentiment": "coalesce(mean(nps_response.score, within=30d) / 10, 0.5)",
}


def test_weighted_is_the_hand_written_sum_in_the_same_order() -> None:
    hand = lang.parse("0.4 * frequency + 0.3 * depth + 0.2 * breadth + 0.1 * sentiment")
    assert lang.parse("weighted(frequency=0.4, depth=0.3, breadth=0.2, sentiment=0.1)") == hand


def test_weighted_gives_reference_r5_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    n, k = 400, 6000
    types = np.array(TYPES)
    kinds = rng.choice(types[[0, 1, 3, 4]], k)
    rows: list[Row] = [
        (
            int(c),
            str(kind),
            int(age),
            {"score": int(rng.integers(0, 11))} if kind == "nps_response" else {},
        )
        for c, kind, age in zip(rng.integers(1, n, k), kinds, rng.integers(0, 40 * DAY, k), strict=True)
    ]
    hand = values(rows, "0.4 * frequency + 0.3 * depth + 0.2 * breadth + 0.1 * sentiment", n, R5_METRICS)
    built = values(rows, "weighted(frequency=0.4, depth=0.3, breadth=0.2, sentiment=0.1)", n, R5_METRICS)
    assert built == hand
    assert len(set(hand)) > 50  # the data spreads the score


def test_weighted_with_a_null_part_is_null() -> None:
    assert values([], "weighted(a=0.5, b=0.5)", 3, a=[None, 1, 1], b=[None, 0.5, None]) == [0.75, None]


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("weighted(a=0.5, b=0.4)", "the weights of weighted() add up to 0.9, not 1: a=0.5 + b=0.4", 9),
        ("x > weighted(freq=0.7,  depth=0.7)", "add up to 1.4, not 1", 13),
        ("weighted(a=-0.5, b=1.5)", "the weight of a must be a number from 0 to 1", 11),
        ("weighted(a=x, b=1)", "the weight of a must be a number from 0 to 1", 11),
        ("weighted(a, 0.4)", "weighted() takes only name=value arguments", 9),
        ("weighted()", "weighted() needs metric=weight pairs", 0),
    ],
)
def test_weighted_mistakes(text: str, message: str, offset: int) -> None:
    got, at = error(text)
    assert message in got
    assert at == offset


def test_weights_may_add_up_to_1_within_float_error() -> None:
    lang.parse("weighted(a=0.1, b=0.2, c=0.7)")  # 0.1 + 0.2 is 0.30000000000000004
    lang.parse("weighted(a=1)")


# ---------------------------------------------------------------------------------------------- change


def sessions(key: int, days_ago: list[float]) -> list[Row]:
    return [(key, "session_start", round(d * DAY), {}) for d in days_ago]


DROP = "change(count(session_start, within=14d), count(session_start, within=28d, before=14d))"


def test_change_against_a_baseline_window_with_exact_boundaries() -> None:
    rows = sessions(1, [1, 2, 3, *range(15, 25)])  # 3 recent, 10 in the baseline: -40% exactly
    rows += sessions(2, [1, 2, 3, 4, 5, 6, 7, *np.arange(15, 35)])  # 7 vs 20: -30% exactly
    rows += sessions(3, [1, 2])  # no baseline: null
    rows += sessions(4, [20, 30])  # 0 vs 2: -100%
    rows += sessions(5, [14, 42])  # 14d is the recent window's start (inside); 42d is the baseline's start
    rows += sessions(6, [0, 14 + 1e-9, 42 + 1e-6])  # now (out), the baseline's end (in), before 42d (out)
    got = values(rows, DROP, 8)
    assert got == [-0.4, -0.3, None, -1.0, 1.0, -1.0, None]
    # Exactly on the boundary, thanks to rounding to 9 decimals: a 40% drop is <= -0.4 and not < -0.4.
    assert holds(rows, f"{DROP} <= -0.4", 8) == [True, False, False, True, False, True, False]
    assert holds(rows, f"{DROP} < -0.4", 8) == [False, False, False, True, False, True, False]
    assert holds(rows, f"{DROP} == -0.3", 8) == [False, True, False, False, False, False, False]
    assert holds(rows, f"{DROP} >= -0.3", 8) == [False, True, False, False, True, False, False]


def test_change_without_rounding_would_miss_the_boundary() -> None:
    # The float caveat of docs/metrics.md: 7/14 over 20/28 is 0.7, but 0.7 - 1 in floats is below -0.3.
    assert 196 / 280 - 1 < -0.3
    assert builtin_values.change(np.array([7.0]), np.array([20.0]), 14 * 86400.0, 28 * 86400.0)[0] == -0.3


def test_change_writes_reference_r2() -> None:
    rng = np.random.default_rng(5)
    rows: list[Row] = []
    for key in range(1, 300):
        rows += sessions(key, list(rng.uniform(0, 45, int(rng.integers(0, 25)))))
    r2 = "count(session_start, within=28d, before=14d) > 0 and "
    r2 += "10 * count(session_start, within=14d) < 3 * count(session_start, within=28d, before=14d)"
    expected = holds(rows, r2, 300)
    assert sum(expected) > 20
    assert holds(rows, f"{DROP} < -0.4", 300) == expected


def test_change_of_sums_uses_each_windows_length() -> None:
    rows: list[Row] = [(1, "purchase", DAY, {"amount": 30.0}), (1, "purchase", 20 * DAY, {"amount": 30.0})]
    # 30 over 7 days against 60 over 30 days: (30 / 7) / (60 / 30) - 1 = 8/7, rounded to 9 decimals
    got = values(rows, "change(monetary(purchase.amount, within=7d), sum(purchase.amount, within=30d))", 2)
    assert got == [1.142857143]


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("change(count(s), count(s, within=3d))", "the recent window has no within=", 7),
        ("change(count(s, within=3d), frequency(s))", "the baseline window has no within=", 28),
        (
            "change(mean(s.x, within=3d), count(s, within=3d))",
            "each argument must be count(...) or sum(...)",
            7,
        ),
        ("change(x, count(s, within=3d))", "each argument must be count(...) or sum(...)", 7),
        ("change(count(s, within=3d))", "change() takes 2 argument(s), got 1", 0),
    ],
)
def test_change_mistakes(text: str, message: str, offset: int) -> None:
    got, at = error(text)
    assert message in got
    assert at == offset


# ---------------------------------------------------------------------------------------------- cart


CART = "cart_abandoned(add_to_cart, purchase, within=24h)"


def test_cart_abandoned_edges() -> None:
    rows: list[Row] = [
        (1, "add_to_cart", 24 * H, {}),  # exactly at now - 24h: inside
        (2, "add_to_cart", 24 * H + 1, {}),  # one microsecond too old
        (3, "add_to_cart", 2 * H, {}),
        (3, "purchase", 2 * H, {}),  # same instant: not later than the add, so still abandoned
        (4, "add_to_cart", 2 * H, {}),
        (4, "purchase", 2 * H - 1, {}),  # one microsecond later: bought
        (5, "purchase", 30 * H, {}),
        (5, "add_to_cart", 3 * H, {}),  # bought before adding again: abandoned
        (6, "add_to_cart", 30 * H, {}),
        (6, "purchase", 26 * H, {}),
        (6, "add_to_cart", 2 * H, {}),  # the latest add counts
        (7, "add_to_cart", 0, {}),  # at now: not yet seen
        (8, "purchase", H, {}),  # no cart at all
    ]
    assert holds(rows, CART, 10) == [True, False, True, False, True, True, False, False, False]


def test_cart_abandoned_is_reference_r3() -> None:
    assert lang.parse(CART) == lang.parse(
        "since(add_to_cart) <= 24h and since(purchase) >= since(add_to_cart)"
    )
    message, offset = error("cart_abandoned(add_to_cart, purchase)")
    assert "cart_abandoned() needs within=" in message and offset == 0


# ---------------------------------------------------------------------------------------------- purchases


def test_repeat_purchase_and_category_count() -> None:
    rows: list[Row] = [
        (1, "purchase", 1 * DAY, {"category": "shoes"}),
        (1, "purchase", 30 * DAY, {"category": "shoes"}),  # exactly at the window's start: inside
        (2, "purchase", 1 * DAY, {"category": "bags"}),
        (2, "purchase", 30 * DAY + 1, {"category": "hats"}),  # outside
        (3, "purchase", 2 * DAY, {"category": "hats"}),
        (3, "purchase", 3 * DAY, {"category": "bags"}),
        (3, "purchase", 4 * DAY, {"category": None}),  # no category: not a category
        (3, "purchase", 5 * DAY, {"category": "bags"}),
    ]
    assert holds(rows, "repeat_purchase(purchase, within=30d)", 5) == [True, False, True, False]
    assert holds(rows, "repeat_purchase(purchase)", 5) == [True, True, True, False]
    assert values(rows, "category_count(purchase.category, within=30d)", 5) == [1, 1, 2, 0]
    # Purchases per category, as docs/metrics.md writes it; null without purchases.
    per = "count(purchase, within=30d) / category_count(purchase.category, within=30d)"
    assert values(rows, per, 5) == [2.0, 1.0, 2.0, None]
    # The most bought category, ties going to the smallest value (bags and hats for customer 2 all time).
    assert values(rows, "top_value(purchase.category)", 5) == ["shoes", "bags", "bags", None]


def test_clv_is_all_time_purchases_minus_refunds() -> None:
    rows: list[Row] = [
        (1, "purchase", 400 * DAY, {"amount": 100.0}),
        (1, "purchase", 1 * DAY, {"amount": 20.5}),
        (1, "refund", 1 * H, {"amount": 20.5}),
        (2, "refund", 1 * H, {"amount": 5.0}),  # refunds only
        (3, "purchase", 1 * DAY, {"amount": None}),
        (4, "session_start", 1 * DAY, {}),
    ]
    assert values(rows, "clv(purchase.amount)", 5) == [120.5, 0, 0, 0]
    assert values(rows, "clv(purchase.amount, refunds=refund.amount)", 5) == [100.0, -5.0, 0, 0]
    assert lang.parse("clv(p.amount, refunds=r.amount)") == lang.parse("sum(p.amount) - sum(r.amount)")
    message, offset = error("clv(purchase.amount, within=30d)")
    assert "clv() has no argument within=" in message and offset == 28
    message, offset = error("clv(purchase.amount, refunds=refund)")
    assert "refunds= takes one event property" in message and offset == 29


# ---------------------------------------------------------------------------------------------- surveys


SURVEYS: list[Row] = [
    # Customer 1 answered 6 and then 9: the latest answer counts.
    (1, "nps_response", 20 * DAY, {"score": 6}),
    (1, "nps_response", 5 * DAY, {"score": 9}),
    (2, "nps_response", 5 * DAY, {"score": 9}),
    (2, "nps_response", 3 * DAY, {"score": 6}),
    (3, "nps_response", 1 * DAY, {"score": 7}),
    (4, "nps_response", 1 * DAY, {"score": 8}),
    (5, "nps_response", 1 * DAY, {"score": 10}),
    (6, "nps_response", 1 * DAY, {"score": 0}),
    # Two answers at the same instant: the smaller one counts (the language's tie rule).
    (7, "nps_response", 2 * DAY, {"score": 9}),
    (7, "nps_response", 2 * DAY, {"score": 6}),
    # The latest response has no score: the latest one that has one counts.
    (8, "nps_response", 4 * DAY, {"score": 10}),
    (8, "nps_response", 1 * DAY, {}),
    # Only an old answer, outside the window.
    (9, "nps_response", 400 * DAY, {"score": 10}),
    # No survey at all.
    (10, "session_start", 1 * DAY, {}),
    # Customer 11 only ever answered surveys.
    (11, "csat_response", 2 * DAY, {"score": 4}),
    (11, "csat_response", 40 * DAY, {"score": 5}),
    (11, "ces_response", 2 * DAY, {"score": 2}),
    (11, "nps_response", 3 * DAY, {"score": 3}),
]


def test_nps_group_from_the_latest_response_in_the_window() -> None:
    assert values(SURVEYS, "nps_group(nps_response.score, within=365d)", 12) == [
        "promoter",
        "detractor",
        "passive",
        "passive",
        "promoter",
        "detractor",
        "detractor",
        "promoter",
        None,
        None,
        "detractor",
    ]
    assert values(SURVEYS, "nps_group(nps_response.score)", 12)[8] == "promoter"  # all time
    assert values(SURVEYS, "last(nps_response.score, within=365d)", 12)[:8] == [9, 6, 7, 8, 10, 0, 6, 10]


def test_nps_group_boundaries_and_out_of_range_scores() -> None:
    rows: list[Row] = [
        (k, "nps_response", DAY, {"score": s}) for k, s in enumerate([6.9, 7, 8.9, 9, 10, 11, -1], 1)
    ]
    assert values(rows, "nps_group(nps_response.score)", 8) == [
        "detractor",
        "passive",
        "passive",
        "promoter",
        "promoter",
        None,
        None,
    ]


def test_csat_and_ces_are_means_and_customers_with_only_surveys_have_no_purchase_metrics() -> None:
    assert values(SURVEYS, "csat(csat_response.score, within=30d)", 12)[10] == 4.0
    assert values(SURVEYS, "csat(csat_response.score)", 12)[10] == 4.5
    assert values(SURVEYS, "ces(ces_response.score, within=30d)", 12)[10] == 2.0
    assert values(SURVEYS, "csat(csat_response.score)", 12)[:10] == [None] * 10
    assert values(SURVEYS, "recency(purchase)", 12)[10] is None
    assert values(SURVEYS, "frequency(purchase, within=365d)", 12)[10] == 0
    assert values(SURVEYS, "monetary(purchase.amount, within=365d)", 12)[10] == 0
    assert values(SURVEYS, "clv(purchase.amount)", 12)[10] == 0
    assert (
        values(SURVEYS, "lifecycle_tier(recency(purchase), frequency(purchase, within=30d))", 12)[10]
        == "lapsed"
    )
    assert lang.parse("csat(e.score, within=9d)") == lang.parse("mean(e.score, within=9d)")


# ---------------------------------------------------------------------------------------------- no events


ALL_BUILTINS = {
    "recency(session_start)": None,
    "frequency(session_start, within=30d)": 0,
    "monetary(purchase.amount, within=30d)": 0,
    "quintile(frequency(session_start, within=30d))": 1,
    "quintile(-recency(purchase))": None,
    "rfm_segment(quintile(-recency(purchase)), quintile(frequency(purchase)))": None,
    "lifecycle_tier(recency(session_start), frequency(session_start, within=30d))": "lapsed",
    "weighted(x=0.5, y=0.5)": 1.0,
    DROP: None,
    CART: False,
    "repeat_purchase(purchase, within=30d)": False,
    "category_count(purchase.category, within=30d)": 0,
    "nps_group(nps_response.score, within=365d)": None,
    "csat(csat_response.score, within=30d)": None,
    "ces(ces_response.score, within=30d)": None,
    "clv(purchase.amount, refunds=refund.amount)": 0,
    "last(purchase.amount)": None,
}


@pytest.mark.parametrize(("expr", "expected"), list(ALL_BUILTINS.items()))
def test_every_builtin_without_any_event(expr: str, expected: Any) -> None:
    people = customers(4, x=[None, 1, 1, 1], y=[None, 1, 1, 1])
    ev = Evaluator(EventFrame.empty(4, ["amount", "category", "score"]), people, NOW)
    got = ev.values(lang.parse(expr))[1:].tolist()
    assert [None if isinstance(v, float) and v != v else v for v in got] == [expected] * 3


def test_internal_functions_cannot_be_called() -> None:
    for name in ("_days", "_tier", "_change", "_nps_group", "_period_seconds"):
        message, offset = error(f"1 + {name}(3)")
        assert message.startswith(f"unknown function {name}()") and offset == 4
        assert "_days" not in message.split(";")[1]


def test_every_public_function_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Expressions") : readme.index("Operators: ")]
    metrics_doc = (ROOT / "docs" / "metrics.md").read_text()
    core = {"count", "since", "distinct_events", "sum", "mean", "distinct", "top_count", "top_value"}
    core |= {"min", "max", "coalesce", "abs", "present"}
    for name, spec in lang.FUNCTIONS.items():
        if spec.internal:
            continue
        assert f"`{name}(" in table, f"{name}() is missing from the README's function table"
        if name not in core:
            assert f"`{name}(" in metrics_doc, f"{name}() is missing from docs/metrics.md"


def test_quintile_matches_its_definition_on_random_data() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 12, 300).astype(float)
    x[rng.random(300) < 0.2] = np.nan
    x[rng.random(300) < 0.03] = np.inf
    x[rng.random(300) < 0.03] = -np.inf
    population = rng.random(300) < 0.9
    got = builtin_values.quintile(x, population)
    members = population & ~np.isnan(x)
    ranked = x[members]
    expected = [
        1 + (5 * int(np.sum(ranked < x[i]))) // len(ranked) if members[i] else None for i in range(len(x))
    ]
    assert [None if v != v else v for v in got.tolist()] == expected
    assert set(expected) - {None} == {1, 2, 3, 4, 5}
