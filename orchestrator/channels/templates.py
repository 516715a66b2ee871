"""Sandboxed message templates: rendering that nothing in a template can escape from.

Templates are written by people who are not engineers and are rendered once per customer, so a template
must not be able to reach Python internals, the file system or the network, must not mutate the data it
is given, and must not be able to exhaust memory or time. The layers, from outside in:

- the context is checked before rendering: plain data only (dict, list, tuple, str, int, float, bool, None,
  datetime, date), so no ORM object, callable or module ever reaches a template;
- Jinja's ``ImmutableSandboxedEnvironment`` refuses private and internal attributes (``__class__``,
  ``__globals__``...), unsafe ``str.format`` fields and calls to mutating methods (``list.append``,
  ``dict.update``), with ``StrictUndefined`` so a missing variable is an error, not an empty string;
- the loader only serves files under the template root (no ``..``, no absolute names, no symlinks out);
- resource bounds: every value a template builds is measured (roughly, the characters it would print) and
  refused above ``max_value_chars``, *before* the work is done for the operations that amplify (``*``,
  ``**``, ``%``, ``str.format``, ``center``/``ljust``/``replace``/``join``... and the filters that take a
  size); ``range()`` is capped at ``max_range``; loop iterations and calls (macros, methods) are counted
  against ``max_iterations``; the characters printed (including into ``{% set %}`` blocks and macros) are
  counted; the output is streamed and stopped at ``max_output_chars``; and a deadline of ``timeout_s`` is
  checked at every loop iteration, call, operator and printed value.

The bounds are enforced by rewriting the parsed template (each ``for`` iterable, printed value, ``~``
concatenation and literal passes through a guard), so they hold for included and imported templates too.
Every failure surfaces as one ``TemplateError`` carrying the template name and line.
"""

from __future__ import annotations

import inspect
import math
import re
import string
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from functools import lru_cache, update_wrapper, wraps
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, nodes, pass_context, select_autoescape
from jinja2.environment import Environment
from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplatesNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.filters import make_attrgetter
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, internalcode
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

__all__ = ["PreparedContext", "TemplateError", "TemplateRenderer"]

# Deeper values are refused: message data is never that deep, and depth multiplies the cost of printing.
MAX_DEPTH = 32
# Integers beyond this many bits are refused: they cannot be printed (Python refuses str() of more than
# 4300 digits) and multiplying them is the only way left to spend time in one operation.
MAX_INT_BITS = 16_384


class TemplateError(Exception):
    """Any failure to load, check or render a template.

    ``template`` is the template where it happened (an included file's name when it happened there, the
    ``name`` given to ``render_string`` for inline templates), ``line`` the 1-based line when known, and
    ``kind`` one of ``syntax``, ``undefined``, ``security``, ``limit``, ``not_found``, ``context``,
    ``runtime``.
    """

    def __init__(
        self, message: str, template: str | None = None, line: int | None = None, *, kind: str = "runtime"
    ) -> None:
        super().__init__(message, template, line)
        self.message = message
        self.template = template
        self.line = line
        self.kind = kind

    def __str__(self) -> str:
        where = self.template or "<template>"
        if self.line is not None:
            where = f"{where}, line {self.line}"
        return f"{where}: {self.message}"


class _LimitError(SecurityError):
    """A resource bound was hit (size, range, iterations, time)."""


# -- measuring values ---------------------------------------------------------------------------------


def _measure(value: Any, limit: int) -> int:
    """Roughly the characters ``value`` takes when printed; stops counting once past ``limit``.

    Walks containers iteratively (no recursion to exhaust) and never stringifies anything, so measuring is
    cheap even for the values it refuses. Raises ``_LimitError`` for values nested deeper than MAX_DEPTH.
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
            raise _LimitError(f"value nested deeper than {MAX_DEPTH} levels")
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


def _printf_size(fmt: str | bytes, args: Any, limit: int) -> int:
    """Worst-case length of ``fmt % args``: the format, the arguments and every field width/precision."""
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    fixed, stars = _printf_plan(text)
    total = fixed + _measure(args, limit)
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


def _format_size(fmt: str, args: Any, kwargs: Any, limit: int) -> int:
    """Worst-case length of ``fmt.format(*args, **kwargs)``; nested fields in a spec are refused."""
    total = len(fmt) + _measure(args, limit) + _measure(kwargs, limit)
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is None or not spec:
            continue
        if "{" in spec:
            # '{:{}}'.format(x, 10**9) takes the width from an argument; rare in messages, easy to abuse.
            raise SecurityError("nested replacement fields in format specs are not allowed")
        total += sum(_digits(number) for number in _SPEC_NUMBER.findall(spec))
    return total


# -- amplifying str/bytes/int methods -----------------------------------------------------------------


def _method_size(
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
        return _measure(items, limit) + size * len(items), (items, *args[1:])
    if name == "translate" and params and isinstance(params[0], Mapping):
        longest = max((len(v) for v in params[0].values() if isinstance(v, (str, bytes))), default=1)
        return size * max(longest, 1), args
    return None, args


# -- filter estimators --------------------------------------------------------------------------------
# Each gets the bound arguments of a builtin filter (it may replace a lazy iterable by a list) and the
# limit, and returns the worst-case size of the result, so the filter is refused before it runs.

_Estimator = Callable[[dict[str, Any], int], int]


def _est_center(a: dict[str, Any], limit: int) -> int:
    return _measure(a["value"], limit) + max(_int_arg(a["width"]), 0)


def _est_indent(a: dict[str, Any], limit: int) -> int:
    s, width = a["s"], a["width"]
    lines = s.count("\n") + 2 if isinstance(s, str) else 2
    prefix = len(width) if isinstance(width, str) else max(_int_arg(width), 0)
    return _measure(s, limit) + lines * prefix


def _est_replace(a: dict[str, Any], limit: int) -> int:
    size = _measure(a["s"], limit)
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
    return _measure(measured, limit) * escape_factor + len(str(a["d"])) * len(items)


def _est_batch(a: dict[str, Any], limit: int) -> int:
    fill = 0 if a["fill_with"] is None else max(_int_arg(a["linecount"]), 0)
    return _measure(a["value"], limit) + 2 * fill + max(_int_arg(a["linecount"]), 0)


def _est_slice(a: dict[str, Any], limit: int) -> int:
    return _measure(a["value"], limit) + 4 * max(_int_arg(a["slices"]), 0)


def _est_format(a: dict[str, Any], limit: int) -> int:
    value = a["value"]
    return _printf_size(str(value), a["kwargs"] or tuple(a["args"]), limit)


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
    return _measure(a["value"], limit) * 6 * (1 + (indent or 0))


def _est_pprint(a: dict[str, Any], limit: int) -> int:
    return _measure(a["value"], limit) * (MAX_DEPTH + 2)


def _est_sum(a: dict[str, Any], limit: int) -> int:
    # sum() over lists with a list start is quadratic; sums in messages are of numbers.
    if not isinstance(a["start"], (int, float)):
        raise SecurityError("sum() start must be a number")
    return 0


def _est_escape(a: dict[str, Any], limit: int) -> int:
    return 6 * _measure(a.get("value", a.get("s")), limit)


def _est_urlencode(a: dict[str, Any], limit: int) -> int:
    return 12 * _measure(a["value"], limit)


_FILTER_ESTIMATORS: dict[str, _Estimator] = {
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


# Filters that turn their input into text: their arguments must be data (see ``_require_data``).
_STRINGIFYING_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "join", "lower", "pprint",
        "replace", "safe", "string", "striptags", "title", "trim", "truncate", "upper", "urlencode",
        "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip


# -- per-render budget --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    max_output_chars: int
    max_value_chars: int
    max_range: int
    max_iterations: int
    timeout_s: float
    max_call_depth: int


class _Budget:
    """The counters of one render. Lives in a context variable so renders in threads stay apart."""

    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_s
        self.iterations = 0
        self.printed = 0
        self.depth = 0
        self.countdown = 1

    def check_time(self) -> None:
        # Reading the clock costs more than most guarded operations; every 16th check is plenty, since no
        # single operation between two checks can run long (each is bounded by the size checks).
        self.countdown -= 1
        if self.countdown > 0:
            return
        self.countdown = 16
        if time.monotonic() > self.deadline:
            raise _LimitError(f"rendering took longer than {self.limits.timeout_s:g} s")

    def step(self) -> None:
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise _LimitError(f"more than {self.limits.max_iterations} loop iterations and calls")
        self.check_time()

    def emit(self, size: int) -> None:
        self.printed += size
        if self.printed > self.limits.max_value_chars:
            raise _LimitError(
                f"template printed more than {self.limits.max_value_chars} characters "
                "(counting set blocks and macros)"
            )
        self.check_time()


_BUDGET: ContextVar[_Budget | None] = ContextVar("orchestrator_template_budget", default=None)

# Names of the guard filters the AST rewrite inserts (not meant for template authors, harmless if used).
_ITER_GUARD = "__guard_iter"
_EMIT_GUARD = "__guard_emit"
_VALUE_GUARD = "__guard_value"
_DATA_GUARD = "__guard_data"
_TEXT_GUARD = "__guard_text"

# What a template may turn into text: data. Functions, classes, macros, generators and Jinja's own objects
# (self, loop, cycler, namespace...) would print their Python repr, which exposes internals (class names,
# memory addresses) and is never meant for a customer.
_DATA_SCALARS = (str, int, float, datetime, date, clock_time, timedelta)
_DATA_FAST = frozenset({str, Markup, int, float, bool, type(None)})
_NOT_DATA = (
    "is code or a template object, not data: only text, numbers, dates and lists or mappings of them "
    "can be printed or turned into text (for a sequence, use |list or |join)"
)


def _require_data(value: Any, what: str) -> None:
    """Raise ``SecurityError`` unless ``value`` is data all the way down (see ``_DATA_SCALARS``)."""
    kind = type(value)
    if kind in _DATA_FAST:
        return
    if (kind is tuple or kind is list) and all(type(item) in _DATA_FAST for item in value):
        return
    if kind is dict and not value:
        return
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _LimitError(f"value nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, Undefined):
            # Turning it into text raises its own, clearer error: the missing name, or the refused attribute
            # for a sandbox refusal that a filter such as |map(attribute=...) turned into an undefined value.
            str(item)
            continue
        if item is None or isinstance(item, _DATA_SCALARS):
            continue
        if isinstance(item, (list, tuple)):
            stack.extend((element, depth + 1) for element in item)
        elif isinstance(item, dict):
            stack.extend((element, depth + 1) for pair in item.items() for element in pair)
        else:
            raise SecurityError(f"{what} {_NOT_DATA}")


class _InsertGuards(NodeTransformer):
    """Wraps loop iterables, printed values, ``~`` concatenations and literals in guard filters."""

    @staticmethod
    def _wrap(node: nodes.Node, guard: str, *extra: int) -> nodes.Filter:
        args: list[nodes.Expr] = [nodes.Const(value, lineno=node.lineno) for value in extra]
        return nodes.Filter(node, guard, args, [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter, _ITER_GUARD)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        # Literal text is counted like printed values (a loop repeats it, a macro or set block buffers it).
        # Its length is known now, so it is added to the count of the next printed value in the same
        # output (the last one takes the literal text after it): the literal itself stays a constant that
        # Jinja writes as is, and no guard call is spent on it.
        expressions = [child for child in node.nodes if not isinstance(child, nodes.TemplateData)]
        if not expressions:
            text = "".join(child.data for child in node.nodes if isinstance(child, nodes.TemplateData))
            literal = nodes.MarkSafeIfAutoescape(nodes.Const(text), lineno=node.lineno)
            node.nodes = [self._wrap(literal, _TEXT_GUARD)]
            return node
        wrapped: list[nodes.Expr] = []
        pending = 0
        last = 0
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                pending += len(child.data)
                wrapped.append(child)
            else:
                last = len(wrapped)
                wrapped.append(self._wrap(child, _EMIT_GUARD, pending))
                pending = 0
        if pending:
            guard = wrapped[last]
            assert isinstance(guard, nodes.Filter) and isinstance(guard.args[0], nodes.Const)
            guard.args[0].value += pending
        node.nodes = wrapped
        return node

    def _value(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return self._wrap(node, _VALUE_GUARD)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        # Each operand of ~ is turned into text: it must be data, like a printed value.
        node.nodes = [self._wrap(operand, _DATA_GUARD) for operand in node.nodes]
        return self._wrap(node, _VALUE_GUARD)

    def visit_NSRef(self, node: nodes.NSRef) -> nodes.Node:
        if node.attr.startswith("_"):
            # {% set ns._x = ... %}: namespaces hold data under plain names; private names are refused
            # like private attributes.
            raise SecurityError(f"line {node.lineno}: namespace attribute {node.attr!r} is private")
        return node

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._value(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._value(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":  # assignment targets ({% for a, b in ... %}) stay as they are
            self.generic_visit(node)
            return node
        return self._value(node)


class _SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size, range, iteration and time bounds (see the module docstring)."""

    # Only the operators that can produce something much bigger than their operands.
    intercepted_binops = frozenset({"*", "%", "**", "+"})

    def __init__(self, limits: _Limits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        # lipsum() produces text of any requested size and has no place in messages; |random would make a
        # preview differ from what is sent.
        self.globals.pop("lipsum", None)
        self.filters.pop("random", None)
        self.globals["range"] = self._make_range()
        for name, func in list(self.filters.items()):
            self.filters[name] = self._guard_filter(name, func, _FILTER_ESTIMATORS.get(name))
        # |format runs for every price in every message: the same checks as the generic guard, without
        # binding its arguments by name.
        self.filters["format"] = self._guard_format(self.filters["format"].__wrapped__)
        self.filters[_ITER_GUARD] = self._make_iter_guard()
        self.filters[_EMIT_GUARD] = self._make_emit_guard()
        self.filters[_VALUE_GUARD] = self._make_value_guard()
        self.filters[_DATA_GUARD] = self._make_data_guard()
        self.filters[_TEXT_GUARD] = self._make_text_guard()

    # -- checks ---------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Check the deadline of the current render (a no-op at compile time, when there is none)."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.check_time()

    def check_size(self, size: int, what: str) -> None:
        limit = self.limits.max_value_chars
        if size > limit:
            raise _LimitError(f"{what} would be larger than the limit of {limit} characters")

    def check_value(self, value: Any, what: str) -> None:
        self.check_size(_measure(value, self.limits.max_value_chars), what)

    # -- hooks of the sandbox -------------------------------------------------------------------------

    @internalcode
    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        """Parse, insert the guards, compile. Every template goes through here: loaded files (the loader
        calls ``compile``), their includes and imports, and inline templates."""
        tree = self.parse(source, name, filename) if isinstance(source, str) else source
        guarded = _InsertGuards().visit(tree)
        assert isinstance(guarded, nodes.Template)
        guarded.set_environment(self)
        if raw:
            return super().compile(guarded, name, filename, raw=True, defer_init=defer_init)
        return super().compile(guarded, name, filename, raw=False, defer_init=defer_init)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        limit = self.limits.max_value_chars
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int):
                    self.check_size(_measure(seq, limit) * max(times, 0), "the result of '*'")
            if isinstance(left, int) and isinstance(right, int):
                self._check_int_bits(left.bit_length() + right.bit_length(), "*")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                # log2 rather than bit_length: 2 ** 16000 has 16001 bits, not 32000.
                self._check_int_bits(math.ceil(right * math.log2(abs(left))), "**")
        elif operator == "%" and isinstance(left, (str, bytes)):
            _require_data(right, "a value formatted with '%'")
            self.check_size(_printf_size(left, right, limit), "the result of '%'")
        result = super().call_binop(context, operator, left, right)
        self.check_value(result, f"the result of {operator!r}")
        return result

    @staticmethod
    def _check_int_bits(bits: float, operator: str) -> None:
        if bits > MAX_INT_BITS:
            raise _LimitError(f"the result of {operator!r} would have more than {MAX_INT_BITS} bits")

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes (methods, macros, globals) passes here: deadline, size, then call."""
        budget = _BUDGET.get()
        if budget is not None:
            # Calls count like loop iterations: a macro calling itself twice per level needs no loop to
            # make 2**40 calls.
            budget.step()
        size, args = _method_size(obj, args, kwargs, self.limits.max_value_chars)
        if size is not None:
            self.check_size(size, f"the result of {getattr(obj, '__name__', 'the call')}()")
        if budget is None:
            result = super().call(context, obj, *args, **kwargs)
        else:
            # Nesting is bounded on its own: a recursive macro stops here with a clear reason, long before
            # Python's recursion limit.
            budget.depth += 1
            try:
                if budget.depth > self.limits.max_call_depth:
                    raise _LimitError(
                        f"calls nested deeper than {self.limits.max_call_depth} (a macro calling itself?)"
                    )
                result = super().call(context, obj, *args, **kwargs)
            finally:
                budget.depth -= 1
        self.check_value(result, "the result of a call")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__
        is_map = value.__name__ == "format_map"
        limit = self.limits.max_value_chars

        def bounded(*args: Any, **kwargs: Any) -> str:
            self.tick()
            mapping = args[0] if is_map and args else kwargs
            positional = () if is_map else args
            _require_data(positional, f"a value given to {value.__name__}()")
            if not isinstance(mapping, Mapping):
                raise SecurityError("format_map() needs a mapping")
            _require_data(dict(mapping), f"a value given to {value.__name__}()")
            size = _format_size(fmt, positional, mapping, limit)
            self.check_size(size, f"the result of {value.__name__}()")
            return wrapper(*args, **kwargs)

        return update_wrapper(bounded, value)

    # -- guarded globals and filters ------------------------------------------------------------------

    def _make_range(self) -> Callable[..., range]:
        max_range = self.limits.max_range

        def bounded_range(*args: int) -> range:
            """range() that refuses more than ``max_range`` items."""
            rng = range(*args)
            try:
                size = len(rng)
            except OverflowError:  # longer than sys.maxsize
                size = max_range + 1
            if size > max_range:
                raise _LimitError(f"range() of {size} items exceeds the limit of {max_range}")
            return rng

        return bounded_range

    def _guard_filter(
        self, name: str, func: Callable[..., Any], estimate: _Estimator | None
    ) -> Callable[..., Any]:
        signature = inspect.signature(func) if estimate is not None else None
        bind = _binder(signature) if signature is not None else None
        value_at = (
            list(signature.parameters).index("value") if signature and "value" in signature.parameters else -1
        )
        # Jinja's async_variant filters (slice, list) take an eval context they drop before calling the sync
        # function, whose signature inspect reports: bind the arguments after that leading one.
        wrapped = getattr(func, "__wrapped__", None)
        skip = int(
            wrapped is not None
            and getattr(func, "jinja_pass_arg", None) is not None
            and getattr(wrapped, "jinja_pass_arg", None) is None
        )

        stringifies = name in _STRINGIFYING_FILTERS
        # Filters marked pass_context/pass_eval_context/pass_environment get that object first.
        passes = int(getattr(func, "jinja_pass_arg", None) is not None)

        @wraps(func)  # keeps jinja_pass_arg, so pass_context/pass_eval_context filters still get theirs
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            if bind is not None and estimate is not None:
                arguments = bind(args[skip:], kwargs)
                before = arguments.get("value")
                self.check_size(estimate(arguments, self.limits.max_value_chars), f"filter {name!r}")
                after = arguments.get("value")
                if after is not before:  # the estimator materialised a lazy iterable: pass on the list
                    if 0 <= value_at < len(args) - skip:
                        args = (*args[: skip + value_at], after, *args[skip + value_at + 1 :])
                    else:
                        kwargs = {**kwargs, "value": after}
            if stringifies:
                # After the estimator, which turned a lazy iterable (|join's) into a list.
                _require_data(args[passes:], f"a value given to filter {name!r}")
                _require_data(kwargs, f"a value given to filter {name!r}")
            result = func(*args, **kwargs)
            self.check_value(result, f"the result of filter {name!r}")
            return result

        return guarded

    def _guard_format(self, func: Callable[..., str]) -> Callable[..., str]:
        limit = self.limits.max_value_chars

        @wraps(func)
        def guarded_format(value: Any, *args: Any, **kwargs: Any) -> str:
            self.tick()
            _require_data(value, "a value given to filter 'format'")
            _require_data(args, "a value given to filter 'format'")
            _require_data(kwargs, "a value given to filter 'format'")
            self.check_size(_printf_size(str(value), kwargs or args, limit), "filter 'format'")
            result = func(value, *args, **kwargs)
            self.check_size(len(result), "the result of filter 'format'")
            return result

        return guarded_format

    def _make_iter_guard(self) -> Callable[..., Any]:
        # pass_context keeps the guards out of compile-time constant folding: they must run per render.
        @pass_context
        def guard_iter(context: Context, iterable: Any) -> Any:
            budget = _BUDGET.get()
            if budget is None:
                return iterable
            return _counted(iter(iterable), budget)

        return guard_iter

    def _make_emit_guard(self) -> Callable[..., Any]:
        @pass_context
        def guard_emit(context: Context, value: Any, literal_chars: int = 0) -> Any:
            kind = type(value)
            if kind is str or kind is Markup:
                size = len(value) + literal_chars
            else:
                _require_data(value, "a printed value")
                size = _measure(value, self.limits.max_value_chars) + literal_chars
            budget = _BUDGET.get()
            if budget is not None:
                budget.emit(size)
            else:
                self.check_size(size, "a printed value")
            return value

        return guard_emit

    def _make_value_guard(self) -> Callable[..., Any]:
        @pass_context
        def guard_value(context: Context, value: Any) -> Any:
            self.tick()
            self.check_value(value, "a value")
            return value

        return guard_value

    def _make_text_guard(self) -> Callable[..., Any]:
        @pass_context
        def guard_text(context: Context, text: str) -> str:
            budget = _BUDGET.get()
            if budget is not None:
                budget.emit(len(text))
            return text

        return guard_text

    def _make_data_guard(self) -> Callable[..., Any]:
        @pass_context
        def guard_data(context: Context, value: Any) -> Any:
            _require_data(value, "a value joined with '~'")
            return value

        return guard_data


def _binder(signature: inspect.Signature) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """A fast ``signature.bind(...)`` + ``apply_defaults()`` returning the arguments by name.

    ``inspect.Signature.bind`` costs ~10 µs a call, and filters run many times per message. Anything this
    plain binder does not handle (a missing or unexpected argument) goes to ``inspect`` for its error.
    """
    empty = inspect.Parameter.empty
    plan: list[tuple[str, int, Any]] = []  # (name, kind: 0 positional, 1 keyword only, 2 *args, 3 **kw)
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            code = 2
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            code = 3
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:
            code = 1
        elif param.kind is inspect.Parameter.POSITIONAL_ONLY:
            code = 4
        else:
            code = 0
        plan.append((param.name, code, param.default))

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        used = 0
        consumed = 0
        count = len(args)
        for name, code, default in plan:
            if code == 2:
                out[name] = args[used:]
                used = count
            elif code == 3:
                out[name] = {k: v for k, v in kwargs.items() if k not in out}
                consumed = len(kwargs)
            elif code in (0, 4) and used < count:
                if name in kwargs:
                    break  # given twice: let inspect report it
                out[name] = args[used]
                used += 1
            elif code != 4 and name in kwargs:
                out[name] = kwargs[name]
                consumed += 1
            elif default is not empty:
                out[name] = default
            else:
                break
        else:
            if used == count and consumed == len(kwargs):
                return out
        bound = signature.bind(*args, **kwargs)  # raises the precise TypeError
        bound.apply_defaults()
        return dict(bound.arguments)

    return bind


def _counted(iterator: Iterator[Any], budget: _Budget) -> Iterator[Any]:
    for item in iterator:
        budget.step()
        yield item


# -- the loader ---------------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    """Refuse template names that could leave the template root (raises ``SecurityError``)."""
    if not isinstance(name, str) or not name:
        raise SecurityError("a template name must be a non-empty string")
    _check_str_name(name)


@lru_cache(maxsize=4096)  # a pure function of the name, asked at every render (only successes are cached)
def _check_str_name(name: str) -> None:
    path = PurePosixPath(name)
    drive = re.match(r"[A-Za-z]:", name)
    if "\\" in name or "\x00" in name or path.is_absolute() or ".." in path.parts or drive:
        raise SecurityError(
            f"template name {name!r} leaves the template root (use a relative path without '..')"
        )


class _RootedLoader(FileSystemLoader):
    """A FileSystemLoader that also refuses absolute names and files that resolve outside the root."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = root.resolve()

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        _check_name(template)
        source, filename, uptodate = super().get_source(environment, template)
        # A symlink inside the root may point anywhere; what counts is where the file really is.
        if not Path(filename).resolve().is_relative_to(self.root):
            raise SecurityError(f"template {template!r} resolves outside the template root")
        return source, filename, uptodate


# -- the renderer -------------------------------------------------------------------------------------

_PLAIN_TYPES: frozenset[type] = frozenset(
    {dict, list, tuple, str, int, float, bool, type(None), datetime, date, Markup}
)
_PLAIN_KEYS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_PLAIN_NAMES = "dict, list, tuple, str, int, float, bool, None, datetime, date"


class _NotPlain(Exception):
    pass


def _plain_size(value: Any, depth: int) -> int:
    """The size of plain data ``value`` as ``_measure`` counts it; ``_NotPlain`` for anything else.

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
                size += _measure(key, 0)
            else:
                raise _NotPlain
            if type(item) is str:
                size += len(item)
            elif depth < MAX_DEPTH and type(item) is float:
                size += 24
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
    limits: _Limits


def _spell(path: tuple[Any, ...]) -> str:
    """``('customer', 'orders', 0)`` -> ``customer['orders'][0]``."""
    return str(path[0]) + "".join(f"[{part!r}]" for part in path[1:])


class TemplateRenderer:
    """Renders templates under ``root`` (and inline ones) in the bounded sandbox; see the module docstring.

    Template names are relative paths under ``root`` (``emails/welcome.html``); names ending ``.html`` are
    autoescaped, others are not. Thread-safe: one renderer can serve every dispatcher thread.

    Bounds, per render: ``max_output_chars`` of output; ``max_value_chars`` for any value the template
    builds, for the context, and for all characters printed including into ``set`` blocks and macros;
    ``max_range`` items per ``range()``; ``max_iterations`` loop iterations plus calls; ``max_call_depth``
    nested calls (macros calling macros); ``timeout_s`` of wall time.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_output_chars: int = 100_000,
        max_value_chars: int = 1_000_000,
        max_range: int = 10_000,
        max_iterations: int = 100_000,
        max_call_depth: int = 64,
        timeout_s: float = 2.0,
    ) -> None:
        self.root = Path(root)
        self.limits = _Limits(
            max_output_chars=max_output_chars,
            max_value_chars=max(max_value_chars, max_output_chars),
            max_range=max_range,
            max_iterations=max_iterations,
            timeout_s=timeout_s,
            max_call_depth=max_call_depth,
        )
        self._loader = _RootedLoader(self.root)
        self._env = _SandboxEnvironment(
            self.limits,
            loader=self._loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(
                enabled_extensions=("html",), disabled_extensions=(), default_for_string=False, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Inline templates (subjects, titles) are rendered once per customer: compile each source once.
        self._compile_inline = lru_cache(maxsize=512)(self._compile_inline_uncached)

    # -- rendering ------------------------------------------------------------------------------------

    def prepare(self, context: Mapping[str, Any]) -> PreparedContext:
        """Check ``context`` once for several renders (the parts of one message); ``TemplateError`` if it is
        not plain data of bounded size. ``render`` and ``render_string`` accept the result in place of a
        mapping and skip the check."""
        return PreparedContext(self._checked_context(context, "<context>"), self.limits)

    def render(self, name: str, context: Mapping[str, Any] | PreparedContext) -> str:
        """Render template file ``name`` with ``context`` (plain data only); ``TemplateError`` on failure."""
        self._checked_name(name)
        data = self._context_data(context, name)
        try:
            template = self._env.get_template(name)
        except Exception as exc:
            raise self._error(exc, name) from exc
        return self._run(template, data, name)

    def render_string(
        self, source: str, context: Mapping[str, Any] | PreparedContext, *, name: str = "<inline>"
    ) -> str:
        """Render an inline template (e.g. an email subject from YAML); ``name`` appears in errors and, when
        it ends ``.html``, turns autoescaping on. Inline templates may include files under the root."""
        data = self._context_data(context, name)
        try:
            template = self._compile_inline(source, name)
        except Exception as exc:
            raise self._error(exc, name) from exc
        return self._run(template, data, name)

    def _compile_inline_uncached(self, source: str, name: str) -> Template:
        code = self._env.compile(source, name=name, filename=name)
        return self._env.template_class.from_code(self._env, code, self._env.make_globals(None), None)

    def _run(self, template: Template, data: dict[str, Any], name: str) -> str:
        budget = _Budget(self.limits)
        token = _BUDGET.set(budget)
        limit = self.limits.max_output_chars
        chunks: list[str] = []
        size = 0
        stream: Any = template.generate(data)  # a generator: closed below so a stopped render cleans up
        try:
            # Stream and count: output past the limit stops the render instead of being built in memory.
            # (The deadline is checked by the guards inside the template, at every value and iteration.)
            append = chunks.append
            for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise _LimitError(f"output is longer than the limit of {limit} characters")
                append(chunk)
        except Exception as exc:
            raise self._error(exc, name) from exc
        finally:
            stream.close()
            _BUDGET.reset(token)
        return "".join(chunks)

    # -- inspection -----------------------------------------------------------------------------------

    def variables(self, name: str) -> list[tuple[str, int]]:
        """The variables template file ``name`` needs from its context, with the line of their first use.

        Undeclared top-level names only: loop variables, ``{% set %}`` names, macro arguments and the
        sandbox's globals (``range``, ``dict``...) are left out. Sorted by line, then name. Variables used
        only by included templates are not listed (ask for those templates).
        """
        return self._variables(self.source(name), name)

    def string_variables(self, source: str) -> list[tuple[str, int]]:
        """``variables`` for an inline template."""
        return self._variables(source, "<inline>")

    def _variables(self, source: str, name: str) -> list[tuple[str, int]]:
        try:
            tree = self._env.parse(source, name=name)
            undeclared = find_undeclared_variables(tree) - set(self._env.globals)
        except Exception as exc:
            raise self._error(exc, name) from exc
        first: dict[str, int] = {}
        for node in tree.find_all(nodes.Name):
            if node.ctx == "load" and node.name in undeclared:
                first[node.name] = min(first.get(node.name, node.lineno), node.lineno)
        return sorted(first.items(), key=lambda item: (item[1], item[0]))

    def exists(self, name: str) -> bool:
        """Whether template file ``name`` exists under the root (False for names that would leave it)."""
        try:
            self._loader.get_source(self._env, name)
        except (TemplateNotFound, SecurityError):
            return False
        return True

    def source(self, name: str) -> str:
        """The source text of template file ``name``; ``TemplateError`` if missing or outside the root."""
        self._checked_name(name)
        try:
            return self._loader.get_source(self._env, name)[0]
        except Exception as exc:
            raise self._error(exc, name) from exc

    # -- checks and errors ----------------------------------------------------------------------------

    def _checked_name(self, name: str) -> None:
        try:
            _check_name(name)
        except SecurityError as exc:
            raise TemplateError(str(exc), name, None, kind="security") from None

    def _context_data(self, context: Mapping[str, Any] | PreparedContext, template: str) -> dict[str, Any]:
        if isinstance(context, PreparedContext) and context.limits is self.limits:
            return context.data
        return self._checked_context(context, template)

    def _checked_context(self, context: Mapping[str, Any] | PreparedContext, template: str) -> dict[str, Any]:
        """A copy of ``context`` after checking it is plain data of bounded size (else ``TemplateError``)."""
        if isinstance(context, PreparedContext):
            context = context.data
        if not isinstance(context, Mapping):
            raise TemplateError(
                f"the context must be a mapping, not {type(context).__name__}", template, kind="context"
            )
        data = dict(context)
        limit = self.limits.max_value_chars
        if all(type(key) is str for key in data):
            try:
                if _plain_size(data, 0) <= limit:
                    return data
            except _NotPlain:
                pass
        # The fast check failed: walk again, slowly, to say exactly what and where.
        # One walk checks the types and adds up the size (as ``_measure`` counts it); the path of a value
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
                    size += _measure(key, limit)
                    stack.append((item, (*path, key)))
            elif kind is list or kind is tuple:
                size += 2 + 2 * len(value)
                stack.extend((item, (*path, i)) for i, item in enumerate(value))
            else:
                size += _measure(value, limit)
            if size > limit:
                raise TemplateError(
                    f"the context is larger than the limit of {limit} characters", template, kind="context"
                )
        return data

    def _error(self, exc: BaseException, template: str) -> TemplateError:
        """Translate any exception raised while loading or rendering into a ``TemplateError``."""
        if isinstance(exc, TemplateError):
            return exc
        where, line = self._location(exc.__traceback__, template)
        if isinstance(exc, TemplateSyntaxError):
            name = exc.name or where
            return TemplateError(f"syntax error: {exc.message}", name, exc.lineno, kind="syntax")
        if isinstance(exc, TemplatesNotFound):
            names = ", ".join(repr(n) for n in exc.templates)
            return TemplateError(
                f"none of the templates {names} found under the template root", where, line, kind="not_found"
            )
        if isinstance(exc, TemplateNotFound):
            return TemplateError(
                f"template {exc.name!r} not found under the template root", where, line, kind="not_found"
            )
        if isinstance(exc, _LimitError):
            return TemplateError(f"limit exceeded: {exc}", where, line, kind="limit")
        if isinstance(exc, SecurityError):
            return TemplateError(f"security violation: {exc}", where, line, kind="security")
        if isinstance(exc, UndefinedError):
            return TemplateError(f"undefined variable: {exc.message}", where, line, kind="undefined")
        if isinstance(exc, RecursionError):
            return TemplateError(
                "limit exceeded: recursion too deep (recursive include or macro?)", where, line, kind="limit"
            )
        if isinstance(exc, MemoryError):
            return TemplateError("limit exceeded: out of memory", where, line, kind="limit")
        return TemplateError(f"{type(exc).__name__}: {exc}", where, line, kind="runtime")

    def _location(self, tb: TracebackType | None, template: str) -> tuple[str, int | None]:
        """The innermost template frame of a traceback: (template name, line).

        Jinja rewrites tracebacks so template code appears as frames whose globals carry
        ``__jinja_exception__``, with the template file name and line.
        """
        found: tuple[str, int] | None = None
        while tb is not None:
            if "__jinja_exception__" in tb.tb_frame.f_globals:
                found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        if found is None:
            return template, None
        filename, line = found
        return self._template_name(filename, template), line

    def _template_name(self, filename: str, fallback: str) -> str:
        path = Path(filename)
        if path.is_absolute():
            try:
                return path.resolve().relative_to(self._loader.root).as_posix()
            except ValueError:
                return filename
        return fallback if filename in ("<template>", "<unknown>") else filename
