"""The expression language of signals, segments and branches.

An expression is a small formula over a customer's behaviour and attributes::

    since(session_start, email_click, purchase) > 30d
    prior > 0 and 10 * recent < 3 * prior
    top_count(product_view.category, within=14d) >= 4 and count(wishlist_add, within=14d) >= 2
    tier in ["at_risk", "lapsed"] and consent_email

The text is tokenised and parsed here into a tree of plain nodes, each remembering its offset in the text
so that errors point at a column. Nothing is ever passed to Python's ``eval``: the tree is checked against
the function table below and interpreted by ``signals._evaluate`` over numpy columns. This module knows
nothing of numpy or of the store.

Built-in metrics (``recency``, ``quintile``, ``lifecycle_tier``, ...) are listed in the same function
table; most are shorthands that the parser replaces by their formula in the core language (see
``signals._builtins``), so the evaluators only ever see core functions.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from orchestrator.durations import MAX_SECONDS, UNIT_SECONDS
from orchestrator.signals import _builtins as builtins
from orchestrator.signals import _calendar as calendar
from orchestrator.signals._syntax import (
    Binary,
    Boolean,
    Call,
    Duration,
    ExpressionError,
    FunctionSpec,
    ListLiteral,
    Name,
    Node,
    Null,
    Number,
    Period,
    String,
    Unary,
)

__all__ = [
    "FUNCTIONS",
    "SESSION_PROPERTY",
    "WINDOW_ARGS",
    "Binary",
    "Boolean",
    "Call",
    "Duration",
    "ExpressionError",
    "FunctionSpec",
    "ListLiteral",
    "Name",
    "Node",
    "Null",
    "Number",
    "Period",
    "String",
    "Unary",
    "aggregates",
    "check_call",
    "event_names",
    "event_properties",
    "filtered_events",
    "free_names",
    "is_property_aggregate",
    "kwarg_events",
    "parse",
    "period_of",
    "tokenize",
    "walk",
    "where_numbers",
    "where_parts",
    "where_properties",
    "where_split",
]


# ---------------------------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<duration>\d+(?:\.\d+)?[smhdw](?![A-Za-z0-9_]))
  | (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|[<>+\-*/(),.=\[\]])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            snippet = text[pos : pos + 12]
            if snippet[0].isdigit():
                word = re.match(r"[0-9.]+[A-Za-z_0-9]*", snippet)
                raise ExpressionError(
                    f"{word.group() if word else snippet!r} is neither a number nor a duration "
                    "(durations end in s, m, h, d or w, e.g. 30d)",
                    pos,
                )
            raise ExpressionError(f"unexpected character {snippet[0]!r} in {snippet!r}", pos)
        kind = match.lastgroup or ""
        if kind != "space":
            value = match.group()
            if kind == "name" and value in _KEYWORDS:
                kind = value
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------------------------- parser

_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.peek()
        if token.text != text or token.kind == "string":
            found = "the end" if token.kind == "end" else repr(token.text)
            raise ExpressionError(f"expected {text!r} but found {found}", token.pos)
        return self.take()

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ExpressionError("the expression is empty", 0)
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {token.text!r}; is an operator missing?", token.pos)
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.peek().kind == "or":
            pos = self.take().pos
            node = Binary(pos, "or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.peek().kind == "and":
            pos = self.take().pos
            node = Binary(pos, "and", node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.peek().kind == "not":
            pos = self.take().pos
            return Unary(pos, "not", self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        node = self.parse_sum()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            node = Binary(token.pos, token.text, node, self.parse_sum())
            after = self.peek()
            if after.kind == "op" and after.text in _COMPARISONS:
                raise ExpressionError("chained comparisons are ambiguous: join them with 'and'", after.pos)
        elif token.kind == "in":
            self.take()
            right = self.parse_sum()
            if not isinstance(right, ListLiteral):
                raise ExpressionError('\'in\' needs a list, e.g. tier in ["at_risk", "lapsed"]', right.pos)
            node = Binary(token.pos, "in", node, right)
        elif token.kind == "op" and token.text == "=":
            raise ExpressionError("use '==' to compare", token.pos)
        return node

    def parse_sum(self) -> Node:
        node = self.parse_term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            token = self.take()
            node = Binary(token.pos, token.text, node, self.parse_term())
        return node

    def parse_term(self) -> Node:
        node = self.parse_unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            token = self.take()
            node = Binary(token.pos, token.text, node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text == "-":
            self.take()
            return Unary(token.pos, "-", self.parse_unary())
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return Number(token.pos, float(token.text))
        if token.kind == "duration":
            seconds = float(token.text[:-1]) * UNIT_SECONDS[token.text[-1]]
            if not seconds <= MAX_SECONDS:
                raise ExpressionError(
                    f"{token.text} is longer than 100 years, the longest duration allowed", token.pos
                )
            return Duration(token.pos, seconds, token.text)
        if token.kind == "string":
            return String(token.pos, _unquote(token.text))
        if token.kind in ("true", "false"):
            return Boolean(token.pos, token.kind == "true")
        if token.kind == "null":
            return Null(token.pos)
        if token.kind == "op" and token.text == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "op" and token.text == "[":
            items: list[Node] = []
            while not (self.peek().kind == "op" and self.peek().text == "]"):
                items.append(self.parse_sum())
                if self.peek().text == ",":
                    self.take()
                elif self.peek().text != "]":
                    raise ExpressionError("expected ',' or ']' in the list", self.peek().pos)
            self.take()
            return ListLiteral(token.pos, tuple(items))
        if token.kind == "name":
            if self.peek().text == "(" and self.peek().kind == "op":
                return self.parse_call(token)
            parts = [token.text]
            while self.peek().kind == "op" and self.peek().text == ".":
                self.take()
                part = self.take()
                if part.kind != "name":
                    raise ExpressionError("expected a property name after '.'", part.pos)
                parts.append(part.text)
            return Name(token.pos, tuple(parts))
        if token.kind == "end":
            raise ExpressionError("the expression ends too early", token.pos)
        raise ExpressionError(f"unexpected {token.text!r}", token.pos)

    def parse_call(self, name: Token) -> Node:
        self.expect("(")
        args: list[Node] = []
        kwargs: list[tuple[str, Node]] = []
        kwarg_pos: list[int] = []
        while not (self.peek().kind == "op" and self.peek().text == ")"):
            token = self.peek()
            follows = self.tokens[self.i + 1]
            if token.kind == "name" and follows.kind == "op" and follows.text == "=":
                self.take()
                self.take()
                if any(key == token.text for key, _ in kwargs):
                    raise ExpressionError(f"{token.text}= is given twice", token.pos)
                value = self.parse_or()
                if token.text == "within" and isinstance(value, Name) and len(value.parts) == 1:
                    value = Period(value.pos, value.parts[0])  # a calendar period, checked below
                kwargs.append((token.text, value))
                kwarg_pos.append(token.pos)
            else:
                if kwargs:
                    raise ExpressionError("positional arguments go before named ones", token.pos)
                args.append(self.parse_or())
            if self.peek().kind == "op" and self.peek().text == ",":
                self.take()
            elif not (self.peek().kind == "op" and self.peek().text == ")"):
                raise ExpressionError(f"expected ',' or ')' in the call to {name.text}()", self.peek().pos)
        self.take()
        if name.text in ("expected_purchases", "predicted_clv") and len(args) == 2 and not kwargs:
            horizon = args[1]
            if isinstance(horizon, Duration):  # the horizon may be written second: (purchase, 90d)
                args.pop()
                kwargs.append(("horizon", horizon))
                kwarg_pos.append(horizon.pos)
        call = Call(name.pos, name.text, tuple(args), tuple(kwargs), tuple(kwarg_pos))
        check_call(call)
        if FUNCTIONS[call.func].kind == "shorthand":
            return builtins.expand(call)
        return call


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse(text: str) -> Node:
    """Parse ``text`` into a checked expression tree; raise ``ExpressionError`` with an offset."""
    if not isinstance(text, str):
        raise ExpressionError("an expression must be text", 0)
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------- functions

WINDOW_ARGS = builtins.WINDOW


_CORE: list[FunctionSpec] = [
    FunctionSpec(
        "count",
        "events",
        1,
        None,
        {**WINDOW_ARGS, "by": "prop"},
        "number of events of the listed types in the window (with by=event.prop, the number of distinct"
        " values of it among them, e.g. how many sessions had such an event)",
        example="count(add_to_cart, within=30d, by=add_to_cart.session_id)",
    ),
    FunctionSpec(
        "since",
        "events",
        1,
        None,
        WINDOW_ARGS,
        "time since the latest event of the listed types (infinite if none)",
    ),
    FunctionSpec(
        "since_first",
        "events",
        0,
        None,
        WINDOW_ARGS,
        "time since the earliest event of the listed types (any type if none listed; infinite if none)",
        example="since_first(session_start)",
    ),
    FunctionSpec(
        "distinct_events",
        "events",
        0,
        None,
        WINDOW_ARGS,
        "how many of the listed event types (all types if none listed) occur in the window",
    ),
    FunctionSpec(
        "median_gap",
        "events",
        1,
        None,
        {**WINDOW_ARGS, "by": "prop"},
        "median time between one customer's consecutive events of the listed types in the window, in"
        " seconds (with by=event.prop, only between events with the same value of it; null with no gap)",
        example="median_gap(refill, within=365d, by=refill.product)",
    ),
    FunctionSpec(
        "sequence",
        "events",
        1,
        None,
        {**builtins.DURATION_WINDOW, "gap": "duration", "not_followed_by": "event", "for": "duration"},
        "true where the listed events happened in this order at increasing instants in the window (gap=:"
        " at most this long between steps; not_followed_by=: with no such event after the last step,"
        " for=: within this long after it)",
        required=frozenset({"within"}),
        example="sequence(product_view, add_to_cart, not_followed_by=purchase, for=7d, within=30d)",
    ),
    FunctionSpec(
        "sessions",
        "events",
        0,
        0,
        {**builtins.DURATION_WINDOW, "by": "name", "with": "events", "without": "events"},
        "number of sessions (distinct values of the by= property, default session_id) among the events"
        " in the window; with=/without=: only those with / with no event of these types",
        example="sessions(without=product_view, within=30d)",
    ),
    FunctionSpec("sum", "prop", 1, 1, WINDOW_ARGS, "sum of a property over the window (0 if none)"),
    FunctionSpec("mean", "prop", 1, 1, WINDOW_ARGS, "mean of a property over the window (null if none)"),
    FunctionSpec(
        "last",
        "prop",
        1,
        1,
        WINDOW_ARGS,
        "a property on the latest event that has it, a number or text (same instant: the smallest;"
        " null if none)",
    ),
    FunctionSpec("distinct", "prop", 1, 1, WINDOW_ARGS, "number of distinct values of a property"),
    FunctionSpec(
        "top_count",
        "prop",
        1,
        1,
        WINDOW_ARGS,
        "how often the most frequent value of a property occurs (0 if none)",
    ),
    FunctionSpec(
        "top_value",
        "prop",
        1,
        1,
        WINDOW_ARGS,
        "the most frequent value of a property (ties: the smallest value; null if none)",
    ),
    FunctionSpec(
        "min",
        "scalar",
        1,
        None,
        WINDOW_ARGS,
        "smallest of its arguments; or, given one event.property, its minimum over the window",
    ),
    FunctionSpec(
        "max",
        "scalar",
        1,
        None,
        WINDOW_ARGS,
        "largest of its arguments; or, given one event.property, its maximum over the window",
    ),
    FunctionSpec("coalesce", "scalar", 2, None, {}, "the first argument that is not null"),
    FunctionSpec("abs", "scalar", 1, 1, {}, "absolute value"),
    FunctionSpec("present", "scalar", 1, 1, {}, "true where the value is set (not null or empty)"),
    # Predictions from the newest fit of the purchase models (``orchestrator predict fit --save``).
    FunctionSpec(
        "p_alive",
        "events",
        1,
        1,
        {},
        "the probability the customer is still active, from the BG/NBD fit of these purchases and their"
        " purchase days (null for a customer who never bought)",
        example="p_alive(purchase) < 0.3",
    ),
    FunctionSpec(
        "expected_purchases",
        "events",
        1,
        1,
        {"horizon": "duration"},
        "the purchases the BG/NBD fit expects from the customer over the horizon (null if they never bought)",
        required=frozenset({"horizon"}),
        example="expected_purchases(purchase, 90d) < 0.5",
    ),
    FunctionSpec(
        "predicted_clv",
        "prop",
        1,
        1,
        {"horizon": "duration"},
        "the value the fits expect from the customer over the horizon: expected purchases times the"
        " Gamma-Gamma expected value of one (null if they never bought)",
        required=frozenset({"horizon"}),
        example="predicted_clv(purchase.amount, 365d) > 200",
    ),
]

#: The aggregates read from a fit of the purchase models, for every customer at once (``signals._clv``).
PREDICTIONS = frozenset({"p_alive", "expected_purchases", "predicted_clv"})

FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in [*_CORE, *builtins.SPECS]}


def is_property_aggregate(call: Call) -> bool:
    """``min``/``max`` aggregate a property when given exactly one ``event.property`` argument."""
    spec = FUNCTIONS[call.func]
    if spec.kind == "prop":
        return True
    return (
        call.func in ("min", "max")
        and len(call.args) == 1
        and isinstance(call.args[0], Name)
        and len(call.args[0].parts) == 2
    )


def _check_period(call: Call, period: Period) -> None:
    """A calendar period given to ``within=``: a known name, and no ``before=`` beside it."""
    if period.name not in calendar.PERIODS:
        close = difflib.get_close_matches(period.name, calendar.PERIODS, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]}?" if close else "e.g. within=14d"
        raise ExpressionError(
            f"within= takes a duration or a calendar period ({', '.join(calendar.PERIODS)}), not "
            f"{period.name!r}; {hint}",
            period.pos,
        )
    before = call.kwarg("before")
    if before is not None:
        previous = _PREVIOUS.get(period.name)
        hint = (
            f"for the one before {period.name} write within={previous}"
            if previous
            else "to shift a window, give a duration (within=7d, before=7d)"
        )
        raise ExpressionError(f"before= cannot be used with a calendar period: {hint}", before.pos)


_PREVIOUS = {
    "today": "yesterday",
    "this_week": "last_week",
    "this_month": "last_month",
    "this_year": "last_year",
}


def _is_property(node: Node) -> bool:
    return isinstance(node, Name) and len(node.parts) == 2


def _is_event(node: Node) -> bool:
    return isinstance(node, Name) and len(node.parts) == 1


def check_call(call: Call) -> None:
    """Check a call as written against the function table; raise ``ExpressionError`` at the culprit."""
    spec = FUNCTIONS.get(call.func)
    if spec is None or spec.internal:
        public = sorted(name for name, s in FUNCTIONS.items() if not s.internal)
        close = difflib.get_close_matches(call.func, public, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}()?" if close else f"known functions: {', '.join(public)}"
        raise ExpressionError(f"unknown function {call.func}(); {hint}", call.pos)
    example = f" e.g. {spec.example}" if spec.example else ""
    n = len(call.args)
    if spec.any_kwargs is not None and n:
        raise ExpressionError(f"{call.func}() takes only name=value arguments,{example}", call.args[0].pos)
    if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
        want = (
            f"{spec.min_args}"
            if spec.max_args == spec.min_args
            else f"at least {spec.min_args}"
            if spec.max_args is None
            else f"{spec.min_args} to {spec.max_args}"
        )
        raise ExpressionError(f"{call.func}() takes {want} argument(s), got {n}", call.pos)
    # min/max take a window only when they aggregate a property.
    windowed = spec.kind != "scalar" or is_property_aggregate(call)
    allowed = dict(spec.kwargs) if windowed else {}
    for key, value in call.kwargs:
        what = allowed.get(key, spec.any_kwargs)
        if what is None:
            hint = f"; it accepts {', '.join(sorted(allowed))}" if allowed else ""
            raise ExpressionError(f"{call.func}() has no argument {key}={hint}", value.pos)
        if isinstance(value, Period) and what == "window":
            _check_period(call, value)
        elif what in ("duration", "window") and not isinstance(value, Duration):
            raise ExpressionError(f"{key}= needs a duration such as 14d", value.pos)
        if what == "prop" and not _is_property(value):
            raise ExpressionError(f"{key}= takes one event property, e.g. {key}=refund.amount", value.pos)
        if what == "event" and not _is_event(value):
            raise ExpressionError(f"{key}= takes one event name, e.g. {key}=purchase", value.pos)
        if what == "events":
            for item in value.items if isinstance(value, ListLiteral) else (value,):
                if not _is_event(item):
                    raise ExpressionError(
                        f"{key}= takes an event name or a list of them, e.g. {key}=purchase or "
                        f"{key}=[purchase, add_to_cart]",
                        item.pos,
                    )
        if what == "name" and not _is_event(value):
            raise ExpressionError(
                f"{key}= takes the name of an event property, e.g. {key}=session_id", value.pos
            )
        if what == "condition":
            _check_where(call, value)
    for key in sorted(spec.required - {key for key, _ in call.kwargs}):
        raise ExpressionError(f"{call.func}() needs {key}=,{example}", call.pos)
    if call.func == "sequence" and call.kwarg("for") is not None and call.kwarg("not_followed_by") is None:
        index = [key for key, _ in call.kwargs].index("for")
        raise ExpressionError(
            "for= says how long after the last step the not_followed_by= event must not come: give "
            f"not_followed_by= too,{example}",
            call.key_pos(index),
        )
    kind = spec.arg_kind
    if kind == "events":
        for arg in call.args:
            if not (isinstance(arg, Name) and len(arg.parts) == 1):
                if call.func == "sequence":
                    what = f" ({arg.dotted} is an event property)" if isinstance(arg, Name) else ""
                    raise ExpressionError(f"sequence() takes event names{what},{example}", arg.pos)
                raise ExpressionError(f"{call.func}() takes event names, e.g. {call.func}(purchase)", arg.pos)
        by = call.kwarg("by") if spec.kwargs.get("by") == "prop" else None
        events = {arg.parts[0] for arg in call.args if isinstance(arg, Name)}
        if isinstance(by, Name) and by.parts[0] not in events:
            raise ExpressionError(f"by= names a property of {by.parts[0]}, which is not listed", by.pos)
    elif kind == "prop" or (spec.kind == "scalar" and is_property_aggregate(call)):
        arg = call.args[0]
        if not _is_property(arg):
            raise ExpressionError(
                f"{call.func}() takes one event property, e.g. {call.func}(purchase.amount)", arg.pos
            )


# ---------------------------------------------------------------------------------------------- where=

# What cannot be a condition on an event, as written: a literal, a list, arithmetic.
_NOT_CONDITIONS = (Number, Duration, String, Null, ListLiteral)


def filtered_events(call: Call) -> tuple[str, ...]:
    """The events an aggregate aggregates (and its ``where=`` filters): the listed event names, or the
    event of its property (``sum(purchase.amount)`` gives ``purchase``)."""
    spec = FUNCTIONS[call.func]
    if spec.arg_kind == "events":
        return tuple(dict.fromkeys(a.parts[0] for a in call.args if isinstance(a, Name)))
    if call.args and _is_property(call.args[0]) and (spec.arg_kind == "prop" or is_property_aggregate(call)):
        arg = call.args[0]
        assert isinstance(arg, Name)
        return (arg.parts[0],)
    return ()


def _children(node: Node) -> list[Node]:
    if isinstance(node, Call):
        return [*node.args, *(v for _, v in node.kwargs)]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, Binary):
        return [node.left, node.right]
    if isinstance(node, ListLiteral):
        return list(node.items)
    return []


def _is_aggregate_call(node: Node) -> bool:
    return isinstance(node, Call) and (FUNCTIONS[node.func].kind == "events" or is_property_aggregate(node))


def _reads_event(node: Node) -> bool:
    """Whether ``node`` reads a property of the filtered event itself (an ``event.property`` outside any
    aggregate: inside one, names belong to that aggregate)."""
    if isinstance(node, Name):
        return len(node.parts) >= 2
    if _is_aggregate_call(node):
        return False
    return any(_reads_event(child) for child in _children(node))


def _reads_data(node: Node) -> bool:
    if isinstance(node, Name | Call):
        return True
    return any(_reads_data(child) for child in _children(node))


def where_split(where: Node) -> tuple[list[Name], list[Node]]:
    """A ``where=`` condition's two kinds of inputs: the event properties it reads (``purchase.category``,
    one value per aggregated event) and its largest parts that read only the customer's own values
    (metrics, attributes, aggregates: ``top_value(product_view.category, within=14d)``), one value per
    customer, compared event by event with that customer's events. A filter without customer parts is
    *static*: each event's verdict depends on the event alone."""
    props: list[Name] = []
    parts: list[Node] = []
    stack = [where]
    while stack:
        node = stack.pop()
        if not _reads_event(node):
            if _reads_data(node):
                parts.append(node)
        elif isinstance(node, Name):
            props.append(node)
        else:
            stack.extend(reversed(_children(node)))
    return props, list(dict.fromkeys(parts))


def where_parts(call: Call) -> list[Node]:
    """The customer-level parts of an aggregate's ``where=`` (none: no filter, or a static one)."""
    where = call.kwarg("where")
    return [] if where is None else where_split(where)[1]


def where_properties(call: Call) -> list[Name]:
    """The event properties an aggregate's ``where=`` reads, as written (``purchase.category``)."""
    where = call.kwarg("where")
    return [] if where is None else where_split(where)[0]


_NUMERIC_OPS = ("<", "<=", ">", ">=", "+", "-", "*", "/")


def where_numbers(call: Call) -> set[str]:
    """The properties an aggregate's ``where=`` reads only as numbers (in arithmetic, ``abs`` or an
    ordering comparison: ``purchase.amount > 50``); the log may keep those as numbers alone."""
    where = call.kwarg("where")
    if where is None:
        return set()
    numeric: set[str] = set()
    other: set[str] = set()
    stack: list[tuple[Node, bool]] = [(where, False)]
    while stack:
        node, as_number = stack.pop()
        if isinstance(node, Name) and len(node.parts) == 2:
            (numeric if as_number else other).add(node.parts[1])
        elif not _is_aggregate_call(node):
            inner = (isinstance(node, Binary) and node.op in _NUMERIC_OPS) or (
                isinstance(node, Unary) and node.op == "-"
            )
            inner = inner or (isinstance(node, Call) and node.func == "abs")
            stack.extend((child, inner) for child in _children(node))
    return numeric - other


def _check_where(call: Call, where: Node) -> None:
    events = filtered_events(call)
    listed = ", ".join(events) if events else "none are listed"
    example = f'where={events[0] if events else "purchase"}.category == "shoes"'
    if (
        isinstance(where, _NOT_CONDITIONS)
        or (isinstance(where, Binary) and where.op in ("+", "-", "*", "/"))
        or (isinstance(where, Unary) and where.op == "-")
        or _is_aggregate_call(where)
    ):
        raise ExpressionError(
            f"where= takes a condition on each event {call.func}() aggregates, e.g. {example}", where.pos
        )
    props, _ = where_split(where)
    for name in props:
        if len(name.parts) != 2:
            raise ExpressionError(
                f"{name.dotted}: an event property has one dot, e.g. {events[0] if events else 'purchase'}"
                f".{name.parts[1]}",
                name.pos,
            )
        if name.parts[0] not in events:
            raise ExpressionError(
                f"where= reads properties of the events it filters: {listed}; {name.dotted} is not one of "
                f"them (read another event through an aggregate, e.g. top_value({name.dotted}, within=30d))",
                name.pos,
            )
    if not props:
        raise ExpressionError(
            f"where= must read a property of the events it filters ({listed}), e.g. {example}; a condition "
            "on the customer alone goes outside the aggregate",
            where.pos,
        )


# ---------------------------------------------------------------------------------------------- walking


def walk(node: Node) -> list[Node]:
    """Every node of the tree, parents before children."""
    out: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        if isinstance(current, Call):
            stack.extend(reversed([*current.args, *(v for _, v in current.kwargs)]))
        elif isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Binary):
            stack.extend([current.right, current.left])
        elif isinstance(current, ListLiteral):
            stack.extend(reversed(current.items))
    return out


def free_names(node: Node) -> list[Name]:
    """Names read as metrics or attributes (not event names or properties inside aggregates). A calendar
    period (``within=this_week``) reads the customer's ``timezone`` attribute, so it names that."""
    names: list[Name] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Name):
            names.append(current)
        elif isinstance(current, Period):
            names.append(Name(current.pos, (calendar.ZONE_ATTRIBUTE,)))  # periods are the customer's own
        elif isinstance(current, Call):
            if FUNCTIONS[current.func].kind != "events" and not is_property_aggregate(current):
                stack.extend(current.args)
            else:
                stack.extend(where_parts(current))  # a filter reads the customer's own values too
            stack.extend(value for _, value in current.kwargs if isinstance(value, Period))
        elif isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Binary):
            stack.extend([current.left, current.right])
        elif isinstance(current, ListLiteral):
            stack.extend(current.items)
    return names


def aggregates(node: Node) -> list[Call]:
    """The behaviour aggregates (calls over events) in the tree."""
    return [
        n
        for n in walk(node)
        if isinstance(n, Call) and (FUNCTIONS[n.func].kind == "events" or is_property_aggregate(n))
    ]


def period_of(call: Call) -> Period | None:
    """The calendar period an aggregate's ``within=`` names, if it names one."""
    within = call.kwarg("within")
    return within if isinstance(within, Period) else None


def event_properties(node: Node) -> set[str]:
    """Event property names read by the aggregates in the tree (``purchase.amount`` gives ``amount``)."""
    props: set[str] = set()
    for call in aggregates(node):
        if call.args and isinstance(call.args[0], Name) and len(call.args[0].parts) == 2:
            props.add(call.args[0].parts[1])
        grouping = group_property(call)
        if grouping is not None:
            props.add(grouping)
        props.update(name.parts[1] for name in where_properties(call))
    return props


SESSION_PROPERTY = "session_id"


def group_property(call: Call) -> str | None:
    """The event property an aggregate groups its events by (``by=refill.product`` gives ``product``;
    ``sessions()`` groups by its bare ``by=`` name, ``session_id`` by default)."""
    by = call.kwarg("by")
    if call.func == "sessions":
        return by.parts[0] if isinstance(by, Name) else SESSION_PROPERTY
    return by.parts[1] if isinstance(by, Name) and len(by.parts) == 2 else None


def kwarg_events(call: Call, key: str | None = None) -> list[Name]:
    """The event names a call takes as keyword arguments (``not_followed_by=purchase``,
    ``without=[a, b]``), all of them or those of ``key``."""
    spec = FUNCTIONS[call.func]
    names: list[Name] = []
    for name, value in call.kwargs:
        if spec.kwargs.get(name) not in ("event", "events") or key not in (None, name):
            continue
        for item in value.items if isinstance(value, ListLiteral) else (value,):
            if isinstance(item, Name):
                names.append(item)
    return names


def event_names(node: Node) -> set[str]:
    names: set[str] = set()
    for call in aggregates(node):
        for arg in [*call.args, *kwarg_events(call)]:
            if isinstance(arg, Name):
                names.add(arg.parts[0])
    return names
