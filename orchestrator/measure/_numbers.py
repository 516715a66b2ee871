"""The shared ground of the lift statistics: intervals, input checks, and the relative lift with its
log-ratio interval.

Contract: every checker raises ``ValueError`` with a readable message on bad input (alpha or power outside
(0, 1), a non-0/1 conversion column, non-finite values); ``finite`` is the one place where NaN and infinity
become None, so no function of the statistics returns a non-finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Interval:
    """A closed confidence interval ``[low, high]``."""

    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def interval_dict(interval: Interval | None) -> dict[str, float] | None:
    """``interval`` as ``{"low", "high"}``, or None for an undefined interval."""
    return None if interval is None else interval.to_dict()


def finite(x: Any) -> float | None:
    """``float(x)`` if it is finite, else None: the one place NaN and infinity turn into 'undefined'."""
    value = float(x)
    return value if math.isfinite(value) else None


def check_alpha(alpha: float) -> None:
    """ValueError unless ``0 < alpha < 1``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")


def as_converted(converted: np.ndarray) -> np.ndarray:
    """A 1-D bool array; numeric input must be 0/1 (anything else is a caller's bug, not a conversion)."""
    arr = np.asarray(converted)
    if arr.ndim != 1:
        raise ValueError("converted must be one-dimensional")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError("converted must be boolean or 0/1")
    return arr.astype(bool)


def as_revenue(revenue: np.ndarray) -> np.ndarray:
    """A 1-D float64 array of finite values (any metric, covariate or revenue column)."""
    arr = np.asarray(revenue, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("revenue must be one-dimensional")
    if not np.isfinite(arr).all():
        raise ValueError("revenue must be finite (no NaN or infinity); use 0 for no revenue")
    return arr


def z_quantile(alpha: float) -> float:
    """The standard normal quantile of a two-sided interval at confidence ``1 - alpha``."""
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


def check_power(power: float) -> None:
    """ValueError unless ``0 < power < 1``."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be within (0, 1), got {power}")


def relative_lift(
    m_t: float, var_t: float, n_t: int, m_c: float, var_c: float, n_c: int, alpha: float
) -> tuple[float | None, Interval | None]:
    """Relative lift ``m_t / m_c - 1`` and its interval on the log of the ratio (Katz et al. 1978 for
    rates; the delta method on ``log m_t - log m_c`` for means)::

        var_log = var_t / (n_t * m_t**2) + var_c / (n_c * m_c**2)
        CI      = exp(log(m_t / m_c) +/- z_(1 - alpha/2) * sqrt(var_log)) - 1

    The interval never reaches below -100% (a ratio is not negative) and is wider above the estimate than
    below it, as a ratio's uncertainty is. For rates (``var = p (1 - p)``) it is statsmodels'
    ``confint_proportions_2indep(compare="ratio", method="log")`` minus one.

    Undefined (None) when ``m_c == 0``: the ratio does not exist. The interval is also None when either
    mean is not above zero (the log does not exist: a treatment with no conversion has a relative lift of
    -100% and no interval) or when ``var_log`` is zero (no spread in either arm): a zero-width interval
    would claim certainty that the data cannot give.
    """
    if m_c == 0.0:
        return None, None
    relative = m_t / m_c - 1.0
    if not (m_t > 0.0 and m_c > 0.0):
        return finite(relative), None
    var_log = var_t / (n_t * m_t**2) + var_c / (n_c * m_c**2)
    if not var_log > 0.0 or not math.isfinite(var_log):
        return finite(relative), None
    half = z_quantile(alpha) * math.sqrt(var_log)
    centre = math.log(m_t / m_c)
    return finite(relative), Interval(math.expm1(centre - half), math.expm1(centre + half))
