"""Vectorised evaluation of expressions for every customer at once.

Each aggregate (``count``, ``since``, ``sum`` ...) becomes one numpy pass over the event columns
(``bincount`` and friends), giving an array indexed by customer key; operators then combine whole arrays.
There is no per-customer Python anywhere here. Identical aggregates are computed once per evaluation
instant and shared by every journey through an ``AggregateCache``.

Null semantics: a missing value (NaN or None) makes every comparison false, arithmetic on it stays
null, ``coalesce`` and ``present`` test for it, and ``x == null`` is true exactly where ``x`` is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.signals import _builtin_values as builtin_values
from orchestrator.signals import _calendar as calendar
from orchestrator.signals import _clv as clv
from orchestrator.signals import _lang as lang
from orchestrator.signals import _sequences as sequences
from orchestrator.signals import _where as where_filter
from orchestrator.signals._frame import NULL_CODE, Categorical, CustomerFrame, EventFrame
from orchestrator.signals._lang import Binary, Call, Duration, ExpressionError, Name, Node, Unary

Value = Any  # np.ndarray of length n, or a Python scalar that broadcasts


class AggregateCache:
    """Results of aggregates and masks for one frame and one instant, shared across journeys.

    ``compute``, when set (by whoever holds the events: the incremental state), computes an aggregate
    whose ``where=`` reads the customer's own values, given those values (see ``Evaluator.filtered``);
    when None, evaluators compute it from their own events."""

    def __init__(self) -> None:
        self.values: dict[Any, np.ndarray] = {}
        self.masks: dict[Any, Any] = {}
        self.compute: Callable[[Call, Mapping[Node, np.ndarray]], np.ndarray] | None = None


class Evaluator:
    """Evaluates expressions over ``events`` and ``customers`` at ``now_us``.

    ``metrics`` maps names to expressions (a journey's ``metrics:``); a name that is not a metric is read
    as a customer attribute.
    """

    def __init__(
        self,
        events: EventFrame,
        customers: CustomerFrame,
        now_us: int,
        metrics: Mapping[str, Node] | None = None,
        cache: AggregateCache | None = None,
        fits: Mapping[tuple[str, str], clv.Fit] | None = None,
    ) -> None:
        if events.n_customers != customers.n:
            raise ValueError("event and customer frames disagree on the number of customer slots")
        self.events = events
        self.customers = customers
        self.n = customers.n
        self.now_us = int(now_us)
        self.metrics = dict(metrics or {})
        self.cache = cache or AggregateCache()
        # The purchase models' newest fits by (event, value property), oldest first: what p_alive() reads.
        self.fits = dict(fits or {})
        self._metric_values: dict[str, np.ndarray] = {}
        self._resolving: set[str] = set()
        # Values of sub-expressions, by node identity, for callers that ask for many nested nodes of one
        # tree (``signals._horizon``); off by default, where each node is evaluated once anyway.
        self.memo: dict[int, Value] | None = None

    # ------------------------------------------------------------------------------------------ public

    def values(self, node: Node) -> np.ndarray:
        """The expression's value for every customer slot, as an array of length ``n``."""
        return _broadcast(self._eval(node), self.n)

    def condition(self, node: Node) -> np.ndarray:
        """Where the expression is true, as a boolean array of length ``n`` (false for empty slots)."""
        return _broadcast(_truthy(self._eval(node)), self.n).astype(bool) & self.customers.exists

    def filtered(self, call: Call, parts: Mapping[Node, np.ndarray]) -> np.ndarray:
        """The aggregate ``call`` over this evaluator's events, its ``where=`` reading ``parts``: the value
        of each customer-level part of the filter for every customer slot (``lang.where_parts``)."""
        return self._aggregate(call, parts)

    def metric(self, name: str) -> np.ndarray:
        if name not in self._metric_values:
            if name in self._resolving:
                raise ExpressionError(f"metric {name!r} refers to itself")
            self._resolving.add(name)
            try:
                self._metric_values[name] = self.values(self.metrics[name])
            finally:
                self._resolving.discard(name)
        return self._metric_values[name]

    # ------------------------------------------------------------------------------------------ tree

    def _eval(self, node: Node) -> Value:
        if self.memo is not None:
            key = id(node)
            if key not in self.memo:
                self.memo[key] = self._eval_node(node)
            return self.memo[key]
        return self._eval_node(node)

    def _eval_node(self, node: Node) -> Value:
        if isinstance(node, lang.Number):
            return node.value
        if isinstance(node, lang.Duration):
            return node.seconds
        if isinstance(node, lang.String | lang.Boolean):
            return node.value
        if isinstance(node, lang.Null):
            return np.nan
        if isinstance(node, Name):
            if len(node.parts) != 1:
                raise ExpressionError(
                    f"{node.dotted} is an event property; read it inside an aggregate such as "
                    f"sum({node.dotted}, within=30d)",
                    node.pos,
                )
            name = node.parts[0]
            if name in self.metrics:
                return self.metric(name)
            return self.customers.column(name)
        if isinstance(node, Unary):
            if node.op == "not":
                return ~_broadcast(_truthy(self._eval(node.operand)), self.n)
            return -_number(self._eval(node.operand))
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, Call):
            return self._call(node)
        raise ExpressionError(f"cannot evaluate {type(node).__name__}", node.pos)

    def _binary(self, node: Binary) -> Value:
        op = node.op
        if op in ("and", "or"):
            left = _broadcast(_truthy(self._eval(node.left)), self.n)
            right = _broadcast(_truthy(self._eval(node.right)), self.n)
            return (left & right) if op == "and" else (left | right)
        if op == "in":
            assert isinstance(node.right, lang.ListLiteral)
            left = self._eval(node.left)
            result = np.zeros(self.n, bool)
            for item in node.right.items:
                result |= _broadcast(_compare("==", left, self._eval(item)), self.n)
            return result
        if op in ("==", "!=") and (isinstance(node.right, lang.Null) or isinstance(node.left, lang.Null)):
            other = node.left if isinstance(node.right, lang.Null) else node.right
            missing = _is_null(self._eval(other))
            return missing if op == "==" else ~missing
        left, right = self._eval(node.left), self._eval(node.right)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return _compare(op, left, right)
        a, b = _number(left), _number(right)
        with np.errstate(divide="ignore", invalid="ignore"):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                # Division by zero gives null rather than infinity: "no sessions" is not "infinitely many".
                out = np.divide(a, b)
                return np.where(np.asarray(b) == 0, np.nan, out)
        raise ExpressionError(f"unknown operator {op!r}", node.pos)

    # ------------------------------------------------------------------------------------------ calls

    def _call(self, call: Call) -> Value:
        spec = lang.FUNCTIONS[call.func]
        if (spec.kind == "events" or lang.is_property_aggregate(call)) and lang.where_parts(call):
            return self._dynamic(call)
        if spec.kind == "events" or lang.is_property_aggregate(call):
            key = call  # nodes compare without positions, so equal calls share one result
            cached = self.cache.values.get(key)
            if cached is None:
                cached = self._aggregate(call)
                self.cache.values[key] = cached
            return cached
        if call.func == "quintile":
            return self._population(call)
        if call.func == "_period_seconds":
            period = call.args[0]
            assert isinstance(period, lang.Period)
            start, end = self.period_bounds(period.name)
            return (end - start) / US_PER_SECOND
        args = [self._eval(a) for a in call.args]
        if call.func in ("min", "max"):
            fold = np.fmin if call.func == "min" else np.fmax
            acc = _number(args[0])
            for arg in args[1:]:
                acc = fold(acc, _number(arg))
            return acc
        if call.func == "coalesce":
            acc = args[-1]
            for arg in reversed(args[:-1]):
                arr = _broadcast(arg, self.n)
                acc = np.where(_is_null(arr), _broadcast(acc, self.n), arr)
            return acc
        if call.func == "abs":
            return np.abs(_number(args[0]))
        if call.func == "present":
            return ~_broadcast(_is_null(args[0]), self.n)
        return self._builtin(call, args)

    def _dynamic(self, call: Call) -> np.ndarray:
        """An aggregate whose filter reads the customer's own values: those are this evaluator's (its
        metrics, attributes and aggregates), so it is shared only with evaluators that define the metrics
        it reads the same way."""
        parts = lang.where_parts(call)
        key = ("where", call, self._metric_definitions(parts))
        cached = self.cache.values.get(key)
        if cached is None:
            values = {part: self.values(part) for part in parts}
            compute = self.cache.compute
            cached = compute(call, values) if compute is not None else self._aggregate(call, values)
            self.cache.values[key] = cached
        return cached

    def _metric_definitions(self, parts: Iterable[Node]) -> tuple[tuple[str, Node], ...]:
        """The metrics ``parts`` read, directly or through other metrics, with their formulas."""
        found: dict[str, Node] = {}
        stack = [name.parts[0] for part in parts for name in lang.free_names(part)]
        while stack:
            name = stack.pop()
            if name in self.metrics and name not in found:
                found[name] = self.metrics[name]
                stack.extend(n.parts[0] for n in lang.free_names(self.metrics[name]))
        return tuple(sorted(found.items(), key=lambda item: item[0]))

    def _filter(self, call: Call, mask: np.ndarray, parts: Mapping[Node, np.ndarray] | None) -> np.ndarray:
        """``mask`` (the aggregate's events) narrowed to the events its ``where=`` keeps."""
        where = call.kwarg("where")
        if where is None:
            return mask
        ev = self.events
        if not lang.where_split(where)[1]:
            # A static filter: each event's verdict depends on the event alone, so it is worked out once
            # per frame for every event and shared by aggregates with the same filter.
            key = ("where", where)
            keep = self.cache.masks.get(key)
            if keep is None:
                keep = where_filter.event_mask(
                    where, self._where_column, ev.customer, {}, column_evaluator, self.cache.masks
                )
                self.cache.masks[key] = keep
            return mask & keep
        if parts is None:
            raise ExpressionError(f"{call.func}() filters on the customer's values, which are not given")
        rows = np.flatnonzero(mask)

        def column(prop: str) -> Any:
            raw = self._where_column(prop)
            return Categorical(raw.codes[rows], raw.values) if isinstance(raw, Categorical) else raw[rows]

        keep = where_filter.event_mask(
            where, column, ev.customer[rows], parts, column_evaluator, self.cache.masks
        )
        out = np.zeros(len(mask), bool)
        out[rows[keep]] = True
        return out

    def _where_column(self, prop: str) -> Any:
        """A property as a filter reads it: numbers as they are, anything else dictionary-encoded."""
        raw = self.events.prop(prop)
        if isinstance(raw, np.ndarray) and raw.dtype.kind in "fiu":
            return raw
        return self._encoded(prop)

    def _column(self, value: Value) -> np.ndarray:
        """A value as a float column of length ``n`` (NaN for null)."""
        return _broadcast(_number(value), self.n).astype(np.float64, copy=False)

    def _builtin(self, call: Call, args: list[Value]) -> Value:
        """The built-in metrics that work on values (see ``signals._builtins``)."""
        if call.func == "rfm_segment":
            return builtin_values.rfm_segment(self._column(args[0]), self._column(args[1]))
        if call.func == "_days":
            return builtin_values.days(self._column(args[0]))
        if call.func == "_nps_group":
            # A score given as text (a text last()) counts as missing, like an absent one.
            scores = _broadcast(args[0], self.n)
            return builtin_values.nps_group(
                event_numbers(scores) if scores.dtype == object else self._column(scores)
            )
        if call.func == "_tier":
            limits = [float(a) for a in args[2:]]
            pairs = list(zip(limits[0::2], limits[1::2], strict=True))
            return builtin_values.lifecycle_tier(self._column(args[0]), self._column(args[1]), pairs)
        if call.func == "_change":
            # Window lengths: one number for durations, a column for calendar periods (per customer).
            recent, baseline = (float(a) if np.ndim(a) == 0 else self._column(a) for a in args[2:4])
            return builtin_values.change(self._column(args[0]), self._column(args[1]), recent, baseline)
        raise ExpressionError(f"unknown function {call.func}()", call.pos)

    def _population(self, call: Call) -> np.ndarray:
        """A function of the whole population (``quintile``): always ranked over every existing customer,
        whichever customers the caller then reads. Shared through the cache when it reads no metric or
        attribute (those can differ between journeys)."""
        key = ("population", call) if not lang.free_names(call) else None
        cached = self.cache.values.get(key) if key is not None else None
        if cached is None:
            cached = builtin_values.quintile(self._column(self._eval(call.args[0])), self.customers.exists)
            if key is not None:
                self.cache.values[key] = cached
        return cached

    def zones(self) -> tuple[list[str], np.ndarray]:
        """The customers' time zones as ``signals._calendar.zone_codes`` gives them (once per instant; a
        caller that knows them already may put them in the cache under ``("zones",)``)."""
        zones = self.cache.masks.get(("zones",))
        if zones is None:
            column = self.customers.column(calendar.ZONE_ATTRIBUTE)
            zones = self.cache.masks[("zones",)] = calendar.zone_codes(column)
        return zones

    def period_bounds(self, period: str) -> tuple[np.ndarray, np.ndarray]:
        """Per customer slot, a calendar period's ``[start, end)`` in its time zone (``signals._calendar``),
        worked out once per distinct zone and instant."""
        key = ("period", period)
        bounds = self.cache.masks.get(key)
        if bounds is None:
            bounds = self.cache.masks[key] = calendar.period_bounds(period, self.zones(), self.now_us)
        return bounds

    def _window_mask(self, call: Call) -> np.ndarray:
        within = call.kwarg("within")
        before = call.kwarg("before")
        if isinstance(within, lang.Period):
            period_key = ("period window", within.name)
            period_mask = self.cache.masks.get(period_key)
            if period_mask is None:
                names, codes = self.zones()
                table = calendar.zone_table(within.name, names, self.now_us)
                ts = self.events.ts
                # The union of every zone's period first (one comparison per event), then each event
                # inside it against its own customer's zone: the cost follows the period's events.
                period_mask = (ts >= table[:, 0].min()) & (ts < table[:, 1].max())
                if len(names) > 1:
                    inside = np.flatnonzero(period_mask)
                    zone, when = codes[self.events.customer[inside]], ts[inside]
                    period_mask[inside] = (when >= table[zone, 0]) & (when < table[zone, 1])
                self.cache.masks[period_key] = period_mask
            return period_mask
        end = self.now_us - (_seconds_us(before) if before is not None else 0)
        start = end - _seconds_us(within) if within is not None else None
        key = ("window", start, end)
        mask = self.cache.masks.get(key)
        if mask is None:
            ts = self.events.ts
            mask = ts < end
            if start is not None:
                mask &= ts >= start
            self.cache.masks[key] = mask
        return mask

    def _type_mask(self, names: tuple[str, ...]) -> np.ndarray:
        key = ("types", names)
        mask = self.cache.masks.get(key)
        if mask is None:
            mask = type_mask(self.events.type, self.events.type_names, names)
            self.cache.masks[key] = mask
        return mask

    def _numeric(self, prop: str) -> np.ndarray:
        """The property as float64 over all events (NaN where missing), computed once per frame."""
        key = ("numeric", prop)
        column = self.cache.masks.get(key)
        if column is None:
            raw = self.events.prop(prop)
            if isinstance(raw, Categorical):
                numbers = np.append(event_numbers(raw.values), np.nan)  # code -1 reads the trailing NaN
                column = numbers[raw.codes]
            else:
                column = event_numbers(raw)
            self.cache.masks[key] = column
        return column

    def _encoded(self, prop: str) -> Categorical:
        """The property dictionary-encoded (code -1 for missing), computed once per frame."""
        key = ("encoded", prop)
        column = self.cache.masks.get(key)
        if column is None:
            raw = self.events.prop(prop)
            if isinstance(raw, Categorical):
                column = raw
            elif raw.dtype == object:
                column = Categorical.encode(raw)
            else:
                present = ~np.isnan(raw)
                uniques, inverse = np.unique(raw[present], return_inverse=True)
                codes = np.full(len(raw), NULL_CODE, dtype=np.int32)
                codes[present] = inverse
                column = Categorical(codes, uniques.astype(object))
            self.cache.masks[key] = column
        return column

    def _aggregate(self, call: Call, parts: Mapping[Node, np.ndarray] | None = None) -> np.ndarray:
        n = self.n
        ev = self.events
        window = self._window_mask(call)
        if call.func in lang.PREDICTIONS:
            return self._prediction(call, window)
        if lang.FUNCTIONS[call.func].kind == "events":
            if call.func == "sessions":
                return self._sessions(call, window)
            if call.func == "sequence":
                return self._sequence(call, window)
            names = tuple(arg.parts[0] for arg in call.args if isinstance(arg, Name))
            every_type = call.func in ("distinct_events", "since_first") and not names
            mask = window if every_type else window & self._type_mask(names)
            mask = self._filter(call, mask, parts)
            cust = ev.customer[mask]
            if call.func == "count" and call.kwarg("by") is not None:
                codes = self._text_codes(lang.group_property(call) or "")[mask]
                present = codes >= 0  # an event without the value belongs to no group
                return sequences.distinct_pairs(cust[present], codes[present], n)
            if call.func == "count":
                return np.bincount(cust, minlength=n).astype(np.float64)
            if call.func == "since":
                last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
                np.maximum.at(last, cust, ev.ts[mask])
                since = (self.now_us - last) / US_PER_SECOND
                return np.where(last == np.iinfo(np.int64).min, np.inf, since)
            if call.func == "since_first":
                first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
                np.minimum.at(first, cust, ev.ts[mask])
                since_first = (self.now_us - first) / US_PER_SECOND
                return np.where(first == np.iinfo(np.int64).max, np.inf, since_first)
            if call.func == "distinct_events":
                return _distinct_per_customer(cust, ev.type[mask], len(ev.type_names), n)
            if call.func == "median_gap":
                times = ev.ts[mask]
                grouping = lang.group_property(call)
                if grouping is None:
                    return median_gaps(cust, np.zeros(len(cust), np.int64), times, n)
                codes = self._encoded(grouping).codes[mask]
                keep = codes >= 0  # an event without the value belongs to no group
                return median_gaps(cust[keep], codes[keep], times[keep], n)
            raise ExpressionError(f"unknown aggregate {call.func}()", call.pos)

        arg = call.args[0]
        assert isinstance(arg, Name)
        event_name, prop = arg.parts
        mask = self._filter(call, window & self._type_mask((event_name,)), parts)
        func = call.func
        if func == "last":
            return self._last(prop, mask)
        if func in ("sum", "mean", "min", "max"):
            nums = self._numeric(prop)[mask]
            cust = ev.customer[mask]
            present = ~np.isnan(nums)
            nums, cust = nums[present], cust[present]
            if func == "sum":
                return np.bincount(cust, weights=to_micros(nums), minlength=n) / MICROS
            if func == "mean":
                total = np.bincount(cust, weights=to_micros(nums), minlength=n) / MICROS
                count = np.bincount(cust, minlength=n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
            out = np.full(n, np.inf if func == "min" else -np.inf)
            (np.minimum if func == "min" else np.maximum).at(out, cust, nums)
            return np.where(np.isinf(out), np.nan, out)
        encoded = self._encoded(prop)
        codes = encoded.codes[mask]
        cust = ev.customer[mask]
        present = codes >= 0
        codes, cust = codes[present], cust[present]
        width = max(len(encoded.values), 1)
        if func == "distinct":
            return _distinct_per_customer(cust, codes, width, n)
        # Rank the values so that ties go to the smallest value whatever order the codes were given in.
        rank = value_rank(encoded.values)
        ranked = rank[codes]
        if func == "top_count":
            return _top(cust, ranked, width, n)[0]
        if func == "top_value":
            counts, top_rank = _top(cust, ranked, width, n)
            out = np.full(n, None, dtype=object)
            has = counts > 0
            by_rank = encoded.values[np.argsort(rank)]
            out[has] = by_rank[top_rank[has]]
            return out
        raise ExpressionError(f"unknown aggregate {func}()", call.pos)

    def _last(self, prop: str, mask: np.ndarray) -> np.ndarray:
        """``last(event.prop)``: the value on the latest event that has one, a number or text. At one
        instant a number goes before text, numbers by size and text in ``value_rank``'s order; the column
        is float while the property holds only numbers, else an object column (None for null)."""
        n, ev = self.n, self.events
        encoded = self._encoded(prop)
        codes = encoded.codes[mask]
        has = codes >= 0
        cust, ts, codes = ev.customer[mask][has], ev.ts[mask][has], codes[has]
        numbers = self._numeric(prop)[mask][has]
        is_text = np.isnan(numbers)
        rank = value_rank(encoded.values)
        _, number, text_rank = last_values(cust, ts, numbers, np.where(is_text, rank[codes], -1), n)
        if not text_values(encoded.values):
            return number
        by_rank = encoded.values[np.argsort(rank)] if len(rank) else encoded.values
        return last_column(number, text_rank, by_rank)

    def _prediction(self, call: Call, window: np.ndarray) -> np.ndarray:
        """``p_alive``, ``expected_purchases`` and ``predicted_clv`` from the newest fit of the event (and
        value property): NaN for every customer without such a fit, and for those who never bought."""
        name = call.args[0]
        assert isinstance(name, Name)
        event, prop = name.parts[0], (name.parts[1] if len(name.parts) > 1 else None)
        fit = fit_for(self.fits, event, prop)
        out = np.full(self.n, np.nan)
        if fit is None or (prop is not None and fit.gamma_gamma is None):
            return out
        mask = window & self._type_mask((event,))
        value = self._numeric(prop)[mask] if prop is not None else None
        today = self.now_us // clv.DAY_US
        summary = clv.day_summary(self.events.customer[mask], self.events.ts[mask], value, self.n, today)
        bought = summary.bought
        x, t_x, age = summary.frequency[bought], summary.recency[bought], summary.age[bought]
        if call.func == "p_alive":
            out[bought] = fit.beta_geo.p_alive(x, t_x, age)
            return out
        horizon = call.kwarg("horizon")
        assert isinstance(horizon, Duration)
        weeks = horizon.seconds / (clv.UNIT_DAYS * 86_400)
        expected = fit.beta_geo.expected_purchases(weeks, x, t_x, age)
        if call.func == "predicted_clv":
            assert fit.gamma_gamma is not None
            expected = expected * fit.gamma_gamma.expected_spend(x, summary.monetary[bought])
        out[bought] = expected
        return out

    def _text_codes(self, prop: str) -> np.ndarray:
        """The property's codes with values of mixed types read as text (see ``sequences.text_codes``)."""
        key = ("text codes", prop)
        codes = self.cache.masks.get(key)
        if codes is None:
            raw = self.events.prop(prop)
            numbered = None
            if isinstance(raw, np.ndarray) and raw.dtype.kind == "f":
                numbered = sequences.integer_codes(raw)  # whole numbers in a short span: no sort
            if numbered is None:
                numbered = sequences.text_codes(self._encoded(prop))
            codes = self.cache.masks[key] = numbered
        return codes

    def _sessions(self, call: Call, window: np.ndarray) -> np.ndarray:
        """``sessions()``: distinct values of the session property per customer, optionally only those of
        sessions with (``with=``) or without (``without=``) an event of some types."""
        codes = self._text_codes(lang.group_property(call) or lang.SESSION_PROPERTY)
        mask = window & (codes >= 0)  # an event without a session id belongs to no session
        types = self.events.type[mask]
        marks: dict[str, np.ndarray | None] = {}
        for key in ("with", "without"):
            names = tuple(name.parts[0] for name in lang.kwarg_events(call, key))
            marks[key] = type_mask(types, self.events.type_names, names) if names else None
        return sequences.distinct_pairs(
            self.events.customer[mask], codes[mask], self.n, required=marks["with"], refused=marks["without"]
        )

    def _sequence(self, call: Call, window: np.ndarray) -> np.ndarray:
        """``sequence()``: whether each customer's events in the window follow the listed steps."""
        steps = [arg.parts[0] for arg in call.args if isinstance(arg, Name)]
        follow = [name.parts[0] for name in lang.kwarg_events(call, "not_followed_by")]
        mask = window & self._type_mask(tuple(sorted({*steps, *follow})))
        types = self.events.type[mask]
        names = self.events.type_names
        gap, wait = call.kwarg("gap"), call.kwarg("for")
        before = call.kwarg("before")
        return sequences.sequence_matches(
            self.events.customer[mask],
            self.events.ts[mask],
            [type_mask(types, names, (step,)) for step in steps],
            self.n,
            gap_us=_seconds_us(gap) if gap is not None else None,
            follow=type_mask(types, names, follow) if follow else None,
            end_us=self.now_us - (_seconds_us(before) if before is not None else 0),
            for_us=_seconds_us(wait) if wait is not None else None,
        )


# ---------------------------------------------------------------------------------------------- helpers


def column_evaluator(frame: CustomerFrame) -> Evaluator:
    """An evaluator over plain columns (no events): what ``where=`` filters evaluate their rows with."""
    return Evaluator(EventFrame.empty(frame.n), frame, 0, cache=AggregateCache())


def last_values(
    cust: np.ndarray, ts: np.ndarray, numbers: np.ndarray, text_rank: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, from events that each have a value (a number, or text where ``numbers`` is NaN with
    its rank in ``text_rank``): the latest time (``NEVER`` if none), the smallest number at that instant
    (NaN if none) and the smallest text rank there (``NO_RANK`` if none)."""
    latest = np.full(n, NEVER, dtype=np.int64)
    np.maximum.at(latest, cust, ts)
    at_latest = ts == latest[cust]
    is_number = ~np.isnan(numbers)
    smallest = np.full(n, np.inf)
    np.minimum.at(smallest, cust[at_latest & is_number], numbers[at_latest & is_number])
    ranks = np.full(n, NO_RANK, dtype=np.int64)
    texts = at_latest & ~is_number
    np.minimum.at(ranks, cust[texts], text_rank[texts])
    return latest, np.where(np.isinf(smallest), np.nan, smallest), ranks


def last_column(number: np.ndarray, text_rank: np.ndarray, by_rank: np.ndarray) -> np.ndarray:
    """What ``last()`` gives over a property that holds text: the number where there is one at the latest
    instant, else the text of the rank (None for null), as an object column."""
    out = np.full(len(number), None, dtype=object)
    texts = np.isnan(number) & (text_rank != NO_RANK)
    out[texts] = by_rank[text_rank[texts]]
    numbers = ~np.isnan(number)
    out[numbers] = number[numbers].tolist()
    return out


def text_values(values: np.ndarray) -> bool:
    """Whether a property's distinct values include anything that is not a number (text)."""
    return values.dtype == object and bool(np.isnan(event_numbers(values)).any())


def _seconds_us(node: Node) -> int:
    assert isinstance(node, lang.Duration)
    return round(node.seconds * US_PER_SECOND)


def type_mask(codes: np.ndarray, type_names: Sequence[str], names: Iterable[str]) -> np.ndarray:
    """Where ``codes`` (indexes into ``type_names``, -1 for unknown) is one of ``names``: one gather
    through a lookup table instead of a comparison per listed type."""
    lookup = np.zeros(len(type_names) + 1, dtype=bool)  # the extra last slot is what code -1 reads
    wanted = set(names)
    for code, name in enumerate(type_names):
        lookup[code] = name in wanted
    return lookup[codes]


# Sums are taken in millionths of a unit, as whole numbers that float64 holds exactly (up to 2**53),
# so that a sum does not depend on the order of its terms and can be updated by adding and removing
# values with no drift. Values are rounded to six decimals first.
MICROS = 1_000_000.0


def to_micros(values: np.ndarray) -> np.ndarray:
    return np.round(values * MICROS)


# Above this many cells a customer-by-value count matrix costs too much memory; sort instead.
MATRIX_CELLS = 1 << 25


def _distinct_per_customer(cust: np.ndarray, codes: np.ndarray, width: int, n: int) -> np.ndarray:
    """How many different codes each customer has."""
    keys = cust.astype(np.int64) * width + codes
    if n * width <= MATRIX_CELLS:
        seen = np.bincount(keys, minlength=n * width).reshape(n, width) > 0
        return seen.sum(axis=1).astype(np.float64)
    pairs = np.unique(keys)
    return np.bincount(pairs // width, minlength=n).astype(np.float64)


def _top(cust: np.ndarray, ranked: np.ndarray, width: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, the count of its most frequent value and that value's rank (smallest rank on ties)."""
    keys = cust.astype(np.int64) * width + ranked
    if n * width <= MATRIX_CELLS:
        matrix = np.bincount(keys, minlength=n * width).reshape(n, width)
        top_rank = matrix.argmax(axis=1)  # the first maximum, which is the smallest rank
        return matrix[np.arange(n), top_rank].astype(np.float64), top_rank
    pairs, counts = np.unique(keys, return_counts=True)
    owners = pairs // width
    order = np.lexsort((pairs % width, -counts, owners))
    owners_sorted = owners[order]
    first = np.ones(len(order), bool)
    first[1:] = owners_sorted[1:] != owners_sorted[:-1]
    top_count = np.zeros(n, np.float64)
    top_rank = np.zeros(n, np.int64)
    top_count[owners_sorted[first]] = counts[order][first]
    top_rank[owners_sorted[first]] = (pairs % width)[order][first]
    return top_count, top_rank


NEVER = np.iinfo(np.int64).min
NO_RANK = np.iinfo(np.int64).max


def value_rank(values: np.ndarray) -> np.ndarray:
    """rank[code] = position of values[code] in sorted order (text and numbers compare as text)."""
    keys = np.array([str(v) for v in values], dtype=str) if values.dtype == object else values
    order = np.argsort(keys, kind="stable")
    rank = np.empty(len(values), np.int64)
    rank[order] = np.arange(len(values))
    return rank


def _broadcast(value: Value, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        if isinstance(value, str):
            out = np.empty(n, dtype=object)
            out[:] = value
            return out
        return np.full(n, arr.item())
    return arr


def _is_null(value: Value) -> Any:
    arr = np.asarray(value)
    if arr.dtype == object:
        # Elementwise comparison of object arrays runs in numpy's loop, not in a Python comprehension.
        none: Any = None
        nulls = np.asarray(np.equal(arr, none), dtype=np.bool_) | np.asarray(
            np.equal(arr, ""), dtype=np.bool_
        )
        return nulls | np.asarray(np.not_equal(arr, arr), dtype=np.bool_)  # NaN is the one value != itself
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    return np.zeros(arr.shape, bool)


def _truthy(value: Value) -> Any:
    arr = np.asarray(value)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "fiu":
        with np.errstate(invalid="ignore"):
            return (arr != 0) & ~np.isnan(arr.astype(np.float64))
    if arr.dtype == object:
        return np.array(
            [bool(v) and not (isinstance(v, float) and v != v) for v in arr.ravel()], dtype=bool
        ).reshape(arr.shape)
    return arr.astype(bool)


def event_numbers(values: np.ndarray) -> np.ndarray:
    """An event property's values as float64 for sums and means: a value that is not a number (text,
    a boolean) counts as missing, like an absent one, so that one odd event cannot stop a tick."""
    if values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    return np.array(
        [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values.tolist()],
        dtype=np.float64,
    )


def _number(value: Value) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)  # no copy: nothing writes into an operand
    if arr.dtype == object:
        out = np.full(arr.shape, np.nan)
        for i, v in enumerate(arr.ravel()):
            if isinstance(v, bool) or v is None:
                out.flat[i] = np.nan if v is None else float(v)
            elif isinstance(v, int | float):
                out.flat[i] = v
            else:
                raise ExpressionError(f"{v!r} is text, not a number")
        return out
    raise ExpressionError(f"{arr.item() if arr.ndim == 0 else 'a text column'!r} is not a number")


def median_gaps(customer: np.ndarray, group: np.ndarray, ts: np.ndarray, n: int) -> np.ndarray:
    """Per customer slot, the median of the gaps (seconds) between consecutive events of one group, with
    the gaps of all the customer's groups taken together; NaN where there is no gap. An even number of
    gaps gives the mean of the middle two."""
    order = np.lexsort((ts, group, customer))
    customer, group, ts = customer[order], group[order], ts[order]
    follows = (customer[1:] == customer[:-1]) & (group[1:] == group[:-1])
    gaps, owner = np.diff(ts)[follows], customer[1:][follows]
    order = np.lexsort((gaps, owner))
    gaps, owner = gaps[order], owner[order]
    counts = np.bincount(owner, minlength=n)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    low, high = starts[has] + (counts[has] - 1) // 2, starts[has] + counts[has] // 2
    out = np.full(n, np.nan)
    out[has] = (gaps[low] + gaps[high]) / (2 * US_PER_SECOND)
    return out


def _compare(op: str, left: Value, right: Value) -> Any:
    a, b = np.asarray(left), np.asarray(right)
    if a.dtype == object or b.dtype == object or a.dtype.kind == "U" or b.dtype.kind == "U":
        missing = _is_null(a) | _is_null(b)
        if op in ("==", "!="):
            result = (a == b) if op == "==" else (a != b)
            return np.asarray(result, dtype=bool) & ~missing
        fa = np.where(missing, "", a).astype(str) if a.dtype == object or a.dtype.kind == "U" else a
        fb = np.where(missing, "", b).astype(str) if b.dtype == object or b.dtype.kind == "U" else b
        try:
            result = _ordered(op, fa, fb)
        except TypeError as exc:
            raise ExpressionError(f"cannot compare text with a number using {op}") from exc
        return np.asarray(result, dtype=bool) & ~missing
    with np.errstate(invalid="ignore"):
        result = a == b if op == "==" else a != b if op == "!=" else _ordered(op, a, b)
    result = np.asarray(result, dtype=bool)
    # NaN (null) already compares false; only under != must null be made false as well.
    return result & ~(_is_null(a) | _is_null(b)) if op == "!=" else result


def _ordered(op: str, a: Any, b: Any) -> Any:
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def to_python(value: Any) -> Any:
    """A numpy element as a plain Python value for templates: NaN and infinity become None (a template
    cannot do arithmetic with "never"), whole floats become ints."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def fit_for(fits: Mapping[tuple[str, str], clv.Fit], event: str, prop: str | None) -> clv.Fit | None:
    """The fit of ``event`` valued by ``prop``; without ``prop``, the newest fit of ``event`` (the mapping
    lists fits oldest first)."""
    if prop is not None:
        return fits.get((event, prop))
    found = [fit for (e, _), fit in fits.items() if e == event]
    return found[-1] if found else None
