"""The expression tree: its nodes, its error type and the description of a function.

Kept apart from the parser (``signals._lang``) so that the built-in metrics (``signals._builtins``) can
build trees without importing the parser that uses them. Nodes compare without their positions, so two
equal aggregates written in different places are one cache entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.errors import InvalidInputError


class ExpressionError(InvalidInputError, ValueError):
    """A mistake in an expression, at ``offset`` (0-based) in its text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Node:
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class Duration(Node):
    """A duration literal such as ``30d``; its value is in seconds."""

    seconds: float
    text: str = field(compare=False)


@dataclass(frozen=True)
class Period(Node):
    """A calendar period given to ``within=`` (``this_week``, ``last_month``, ...), read in each
    customer's own time zone (see ``signals._calendar``)."""

    name: str


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True)
class Null(Node):
    pass


@dataclass(frozen=True)
class Name(Node):
    """A bare or dotted name: a metric or attribute (``tier``), or an event property (``purchase.amount``)."""

    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class ListLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...]
    # Where each keyword's name starts in the text (same order as kwargs); for messages only.
    kwarg_pos: tuple[int, ...] = field(default=(), compare=False)

    def kwarg(self, name: str) -> Node | None:
        for key, value in self.kwargs:
            if key == name:
                return value
        return None

    def key_pos(self, index: int) -> int:
        """Where the name of the ``index``-th keyword argument starts (its value's place if unknown)."""
        if index < len(self.kwarg_pos):
            return self.kwarg_pos[index]
        return self.kwargs[index][1].pos


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / == != < <= > >= and or in
    left: Node
    right: Node


@dataclass(frozen=True)
class FunctionSpec:
    """What a function accepts and what it is.

    ``kind`` says what the function is: ``events`` and ``prop`` are aggregates over events (positional
    arguments are event names, or one ``event.property``); ``scalar`` works on values, customer by
    customer or over the population; ``shorthand`` is a built-in metric that the parser replaces by its
    formula in the other kinds (see ``signals._builtins``), so it never reaches an evaluator.

    ``args`` says what a shorthand's positional arguments are (``events``, ``prop`` or ``values``).
    ``kwargs`` maps each keyword to what it takes: ``duration`` (``14d``), ``window`` (a duration or a
    calendar period such as ``this_week``), ``prop`` (``refund.amount``), ``event`` (one event name),
    ``events`` (an event name or a list of them), ``name`` (a bare property name, ``session_id``),
    ``pair`` (a list of two numbers), ``weight`` (a number from 0 to 1) or ``condition`` (``where=``: a
    condition on each aggregated event, see ``signals._lang.where_split``);
    ``any_kwargs`` lets any name through, taking that kind. ``internal`` functions appear only in
    expanded formulas: a user who types one gets "unknown function".
    """

    name: str
    kind: str
    min_args: int
    max_args: int | None
    kwargs: Mapping[str, str]
    doc: str
    args: str = ""
    required: frozenset[str] = frozenset()
    any_kwargs: str | None = None
    internal: bool = False
    example: str = ""

    @property
    def arg_kind(self) -> str:
        """What the positional arguments are: ``events``, ``prop`` or ``values``."""
        if self.kind == "shorthand":
            return self.args
        return self.kind if self.kind in ("events", "prop") else "values"
