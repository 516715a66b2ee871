"""Column-at-a-time values of the built-in metrics that are not plain aggregates.

Each function takes whole float64 columns (NaN for null), one element per customer slot, and returns a
column of the same length: no per-customer Python. ``docs/metrics.md`` states every rule; the parse-time
side of the built-ins is ``signals._builtins``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.signals._builtins import DAY_SECONDS, LAPSED, TIERS

# Named RFM segments by recency score (rows, 1 to 5) and frequency score (columns, 1 to 5): the widely
# used R/F grid, with its lowest corner (recency 1, frequency 1-2) named "lost" and the rest of the old
# and rare customers (recency 2, frequency 1-2) "hibernating".
RFM_GRID: tuple[tuple[str, ...], ...] = (
    ("lost", "lost", "at_risk", "at_risk", "cannot_lose"),
    ("hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose"),
    ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),
    ("new_customer", "potential_loyalist", "potential_loyalist", "champions", "champions"),
)
SEGMENTS: tuple[str, ...] = tuple(dict.fromkeys(name for row in RFM_GRID for name in row))

# change() is rounded to this many decimals, so that a rate that fell by exactly 40% compares equal to
# the literal -0.4 (see docs/metrics.md, "Float boundaries").
CHANGE_DECIMALS = 9

QUANTILES = 5


def days(seconds: np.ndarray) -> np.ndarray:
    """Seconds as days; infinite (no event) becomes null."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(seconds), seconds / DAY_SECONDS, np.nan)


def quintile(values: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Score 1..5 of each customer in ``population`` whose value is not null:
    ``1 + floor(5 * (customers with a strictly smaller value) / (customers with a value))``.

    Equal values share a score (the one of their first rank); infinities are values like any other.
    Customers outside the population, or with a null value, get null.
    """
    out = np.full(len(values), np.nan)
    members = population & ~np.isnan(values)
    ranked = values[members]
    if not len(ranked):
        return out
    m = len(ranked)
    # One sort, then each run of equal values takes the position of its first element (how many values
    # are strictly smaller); about twice as fast as a binary search per customer.
    order = np.argsort(ranked)
    ordered = ranked[order]
    first_of_run = np.empty(m, bool)
    first_of_run[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first_of_run[1:])
    run_start = np.maximum.accumulate(np.where(first_of_run, np.arange(m), 0))
    smaller = np.empty(m, np.int64)
    smaller[order] = run_start
    out[members] = 1 + (QUANTILES * smaller) // m  # whole numbers: no float rounding at all
    return out


def rfm_segment(recency_score: np.ndarray, frequency_score: np.ndarray) -> np.ndarray:
    """The segment name of each (recency score, frequency score) pair; null unless both are 1..5."""
    grid = np.empty((QUANTILES, QUANTILES), dtype=object)
    for r, row in enumerate(RFM_GRID):
        grid[r, :] = row
    out = np.full(len(recency_score), None, dtype=object)
    valid = _score(recency_score) & _score(frequency_score)
    out[valid] = grid[recency_score[valid].astype(np.int64) - 1, frequency_score[valid].astype(np.int64) - 1]
    return out


def _score(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (values >= 1) & (values <= QUANTILES) & (values == np.floor(values))


def lifecycle_tier(
    recency_days: np.ndarray, frequency: np.ndarray, thresholds: Sequence[tuple[float, float]]
) -> np.ndarray:
    """The first tier whose ``recency_days <= most days`` and ``frequency >= fewest events`` both hold,
    tried in the order of ``TIERS``; ``lapsed`` otherwise (a null recency or frequency never holds)."""
    out = np.full(len(recency_days), LAPSED, dtype=object)
    undecided = np.ones(len(recency_days), bool)
    with np.errstate(invalid="ignore"):
        for name, (most_days, fewest_events) in zip(TIERS, thresholds, strict=True):
            hit = undecided & (recency_days <= most_days) & (frequency >= fewest_events)
            out[hit] = name
            undecided &= ~hit
    return out


def nps_group(scores: np.ndarray) -> np.ndarray:
    """``promoter`` for 9 to 10, ``passive`` for 7 up to 9, ``detractor`` for 0 up to 7, else null."""
    out = np.full(len(scores), None, dtype=object)
    with np.errstate(invalid="ignore"):
        out[(scores >= 0) & (scores < 7)] = "detractor"
        out[(scores >= 7) & (scores < 9)] = "passive"
        out[(scores >= 9) & (scores <= 10)] = "promoter"
    return out


def change(
    recent: np.ndarray,
    baseline: np.ndarray,
    recent_seconds: float | np.ndarray,
    baseline_seconds: float | np.ndarray,
) -> np.ndarray:
    """``(recent / recent days) / (baseline / baseline days) - 1``, rounded to ``CHANGE_DECIMALS``;
    null where the baseline is 0 or null, or the recent window has no length yet. The lengths are one
    number, or one per customer (calendar periods).

    Computed as ``(recent * baseline length) / (baseline * recent length) - 1``: for counts and windows
    of whole seconds both products are exact whole numbers, so the one division is the only rounding.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (recent * baseline_seconds) / (baseline * recent_seconds)
        out = np.round(ratio - 1, CHANGE_DECIMALS)
    return np.where(baseline == 0, np.nan, out)
