"""``since_first()`` and ``tenure()`` (first seen), and ``last()`` of a text property, against
hand-computed values: late events that move the first-seen instant back, ties at one instant, numbers
unchanged; and the incremental state equal to from scratch tick after tick."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame, column_from_values
from orchestrator.signals._incremental import Earliest, IncrementalAggregates
from orchestrator.signals._log import EventLog, property_uses

S = 1_000_000
H = 3600 * S
DAY = 24 * H
NOW = 1_717_977_600 * S  # 2024-06-10 00:00 UTC
TYPES = ["signup", "purchase", "checkout_step", "nps"]

Row = tuple[int, str, int, dict[str, Any]]  # customer key, event, microseconds before NOW, properties


def frame(rows: list[Row], n: int, props: tuple[str, ...] = ("step", "score")) -> EventFrame:
    return EventFrame(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([NOW - r[2] for r in rows], dtype=np.int64),
        type=np.array([TYPES.index(r[1]) for r in rows], dtype=np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={k: column_from_values([r[3].get(k) for r in rows]) for k in props},
    )


def plain(values: np.ndarray) -> list[Any]:
    return [None if isinstance(v, float) and v != v else v for v in values.tolist()]


class Both:
    """A from-scratch evaluation and the incremental aggregates, fed the same batches."""

    def __init__(self, texts: list[str], n: int) -> None:
        self.nodes = {t: lang.parse(t) for t in texts}
        self.calls = list(dict.fromkeys(c for node in self.nodes.values() for c in lang.aggregates(node)))
        self.log = EventLog(*property_uses(self.calls))
        self.aggregates = IncrementalAggregates(self.calls, self.log)
        self.n, self.last_id = n, 0

    def add(self, rows: list[Row]) -> None:
        self.last_id += len(rows)
        self.log.append_frame(frame(rows, self.n), self.last_id)

    def values(self, text: str, now: int = NOW) -> list[Any]:
        self.aggregates.advance(now)
        customers = CustomerFrame(self.n, np.arange(self.n) > 0)
        cache = AggregateCache()
        self.aggregates.fill(cache)
        node = self.nodes[text]
        kept = Evaluator(EventFrame.empty(self.n), customers, now, cache=cache).values(node)
        scratch = Evaluator(self.log.frame(self.log.range(None, None)), customers, now).values(node)
        assert plain(kept) == plain(scratch), text
        return plain(scratch)[1:]


def test_since_first_and_tenure_by_hand() -> None:
    # Customer 1: signup 9 days ago, purchases 5 and 1 days ago. Customer 2: one purchase 36 hours ago.
    # Customer 3: nothing.
    both = Both(["since_first()", "tenure()", "tenure(purchase)", "since_first(signup)", "tenure() < 30",
                 "since_first() < 30d", "not tenure() <= 30", "since_first(purchase, within=3d)",
                 "tenure(purchase, before=2d)"], 4)  # fmt: skip
    both.add(
        [
            (1, "signup", 9 * DAY, {}),
            (1, "purchase", 5 * DAY, {}),
            (1, "purchase", 1 * DAY, {}),
            (2, "purchase", 36 * H, {}),
        ]
    )
    inf = float("inf")
    assert both.values("since_first()") == [9 * 86400.0, 36 * 3600.0, inf]
    assert both.values("tenure()") == [9.0, 1.5, None]
    assert both.values("tenure(purchase)") == [5.0, 1.5, None]
    assert both.values("since_first(signup)") == [9 * 86400.0, inf, inf]
    # New customers in their first 30 days; nobody-seen customers are not new, and not "old" either.
    assert both.values("tenure() < 30") == [True, True, False]
    assert both.values("since_first() < 30d") == [True, True, False]
    assert both.values("not tenure() <= 30") == [False, False, True]
    # Windows: the earliest purchase inside the last 3 days; the earliest before 2 days ago.
    assert both.values("since_first(purchase, within=3d)") == [86400.0, 36 * 3600.0, inf]
    assert both.values("tenure(purchase, before=2d)") == [5.0, None, None]


def test_a_late_event_moves_first_seen_back_and_a_later_one_does_not() -> None:
    both = Both(["tenure()", "tenure(purchase)"], 3)
    both.add([(1, "purchase", 2 * DAY, {}), (2, "signup", 1 * DAY, {})])
    assert both.values("tenure()") == [2.0, 1.0]
    # An hour later, customer 1's older purchase is ingested late (stamped 10 days ago), and customer 2
    # sends a newer event: customer 1 is now 10 days old (plus the hour), customer 2 unchanged (plus the
    # hour).
    both.add([(1, "purchase", 10 * DAY, {}), (2, "purchase", 0, {})])
    assert both.values("tenure()", NOW + H) == [10 + 1 / 24, 1 + 1 / 24]
    assert both.values("tenure(purchase)", NOW + H) == [10 + 1 / 24, 1 / 24]
    # Kept as a minimum, never recomputed from the window.
    assert not both.aggregates._rebuilt
    assert any(isinstance(b, Earliest) for b in both.aggregates.bases.values())


def test_since_first_incremental_equals_from_scratch_tick_after_tick() -> None:
    rng = np.random.default_rng(11)
    texts = ["since_first()", "since_first(signup, purchase)", "tenure(nps, before=1d)",
             "since_first(purchase, within=2d)", "tenure(checkout_step) < 2"]  # fmt: skip
    n = 50
    both = Both(texts, n)
    now = NOW
    for tick in range(25):
        now += int(rng.integers(0, 8)) * H if tick != 12 else -3 * H  # the clock steps back once
        k = int(rng.integers(0, 25))
        # Stamped from an hour in the future to 6 days back: late events lower the first-seen instant.
        ages = NOW - now + rng.integers(-H, 6 * DAY, k)
        kinds = rng.integers(0, len(TYPES), k)
        rows: list[Row] = [
            (int(c), TYPES[t], int(a), {}) for c, t, a in zip(rng.integers(1, n, k), kinds, ages, strict=True)
        ]
        if tick == 6:
            both.n = n = 70  # new customers
        both.add(rows)
        for text in texts:
            both.values(text, now)  # asserts incremental == from scratch


def test_last_of_a_text_property_by_hand() -> None:
    both = Both(["last(checkout_step.step)", "last(checkout_step.step, within=1d)",
                 'last(checkout_step.step, within=1d) == "shipping_selection"'], 6)  # fmt: skip
    both.add(
        [
            # 1: shipping -> payment -> back to shipping: the latest step is shipping_selection.
            (1, "checkout_step", 3 * H, {"step": "shipping_selection"}),
            (1, "checkout_step", 2 * H, {"step": "payment"}),
            (1, "checkout_step", 1 * H, {"step": "shipping_selection"}),
            # 2: two steps at one instant: the smallest text wins ("contact" < "payment"), whatever order.
            (2, "checkout_step", 2 * H, {"step": "payment"}),
            (2, "checkout_step", 2 * H, {"step": "contact"}),
            # 3: the latest event has no step: it is skipped.
            (3, "checkout_step", 5 * H, {"step": "payment"}),
            (3, "checkout_step", 1 * H, {}),
            # 4: only two days ago: outside within=1d.
            (4, "checkout_step", 2 * DAY, {"step": "shipping_selection"}),
            # 5: nothing.
        ]
    )
    assert both.values("last(checkout_step.step)") == ["shipping_selection", "contact", "payment",
                                                       "shipping_selection", None]  # fmt: skip
    assert both.values("last(checkout_step.step, within=1d)") == [
        "shipping_selection", "contact", "payment", None, None]  # fmt: skip
    assert both.values('last(checkout_step.step, within=1d) == "shipping_selection"') == [
        True, False, False, False, False]  # fmt: skip


def test_last_of_numbers_is_unchanged_and_a_number_goes_before_text_at_one_instant() -> None:
    both = Both(["last(nps.score)", "nps_group(nps.score)"], 5)
    both.add(
        [
            (1, "nps", 2 * H, {"score": 9}),
            (1, "nps", 1 * H, {"score": 3}),  # the latest number
            (2, "nps", 1 * H, {"score": 8}),
            (2, "nps", 1 * H, {"score": 10}),  # same instant: the smallest number, 8 (not "10" as text)
            (3, "nps", 1 * H, {"score": "n/a"}),
            (3, "nps", 1 * H, {"score": 7}),  # same instant: the number goes before the text
            (4, "nps", 1 * H, {"score": "n/a"}),  # only text: text
        ]
    )
    assert both.values("last(nps.score)") == [3, 8, 7, "n/a"]
    # A text score counts as missing for nps_group.
    assert both.values("nps_group(nps.score)") == ["detractor", "passive", "passive", None]
    # A property that only holds numbers gives a float column, as before.
    numbers = Both(["last(nps.score)"], 3)
    numbers.add([(1, "nps", H, {"score": 4}), (2, "nps", H, {"score": 6.5})])
    assert numbers.values("last(nps.score)") == [4.0, 6.5]
    scratch = Evaluator(frame([(1, "nps", H, {"score": 4})], 2), CustomerFrame(2, np.ones(2, bool)), NOW)
    assert scratch.values(lang.parse("last(nps.score)")).dtype == np.float64


def test_last_of_text_incremental_equals_from_scratch_with_ties_and_new_values() -> None:
    rng = np.random.default_rng(5)
    texts = ["last(checkout_step.step)", "last(checkout_step.step, within=6h)",
             "last(checkout_step.step, before=2h)", "last(nps.score, within=1d)"]  # fmt: skip
    n = 40
    both = Both(texts, n)
    steps = ["payment", "shipping_selection"]
    now = NOW
    for tick in range(20):
        now += int(rng.integers(0, 4)) * H
        if tick == 5:
            steps = [*steps, "contact", "address"]  # new values that sort before the old ones
        k = int(rng.integers(0, 30))
        rows: list[Row] = []
        for _ in range(k):
            # Whole hours, so that many events share an instant (ties); some late by a day.
            ago = int(rng.integers(-1, 30)) * H - (now - NOW)
            mixed: Any = [1, 5, 10, "n/a"][int(rng.integers(0, 4))]
            kind = int(rng.integers(0, 3))
            props = {"step": steps[int(rng.integers(0, len(steps)))]} if kind else {"score": mixed}
            rows.append((int(rng.integers(1, n)), "checkout_step" if kind else "nps", ago, props))
        both.add(rows)
        for text in texts:
            both.values(text, now)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("since_first(purchase.amount)", "takes event names", 12),
        ("tenure(within=thisweek)", "did you mean this_week?", 14),
        ("since_frist(purchase)", "did you mean since_first()?", 0),
    ],
)
def test_mistakes(text: str, message: str, column: int) -> None:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    assert message in info.value.message and info.value.offset == column, info.value.message


def test_categorical_and_float_text_columns_agree() -> None:
    # A property column read from the store (codes and values) gives the same last() as plain values.
    customers = CustomerFrame(3, np.ones(3, bool))
    values = np.array(["payment", "contact"], dtype=object)
    coded = EventFrame(
        customer=np.array([1, 1, 2]),
        ts=np.array([NOW - H, NOW - H, NOW - 2 * H]),
        type=np.array([2, 2, 2], np.int32),
        type_names=TYPES,
        n_customers=3,
        properties={"step": Categorical(np.array([0, 1, -1], np.int32), values)},
    )
    got = Evaluator(coded, customers, NOW).values(lang.parse("last(checkout_step.step)"))
    assert got.tolist() == [None, "contact", None]
