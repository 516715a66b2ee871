"""Worst-case sizes of template values and of the results of amplifying operations, known before they run.

Contract: ``measure`` is roughly the characters a value prints as, stopping once past the limit it is given
(and raising ``LimitError`` beyond ``MAX_DEPTH`` levels); it never stringifies. ``printf_size``,
``format_size``, ``method_size`` and ``FILTER_ESTIMATORS`` give an upper bound on the size of ``%``,
``str.format``, amplifying ``str``/``bytes`` methods and builtin filters from their arguments, so the sandbox
can refuse them before doing the work (they raise ``SecurityError`` for arguments never allowed).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Collection, Mapping
from functools import lru_cache
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Undefined
from jinja2.utils import Namespace

from orchestrator.channels.templates._errors import LimitError
from orchestrator.channels.templates._limits import MAX_DEPTH

# -- measuring values ---------------------------------------------------------------------------------


def measure(value: Any, limit: int) -> int:
    """Roughly the characters ``value`` takes when printed; stops counting once past ``limit``.

    Walks containers iteratively (no recursion to exhaust) and never stringifies anything, so measuring is
    cheap even for the values it refuses. Raises ``LimitError`` for values nested deeper than MAX_DEPTH.
    """
    if isinstance(value, str):  # the common case by far (every printed piece of text)
        return len(value)
    kind = type(value)
    if kind is float:
        return 24
    if (kind is tuple or kind is list) and all(type(item) in _SCALAR_SIZES for item in value):
        # A few numbers and strings (the arguments of a filter or a format): no walk needed.
        return 2 + 2 * len(value) + sum(_SCALAR_SIZES[type(item)](item) for item in value)
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise LimitError(f"value nested deeper than {MAX_DEPTH} levels")
        # Undefined first: StrictUndefined raises on len() and iteration.
        if isinstance(item, Undefined):
            continue
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 2  # decimal digits (log10(2) ~ 0.301) and a sign
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, Namespace):
            # A namespace prints its attributes; look inside rather than trusting a short repr.
            stack.append((object.__getattribute__(item, "_Namespace__attrs"), depth + 1))
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total > limit:
                return total
            for key, val in item.items():
                stack.append((key, depth + 1))
                stack.append((val, depth + 1))
        elif isinstance(item, Collection):
            # list, tuple, set, range, dict views: everything sized that prints its items.
            total += 2 + 2 * len(item)
            if total > limit:
                return total
            stack.extend((element, depth + 1) for element in item)
        else:
            # Macros, loop contexts, cyclers, generators, dates: short reprs. Generators are single-use, so
            # consuming one costs no more than the bounded values it was built from.
            total += 32
        if total > limit:
            return total
    return total


_SCALAR_SIZES: dict[type, Callable[[Any], int]] = {
    str: len,
    float: lambda value: 24,
    int: lambda value: value.bit_length() * 3 // 10 + 2,
    bool: lambda value: 5,
    type(None): lambda value: 5,
}


def _int_arg(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _digits(text: str) -> int:
    # Python refuses int() of more than 4300 digits; anything over 9 digits is far past every limit anyway.
    return int(text) if len(text) <= 9 else 10**9


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_SPEC_NUMBER = re.compile(r"\d+")


def printf_size(fmt: str | bytes, args: Any, limit: int) -> int:
    """Worst-case length of ``fmt % args``: the format, the arguments and every field width/precision."""
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    fixed, stars = _printf_plan(text)
    total = fixed + measure(args, limit)
    if stars:
        ints = [abs(a) for a in args if isinstance(a, int)] if isinstance(args, tuple) else []
        total += stars * max(ints, default=0)
    return total


@lru_cache(maxsize=1024)  # the same few formats ('%.2f') run for every customer
def _printf_plan(text: str) -> tuple[int, int]:
    """(length of the format plus every explicit width and precision, number of ``*`` fields)."""
    fixed, stars = len(text), 0
    for match in _PRINTF_SPEC.finditer(text):
        for group in match.groups():
            if group == "*":
                stars += 1
            elif group:
                fixed += _digits(group)
    return fixed, stars


def format_size(fmt: str, args: Any, kwargs: Any, limit: int) -> int:
    """Worst-case length of ``fmt.format(*args, **kwargs)``; nested fields in a spec are refused."""
    total = len(fmt) + measure(args, limit) + measure(kwargs, limit)
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is None or not spec:
            continue
        if "{" in spec:
            # '{:{}}'.format(x, 10**9) takes the width from an argument; rare in messages, easy to abuse.
            raise SecurityError("nested replacement fields in format specs are not allowed")
        total += sum(_digits(number) for number in _SPEC_NUMBER.findall(spec))
    return total


# -- amplifying str/bytes/int methods -----------------------------------------------------------------


def method_size(
    obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int
) -> tuple[int | None, tuple[Any, ...]]:
    """Worst-case result size of calling a bound str/bytes method that can amplify, else ``None``.

    Returns the arguments to call with: ``join`` gets its iterable as a list, measured before joining.
    """
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, int) and name == "to_bytes":
        raise SecurityError("int.to_bytes() is not available in templates")
    if not isinstance(owner, (str, bytes)):
        return None, args
    text: Any = owner  # str or bytes; the arguments are checked to be of the same type where it matters
    size = len(text)
    params = list(args) + list(kwargs.values())
    if name in ("center", "ljust", "rjust", "zfill"):
        return size + max(_int_arg(params[0]) if params else 0, 0), args
    if name == "expandtabs":
        tabsize = _int_arg(params[0]) if params else 8
        tab = "\t" if isinstance(text, str) else b"\t"
        return size + text.count(tab) * max(tabsize, 0), args
    if name == "replace" and len(params) >= 2 and type(params[0]) is type(params[1]) is type(text):
        old, new = params[0], params[1]
        hits = size + 1 if not old else text.count(old)
        if len(params) >= 3 and isinstance(params[2], int) and params[2] >= 0:
            hits = min(hits, params[2])
        return size + hits * max(len(new) - len(old), 0), args
    if name == "join" and args:
        items = list(args[0])
        return measure(items, limit) + size * len(items), (items, *args[1:])
    if name == "translate" and params and isinstance(params[0], Mapping):
        longest = max((len(v) for v in params[0].values() if isinstance(v, (str, bytes))), default=1)
        return size * max(longest, 1), args
    return None, args


# -- filter estimators --------------------------------------------------------------------------------
# Each gets the bound arguments of a builtin filter (it may replace a lazy iterable by a list) and the
# limit, and returns the worst-case size of the result, so the filter is refused before it runs.

Estimator = Callable[[dict[str, Any], int], int]


def _est_center(a: dict[str, Any], limit: int) -> int:
    return measure(a["value"], limit) + max(_int_arg(a["width"]), 0)


def _est_indent(a: dict[str, Any], limit: int) -> int:
    s, width = a["s"], a["width"]
    lines = s.count("\n") + 2 if isinstance(s, str) else 2
    prefix = len(width) if isinstance(width, str) else max(_int_arg(width), 0)
    return measure(s, limit) + lines * prefix


def _est_replace(a: dict[str, Any], limit: int) -> int:
    size = measure(a["s"], limit)
    if size > limit:
        return size
    text, old, new = str(a["s"]), str(a["old"]), str(a["new"])
    hits = len(text) + 1 if not old else text.count(old)
    count = a["count"]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    growth = len(new) * (6 if a["eval_ctx"].autoescape else 1) - len(old)  # escaping grows up to 6x
    return size + hits * max(growth, 0)


def _est_join(a: dict[str, Any], limit: int) -> int:
    items = list(a["value"])
    a["value"] = items
    measured: list[Any] = items
    if a["attribute"] is not None:
        measured = [make_attrgetter(a["eval_ctx"].environment, a["attribute"])(item) for item in items]
    escape_factor = 6 if a["eval_ctx"].autoescape else 1
    return measure(measured, limit) * escape_factor + len(str(a["d"])) * len(items)


def _est_batch(a: dict[str, Any], limit: int) -> int:
    fill = 0 if a["fill_with"] is None else max(_int_arg(a["linecount"]), 0)
    return measure(a["value"], limit) + 2 * fill + max(_int_arg(a["linecount"]), 0)


def _est_slice(a: dict[str, Any], limit: int) -> int:
    return measure(a["value"], limit) + 4 * max(_int_arg(a["slices"]), 0)


def _est_format(a: dict[str, Any], limit: int) -> int:
    value = a["value"]
    return printf_size(str(value), a["kwargs"] or tuple(a["args"]), limit)


def _est_wordwrap(a: dict[str, Any], limit: int) -> int:
    s = str(a["s"])
    wrap = a["wrapstring"] if a["wrapstring"] is not None else a["environment"].newline_sequence
    lines = len(s) // max(_int_arg(a["width"]), 1) + s.count(" ") + s.count("\n") + 1
    return len(s) + lines * len(str(wrap))


def _est_urlize(a: dict[str, Any], limit: int) -> int:
    text = str(a["value"])
    words = text.count(" ") + text.count("\n") + text.count("\t") + 1
    extra = len(str(a["target"] or "")) + len(str(a["rel"] or ""))
    return 2 * len(text) * 6 + words * (128 + extra)


def _est_tojson(a: dict[str, Any], limit: int) -> int:
    indent = a["indent"]
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 8):
        raise SecurityError("tojson indent must be an integer from 0 to 8")
    # JSON escaping for HTML turns '<' into '\u003c' (6x); indentation adds at most indent * depth a line.
    return measure(a["value"], limit) * 6 * (1 + (indent or 0))


def _est_pprint(a: dict[str, Any], limit: int) -> int:
    return measure(a["value"], limit) * (MAX_DEPTH + 2)


def _est_sum(a: dict[str, Any], limit: int) -> int:
    # sum() over lists with a list start is quadratic; sums in messages are of numbers.
    if not isinstance(a["start"], (int, float)):
        raise SecurityError("sum() start must be a number")
    return 0


def _est_escape(a: dict[str, Any], limit: int) -> int:
    return 6 * measure(a.get("value", a.get("s")), limit)


def _est_urlencode(a: dict[str, Any], limit: int) -> int:
    return 12 * measure(a["value"], limit)


FILTER_ESTIMATORS: dict[str, Estimator] = {
    "center": _est_center,
    "indent": _est_indent,
    "replace": _est_replace,
    "join": _est_join,
    "batch": _est_batch,
    "slice": _est_slice,
    "format": _est_format,
    "wordwrap": _est_wordwrap,
    "urlize": _est_urlize,
    "tojson": _est_tojson,
    "pprint": _est_pprint,
    "sum": _est_sum,
    "escape": _est_escape,
    "e": _est_escape,
    "forceescape": _est_escape,
    "urlencode": _est_urlencode,
}
