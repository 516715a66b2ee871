"""The reference signals R1 to R5 written with the built-in metrics select exactly the customers of the
benchmark's own numpy kernel, on its generated workload (two seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from refbench_data import load_refbench

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame

R5_PARTS = {
    "frequency": "min(frequency(session_start, within=30d) / 10, 1)",
    "depth": "min(frequency(product_view, add_to_cart, purchase, within=30d) / 20, 1)",
    "breadth": "distinct_events(session_start, product_view, add_to_cart, purchase, email_open, email_click,"
    " wishlist_add, nps_response, within=30d) / 8",
    "sentiment": "coalesce(mean(nps_response.score, within=30d) / 10, 0.5)",
    "engagement": "weighted(frequency=0.4, depth=0.3, breadth=0.2, sentiment=0.1)",
}
RULES = {
    "r1": "not recency(session_start, email_click, purchase) <= 30",
    "r2": "change(frequency(session_start, within=14d), frequency(session_start, within=28d, before=14d))"
    " < -0.4",
    "r3": "cart_abandoned(add_to_cart, purchase, within=24h)",
    "r4": "top_count(product_view.category, within=14d) >= 4 and frequency(wishlist_add, within=14d) >= 2",
    "r5": "engagement < 0.3 - 1e-9",
}


@pytest.mark.parametrize("seed", [42, 7])
def test_builtins_select_the_reference_customers(seed: int) -> None:
    refbench = load_refbench()
    data = refbench.generate(4000, seed=seed)
    n = int(data["customer_id"].max()) + 1
    expected = refbench.evaluate(data, n)
    category = data["category"].astype(np.float64)
    category[data["category"] < 0] = np.nan
    score = data["score"].astype(np.float64)
    score[data["score"] < 0] = np.nan
    events = EventFrame(
        customer=data["customer_id"],
        ts=data["ts"] * 1_000_000,
        type=data["etype"].astype(np.int32),
        type_names=list(refbench.TYPES),
        n_customers=n,
        properties={"category": category, "score": score, "amount": data["amount"]},
    )
    customers = CustomerFrame(n, np.ones(n, bool))
    metrics = {name: lang.parse(text) for name, text in R5_PARTS.items()}
    evaluator = Evaluator(events, customers, refbench.NOW * 1_000_000, metrics, AggregateCache())
    for rule, text in RULES.items():
        got = evaluator.condition(lang.parse(text))
        assert 0 < int(expected[rule].sum()) < n
        assert np.array_equal(got, expected[rule]), rule
