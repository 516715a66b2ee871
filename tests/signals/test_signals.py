"""The expression language and its vectorised evaluation, on small hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame, column_from_values

S = 1_000_000  # microseconds per second
DAY = 86400 * S
NOW = 1_700_000_000 * S
TYPES = ["session_start", "purchase", "product_view", "add_to_cart", "nps_response"]


def frame(rows: list[tuple[int, str, float, dict]], n: int = 4) -> EventFrame:
    """rows: (customer key, event, days before NOW, properties)."""
    props = sorted({k for *_, p in rows for k in p})
    return EventFrame(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([NOW - round(r[2] * DAY) for r in rows], dtype=np.int64),
        type=np.array([TYPES.index(r[1]) for r in rows], dtype=np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={k: column_from_values([r[3].get(k) for r in rows]) for k in props},
    )


EVENTS = frame(
    [
        (1, "session_start", 1, {}),
        (1, "session_start", 20, {}),
        (1, "purchase", 3, {"amount": 10.0, "cat": "shoes"}),
        (1, "purchase", 40, {"amount": 30.0, "cat": "bags"}),
        (2, "session_start", 14, {}),  # exactly on the 14-day boundary: inside [NOW-14d, NOW)
        (2, "product_view", 2, {"cat": "bags"}),
        (2, "product_view", 2.5, {"cat": "shoes"}),
        (2, "product_view", 3, {"cat": "bags"}),
        (2, "product_view", 4, {"cat": "shoes"}),
        (3, "nps_response", 5, {"score": 9}),
        (3, "nps_response", 6, {"score": 6}),
    ]
)
CUSTOMERS = CustomerFrame(
    n=4,
    exists=np.array([False, True, True, True]),
    columns={
        "tier": column_from_values([None, "gold", "silver", None]),
        "spend": column_from_values([None, 120.0, None, 15.0]),
        "consent_email": column_from_values([False, True, False, True]),
    },
)


def values(expr: str, metrics: dict[str, str] | None = None) -> list:
    parsed = {k: lang.parse(v) for k, v in (metrics or {}).items()}
    return Evaluator(EVENTS, CUSTOMERS, NOW, parsed).values(lang.parse(expr))[1:].tolist()


def cond(expr: str) -> list[bool]:
    return Evaluator(EVENTS, CUSTOMERS, NOW).condition(lang.parse(expr))[1:].tolist()


def test_count_with_half_open_windows() -> None:
    assert values("count(session_start, within=14d)") == [1, 1, 0]  # the boundary event counts
    assert values("count(session_start, within=14d, before=1d)") == [0, 1, 0]  # [NOW-15d, NOW-1d)
    assert values("count(session_start, purchase)") == [4, 1, 0]
    assert values("count(email_open)") == [0, 0, 0]  # a type never seen counts nothing


def test_since_is_infinite_without_events() -> None:
    assert values("since(session_start) / 1d") == [1, 14, np.inf]
    assert cond("since(session_start) > 30d") == [False, False, True]


def test_sum_mean_min_max_of_a_property() -> None:
    assert values("sum(purchase.amount)") == [40, 0, 0]
    assert values("sum(purchase.amount, within=30d)") == [10, 0, 0]
    mean = values("mean(nps_response.score)")
    assert mean[2] == 7.5 and np.isnan(mean[0]) and np.isnan(mean[1])
    assert values("max(purchase.amount)")[0] == 30 and values("min(purchase.amount)")[0] == 10


def test_distinct_and_top_value_with_ties() -> None:
    assert values("distinct(product_view.cat)") == [0, 2, 0]
    assert values("distinct_events(within=30d)") == [2, 2, 1]
    assert values("top_count(product_view.cat)") == [0, 2, 0]
    # bags and shoes are tied at two views: the smallest value wins
    assert values("top_value(product_view.cat)") == [None, "bags", None]
    assert values("top_value(product_view.cat, within=3.5d)") == [None, "bags", None]


def test_attributes_nulls_and_text() -> None:
    assert cond('tier == "gold"') == [True, False, False]
    assert cond('tier != "gold"') == [False, True, False]  # null compares false either way
    assert cond("tier == null") == [False, False, True]
    assert cond('tier in ["gold", "silver"]') == [True, True, False]
    assert cond("spend > 100") == [True, False, False]
    assert cond("consent_email") == [True, False, True]
    assert cond("not consent_email") == [False, True, False]
    assert cond("present(spend)") == [True, False, True]
    assert values("coalesce(spend, 0)") == [120, 0, 15]
    assert cond("unknown_attribute > 1") == [False, False, False]


def test_arithmetic_and_metrics() -> None:
    metrics = {"recent": "count(session_start, within=14d)", "double": "recent * 2"}
    assert values("double + 1", metrics) == [3, 3, 1]
    assert values("min(count(product_view) / 2, 1)") == [0, 1, 0]
    ratio = values("count(purchase) / count(session_start)")
    assert ratio[:2] == [1.0, 0.0] and np.isnan(ratio[2])  # 0/0 is null, not infinity


def test_condition_is_false_for_empty_slots() -> None:
    assert Evaluator(EVENTS, CUSTOMERS, NOW).condition(lang.parse("true")).tolist() == [
        False,
        True,
        True,
        True,
    ]


def test_equal_aggregates_are_computed_once() -> None:
    cache = AggregateCache()
    a = Evaluator(EVENTS, CUSTOMERS, NOW, cache=cache)
    a.values(lang.parse("count(purchase, within=30d) + count(purchase, within=30d)"))
    b = Evaluator(EVENTS, CUSTOMERS, NOW, cache=cache)
    b.values(lang.parse("count(purchase, within=30d) > 1"))
    assert len(cache.values) == 1


def test_median_gap_between_consecutive_events() -> None:
    refills = frame(
        [  # customer 1: pods on days 10, 40, 60 before now, filters on 50 and 55, one without a product
            (1, "purchase", 60, {"cat": "pods"}),
            (1, "purchase", 40, {"cat": "pods"}),
            (1, "purchase", 10, {"cat": "pods"}),
            (1, "purchase", 50, {"cat": "filters"}),
            (1, "purchase", 45, {}),
            (1, "purchase", 55, {"cat": "filters"}),
            (2, "purchase", 30, {"cat": "pods"}),  # a single purchase: no gap
            (3, "purchase", 9, {"cat": "pods"}),  # two at one instant: a gap of 0
            (3, "purchase", 9, {"cat": "pods"}),
            (3, "session_start", 4, {}),
        ]
    )

    def days(text: str) -> list:
        got = Evaluator(refills, CUSTOMERS, NOW).values(lang.parse(text))[1:] / DAY * S
        return [None if np.isnan(v) else round(float(v), 9) for v in got]

    # All six purchases of customer 1: 60, 55, 50, 45, 40, 10 days ago: gaps 5, 5, 5, 5, 30.
    assert days("median_gap(purchase)") == [5.0, None, 0.0]
    # Same product only (the one without a product is left out): 20 and 30 for pods, 5 for filters.
    assert days("median_gap(purchase, by=purchase.cat)") == [20.0, None, 0.0]
    # An even number of gaps: the mean of the middle two (within the last 56 days, pods on days 40 and 10
    # and filters on 55 and 50: gaps 30 and 5, so 17.5).
    assert days("median_gap(purchase, within=56d, by=purchase.cat)") == [17.5, None, 0.0]
    # Several types together: customer 3's session 5 days after the purchases.
    assert days("median_gap(purchase, session_start, within=20d)") == [None, None, 2.5]


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("median_gap(purchase, by=refund.amount)", "by= names a property of refund, which is not listed", 24),
        ("count(purchase, within=3x)", "'3x' is neither a number nor a duration", 23),
        ("since(purchase.amount)", "since() takes event names", 6),
        ("sum(purchase)", "sum() takes one event property", 4),
        ("count(purchase, window=3d)", "count() has no argument window=", 23),
        ("count(purchase, within=3)", "within= needs a duration", 23),
        ("a = 1", "use '==' to compare", 2),
        ("1 < a < 3", "chained comparisons are ambiguous", 6),
        ("tier in 'gold'", "'in' needs a list", 8),
        ("(a > 1", "expected ')' but found the end", 6),
        ("", "the expression is empty", 0),
        ("a >", "the expression ends too early", 3),
        ("__import__('os')", "unknown function __import__()", 0),
    ],
)
def test_expression_errors_have_offsets(text: str, message: str, offset: int) -> None:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    assert message in info.value.message
    assert info.value.offset == offset


def test_dotted_name_outside_aggregate_is_refused() -> None:
    with pytest.raises(lang.ExpressionError, match="read it inside an aggregate"):
        values("purchase.amount > 3")


def test_collectors() -> None:
    node = lang.parse(
        "sum(purchase.amount, within=1d) > spend and count(a, b) > x and top_value(v.cat) == 'z'"
    )
    assert lang.event_properties(node) == {"amount", "cat"}
    assert lang.event_names(node) == {"purchase", "a", "b", "v"}
    assert sorted(n.dotted for n in lang.free_names(node)) == ["spend", "x"]
