"""sessions(), session_share() and count(..., by=): distinct session ids per customer, on hand-computed
cases and against a brute-force reference on random data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from orchestrator.signals import _lang as lang
from orchestrator.signals import _sequences as sequences
from orchestrator.signals._evaluate import Evaluator
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame
from orchestrator.signals._log import property_uses

H = 3600 * 1_000_000
DAY = 24 * H
NOW = 1_700_000_000 * 1_000_000
TYPES = ["view", "cart", "buy", "search"]


def frame(rows: list[tuple[int, str, float, Any]], n: int = 3, prop: str = "session_id") -> EventFrame:
    """rows: (customer key, event, days before NOW, session id or None)."""
    return EventFrame(
        customer=np.array([r[0] for r in rows], dtype=np.int64),
        ts=np.array([NOW - round(r[2] * DAY) for r in rows], dtype=np.int64),
        type=np.array([TYPES.index(r[1]) for r in rows], dtype=np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={prop: Categorical.encode([r[3] for r in rows])},
    )


# Customer 1: sessions s1 (view, cart), s2 (search), s3 (view) in the last 7 days, a search without a
# session id, and s0 eight days ago (view, buy) with a search of s0 on day 6: s0 straddles the 7-day start.
# Customer 2: session 7 written as a number by one source and as text by another, then session 8.
EVENTS = frame(
    [
        (1, "view", 1, "s1"),
        (1, "cart", 1.5, "s1"),
        (1, "search", 2, "s2"),
        (1, "view", 3, "s3"),
        (1, "search", 4, None),
        (1, "search", 4.5, ""),
        (1, "view", 8, "s0"),
        (1, "buy", 8, "s0"),
        (1, "search", 6, "s0"),
        (2, "view", 1, 7),
        (2, "buy", 2, "7"),
        (2, "search", 3, 8),
    ]
)


def values(expr: str, events: EventFrame = EVENTS) -> list:
    n = events.n_customers
    return Evaluator(events, CustomerFrame(n, np.ones(n, bool)), NOW).values(lang.parse(expr)).tolist()


def test_sessions_by_hand() -> None:
    # Customer 1 in 7 days: s1, s2, s3, and s0 by its search on day 6 (its view and purchase are out).
    assert values("sessions(within=7d)") == [0, 4, 2]
    assert values("sessions()") == [0, 4, 2]  # all time: the same sessions
    assert values("sessions(within=7d, by=session_id)") == [0, 4, 2]
    # s0 straddles the window's start: only its in-window search counts, so it is "without a view".
    assert values("sessions(without=view, within=7d)") == [0, 2, 1]  # s2, s0 / 8
    assert values("sessions(without=view)") == [0, 1, 1]  # all time s0 has a view
    assert values("sessions(with=view, within=7d)") == [0, 2, 1]  # s1, s3 / 7
    assert values("sessions(with=[cart, buy], within=7d)") == [0, 1, 1]  # s1 / 7 (the "7" purchase)
    assert values("sessions(with=view, without=cart, within=7d)") == [0, 1, 1]  # s3 / 7
    assert values("sessions(within=2d)") == [0, 2, 1]  # [now-2d, now): s1, s2 / 7
    assert values("sessions(within=3d, before=1d)") == [0, 3, 2]  # [now-4d, now-1d): s1, s2, s3 / 7, 8


def test_session_share_by_hand() -> None:
    # 2 of customer 1's 4 sessions in 7 days have no view; customer 0 has no sessions: null.
    got = values("session_share(without=view, within=7d)")
    assert np.isnan(got[0]) and got[1:] == [0.5, 0.5]
    assert values("session_share(with=[view, cart], within=7d)")[1:] == [0.5, 0.5]
    # The docs' journey condition: the share of sessions without a view doubled against the days before.
    doubled = (
        "session_share(without=view, within=2d) >= 2 * session_share(without=view, within=7d, before=2d)"
    )
    # Customer 1, [now-2d, now): s1 (view) and s2 (search, exactly at the window's start: inside) -> 1/2.
    # [now-9d, now-2d): s3 (view) and s0 (view, buy, search) -> 0/2, and s2 is not in it (ends are open).
    # Customer 2, [now-2d, now): 7 (view, and the "7" purchase exactly at the start) -> 0/1; before: 8 -> 1/1.
    assert values("session_share(without=view, within=2d)")[1:] == [0.5, 0.0]
    assert values("session_share(without=view, within=7d, before=2d)")[1:] == [0.0, 1.0]
    condition = Evaluator(EVENTS, CustomerFrame(3, np.ones(3, bool)), NOW).condition(lang.parse(doubled))
    assert condition.tolist() == [False, True, False]  # customer 0: null compares false


def test_count_by_a_property() -> None:
    # How many sessions had a view: customer 1 has s1 and s3 in 7 days; customer 2 has 7.
    assert values("count(view, within=7d, by=view.session_id)") == [0, 2, 1]
    # Views and purchases together: customer 2's 7 and "7" are one session.
    assert values("count(view, buy, by=view.session_id)") == [0, 3, 1]
    # Searches: one without an id and one with an empty id belong to no session.
    assert values("count(search, within=7d, by=search.session_id)") == [0, 2, 1]


def test_another_property_and_numbers() -> None:
    events = frame(
        [(0, "view", 1, 3.0), (0, "view", 2, 3), (0, "cart", 2, 4), (1, "view", 1, None)], n=2, prop="visit"
    )
    assert values("sessions(by=visit)", events) == [2, 0]
    assert values("sessions(by=visit, without=cart)", events) == [1, 0]
    # Numbers in a plain float column (no encoding) work the same way.
    numeric = EventFrame(
        events.customer, events.ts, events.type, TYPES, 2, {"visit": np.array([3.0, 3.0, 4.0, np.nan])}
    )
    assert values("sessions(by=visit)", numeric) == [2, 0]
    assert values("count(view, cart, by=view.visit)", numeric) == [2, 0]


def test_the_log_keeps_the_session_property() -> None:
    calls = lang.aggregates(
        lang.parse(
            "session_share(without=view, within=7d) > 0.5 and count(cart, by=cart.basket) >= 1 "
            "and sessions(by=visit) > 1"
        )
    )
    assert property_uses(calls) == (set(), {"session_id", "basket", "visit"})
    node = lang.parse("sessions(with=[view, cart], without=buy)")
    assert lang.event_properties(node) == {"session_id"}
    assert lang.event_names(node) == {"view", "cart", "buy"}


@pytest.mark.parametrize("seed", range(4))
def test_equals_brute_force_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 200, 3000
    # Most ids belong to one customer (as session ids do); a few are shared, some as numbers and text.
    ids: list[Any] = [None, "", "a", "b", "c", 1, "1", 2, "2.5", 2.5]
    customer = rng.integers(0, n, m)
    own = rng.integers(0, 4, m)
    session = [
        ids[i] if shared else f"{c}-{k}"
        for i, shared, c, k in zip(
            rng.integers(0, len(ids), m), rng.random(m) < 0.2, customer, own, strict=True
        )
    ]
    events = EventFrame(
        customer=customer,
        ts=NOW - rng.integers(0, 10 * 24, m) * H,
        type=rng.integers(0, len(TYPES), m).astype(np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={"session_id": Categorical.encode(session)},
    )
    cases: list[tuple[str, int, int, set[int], set[int], set[int] | None]] = [
        # text, within days, before days, with types, without types, listed types (count by=)
        ("sessions(within=5d)", 5, 0, set(), set(), None),
        ("sessions(within=4d, before=2d, with=buy)", 4, 2, {2}, set(), None),
        ("sessions(without=[view, cart], within=8d)", 8, 0, set(), {0, 1}, None),
        ("sessions(with=[view, search], without=buy, within=9d, before=1d)", 9, 1, {0, 3}, {2}, None),
        ("count(view, buy, within=6d, by=view.session_id)", 6, 0, set(), set(), {0, 2}),
    ]
    for text, within, before, with_, without, listed in cases:
        got = values(text, events)
        end = NOW - before * DAY
        start = end - within * DAY
        found: list[dict[str, set[int]]] = [{} for _ in range(n)]
        for c, t, ts, s in zip(
            events.customer.tolist(), events.type.tolist(), events.ts.tolist(), session, strict=True
        ):
            if s is None or s == "" or not start <= ts < end or (listed is not None and t not in listed):
                continue
            found[c].setdefault(str(s), set()).add(t)  # mixed types compare as text
        expected = [
            sum(1 for types in sessions.values() if (not with_ or types & with_) and not types & without)
            for sessions in found
        ]
        assert got == expected, text
        assert sum(expected) > 0, text


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("sessions(view, within=7d)", "sessions() takes 0 argument(s), got 1", 0),
        ("sessions(by=view.session_id)", "by= takes the name of an event property, e.g. by=session_id", 12),
        ("sessions(with=view.cat)", "with= takes an event name or a list of them", 14),
        ("sessions(without=[view, 3])", "without= takes an event name or a list of them", 24),
        ("sessions(within=7)", "within= needs a duration", 16),
        (
            "sessions(where=1)",
            "sessions() has no argument where=; it accepts before, by, with, within, without",
            15,
        ),
        ("session_share(within=7d)", "session_share() needs with= or without=", 0),
        ("sessions(within=last_week)", "within= needs a duration such as 14d", 16),
        ("session_share(without=view, within=today)", "within= needs a duration such as 14d", 35),
        ("session_share(view, without=view)", "session_share() takes 0 argument(s), got 1", 0),
        ("count(view, by=cart.session_id)", "by= names a property of cart, which is not listed", 15),
        ("count(view, by=session_id)", "by= takes one event property, e.g. by=refund.amount", 15),
    ],
)
def test_errors_point_at_the_culprit(text: str, message: str, offset: int) -> None:
    with pytest.raises(lang.ExpressionError) as info:
        lang.parse(text)
    assert message in info.value.message
    assert info.value.offset == offset


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dense", [True, False])
def test_session_counters_numbered_per_customer(
    seed: int, dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session ids written as numbers counted per customer (1, 2, 3 ... for every customer): every id is
    shared by many customers, so pairs are counted in a (customer, id) table or, when that table would be
    too large, by sorting; both equal a count by hand, with missing ids (NaN) in no session."""
    if not dense:
        monkeypatch.setattr(sequences, "DENSE_CELLS_PER_EVENT", 0)
    rng = np.random.default_rng(seed)
    n, m = 150, 4000
    customer = rng.integers(0, n, m)
    session = rng.integers(1, 6, m).astype(np.float64) + 10.0 * (customer % 3)  # spans differ by customer
    session[rng.random(m) < 0.05] = np.nan
    assert sequences.integer_codes(session) is not None
    events = EventFrame(
        customer=customer,
        ts=NOW - rng.integers(0, 10 * 24, m) * H,
        type=rng.integers(0, len(TYPES), m).astype(np.int32),
        type_names=TYPES,
        n_customers=n,
        properties={"session_id": session},
    )
    for text, within, with_, without in [
        ("sessions(within=5d)", 5, set(), set()),
        ("sessions(with=buy, within=7d)", 7, {2}, set()),
        ("sessions(with=[view, search], without=buy, within=9d)", 9, {0, 3}, {2}),
    ]:
        got = values(text, events)
        found: list[dict[float, set[int]]] = [{} for _ in range(n)]
        for c, t, ts, s in zip(
            customer.tolist(), events.type.tolist(), events.ts.tolist(), session.tolist(), strict=True
        ):
            if s == s and NOW - within * DAY <= ts < NOW:
                found[c].setdefault(s, set()).add(t)
        expected = [
            sum(1 for types in sessions.values() if (not with_ or types & with_) and not types & without)
            for sessions in found
        ]
        assert got == expected, text
        assert sum(expected) > 0, text


def test_integer_codes_only_for_whole_numbers_in_a_short_span() -> None:
    codes = sequences.integer_codes(np.array([7.0, np.nan, 5.0, 7.0, 9.0]))
    assert codes is not None and codes.tolist() == [2, -1, 0, 2, 4]
    assert sequences.integer_codes(np.array([1.0, 2.5])) is None  # not whole: encoded by sorting
    assert sequences.integer_codes(np.array([1.0, 1e12, 3.0])) is None  # wider than the column is long
    nothing = sequences.integer_codes(np.array([np.nan, np.nan]))
    assert nothing is not None and nothing.tolist() == [-1, -1]
