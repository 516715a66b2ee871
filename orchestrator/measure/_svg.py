"""What the pages' SVG charts share: an axis fitted to the values drawn, its round ticks and their labels.

An axis fits its data: it spans the values that matter (``core``: estimates and their 95% intervals),
stays inside the range the quantity can take (``limits``: a rate between 0% and 100%, a difference of
rates between -100 and +100 points), and shows the wider intervals drawn behind (``wide``: the
always-valid ones, which can be very wide on the first days) only up to ``reach`` times the core's span
beyond it; what lies further is cut at the chart's edge, and ``Axis.clipped`` says so, so the page can
tell the reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_PAD = 0.08  # of the span, on each side


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    out = []
    value = first
    while value <= high + step * 1e-9:
        out.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return out


def decimals(step: float) -> int:
    """The fewest decimals that write every multiple of ``step`` exactly (20 -> 0, 2.5 -> 1, 0.25 -> 2)."""
    step = abs(step)
    for places in range(7):
        if abs(round(step, places) - step) <= 1e-9 * max(step, 1.0):
            return places
    return 6


def bounds(values: Sequence[float], include_zero: bool) -> tuple[float, float]:
    """The range to draw ``values`` (and zero, when asked) in, padded by 8% on each side."""
    finite = [v for v in values if math.isfinite(v)]
    if include_zero:
        finite.append(0.0)
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * _PAD
    return low - pad, high + pad


@dataclass(frozen=True)
class Axis:
    """A fitted axis: the range drawn, its round ticks and their step, and whether a wide value was cut."""

    low: float
    high: float
    ticks: tuple[float, ...]
    step: float
    clipped: bool

    def clamp(self, value: float) -> float:
        """``value`` held inside the axis (where a cut interval ends at the chart's edge)."""
        return min(max(value, self.low), self.high)

    def cut(self, value: float) -> bool:
        """Whether ``value`` lies outside the axis, so the chart shows it cut."""
        return value < self.low or value > self.high


def fit_axis(
    core: Iterable[float],
    wide: Iterable[float] = (),
    *,
    limits: tuple[float, float] = (-math.inf, math.inf),
    include_zero: bool = False,
    reach: float = 1.0,
    count: int = 5,
) -> Axis:
    """The axis for ``core`` values (always shown, within ``limits``) and ``wide`` ones (shown up to
    ``reach`` times the core's span beyond it), with zero when ``include_zero``; padded by 8% on each side
    but never past ``limits``. See the module docstring."""
    lo_limit, hi_limit = limits
    kept = [min(max(v, lo_limit), hi_limit) for v in core if math.isfinite(v)]
    extra = [v for v in wide if math.isfinite(v)]
    if include_zero and lo_limit <= 0.0 <= hi_limit:
        kept.append(0.0)
    if not kept and extra:  # nothing but wide values: they are the data
        kept, extra = [min(max(v, lo_limit), hi_limit) for v in extra], []
    if not kept:
        low, high = (0.0, 1.0) if lo_limit <= 0.0 and hi_limit >= 1.0 else (lo_limit, hi_limit)
        if not (math.isfinite(low) and math.isfinite(high)):
            low, high = 0.0, 1.0
        return _axis(low, high, False, count)
    low, high = min(kept), max(kept)
    span = high - low
    if span == 0:
        span = abs(high) * 0.2 or 1.0
    reach_low, reach_high = max(lo_limit, low - reach * span), min(hi_limit, high + reach * span)
    clipped = any(v < reach_low or v > reach_high for v in extra)
    for v in extra:
        low, high = min(low, max(v, reach_low)), max(high, min(v, reach_high))
    pad = (high - low) * _PAD if high > low else abs(high) * 0.1 or 1.0
    low, high = max(lo_limit, low - pad), min(hi_limit, high + pad)
    if high <= low:  # a value on a limit with nothing else: open the axis away from the limit
        high = low + 1.0 if math.isfinite(low) else high
        low = high - 1.0 if not math.isfinite(low) else low
    return _axis(low, high, clipped, count)


def _axis(low: float, high: float, clipped: bool, count: int) -> Axis:
    values = ticks(low, high, count)
    step = values[1] - values[0] if len(values) > 1 else (high - low or 1.0)
    return Axis(low=low, high=high, ticks=tuple(values), step=step, clipped=clipped)


def tick_label(
    value: float, step: float, *, scale: float = 1.0, signed: bool = False, suffix: str = ""
) -> str:
    """A tick's label with as many decimals as its step needs: ``+20 pts``, ``2.5%``, ``1,000``."""
    places = decimals(step * scale)
    shown = value * scale
    if abs(shown) < 0.5 * 10**-places:
        return f"{0:.{places}f}{suffix}"  # zero has no sign
    sign = "+" if signed else ""
    return f"{shown:{sign},.{places}f}{suffix}"
