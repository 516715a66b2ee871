"""The built-in metrics of the expression language, as formulas in its core.

Most built-ins are *shorthands*: when an expression is parsed, ``recency(purchase)`` is replaced by
``_days(since(purchase))``, ``frequency(x, within=W)`` by ``count(x, within=W)``, and so on. The formula a
built-in stands for is therefore exactly what runs, and every aggregate it rests on is an ordinary core
aggregate: evaluated once per tick and shared between journeys, and kept up to date incrementally by the
engine, with nothing to add for the built-in. A few functions work on values instead (``quintile`` and
``rfm_segment``, and the internal ``_days``, ``_nps_group``, ``_tier`` and ``_change`` that shorthands
expand to); ``signals._builtin_values`` computes them over whole columns. ``docs/metrics.md`` gives every
formula.

This module is plain Python over expression trees: no numpy, no store.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from orchestrator.signals._syntax import (
    Binary,
    Call,
    Duration,
    ExpressionError,
    FunctionSpec,
    ListLiteral,
    Name,
    Node,
    Number,
    Period,
)

DAY_SECONDS = 86400.0
WINDOW = {"within": "window", "before": "duration", "where": "condition"}
# The window of sequence() and sessions(): a duration only, and no where= filter.
DURATION_WINDOW = {"within": "duration", "before": "duration"}

# Lifecycle tiers in the order they are tried, with their default thresholds:
# (most days since the latest activity, fewest events in the frequency window).
TIERS: tuple[str, ...] = ("highly_active", "regularly_engaged", "occasionally_active", "at_risk")
LAPSED = "lapsed"
DEFAULT_TIERS: dict[str, tuple[float, float]] = {
    "highly_active": (7, 8),
    "regularly_engaged": (14, 4),
    "occasionally_active": (30, 1),
    "at_risk": (90, 0),
}

# Aggregates whose value over a window is a total, so that dividing by the window's length is a rate.
RATE_AGGREGATES = ("count", "sum")
WEIGHT_TOLERANCE = 1e-9


SPECS: list[FunctionSpec] = [
    FunctionSpec(
        "recency",
        "shorthand",
        1,
        None,
        WINDOW,
        "days since the latest event of the listed types (null if none)",
        args="events",
        example="recency(session_start, purchase)",
    ),
    FunctionSpec(
        "tenure",
        "shorthand",
        0,
        None,
        WINDOW,
        "days since the earliest event of the listed types, any type if none listed (null if none)",
        args="events",
        example="tenure() < 30",
    ),
    FunctionSpec(
        "frequency",
        "shorthand",
        1,
        None,
        WINDOW,
        "number of events of the listed types in the window (same as count)",
        args="events",
        example="frequency(purchase, within=365d)",
    ),
    FunctionSpec(
        "monetary",
        "shorthand",
        1,
        1,
        WINDOW,
        "sum of a property over the window, 0 if none (same as sum)",
        args="prop",
        example="monetary(purchase.amount, within=365d)",
    ),
    FunctionSpec(
        "quintile",
        "scalar",
        1,
        1,
        {},
        "score 1 to 5 by rank among all customers whose value is set (null stays null)",
        example="quintile(frequency(purchase, within=365d))",
    ),
    FunctionSpec(
        "rfm_segment",
        "scalar",
        2,
        2,
        {},
        "named segment of a recency score and a frequency score (each 1 to 5)",
        example="rfm_segment(r, f)",
    ),
    FunctionSpec(
        "lifecycle_tier",
        "shorthand",
        2,
        2,
        dict.fromkeys(TIERS, "pair"),
        "highly_active, regularly_engaged, occasionally_active, at_risk or lapsed",
        args="values",
        example="lifecycle_tier(recency(session_start), frequency(session_start, within=30d))",
    ),
    FunctionSpec(
        "weighted",
        "shorthand",
        0,
        0,
        {},
        "sum of metrics times their weights; the weights add up to 1",
        args="values",
        any_kwargs="weight",
        example="weighted(frequency=0.4, depth=0.3, breadth=0.2, sentiment=0.1)",
    ),
    FunctionSpec(
        "change",
        "shorthand",
        2,
        2,
        {},
        "rate per day in a recent window over the rate in a baseline window, minus 1",
        args="values",
        example="change(count(session_start, within=14d), count(session_start, within=28d, before=14d))",
    ),
    FunctionSpec(
        "cart_abandoned",
        "shorthand",
        2,
        2,
        {"within": "duration"},
        "the latest add is within the window and no purchase is later than it",
        args="events",
        required=frozenset({"within"}),
        example="cart_abandoned(add_to_cart, purchase, within=24h)",
    ),
    FunctionSpec(
        "repeat_purchase",
        "shorthand",
        1,
        None,
        WINDOW,
        "true with 2 or more such events in the window",
        args="events",
        example="repeat_purchase(purchase, within=365d)",
    ),
    FunctionSpec(
        "category_count",
        "shorthand",
        1,
        1,
        WINDOW,
        "number of distinct values of a property, e.g. categories bought (same as distinct)",
        args="prop",
        example="category_count(purchase.category, within=365d)",
    ),
    FunctionSpec(
        "nps_group",
        "shorthand",
        1,
        1,
        WINDOW,
        "promoter (9-10), passive (7-8) or detractor (0-6) by the latest score; null if none",
        args="prop",
        example="nps_group(nps_response.score, within=365d)",
    ),
    FunctionSpec(
        "csat",
        "shorthand",
        1,
        1,
        WINDOW,
        "mean satisfaction score over the window, null if none (same as mean)",
        args="prop",
        example="csat(csat_response.score, within=90d)",
    ),
    FunctionSpec(
        "ces",
        "shorthand",
        1,
        1,
        WINDOW,
        "mean customer effort score over the window, null if none (same as mean)",
        args="prop",
        example="ces(ces_response.score, within=90d)",
    ),
    FunctionSpec(
        "clv",
        "shorthand",
        1,
        1,
        {"refunds": "prop"},
        "all-time sum of a property, minus the refunds= property's all-time sum",
        args="prop",
        example="clv(purchase.amount, refunds=refund.amount)",
    ),
    FunctionSpec(
        "session_share",
        "shorthand",
        0,
        0,
        {**DURATION_WINDOW, "by": "name", "with": "events", "without": "events"},
        "share of the sessions in the window with (with=) or without (without=) such events; null if none",
        args="values",
        example="session_share(without=product_view, within=7d)",
    ),
    # What the shorthands expand to; not callable from a journey.
    FunctionSpec("_days", "scalar", 1, 1, {}, "seconds to days; infinite becomes null", internal=True),
    FunctionSpec("_nps_group", "scalar", 1, 1, {}, "NPS group of a 0-10 score", internal=True),
    FunctionSpec("_tier", "scalar", 10, 10, {}, "lifecycle tier from recency, frequency", internal=True),
    FunctionSpec("_change", "scalar", 4, 4, {}, "change of a rate against a baseline rate", internal=True),
    FunctionSpec(
        "_period_seconds", "scalar", 1, 1, {}, "each customer's length of a calendar period", internal=True
    ),
]


# ---------------------------------------------------------------------------------------------- expansion


def _as(call: Call, func: str) -> Call:
    """The same arguments under another (core) function name."""
    return Call(call.pos, func, call.args, call.kwargs, call.kwarg_pos)


def _recency(call: Call) -> Node:
    return Call(call.pos, "_days", (_as(call, "since"),), ())


def _tenure(call: Call) -> Node:
    return Call(call.pos, "_days", (_as(call, "since_first"),), ())


def _repeat_purchase(call: Call) -> Node:
    return Binary(call.pos, ">=", _as(call, "count"), Number(call.pos, 2.0))


def _cart_abandoned(call: Call) -> Node:
    # Written exactly like reference signal R3, so both share their aggregates: a purchase at the same
    # instant as the latest add is not later than it, so the cart still counts as abandoned.
    within = call.kwarg("within")
    assert within is not None
    added = Call(call.pos, "since", (call.args[0],), ())
    bought = Call(call.pos, "since", (call.args[1],), ())
    return Binary(
        call.pos,
        "and",
        Binary(call.pos, "<=", added, within),
        Binary(call.pos, ">=", bought, added),
    )


def _nps_group(call: Call) -> Node:
    return Call(call.pos, "_nps_group", (_as(call, "last"),), ())


def _clv(call: Call) -> Node:
    total = Call(call.pos, "sum", call.args, ())
    refunds = call.kwarg("refunds")
    if refunds is None:
        return total
    return Binary(call.pos, "-", total, Call(refunds.pos, "sum", (refunds,), ()))


def _weighted(call: Call) -> Node:
    if not call.kwargs:
        raise ExpressionError(
            "weighted() needs metric=weight pairs, e.g. weighted(frequency=0.4, depth=0.6)", call.pos
        )
    weights: list[float] = []
    for key, value in call.kwargs:
        if not isinstance(value, Number) or not 0 <= value.value <= 1:
            raise ExpressionError(
                f"the weight of {key} must be a number from 0 to 1, e.g. {key}=0.4", value.pos
            )
        weights.append(value.value)
    total = math.fsum(weights)
    if abs(total - 1) > WEIGHT_TOLERANCE:
        listing = " + ".join(f"{key}={w:g}" for (key, _), w in zip(call.kwargs, weights, strict=True))
        raise ExpressionError(
            f"the weights of weighted() add up to {total:g}, not 1: {listing}", call.key_pos(0)
        )
    # Left to right, as "0.4 * frequency + 0.3 * depth + ..." would be written by hand, so that the
    # result is the same float as the hand-written formula.
    node: Node | None = None
    for index, (key, value) in enumerate(call.kwargs):
        term = Binary(value.pos, "*", value, Name(call.key_pos(index), (key,)))
        node = term if node is None else Binary(value.pos, "+", node, term)
    assert node is not None
    return node


def _change(call: Call) -> Node:
    lengths: list[Node] = []
    for which, arg in zip(("recent", "baseline"), call.args, strict=True):
        if not (isinstance(arg, Call) and arg.func in RATE_AGGREGATES):
            raise ExpressionError(
                "change() compares rates per day over windows: each argument must be count(...) or "
                "sum(...) (or frequency/monetary) with within=, e.g. "
                "change(count(session_start, within=14d), count(session_start, within=28d, before=14d))",
                arg.pos,
            )
        within = arg.kwarg("within")
        if isinstance(within, Period):
            # Calendar periods differ in length between customers (a month, a week across a change of
            # clocks, the elapsed part of this week): each customer's own length, in seconds.
            lengths.append(Call(within.pos, "_period_seconds", (within,), ()))
            continue
        if not isinstance(within, Duration):
            raise ExpressionError(
                f"the {which} window has no within=: change() needs the length of each window to turn "
                "totals into rates per day",
                arg.pos,
            )
        if within.seconds <= 0:
            raise ExpressionError("change() needs windows longer than zero", within.pos)
        lengths.append(Number(within.pos, within.seconds))
    return Call(call.pos, "_change", (*call.args, *lengths), ())


def _lifecycle_tier(call: Call) -> Node:
    thresholds = dict(DEFAULT_TIERS)
    for key, value in call.kwargs:
        thresholds[key] = _pair(key, value)
    numbers: list[Node] = []
    for tier in TIERS:
        days, events = thresholds[tier]
        numbers += [Number(call.pos, float(days)), Number(call.pos, float(events))]
    return Call(call.pos, "_tier", (*call.args, *numbers), ())


def _pair(key: str, value: Node) -> tuple[float, float]:
    """``[max days, min events]`` of one tier; a duration counts as its length in days."""
    example = f"{key}=[{DEFAULT_TIERS[key][0]:g}, {DEFAULT_TIERS[key][1]:g}]"
    if not isinstance(value, ListLiteral) or len(value.items) != 2:
        raise ExpressionError(
            f"{key}= takes [most days since the latest activity, fewest events], e.g. {example}", value.pos
        )
    out: list[float] = []
    for item in value.items:
        if isinstance(item, Duration):
            out.append(item.seconds / DAY_SECONDS)
        elif isinstance(item, Number):
            out.append(item.value)
        else:
            raise ExpressionError(f"{key}= takes two numbers of 0 or more, e.g. {example}", item.pos)
    return out[0], out[1]


def _session_share(call: Call) -> Node:
    filters = ("with", "without")
    if not any(call.kwarg(key) is not None for key in filters):
        raise ExpressionError(
            "session_share() needs with= or without= to say which sessions to count, e.g. "
            "session_share(without=product_view, within=7d)",
            call.pos,
        )
    every = tuple((key, value) for key, value in call.kwargs if key not in filters)
    every_pos = tuple(call.key_pos(i) for i, (key, _) in enumerate(call.kwargs) if key not in filters)
    some = Call(call.pos, "sessions", (), call.kwargs, call.kwarg_pos)
    return Binary(call.pos, "/", some, Call(call.pos, "sessions", (), every, every_pos))


EXPANSIONS: dict[str, Callable[[Call], Node]] = {
    "recency": _recency,
    "tenure": _tenure,
    "frequency": lambda call: _as(call, "count"),
    "monetary": lambda call: _as(call, "sum"),
    "category_count": lambda call: _as(call, "distinct"),
    "csat": lambda call: _as(call, "mean"),
    "ces": lambda call: _as(call, "mean"),
    "repeat_purchase": _repeat_purchase,
    "cart_abandoned": _cart_abandoned,
    "nps_group": _nps_group,
    "clv": _clv,
    "weighted": _weighted,
    "change": _change,
    "lifecycle_tier": _lifecycle_tier,
    "session_share": _session_share,
}


def expand(call: Call) -> Node:
    """The core formula a checked shorthand call stands for (raises ``ExpressionError`` on bad values)."""
    return EXPANSIONS[call.func](call)
