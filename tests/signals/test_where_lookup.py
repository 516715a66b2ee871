"""``count(e, where=e.p == X)``, X a customer's own value: read from the per-value count matrix (a Pairs
base) at the row of each customer's X, and equal to the filter applied to the window's events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from orchestrator.signals import _incremental
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame
from orchestrator.signals._incremental import IncrementalAggregates, Window
from orchestrator.signals._log import EventLog, property_uses

H = 3600 * 1_000_000
DAY = 24 * H
NOW_US = 1_700_000_000 * 1_000_000
TYPES = ["view", "buy"]
METRICS = {"fav": lang.parse("favourite")}


def texts(*values: Any) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


class Counted:
    """An ``EventLog`` whose from-scratch frames are counted: the lookup path builds none."""

    def __init__(self, log: EventLog) -> None:
        self.frames = 0
        original = log.frame

        def frame(*args: Any, **kwargs: Any) -> EventFrame:
            self.frames += 1
            return original(*args, **kwargs)

        log.frame = frame  # type: ignore[method-assign]


def incremental(aggregates: IncrementalAggregates, customers: CustomerFrame, node: Any, now: int) -> Any:
    cache = AggregateCache()
    aggregates.fill(cache)
    return Evaluator(EventFrame.empty(customers.n), customers, now, METRICS, cache).values(node)


def from_scratch(log: EventLog, customers: CustomerFrame, node: Any, now: int) -> Any:
    return Evaluator(log.frame(log.range(None, None), customers.n), customers, now, METRICS).values(node)


def setup(texts_: list[str]) -> tuple[list[Any], EventLog, IncrementalAggregates]:
    nodes = [lang.parse(t) for t in texts_]
    calls = list(dict.fromkeys(c for node in nodes for c in lang.aggregates(node)))
    log = EventLog(*property_uses(calls))
    return nodes, log, IncrementalAggregates(calls, log)


def test_worked_example_counts_the_events_equal_to_the_customers_value() -> None:
    # Slot 1 likes shoes and bought shoes twice in the last 2 days (and once 3 days ago, outside the
    # window) and hats once: 2. Slot 2 likes hats and bought hats once: 1 (its hats view is not a buy).
    # Slot 3 has no favourite (null equals nothing): 0. Slot 4 likes belts, which no event has: 0.
    # Slot 5's favourite is "" (null) and its buy has no category (null): 0. Slot 0 has no events: 0.
    nodes, log, aggregates = setup(
        ["count(buy, within=2d, where=buy.cat == favourite)", "count(buy, within=2d, where=fav == buy.cat)"]
    )
    cats = texts("shoes", "hats")
    events = [
        (1, -H, 0),
        (1, -5 * H, 0),
        (1, -3 * DAY, 0),
        (1, -2 * H, 1),
        (2, -H, 1),
        (3, -H, 0),
        (4, -H, 0),
    ]
    customer = np.array([c for c, _, _ in events] + [2, 5])
    ts = np.array([NOW_US + t for _, t, _ in events] + [NOW_US - H, NOW_US - H])
    types = np.array([1] * len(events) + [0, 1], np.int32)
    codes = np.array([c for _, _, c in events] + [1, -1], np.int32)
    log.append_frame(EventFrame(customer, ts, types, TYPES, 6, {"cat": Categorical(codes, cats)}), 9)
    counted = Counted(log)
    aggregates.advance(NOW_US)
    customers = CustomerFrame(
        6, np.ones(6, bool), {"favourite": texts("shoes", "shoes", "hats", None, "belts", "")}
    )
    for node in nodes:
        assert incremental(aggregates, customers, node, NOW_US).tolist() == [0, 2, 1, 0, 0, 0]
    assert ("pairs", Window(2 * DAY, 0), "buy", "cat", None) in aggregates.bases
    assert counted.frames == 0  # read from the count matrix: no events were filtered
    assert not aggregates.tracks(nodes[0]) and aggregates.touched_by([nodes[0]]) is None
    for node in nodes:
        assert from_scratch(log, customers, node, NOW_US).tolist() == [0, 2, 1, 0, 0, 0]


EXPRESSIONS = [
    "count(buy, within=2d, where=buy.cat == favourite)",
    "count(view, within=1d, before=6h, where=favourite == view.cat)",
    "count(buy, within=2d, where=buy.cat == fav)",
    "count(buy, within=3d, where=buy.size == shoe_size)",
    "count(buy, within=3d, where=mixed == buy.size)",
    "count(view, where=view.cat == top_value(buy.cat, within=2d))",
    "count(view, within=2d, where=view.size == top_value(buy.size, within=2d))",
]


def batch(
    rng: np.random.Generator, n: int, n_events: int, now: int, cats: list[str], sizes: list[Any]
) -> EventFrame:
    size_codes = np.where(rng.random(n_events) < 0.8, rng.integers(0, len(sizes), n_events), -1)
    return EventFrame(
        customer=rng.integers(0, n, n_events),
        ts=rng.integers(now - 3 * DAY, now + H, n_events),
        type=rng.integers(0, 2, n_events).astype(np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={
            "cat": Categorical(rng.integers(-1, len(cats), n_events).astype(np.int32), texts(*cats)),
            "size": Categorical(size_codes.astype(np.int32), texts(*sizes)),
        },
    )


@pytest.mark.parametrize("wide", [False, True])
def test_lookup_equals_the_filter_tick_after_tick(monkeypatch: pytest.MonkeyPatch, wide: bool) -> None:
    if wide:  # too many cells for a count matrix: the filter is applied to the window's events instead
        monkeypatch.setattr(_incremental, "MATRIX_CELLS", 8)
    rng = np.random.default_rng(3)
    nodes, log, aggregates = setup(EXPRESSIONS)
    counted = Counted(log)
    cats, sizes = ["shoes", "hats", "bags"], [42, 43, 44.5]
    n, now, last_id = 60, NOW_US, 0
    for i in range(8):
        now += [H, 5 * H, 2 * H, DAY, H, -3 * H, 4 * H, H][i]
        if i == 3:
            cats = ["aprons", *cats, "belts"]  # a customer's favourite "belts" appears in events
        if i == 5:
            sizes = [*sizes, "XL", 1]  # a text size: sizes are now compared as they are, not as numbers
            n = 70  # new customers
        fresh = batch(rng, n, 200, now, cats, sizes)
        log.append_frame(fresh, last_id := last_id + len(fresh))
        aggregates.advance(now)
        customers = CustomerFrame(
            n,
            np.ones(n, bool),
            {
                "favourite": texts(*(["shoes", "hats", None, "belts", "", "bags"] * n))[:n],
                "shoe_size": np.array([42.0, 43.0, np.nan, 44.5, 50.0] * n)[:n],
                "mixed": texts(*([42, "42", True, 44.5, None, "XL", 43.0] * n))[:n],
            },
        )
        frames = counted.frames
        got = [incremental(aggregates, customers, node, now) for node in nodes]
        assert (counted.frames > frames) == wide
        for text, node, values in zip(EXPRESSIONS, nodes, got, strict=True):
            want = from_scratch(log, customers, node, now)
            assert np.array_equal(values, want), f"tick {i}: {text}"
            assert want.sum() > 0 or i == 0, f"tick {i}: {text} counts nothing"
        window = Window(2 * DAY, 0)
        assert ("pairs", window, "buy", "cat", None) in aggregates.bases
