"""The bounded sandbox: Jinja's immutable sandbox plus what a template may print and how much it may do.

Contract: ``SandboxEnvironment`` keeps the attribute policy of ``ImmutableSandboxedEnvironment`` (no private
or internal attributes, no mutating methods, safe ``str.format``) and adds, for every template it compiles
(files, their includes and imports, inline sources): only data may be turned into text (``require_data``);
values, operator results, call results and filter results are refused above ``max_value_chars`` (before the
work for the operations that amplify); ``range()`` is capped; loop iterations, calls and call depth are
counted and the deadline checked against the current ``Budget``. Refusals raise ``SecurityError`` or
``LimitError``; the renderer turns them into ``TemplateError``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from functools import update_wrapper, wraps
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import internalcode
from markupsafe import Markup

from orchestrator.channels.templates._errors import LimitError
from orchestrator.channels.templates._limits import CURRENT_BUDGET, MAX_DEPTH, MAX_INT_BITS, Limits, counted
from orchestrator.channels.templates._rewrite import (
    DATA_GUARD,
    EMIT_GUARD,
    ITER_GUARD,
    TEXT_GUARD,
    VALUE_GUARD,
    InsertGuards,
)
from orchestrator.channels.templates._sizes import (
    FILTER_ESTIMATORS,
    Estimator,
    format_size,
    measure,
    method_size,
    printf_size,
)

# What a template may turn into text: data. Functions, classes, macros, generators and Jinja's own objects
# (self, loop, cycler, namespace...) would print their Python repr, which exposes internals (class names,
# memory addresses) and is never meant for a customer.
_DATA_SCALARS = (str, int, float, datetime, date, clock_time, timedelta)
_DATA_FAST = frozenset({str, Markup, int, float, bool, type(None)})
_NOT_DATA = (
    "is code or a template object, not data: only text, numbers, dates and lists or mappings of them "
    "can be printed or turned into text (for a sequence, use |list or |join)"
)


def require_data(value: Any, what: str) -> None:
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
            raise LimitError(f"value nested deeper than {MAX_DEPTH} levels")
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


# Filters that turn their input into text: their arguments must be data (see ``require_data``).
_STRINGIFYING_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "join", "lower", "pprint",
        "replace", "safe", "string", "striptags", "title", "trim", "truncate", "upper", "urlencode",
        "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size, range, iteration and time bounds (see the module docstring)."""

    # Only the operators that can produce something much bigger than their operands.
    intercepted_binops = frozenset({"*", "%", "**", "+"})

    def __init__(self, limits: Limits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        # lipsum() produces text of any requested size and has no place in messages; |random would make a
        # preview differ from what is sent.
        self.globals.pop("lipsum", None)
        self.filters.pop("random", None)
        self.globals["range"] = self._make_range()
        for name, func in list(self.filters.items()):
            self.filters[name] = self._guard_filter(name, func, FILTER_ESTIMATORS.get(name))
        # |format runs for every price in every message: the same checks as the generic guard, without
        # binding its arguments by name.
        self.filters["format"] = self._guard_format(self.filters["format"].__wrapped__)
        self.filters[ITER_GUARD] = self._make_iter_guard()
        self.filters[EMIT_GUARD] = self._make_emit_guard()
        self.filters[VALUE_GUARD] = self._make_value_guard()
        self.filters[DATA_GUARD] = self._make_data_guard()
        self.filters[TEXT_GUARD] = self._make_text_guard()

    # -- checks ---------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Check the deadline of the current render (a no-op at compile time, when there is none)."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.check_time()

    def check_size(self, size: int, what: str) -> None:
        limit = self.limits.max_value_chars
        if size > limit:
            raise LimitError(f"{what} would be larger than the limit of {limit} characters")

    def check_value(self, value: Any, what: str) -> None:
        self.check_size(measure(value, self.limits.max_value_chars), what)

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
        guarded = InsertGuards().visit(tree)
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
                    self.check_size(measure(seq, limit) * max(times, 0), "the result of '*'")
            if isinstance(left, int) and isinstance(right, int):
                self._check_int_bits(left.bit_length() + right.bit_length(), "*")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                # log2 rather than bit_length: 2 ** 16000 has 16001 bits, not 32000.
                self._check_int_bits(math.ceil(right * math.log2(abs(left))), "**")
        elif operator == "%" and isinstance(left, (str, bytes)):
            require_data(right, "a value formatted with '%'")
            self.check_size(printf_size(left, right, limit), "the result of '%'")
        result = super().call_binop(context, operator, left, right)
        self.check_value(result, f"the result of {operator!r}")
        return result

    @staticmethod
    def _check_int_bits(bits: float, operator: str) -> None:
        if bits > MAX_INT_BITS:
            raise LimitError(f"the result of {operator!r} would have more than {MAX_INT_BITS} bits")

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes (methods, macros, globals) passes here: deadline, size, then call."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            # Calls count like loop iterations: a macro calling itself twice per level needs no loop to
            # make 2**40 calls.
            budget.step()
        size, args = method_size(obj, args, kwargs, self.limits.max_value_chars)
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
                    raise LimitError(
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
            require_data(positional, f"a value given to {value.__name__}()")
            if not isinstance(mapping, Mapping):
                raise SecurityError("format_map() needs a mapping")
            require_data(dict(mapping), f"a value given to {value.__name__}()")
            size = format_size(fmt, positional, mapping, limit)
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
                raise LimitError(f"range() of {size} items exceeds the limit of {max_range}")
            return rng

        return bounded_range

    def _guard_filter(
        self, name: str, func: Callable[..., Any], estimate: Estimator | None
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
                require_data(args[passes:], f"a value given to filter {name!r}")
                require_data(kwargs, f"a value given to filter {name!r}")
            result = func(*args, **kwargs)
            self.check_value(result, f"the result of filter {name!r}")
            return result

        return guarded

    def _guard_format(self, func: Callable[..., str]) -> Callable[..., str]:
        limit = self.limits.max_value_chars

        @wraps(func)
        def guarded_format(value: Any, *args: Any, **kwargs: Any) -> str:
            self.tick()
            require_data(value, "a value given to filter 'format'")
            require_data(args, "a value given to filter 'format'")
            require_data(kwargs, "a value given to filter 'format'")
            self.check_size(printf_size(str(value), kwargs or args, limit), "filter 'format'")
            result = func(value, *args, **kwargs)
            self.check_size(len(result), "the result of filter 'format'")
            return result

        return guarded_format

    def _make_iter_guard(self) -> Callable[..., Any]:
        # pass_context keeps the guards out of compile-time constant folding: they must run per render.
        @pass_context
        def guard_iter(context: Context, iterable: Any) -> Any:
            budget = CURRENT_BUDGET.get()
            if budget is None:
                return iterable
            return counted(iter(iterable), budget)

        return guard_iter

    def _make_emit_guard(self) -> Callable[..., Any]:
        @pass_context
        def guard_emit(context: Context, value: Any, literal_chars: int = 0) -> Any:
            kind = type(value)
            if kind is str or kind is Markup:
                size = len(value) + literal_chars
            else:
                require_data(value, "a printed value")
                size = measure(value, self.limits.max_value_chars) + literal_chars
            budget = CURRENT_BUDGET.get()
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
            budget = CURRENT_BUDGET.get()
            if budget is not None:
                budget.emit(len(text))
            return text

        return guard_text

    def _make_data_guard(self) -> Callable[..., Any]:
        @pass_context
        def guard_data(context: Context, value: Any) -> Any:
            require_data(value, "a value joined with '~'")
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
