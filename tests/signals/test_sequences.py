"""sequence(): steps in order in a window, with gaps and "not followed by", on hand-computed cases and
against a brute-force reference on random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame

H = 3600 * 1_000_000
DAY = 24 * H
NOW = 1_700_000_000 * 1_000_000
TYPES = ["view", "cart", "buy", "other"]


def frame(rows: list[tuple[int, str, float]], n: int = 2) -> EventFrame:
    """rows: (customer key, event, day of the event, with day 30 = NOW); in any order."""
    return EventFrame(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([NOW - round((30 - r[2]) * DAY) for r in rows], dtype=np.int64),
        type=np.array([TYPES.index(r[1]) for r in rows], dtype=np.int32),
        type_names=TYPES,
        n_customers=n,
    )


def one(expr: str, rows: list[tuple[str, float]], now: int = NOW) -> bool:
    """The value for customer 1, whose events are ``rows`` (event, day)."""
    events = frame([(1, name, day) for name, day in rows])
    value = Evaluator(events, CustomerFrame(2, np.ones(2, bool)), now).values(lang.parse(expr))
    assert value[0] == False  # noqa: E712 (customer 0 has no events: false)
    return bool(value[1])


JOURNEY = "sequence(view, cart, not_followed_by=buy, for=7d, within=30d)"


def test_the_worked_example_of_the_docs() -> None:
    # Window [day 0, day 30). View day 1, add day 3, no purchase: day 3 < day 30 - 7.
    assert one(JOURNEY, [("view", 1), ("cart", 3)])
    # A purchase exactly 7 days after the add is inside (t, t + 7d]: not abandoned.
    assert not one(JOURNEY, [("view", 1), ("cart", 3), ("buy", 10)])
    # One day later it is outside the 7 days: abandoned.
    assert one(JOURNEY, [("view", 1), ("cart", 3), ("buy", 11)])
    # An add on day 25: the 7 days have not passed yet (25 + 7 > 30).
    assert not one(JOURNEY, [("view", 1), ("cart", 25)])
    # Exactly 7 days before the end: t_n < end - D is false (the whole D must have passed, strictly).
    assert not one(JOURNEY, [("view", 1), ("cart", 23)])
    assert one(JOURNEY, [("view", 1), ("cart", 22.99)])
    # An add at the same instant as the view is not after it; an add before the view is in the wrong order.
    assert not one(JOURNEY, [("view", 1), ("cart", 1)])
    assert not one(JOURNEY, [("cart", 1), ("view", 3)])
    # ... unless another add follows the view.
    assert one(JOURNEY, [("cart", 1), ("view", 3), ("cart", 4)])
    # A purchase at the same instant as the add is not after it.
    assert one(JOURNEY, [("view", 1), ("cart", 3), ("buy", 3)])
    # Any chain will do: the first add was bought within 7 days, the second one was not.
    assert one(JOURNEY, [("view", 1), ("cart", 3), ("buy", 5), ("cart", 12)])
    # Both adds bought within 7 days: false.
    assert not one(JOURNEY, [("view", 1), ("cart", 3), ("buy", 5), ("cart", 12), ("buy", 19)])


def test_window_edges() -> None:
    # The window is [day 0, day 30): a view exactly at its start counts, one before does not.
    assert one("sequence(view, cart, within=30d)", [("view", 0), ("cart", 2)])
    assert not one("sequence(view, cart, within=30d)", [("view", -0.01), ("cart", 2)])
    # An event at now is not in the window yet.
    assert not one("sequence(view, cart, within=30d)", [("view", 2), ("cart", 30)])
    # before= shifts the window: [day -5, day 25).
    assert one("sequence(view, cart, within=30d, before=5d)", [("view", -5), ("cart", 2)])
    assert not one("sequence(view, cart, within=30d, before=5d)", [("view", 2), ("cart", 25)])
    # With before=, "not followed" reads up to the window's end only: a purchase after it does not count.
    assert one(
        "sequence(view, cart, not_followed_by=buy, within=20d, before=5d)",
        [("view", 12), ("cart", 14), ("buy", 26)],
    )
    assert not one(
        "sequence(view, cart, not_followed_by=buy, within=20d, before=5d)",
        [("view", 12), ("cart", 14), ("buy", 24)],
    )
    # for= counts from the window's end: the end is day 25, so an add on day 17 has had its 7 days (17 < 18).
    with_for = "sequence(view, cart, not_followed_by=buy, for=7d, within=20d, before=5d)"
    assert one(with_for, [("view", 12), ("cart", 17), ("buy", 25)])
    assert not one(with_for, [("view", 12), ("cart", 18.5)])


def test_gaps() -> None:
    gap = "sequence(view, cart, buy, gap=2d, within=30d)"
    assert one(gap, [("view", 1), ("cart", 3), ("buy", 5)])  # both gaps exactly 2 days: they count
    assert not one(gap, [("view", 1), ("cart", 3.01), ("buy", 5)])  # the first gap is too long
    assert not one(gap, [("view", 1), ("cart", 3), ("buy", 5.01)])  # the second one is
    # A later view closes the gap: the latest earlier step decides.
    assert one(gap, [("view", 1), ("view", 2), ("cart", 3.5), ("buy", 5)])
    # A chain through a later add whose gap to the view is too long does not count...
    assert not one(gap, [("view", 1), ("cart", 3), ("cart", 4), ("buy", 6)])
    # ...but the add of day 3 reaches a purchase within 2 days of it.
    assert one(gap, [("view", 1), ("cart", 3), ("cart", 4), ("buy", 4.5)])


def test_repeated_names_and_ties() -> None:
    twice = "sequence(view, view, within=30d)"
    assert not one(twice, [("view", 3)])  # one event never serves two steps
    assert not one(twice, [("view", 3), ("view", 3)])  # two events at one instant are not in order
    assert one(twice, [("view", 3), ("view", 3), ("view", 4)])
    three = "sequence(view, view, view, within=30d)"
    assert not one(three, [("view", 3), ("view", 3), ("view", 4)])
    assert one(three, [("view", 3), ("view", 3.5), ("view", 4)])
    # One step, and no events at all.
    assert one("sequence(cart, within=30d)", [("cart", 29)])
    assert not one("sequence(cart, within=30d)", [])
    assert not one("sequence(cart, within=30d)", [("view", 29)])
    # A step that is also the "not followed by" type.
    assert one("sequence(view, cart, not_followed_by=view, within=30d)", [("view", 1), ("cart", 2)])
    assert not one(
        "sequence(view, cart, not_followed_by=view, within=30d)", [("view", 1), ("cart", 2), ("view", 5)]
    )


def test_not_followed_by_without_for() -> None:
    expr = "sequence(view, cart, not_followed_by=buy, within=30d)"
    assert one(expr, [("view", 1), ("cart", 3), ("buy", 2)])  # a purchase before the add does not count
    assert not one(expr, [("view", 1), ("cart", 3), ("buy", 29)])  # any later purchase in the window does
    assert one(expr, [("view", 1), ("cart", 3), ("buy", 29), ("cart", 29.5)])  # a later chain is clean
    # The add just before now: no waiting without for=.
    assert one(expr, [("view", 1), ("cart", 29.99)])


def test_customers_do_not_mix() -> None:
    # Customer 1 viewed, customer 2 added later: neither has the sequence.
    events = frame([(1, "view", 1), (2, "cart", 2), (2, "view", 3), (1, "cart", 0.5)], n=3)
    got = Evaluator(events, CustomerFrame(3, np.ones(3, bool)), NOW).values(
        lang.parse("sequence(view, cart, within=30d)")
    )
    assert got.tolist() == [False, False, False]
    # The value is a boolean column, usable in conditions.
    cond = Evaluator(events, CustomerFrame(3, np.ones(3, bool)), NOW).condition(
        lang.parse("not sequence(view, cart, within=30d) and count(view, within=30d) >= 1")
    )
    assert cond.tolist() == [False, True, True]


# ---------------------------------------------------------------------------------------- brute force


def brute(
    events: list[tuple[int, int]],
    steps: list[int],
    start: int,
    end: int,
    gap: int | None,
    follow: int | None,
    wait: int | None,
) -> bool:
    """Whether one customer's events ((type, ts), any order) form the sequence: every choice of one event
    per step, tried one by one."""
    inside = [(t, ts) for t, ts in events if start <= ts < end]
    candidates = [[ts for t, ts in inside if t == step] for step in steps]
    for chain in itertools.product(*candidates):
        if any(b <= a for a, b in itertools.pairwise(chain)):
            continue
        if gap is not None and any(b - a > gap for a, b in itertools.pairwise(chain)):
            continue
        last = chain[-1]
        after = [ts for t, ts in inside if t == follow and ts > last]
        if follow is not None and wait is None and after:
            continue
        waited = wait is None or (last < end - wait and all(ts > last + wait for ts in after))
        if follow is not None and not waited:
            continue
        return True
    return False


@pytest.mark.parametrize("seed", range(6))
def test_equals_brute_force_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 300, 2400
    # Few distinct instants (whole hours over 6 days), so that ties and gaps at exactly G are common.
    events = EventFrame(
        customer=rng.integers(0, n, m),
        ts=NOW - rng.integers(0, 6 * 24, m) * H,
        type=rng.integers(0, len(TYPES), m).astype(np.int32),
        type_names=TYPES,
        n_customers=n,
    )
    evaluator = Evaluator(events, CustomerFrame(n, np.ones(n, bool)), NOW)
    per_customer: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for c, t, ts in zip(events.customer.tolist(), events.type.tolist(), events.ts.tolist(), strict=True):
        per_customer[c].append((t, ts))
    cases = [
        ("sequence(view, cart, within=4d)", [0, 1], 4, 0, None, None, None),
        ("sequence(view, cart, buy, within=5d, before=12h)", [0, 1, 2], 5, 12, None, None, None),
        ("sequence(view, view, cart, gap=10h, within=6d)", [0, 0, 1], 6, 0, 10, None, None),
        ("sequence(view, cart, not_followed_by=buy, within=5d)", [0, 1], 5, 0, None, 2, None),
        ("sequence(view, cart, not_followed_by=buy, for=1d, within=6d)", [0, 1], 6, 0, None, 2, 24),
        ("sequence(cart, not_followed_by=cart, for=20h, gap=1h, within=3d, before=1d)", [1], 3, 24, 1, 1, 20),
        (
            "sequence(view, cart, view, gap=1d, not_followed_by=other, for=9h, within=6d)",
            [0, 1, 0],
            6,
            0,
            24,
            3,
            9,
        ),
    ]
    for text, steps, within_days, before_h, gap_h, follow, wait_h in cases:
        got = evaluator.values(lang.parse(text))
        end = NOW - before_h * H
        start = end - within_days * DAY
        expected = [
            brute(
                per_customer[c],
                steps,
                start,
                end,
                None if gap_h is None else gap_h * H,
                follow,
                None if wait_h is None else wait_h * H,
            )
            for c in range(n)
        ]
        assert got.tolist() == expected, text
        assert 0 < sum(expected) < n, text  # the data decide both ways


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("sequence(view, cart)", "sequence() needs within=", 0),
        (
            "sequence(view, cart.price, within=1d)",
            "takes event names (cart.price is an event property), e.g. sequence(",
            15,
        ),
        ("sequence(view, for=7d, within=30d)", "for= says how long after the last step", 15),
        ("sequence(view, gap=7, within=30d)", "gap= needs a duration such as 14d", 19),
        (
            "sequence(view, after=buy, within=30d)",
            "sequence() has no argument after=; it accepts before, for,",
            21,
        ),
        (
            "sequence(view, not_followed_by=buy.amount, within=1d)",
            "not_followed_by= takes one event name",
            31,
        ),
        (
            "sequence(view, not_followed_by=[buy, cart], within=1d)",
            "not_followed_by= takes one event name",
            31,
        ),
        ("sequence(within=1d)", "sequence() takes at least 1 argument(s), got 0", 0),
        ("sequence(view, within=this_week)", "within= needs a duration such as 14d", 22),
        ('sequence(view, within=1d, where=view.cat == "a")', "sequence() has no argument where=", 41),
    ],
)
def test_errors_point_at_the_culprit(text: str, message: str, offset: int) -> None:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    assert message in info.value.message
    assert info.value.offset == offset


def test_every_event_it_reads_is_listed() -> None:
    node = lang.parse(JOURNEY)
    assert lang.event_names(node) == {"view", "cart", "buy"}
    assert lang.event_properties(node) == set()
