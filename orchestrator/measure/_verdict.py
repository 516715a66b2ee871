"""One call per journey and metric, stated with its rule: ship, no detectable effect, harmful, or not enough
data yet.

The call is read off the **always-valid** interval of the absolute lift (``_sequential``), the interval that
may be read every day without inflating the error rate, so a call made today stays honest however often the
report was opened before. With ``target`` the smallest effect worth acting on (absolute, in the metric's
unit):

1. **not enough data yet** while an arm has fewer than ``MIN_PER_ARM`` entries or the two arms together
   fewer than ``MIN_CONVERSIONS`` conversions (a rate metric): below that the intervals' normal
   approximations are not to be trusted, whatever they say;
2. **ship** (keep the journey) when the interval lies above zero;
3. **harmful** when it lies below zero;
4. **no detectable effect** when it holds zero and lies inside ``(-target, +target)``: an effect as large as
   the target, either way, is ruled out;
5. otherwise **not enough data yet**, with the entries the interval needs to settle, were the estimate and
   the arms' spread to stay as they are (the smallest size at which its half-width falls to ``|estimate|``,
   which would exclude zero, or to ``target - |estimate|``, which would rule the target out), and the days
   that takes at the journey's current rate of entries.

The call never contradicts the interval shown beside it: "ship" and "harmful" only with an interval that
excludes zero, "no detectable effect" only with one inside the target band.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from orchestrator.measure._numbers import Interval
from orchestrator.measure._sequential import always_valid_bounds

SHIP = "ship"
NO_EFFECT = "no detectable effect"
HARMFUL = "harmful"
NOT_ENOUGH = "not enough data yet"

#: Below this many entries in either arm, or conversions in both arms together, no call is made.
MIN_PER_ARM = 100
MIN_CONVERSIONS = 10
#: The target effect when none is declared: this share of the held-out arm's mean (10% relative).
DEFAULT_TARGET_SHARE = 0.10
#: The furthest projection of entries needed, as a multiple of the entries so far.
MAX_GROWTH = 10_000


@dataclass(frozen=True)
class Verdict:
    """The call and the rule it came from, in words (``reason``), with the target it was read against and,
    while more data is needed, how much (``entries_needed`` more entries, ``days_needed`` at the current
    rate; None when they cannot be projected)."""

    call: str
    reason: str
    target: float | None
    entries_needed: int | None = None
    days_needed: float | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out


def small_sample_warnings(n_t: int, n_c: int, conversions: int | None) -> tuple[str, ...]:
    """The warnings of a comparison (or a breakdown row) with too few entries or conversions."""
    found = []
    if min(n_t, n_c) < MIN_PER_ARM:
        found.append(f"small sample: {min(n_t, n_c)} entries in the smaller arm (fewer than {MIN_PER_ARM})")
    if conversions is not None and conversions < MIN_CONVERSIONS:
        found.append(f"few conversions: {conversions} in both arms (fewer than {MIN_CONVERSIONS})")
    return tuple(found)


def judge(
    *,
    estimate: float | None,
    interval: Interval | None,
    variance: float | None,
    n_t: int,
    n_c: int,
    conversions: int | None,
    target: float | None,
    tau: float,
    alpha: float = 0.05,
    entries_per_day: float | None = None,
) -> Verdict:
    """The call on one comparison (see the module docstring). ``interval`` is the always-valid interval of
    ``estimate``, computed with ``variance`` (the sampling variance of the difference at these sizes) and
    mixing sd ``tau``; ``conversions`` is None for a mean metric; ``entries_per_day`` is the journey's
    rate of counted entries (both arms), for the days still needed."""
    warnings = small_sample_warnings(n_t, n_c, conversions)
    band = None if target is None else abs(target)
    if warnings:
        return Verdict(NOT_ENOUGH, "; ".join(warnings) + ": no call yet", band, warnings=warnings)
    if interval is None or estimate is None:
        return Verdict(NOT_ENOUGH, "no always-valid interval yet (no spread in the arms)", band)
    if interval.low > 0.0:
        return Verdict(SHIP, "the always-valid interval lies above zero: the treated arm does better", band)
    if interval.high < 0.0:
        return Verdict(HARMFUL, "the always-valid interval lies below zero: the treated arm does worse", band)
    if band is not None and band > 0.0 and -band < interval.low and interval.high < band:
        return Verdict(
            NO_EFFECT,
            f"the always-valid interval holds zero and lies within +/-{band:.4g}: an effect as large as the "
            "target is ruled out",
            band,
        )
    needed = None if variance is None else _entries_needed(estimate, variance, n_t + n_c, band, tau, alpha)
    days = None
    if needed is not None and entries_per_day is not None and entries_per_day > 0.0:
        days = needed / entries_per_day
    what = "zero or the target" if band else "zero"
    return Verdict(
        NOT_ENOUGH,
        f"the always-valid interval holds zero and is too wide to rule out {what}",
        band,
        entries_needed=needed,
        days_needed=days,
    )


def _entries_needed(
    estimate: float, variance: float, entries: int, band: float | None, tau: float, alpha: float
) -> int | None:
    """More entries (both arms, in today's proportions) until the always-valid half-width falls to what
    would settle the call at today's estimate and spread; None when it cannot (no spread, or beyond
    ``MAX_GROWTH`` times today's entries)."""
    if not (variance > 0.0 and math.isfinite(variance) and entries > 0):
        return None
    size = abs(estimate)
    goal = max(size, (band - size) if band else 0.0)
    if not goal > 0.0:
        return None
    # The variance of the difference falls as 1 / entries at fixed proportions: V(k) = V * n / k.
    grid = np.unique(np.round(entries * np.geomspace(1.0, MAX_GROWTH, 4000)).astype(np.int64))
    low, high = always_valid_bounds(np.zeros(len(grid)), variance * entries / grid, tau, alpha)
    half = (high - low) / 2.0
    settled = np.flatnonzero(half <= goal)
    if not len(settled):
        return None
    return max(int(grid[settled[0]]) - entries, 0)
