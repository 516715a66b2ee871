"""``where=`` filters on the events an aggregate reads: hand-computed answers, the incremental state against
a from-scratch evaluation tick after tick, and the mistakes refused when an expression is parsed."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame, column_from_values
from orchestrator.signals._incremental import IncrementalAggregates
from orchestrator.signals._kept_conditions import IncrementalConditions
from orchestrator.signals._log import EventLog, property_uses

S = 1_000_000
H = 3600 * S
DAY = 24 * H
NOW = 1_700_000_000 * S
TYPES = ["purchase", "product_view", "add_to_cart"]


def frame(rows: list[tuple[int, str, float, dict]], n: int = 5) -> EventFrame:
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
        (1, "purchase", 2, {"cat": "shoes", "amount": 40}),
        (1, "purchase", 10, {"cat": "bags", "amount": 15}),
        (1, "purchase", 45, {"cat": "shoes", "amount": 100}),  # outside a 30-day window
        (1, "product_view", 1, {"cat": "shoes"}),
        (1, "product_view", 3, {"cat": "shoes"}),
        (1, "product_view", 5, {"cat": "bags"}),
        (2, "purchase", 5, {"cat": "bags", "amount": 25}),
        (2, "purchase", 6, {"amount": 5}),  # no category
        (2, "product_view", 2, {"cat": "shoes"}),
        (2, "product_view", 4, {"cat": "shoes"}),
        (3, "product_view", 1, {"cat": "hats"}),
        (3, "add_to_cart", 1, {"cat": "hats"}),
        (4, "purchase", 3, {"cat": "hats", "amount": 60}),
    ]
)
CUSTOMERS = CustomerFrame(
    n=5,
    exists=np.array([False, True, True, True, True]),
    columns={
        "fav": column_from_values([None, "bags", None, "hats", "hats"]),
        "min_amount": column_from_values([None, 20, None, 0, 100]),
    },
)
METRICS = {"favourite": "top_value(product_view.cat, within=14d)"}


def values(expr: str) -> list:
    metrics = {k: lang.parse(v) for k, v in METRICS.items()}
    out = Evaluator(EVENTS, CUSTOMERS, NOW, metrics).values(lang.parse(expr))[1:]
    if out.dtype == object:
        return out.tolist()
    return [None if v != v else float(v) for v in out.tolist()]


def days(expr: str) -> list:
    return [None if v is None else v / 86400 for v in values(expr)]


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        # Customer 1's shoes bought 2 days ago counts; the pair 45 days ago is outside the window.
        ('count(purchase, within=30d, where=purchase.cat == "shoes")', [1, 0, 0, 0]),
        # "Browsed shoes, bought nothing in shoes": 1 and 2 both viewed shoes most; only 1 bought shoes.
        # Customer 4 viewed nothing: the comparison with null is false.
        (
            "count(purchase, within=30d, where=purchase.cat == top_value(product_view.cat, within=14d))",
            [1, 0, 0, 0],
        ),
        ("count(purchase, where=purchase.cat == favourite)", [2, 0, 0, 0]),  # the same through a metric
        # An attribute, compared with each event: 1's bags, 4's hats; 2 has no favourite (null: none).
        ("count(purchase, where=purchase.cat == fav)", [1, 0, 0, 1]),
        ("sum(purchase.amount, within=30d, where=purchase.amount >= min_amount)", [40, 0, 0, 0]),
        # Null: the purchase without a category compares false, so `not` of it is true.
        ('count(purchase, where=not (purchase.cat == "bags"))', [2, 1, 0, 1]),
        ('count(purchase, where=purchase.cat != "bags")', [2, 0, 0, 1]),
        ("count(purchase, where=purchase.cat == null)", [0, 1, 0, 0]),
        ('count(purchase, where=coalesce(purchase.cat, "none") == "none")', [0, 1, 0, 0]),
        # Several types: each event's own property, whichever type is named in the filter.
        ('count(purchase, product_view, where=product_view.cat == "shoes")', [4, 2, 0, 0]),
        ('top_value(product_view.cat, where=product_view.cat != "shoes")', ["bags", None, "hats", None]),
        ('mean(purchase.amount, where=purchase.cat in ["shoes", "hats"])', [70, None, None, 60]),
        ('last(purchase.amount, where=purchase.cat == "bags")', [15, 25, None, None]),
        ("max(purchase.amount, within=30d, where=purchase.cat != null)", [40, 25, None, 60]),
        ("distinct(product_view.cat, within=30d, where=product_view.cat != fav)", [1, 0, 0, 0]),
        ("count(purchase, where=present(purchase.cat) and purchase.amount * 2 > 50)", [2, 0, 0, 1]),
        # Shorthands pass the filter on to their aggregate.
        ("frequency(purchase, within=30d, where=purchase.amount > 20)", [1, 1, 0, 1]),
        ('monetary(purchase.amount, where=purchase.cat == "shoes")', [140, 0, 0, 0]),
        ('repeat_purchase(purchase, where=purchase.cat == "shoes")', [1, 0, 0, 0]),
        ("category_count(purchase.cat, within=30d, where=purchase.amount < 50)", [2, 1, 0, 0]),
    ],
)
def test_hand_computed(expr: str, want: list) -> None:
    got = values(expr)
    assert got == [w if w is None or isinstance(w, str) else float(w) for w in want]


def test_since_and_recency_of_filtered_events() -> None:
    assert days('since(purchase, where=purchase.cat == "bags")')[:2] == [10, 5]
    assert values('since(purchase, where=purchase.cat == "bags")')[2:] == [np.inf, np.inf]
    assert values('recency(purchase, where=purchase.cat == "bags")') == [10, 5, None, None]


def test_equal_filters_written_differently_share_one_result() -> None:
    a = lang.parse('count(purchase, where=purchase.cat == "shoes")')
    b = lang.parse('count( purchase ,  where = purchase.cat=="shoes" )')
    assert a == b and hash(a) == hash(b)
    cache = AggregateCache()
    evaluator = Evaluator(EVENTS, CUSTOMERS, NOW, cache=cache)
    evaluator.values(lang.parse('1 + count(purchase, where=purchase.cat == "shoes")'))
    evaluator.values(b)
    assert [key for key in cache.values if isinstance(key, lang.Call)] == [a]


def test_a_filter_on_a_metric_is_not_shared_with_another_definition_of_it() -> None:
    """Two journeys share one cache; each defines `favourite` its own way."""
    cache = AggregateCache()
    node = lang.parse("count(purchase, where=purchase.cat == favourite)")
    views = Evaluator(EVENTS, CUSTOMERS, NOW, {"favourite": lang.parse("top_value(product_view.cat)")}, cache)
    bought = Evaluator(EVENTS, CUSTOMERS, NOW, {"favourite": lang.parse("top_value(purchase.cat)")}, cache)
    assert views.values(node)[1:].tolist() == [2, 0, 0, 0]
    # Customer 1 bought shoes twice and bags once; 2's top is bags (one, against none); 4's hats.
    assert bought.values(node)[1:].tolist() == [2, 1, 0, 1]


def test_what_a_filter_reads_is_collected() -> None:
    node = lang.parse(
        "count(purchase, within=30d, where=purchase.cat == fav and purchase.amount > 2 * min_amount"
        " and purchase.size != top_value(product_view.colour))"
    )
    assert {n.dotted for n in lang.free_names(node)} == {"fav", "min_amount"}
    assert lang.event_properties(node) == {"cat", "amount", "size", "colour"}
    numeric, categorical = property_uses(lang.aggregates(node))
    assert {"cat", "amount", "size", "colour"} <= numeric | categorical
    assert {"cat", "size"} <= categorical  # text the filter compares must be kept as it is
    assert "amount" in numeric and "amount" not in categorical  # only ever read as a number


def test_bases_with_the_same_filter_are_shared() -> None:
    texts = [
        'count(product_view, where=product_view.cat == "a")',
        'count(product_view,where=product_view.cat=="a")',
        'mean(product_view.score, within=2d, where=product_view.cat == "a")',
        'since(product_view, where=product_view.cat == "a")',
        "count(product_view)",
    ]
    calls = list(dict.fromkeys(c for t in texts for c in lang.aggregates(lang.parse(t))))
    aggregates = IncrementalAggregates(calls, EventLog(*property_uses(calls)))
    # filtered: the all-time count, the 2-day sum and count of scores, the latest; unfiltered: one count
    assert len(calls) == 4 and len(aggregates.bases) == 5
    assert len({id(b.keep) for b in aggregates.bases.values() if b.keep is not None}) == 1


def _batch(rng: np.random.Generator, n_events: int, n: int, lo: int, hi: int) -> EventFrame:
    cats = np.array(["shoes", "bags", "hats", "belts"], dtype=object)
    return EventFrame(
        customer=rng.integers(1, n, n_events),
        ts=rng.integers(lo, hi, n_events),
        type=rng.integers(0, len(TYPES), n_events).astype(np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={
            "cat": Categorical(rng.integers(-1, 4, n_events).astype(np.int32), cats),
            "amount": np.where(rng.random(n_events) < 0.7, rng.integers(1, 100, n_events) * 1.0, np.nan),
        },
    )


KEPT_METRICS = {
    "favourite": "top_value(product_view.cat, within=3d)",
    "usual": "mean(purchase.amount, within=4d)",
}
KEPT = [
    # static
    'count(purchase, within=2d, where=purchase.cat == "shoes") == 0 and count(product_view, within=2d) > 1',
    'since(product_view, within=3d, where=product_view.cat in ["bags", "belts"]) < 6h',
    # on aggregates, metrics and attributes
    "count(purchase, within=3d, where=purchase.cat == favourite) == 0 and favourite != null",
    "count(purchase, within=2d, where=purchase.amount > 1.5 * usual) >= 1",
    "since(purchase, where=purchase.cat == fav) > 1d",
    "sum(purchase.amount, within=2d, where=purchase.cat != fav and purchase.amount >= floor) > 50",
]


def test_kept_conditions_with_filters_equal_a_from_scratch_evaluation() -> None:
    """Incremental aggregates and kept conditions, tick after tick, against an evaluator that reads every
    event from scratch (no incremental state at all), with attributes that change between ticks."""
    rng = np.random.default_rng(7)
    metrics = {name: lang.parse(text) for name, text in KEPT_METRICS.items()}
    nodes = [lang.parse(text) for text in KEPT]
    calls = list(dict.fromkeys(c for node in [*nodes, *metrics.values()] for c in lang.aggregates(node)))
    log = EventLog(*property_uses(calls))
    aggregates = IncrementalAggregates(calls, log)
    kept = IncrementalConditions(aggregates, horizon_us=8 * H)
    n, now, last_id = 300, NOW, 0
    first = _batch(rng, 5000, n, now - 6 * DAY, now)
    log.append_frame(first, last_id := last_id + len(first))
    fav = rng.choice(np.array(["shoes", "bags", "hats", None], dtype=object), n)
    floor = rng.integers(0, 60, n).astype(float)
    for i, step in enumerate([H, 2 * H, 30 * 60 * S, 9 * H, -H, 3 * H, DAY, H]):
        now += step
        changed = np.zeros(0, np.int64)
        if i == 3:
            changed = rng.choice(n, 20, replace=False)
            fav = fav.copy()
            fav[changed] = "belts"
        fresh = _batch(rng, int(rng.integers(0, 80)), n, now - 2 * DAY, now + H)
        log.append_frame(fresh, last_id := last_id + len(fresh))
        aggregates.advance(now)
        customers = CustomerFrame(n, np.arange(n) > 0, {"fav": fav, "floor": floor})
        scratch = Evaluator(log.frame(log.range(None, None)), customers, now, metrics, AggregateCache())
        for k, node in enumerate(nodes):
            want = scratch.condition(node)
            assert np.array_equal(kept.condition(k, node, customers, metrics, changed=changed), want), (
                f"tick {i}: {KEPT[k]}"
            )
        assert sum(bool(scratch.condition(node).any()) for node in nodes) >= 3  # not vacuous


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        (
            'count(purchase, where=product_view.cat == "a")',
            "where= reads properties of the events it filters: purchase; product_view.cat is not one of them",
            22,
        ),
        ("count(purchase, where=30d)", "where= takes a condition on each event count() aggregates", 22),
        ('count(purchase, where=["a"])', "where= takes a condition", 22),
        ("sum(purchase.amount, where=purchase.amount + 1)", "where= takes a condition", 43),
        (
            'count(purchase, where=tier == "gold")',
            "where= must read a property of the events it filters (purchase)",
            27,
        ),
        ("count(purchase, where=count(purchase) > 1)", "where= must read a property", 38),
        ("count(purchase, where=purchase.a.b == 1)", "an event property has one dot", 22),
        ("distinct_events(where=purchase.x == 1)", "none are listed", 22),
        ("cart_abandoned(add_to_cart, purchase, within=1d, where=purchase.x == 1)", "no argument where=", 66),
        ("max(1, 2, where=purchase.x == 1)", "max() has no argument where=", 27),
        ('count(purchase, where=purchase.cat = "a")', "use '==' to compare", 35),
        (
            "top_value(purchase.cat, where=purchase.cat == top_value(view.cat, where=purchase.x > 1))",
            "where= reads properties of the events it filters: view; purchase.x is not one of them",
            72,
        ),
    ],
)
def test_mistakes_are_refused_where_they_are(text: str, message: str, offset: int) -> None:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    assert message in info.value.message
    assert info.value.offset == offset


def test_nested_filters_are_fine() -> None:
    expr = (
        "count(purchase, where=purchase.cat == top_value(product_view.cat, within=30d,"
        ' where=product_view.cat != "shoes"))'
    )
    assert values(expr) == [1, 0, 0, 0]  # 1's top apart from shoes is bags (bought once); 4 viewed none
