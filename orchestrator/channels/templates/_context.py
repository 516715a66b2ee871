"""The check of a template context: plain data of bounded size, before any template sees it.

Contract: ``checked_context`` returns a shallow copy of the context after checking that its keys are
strings, that every value is plain data of exact types (dict, list, tuple, str, int, float, bool, None,
datetime, date, and ``Markup`` for text the caller escaped) no deeper than ``MAX_DEPTH``, with plain keys,
and that its size as ``measure`` counts it is within the limit; otherwise it raises ``TemplateError`` with
``kind="context"`` naming the offending value by its path. ``PreparedContext`` is a context already
checked under one renderer's limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from markupsafe import Markup

from orchestrator.channels.templates._errors import TemplateError
from orchestrator.channels.templates._limits import MAX_DEPTH, Limits
from orchestrator.channels.templates._sizes import measure
from orchestrator.errors import InvalidInputError

_PLAIN_TYPES: frozenset[type] = frozenset(
    {dict, list, tuple, str, int, float, bool, type(None), datetime, date, Markup}
)
_PLAIN_KEYS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_PLAIN_NAMES = "dict, list, tuple, str, int, float, bool, None, datetime, date"


class _NotPlain(InvalidInputError):
    pass


def _plain_size(value: Any, depth: int) -> int:
    """The size of plain data ``value`` as ``measure`` counts it; ``_NotPlain`` for anything else.

    The fast path of the context check: strings and numbers inside containers are handled inline (one
    function call per container, not per value); recursion is bounded by MAX_DEPTH. The slow walk in
    ``_checked_context`` explains a refusal.
    """
    kind = type(value)
    if kind is str or kind is Markup:
        return len(value)
    if depth > MAX_DEPTH:
        raise _NotPlain
    if kind is int:
        return value.bit_length() * 3 // 10 + 2
    if kind is float:
        return 24
    if kind is bool or value is None:
        return 5
    if kind is dict:
        size = 2 + 4 * len(value)
        for key, item in value.items():
            if type(key) is str:
                size += len(key)
            elif type(key) in _PLAIN_KEYS:
                size += measure(key, 0)
            else:
                raise _NotPlain
            # The scalars of a record inline, counted as the recursive call would count them (which,
            # past MAX_DEPTH, refuses all but strings).
            kind = type(item)
            if kind is str:
                size += len(item)
            elif depth >= MAX_DEPTH:
                size += _plain_size(item, depth + 1)
            elif kind is bool or item is None or kind is float:
                size += 24 if kind is float else 5
            elif kind is int:
                size += item.bit_length() * 3 // 10 + 2
            else:
                size += _plain_size(item, depth + 1)
        return size
    if kind is list or kind is tuple:
        size = 2 + 2 * len(value)
        for item in value:
            size += len(item) if type(item) is str else _plain_size(item, depth + 1)
        return size
    if kind is datetime or kind is date:
        return 32
    raise _NotPlain


@dataclass(frozen=True, eq=False)
class PreparedContext:
    """A template context already checked by ``TemplateRenderer.prepare`` (under these limits)."""

    data: dict[str, Any]
    limits: Limits


def _spell(path: tuple[Any, ...]) -> str:
    """``('customer', 'orders', 0)`` -> ``customer['orders'][0]``."""
    return str(path[0]) + "".join(f"[{part!r}]" for part in path[1:])


def checked_context(
    context: Mapping[str, Any] | PreparedContext, limit: int, template: str
) -> dict[str, Any]:
    """A copy of ``context`` after checking it is plain data of at most ``limit`` characters (else
    ``TemplateError``); ``template`` names the template in the error."""
    if isinstance(context, PreparedContext):
        context = context.data
    if not isinstance(context, Mapping):
        raise TemplateError(
            f"the context must be a mapping, not {type(context).__name__}", template, kind="context"
        )
    data = dict(context)
    if all(type(key) is str for key in data):
        try:
            if _plain_size(data, 0) <= limit:
                return data
        except _NotPlain:
            pass
    # The fast check failed: walk again, slowly, to say exactly what and where.
    # One walk checks the types and adds up the size (as ``measure`` counts it); the path of a value
    # is kept as its keys and only spelled out for an error message.
    stack: list[tuple[Any, tuple[Any, ...]]] = []
    for key, value in data.items():
        if type(key) is not str:
            raise TemplateError(f"context key {key!r} is not a string", template, kind="context")
        stack.append((value, (key,)))
    size = 0
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind is str or kind is Markup:
            size += len(value)
        elif len(path) > MAX_DEPTH:
            raise TemplateError(
                f"context value {_spell(path)} is nested deeper than {MAX_DEPTH} levels",
                template,
                kind="context",
            )
        # Exact types, not isinstance: a dict subclass (defaultdict) or a str enum carries callables.
        # Markup (a str already escaped by the caller) is the one subclass let through.
        elif kind not in _PLAIN_TYPES:
            raise TemplateError(
                f"context value {_spell(path)} is a {kind.__name__}, not plain data ({_PLAIN_NAMES})",
                template,
                kind="context",
            )
        elif kind is dict:
            size += 2 + 4 * len(value)
            for key, item in value.items():
                if type(key) not in _PLAIN_KEYS:
                    raise TemplateError(
                        f"context key {key!r} in {_spell(path)} is not plain data",
                        template,
                        kind="context",
                    )
                size += measure(key, limit)
                stack.append((item, (*path, key)))
        elif kind is list or kind is tuple:
            size += 2 + 2 * len(value)
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        else:
            size += measure(value, limit)
        if size > limit:
            raise TemplateError(
                f"the context is larger than the limit of {limit} characters", template, kind="context"
            )
    return data
