"""How the text and HTML reports write figures: one formatter per kind of figure, shared by both.

Contract: every formatter takes ``None`` (an undefined figure) and returns ``n/a`` for it; rates are shown as
percentages (lifts of a rate in percentage points), means with the format spec the caller passes.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.measure._analysis import RATE, MetricArm
from orchestrator.measure._numbers import Interval
from orchestrator.measure._svg import tick_label
from orchestrator.money import money

Formatter = Callable[[float | None], str]
#: A chart's tick label from the tick's value and the step between ticks (which sets the decimals).
AxisLabel = Callable[[float, float], str]


def value_formatter(kind: str, mean_spec: str) -> Formatter:
    """A metric's value: a rate as a percentage with two decimals, a mean with ``mean_spec`` (``.4f``)."""
    if kind == RATE:
        return lambda x: "n/a" if x is None else f"{x * 100:.2f}%"
    return lambda x: "n/a" if x is None else format(x, mean_spec)


def lift_formatter(kind: str, mean_spec: str) -> Formatter:
    """A signed lift: of a rate in percentage points (``+1.23 pts``), of a mean with ``mean_spec``."""
    if kind == RATE:
        return lambda x: "n/a" if x is None else f"{x * 100:+.2f} pts"
    return lambda x: "n/a" if x is None else format(x, "+" + mean_spec)


def axis_label(kind: str, signed: bool = False) -> AxisLabel:
    """Tick labels for a metric's axis: a rate in percent (``20%``), its lift in points (``+20 pts``), a mean
    as a number (``+2.5``); as many decimals as the ticks' step needs."""
    if kind == RATE:
        suffix = " pts" if signed else "%"
        return lambda v, step: tick_label(v, step, scale=100.0, signed=signed, suffix=suffix)
    return lambda v, step: tick_label(v, step, signed=signed)


def money_formatter(currency: str | None, *, signed: bool = False, plain: str = ".2f") -> Formatter:
    """Amounts in ``currency`` (``orchestrator.money``; the format spec ``plain`` when None)."""
    return lambda x: "n/a" if x is None else money(x, currency, signed=signed, plain=plain)


def amount_formatters(currency: str | None, plain: str) -> tuple[Formatter, Formatter]:
    """An amount and its signed lift in ``currency`` (``plain`` without one)."""
    return money_formatter(currency, plain=plain), money_formatter(currency, signed=True, plain=plain)


def metric_formatters(
    kind: str, mean_spec: str, currency: str | None, *, money: bool
) -> tuple[Formatter, Formatter]:
    """A metric's value and lift formatters: by kind, or in ``currency`` when the metric is ``money``."""
    if money and kind != RATE:
        return amount_formatters(currency, mean_spec)
    return value_formatter(kind, mean_spec), lift_formatter(kind, mean_spec)


def points(x: float | None) -> str:
    """A difference of rates in percentage points, signed, without the unit: ``+1.23``."""
    return "n/a" if x is None else f"{100 * x:+.2f}"


def points_span(interval: Interval | None) -> str:
    """Both ends of an interval of a difference of rates in points: ``-0.15 to +38.79``."""
    return interval_text(interval, points)


def percent(x: float | None, signed: bool = False) -> str:
    """A share as a percentage with one decimal, signed (a relative lift) or not (a rate)."""
    if x is None:
        return "n/a"
    return f"{x * 100:+.1f}%" if signed else f"{x * 100:.1f}%"


def signed_percent(x: float | None) -> str:
    """A relative lift: ``+12.3%``."""
    return percent(x, signed=True)


def p_value(p: float | None) -> str:
    """A p-value as a figure for a table cell: ``< 0.001`` below one in a thousand, else three decimals."""
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p: float | None) -> str:
    """A p-value for running text: ``p < 0.001``, ``p = 0.042`` or ``p n/a``."""
    figure = p_value(p)
    return f"p {figure}" if p is None or p < 0.001 else f"p = {figure}"


def interval_text(interval: Interval | None, fmt: Formatter, pattern: str = "{low} to {high}") -> str:
    """Both ends of ``interval`` written with ``fmt`` into ``pattern``; ``n/a`` for an undefined interval."""
    if interval is None:
        return "n/a"
    return pattern.format(low=fmt(interval.low), high=fmt(interval.high))


def arm_figures(arm: MetricArm, kind: str, total_spec: str, sd_spec: str) -> tuple[str, str]:
    """An arm's total (whole conversions for a rate, ``total_spec`` for a mean) and standard deviation."""
    total = f"{int(arm.total)}" if kind == RATE else format(arm.total, total_spec)
    sd = "n/a" if arm.sd is None else format(arm.sd, sd_spec)
    return total, sd
