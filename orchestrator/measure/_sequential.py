"""The always-valid (sequential-safe) interval of a difference: safe to read at every look.

``always_valid_bounds`` is vectorised and returns NaN where the interval does not exist;
``always_valid_interval`` is its scalar form, None where it does not exist.
"""

from __future__ import annotations

import math

import numpy as np

from orchestrator.measure._numbers import Interval, check_alpha, finite

DEFAULT_SEQUENTIAL_TAU = 0.1
"""Default spread of the always-valid interval's mixing distribution, in standard deviations of the metric."""

SEQUENTIAL_METHOD = (
    "always-valid: normal-mixture sequential probability ratio test (mSPRT) confidence sequence; "
    "mixing sd tau = {tau:g} standard deviations of the metric; plug-in variances"
)


def always_valid_bounds(
    estimate: np.ndarray | float, variance: np.ndarray | float, tau: np.ndarray | float, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid (sequential-safe) interval of a difference estimate with sampling ``variance``.

    The normal-mixture SPRT confidence sequence (Robbins; Johari, Pekelis and Walsh, "Always valid
    inference", 2017): with ``V = variance`` and mixing variance ``tau**2``, the set of differences ``d``
    with ``(estimate - d)**2 < V (V + tau**2) / tau**2 * (2 log(1/alpha) + log((V + tau**2) / V))``.
    Its coverage holds simultaneously at every look, so it can be read every day without inflating the
    error rate, at the price of being wider than the fixed-horizon interval. ``tau`` tunes where it is
    tightest (at the sample size where ``tau**2`` is about 8 ``V``); choose it before looking at the data.
    Vectorised over numpy arrays; entries with ``V <= 0`` or ``tau <= 0`` come back as NaN.
    """
    check_alpha(alpha)
    est = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = np.asarray(tau, dtype=np.float64) ** 2
    valid = (v > 0.0) & (t2 > 0.0) & np.isfinite(v) & np.isfinite(t2)
    v_safe = np.where(valid, v, 1.0)
    t2_safe = np.where(valid, t2, 1.0)
    half = np.sqrt(
        v_safe
        * (v_safe + t2_safe)
        / t2_safe
        * (2.0 * math.log(1.0 / alpha) + np.log((v_safe + t2_safe) / v_safe))
    )
    half = np.where(valid, half, np.nan)
    return est - half, est + half


def always_valid_interval(estimate: float, variance: float, tau: float, alpha: float) -> Interval | None:
    """``always_valid_bounds`` of one estimate as an ``Interval``; None where the interval does not exist."""
    low, high = always_valid_bounds(estimate, variance, tau, alpha)
    lo, hi = finite(low), finite(high)
    return None if lo is None or hi is None else Interval(lo, hi)
