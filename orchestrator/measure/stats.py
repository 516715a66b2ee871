"""Lift statistics: treatment arms against a control (holdout) arm.

Two metrics per comparison:

- conversion rate (``RateLift``): absolute lift ``p_t - p_c`` with a Newcombe hybrid-score interval
  (statsmodels ``confint_proportions_2indep(method="newcomb", compare="diff")``), a two-sided pooled
  two-proportion z-test p-value (statsmodels ``proportions_ztest``), and relative lift ``p_t / p_c - 1``
  with a delta-method interval;
- revenue per customer (``MeanLift``): absolute lift ``m_t - m_c`` with Welch's unequal-variance t-test
  p-value and interval (scipy ``ttest_ind(equal_var=False)``), and relative lift with a delta-method interval.

The relative-lift delta method is the one GrowthBook documents::

    var_rel = var_t / (n_t * m_c**2) + m_t**2 * var_c / (n_c * m_c**4)
    CI      = rel +/- z_(1 - alpha/2) * sqrt(var_rel)

with ``var = p (1 - p)`` for rates and the sample variance (ddof=1) for revenue.

Undefined is ``None``, never NaN and never an exception: every number returned is finite. What is
undefined, and why, is stated on each function.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

RATE_METHOD = (
    "absolute: Newcombe hybrid-score CI; p-value: pooled two-proportion z-test, two-sided; "
    "relative: delta-method CI"
)
MEAN_METHOD = "absolute: Welch t-test CI; p-value: Welch t-test, two-sided; relative: delta-method CI"


@dataclass(frozen=True)
class Interval:
    """A closed confidence interval ``[low, high]``."""

    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class ArmSummary:
    """Per-arm totals. ``rate`` and ``revenue_per_customer`` are None for an empty arm; ``revenue_sd``
    (sample standard deviation, ddof=1) is None below two customers."""

    name: str
    n: int
    conversions: int
    rate: float | None
    revenue_total: float
    revenue_per_customer: float | None
    revenue_sd: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "conversions": self.conversions,
            "rate": self.rate,
            "revenue_total": self.revenue_total,
            "revenue_per_customer": self.revenue_per_customer,
            "revenue_sd": self.revenue_sd,
        }


def _interval_dict(interval: Interval | None) -> dict[str, float] | None:
    return None if interval is None else interval.to_dict()


@dataclass(frozen=True)
class RateLift:
    """Lift of a treatment conversion rate over the control rate (see module docstring for methods)."""

    absolute: float
    absolute_ci: Interval
    relative: float | None
    relative_ci: Interval | None
    p_value: float | None
    method: str = RATE_METHOD

    def to_dict(self) -> dict[str, Any]:
        return {
            "absolute": self.absolute,
            "absolute_ci": self.absolute_ci.to_dict(),
            "relative": self.relative,
            "relative_ci": _interval_dict(self.relative_ci),
            "p_value": self.p_value,
            "method": self.method,
        }


@dataclass(frozen=True)
class MeanLift:
    """Lift of treatment revenue per customer over control (see module docstring for methods)."""

    absolute: float
    absolute_ci: Interval | None
    relative: float | None
    relative_ci: Interval | None
    p_value: float | None
    method: str = MEAN_METHOD

    def to_dict(self) -> dict[str, Any]:
        return {
            "absolute": self.absolute,
            "absolute_ci": _interval_dict(self.absolute_ci),
            "relative": self.relative,
            "relative_ci": _interval_dict(self.relative_ci),
            "p_value": self.p_value,
            "method": self.method,
        }


@dataclass(frozen=True)
class ArmComparison:
    """One treatment arm against the control arm; a lift is None when it is undefined as a whole."""

    arm: str
    control: str
    rate: RateLift | None
    revenue: MeanLift | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "control": self.control,
            "rate": None if self.rate is None else self.rate.to_dict(),
            "revenue": None if self.revenue is None else self.revenue.to_dict(),
        }


@dataclass(frozen=True)
class LiftResult:
    """Summaries of every arm (control first) and each non-control arm compared with the control."""

    control: str
    alpha: float
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[ArmComparison, ...]

    def arm(self, name: str) -> ArmSummary:
        """The summary of arm ``name`` (KeyError if there is none)."""
        for summary in self.arms:
            if summary.name == name:
                return summary
        raise KeyError(name)

    def comparison(self, name: str) -> ArmComparison:
        """The comparison of arm ``name`` with the control (KeyError if there is none)."""
        for comparison in self.comparisons:
            if comparison.arm == name:
                return comparison
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "alpha": self.alpha,
            "arms": [summary.to_dict() for summary in self.arms],
            "comparisons": [comparison.to_dict() for comparison in self.comparisons],
        }


def _finite(x: Any) -> float | None:
    """``float(x)`` if it is finite, else None: the one place NaN and infinity turn into 'undefined'."""
    value = float(x)
    return value if math.isfinite(value) else None


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")


def _as_converted(converted: np.ndarray) -> np.ndarray:
    """A 1-D bool array; numeric input must be 0/1 (anything else is a caller's bug, not a conversion)."""
    arr = np.asarray(converted)
    if arr.ndim != 1:
        raise ValueError("converted must be one-dimensional")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError("converted must be boolean or 0/1")
    return arr.astype(bool)


def _as_revenue(revenue: np.ndarray) -> np.ndarray:
    arr = np.asarray(revenue, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("revenue must be one-dimensional")
    if not np.isfinite(arr).all():
        raise ValueError("revenue must be finite (no NaN or infinity); use 0 for no revenue")
    return arr


def _z(alpha: float) -> float:
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


def _relative(
    m_t: float, var_t: float, n_t: int, m_c: float, var_c: float, n_c: int, alpha: float
) -> tuple[float | None, Interval | None]:
    """Relative lift ``m_t / m_c - 1`` and its delta-method interval.

    Undefined (None) when ``m_c == 0``: the ratio does not exist. The interval is also None when the
    delta-method variance is zero (no spread in either arm): a zero-width interval would claim certainty
    that the data cannot give.
    """
    if m_c == 0.0:
        return None, None
    relative = m_t / m_c - 1.0
    var_rel = var_t / (n_t * m_c**2) + m_t**2 * var_c / (n_c * m_c**4)
    if not var_rel > 0.0 or not math.isfinite(var_rel):
        return _finite(relative), None
    half = _z(alpha) * math.sqrt(var_rel)
    return _finite(relative), Interval(relative - half, relative + half)


def summarize_arm(name: str, converted: np.ndarray, revenue: np.ndarray) -> ArmSummary:
    """Totals for one arm. ``converted`` is bool (or 0/1) per customer, ``revenue`` finite floats."""
    conv = _as_converted(converted)
    rev = _as_revenue(revenue)
    if conv.shape != rev.shape:
        raise ValueError(f"converted and revenue differ in length: {conv.shape[0]} != {rev.shape[0]}")
    n = int(conv.shape[0])
    conversions = int(np.count_nonzero(conv))
    total = float(rev.sum())
    return ArmSummary(
        name=name,
        n=n,
        conversions=conversions,
        rate=conversions / n if n else None,
        revenue_total=total,
        revenue_per_customer=float(rev.mean()) if n else None,
        revenue_sd=float(rev.std(ddof=1)) if n >= 2 else None,
    )


def rate_lift(treat: ArmSummary, control: ArmSummary, alpha: float = 0.05) -> RateLift | None:
    """Lift of ``treat``'s conversion rate over ``control``'s at confidence ``1 - alpha``.

    None when either arm has fewer than 2 customers: one observation gives no estimate of spread, so
    any interval or p-value would rest on the assumptions alone. Within a result:

    - ``relative`` and ``relative_ci`` are None when the control rate is 0 (the ratio does not exist);
      ``relative_ci`` is also None when the delta-method variance is zero, i.e. the treatment rate is 0
      or both rates are 0 or 1;
    - ``p_value`` is None when the pooled rate is 0 or 1 (nobody, or everybody, converted in both arms):
      the pooled standard error is zero and the z statistic does not exist.
    """
    _check_alpha(alpha)
    if treat.n < 2 or control.n < 2:
        return None
    p_t = treat.conversions / treat.n
    p_c = control.conversions / control.n
    low, high = confint_proportions_2indep(
        treat.conversions,
        treat.n,
        control.conversions,
        control.n,
        method="newcomb",
        compare="diff",
        alpha=alpha,
    )
    pooled = (treat.conversions + control.conversions) / (treat.n + control.n)
    p_value: float | None = None
    if 0.0 < pooled < 1.0:
        # prop_var=False: the variance under H0 uses the pooled rate (the classic two-proportion z-test).
        _, p = proportions_ztest(
            [treat.conversions, control.conversions],
            [treat.n, control.n],
            value=0.0,
            alternative="two-sided",
            prop_var=False,
        )
        p_value = _finite(p)
    ci_low, ci_high = _finite(low), _finite(high)
    if ci_low is None or ci_high is None:  # pragma: no cover - Wilson bounds are finite for n >= 1
        raise ArithmeticError("Newcombe interval is not finite")
    relative, relative_ci = _relative(
        p_t, p_t * (1.0 - p_t), treat.n, p_c, p_c * (1.0 - p_c), control.n, alpha
    )
    return RateLift(
        absolute=p_t - p_c,
        absolute_ci=Interval(ci_low, ci_high),
        relative=relative,
        relative_ci=relative_ci,
        p_value=p_value,
    )


def mean_lift(treat_values: np.ndarray, control_values: np.ndarray, alpha: float = 0.05) -> MeanLift | None:
    """Lift of the treatment mean (revenue per customer) over the control mean at confidence ``1 - alpha``.

    None when either side has fewer than 2 values: Welch's test needs a sample variance on each side.
    Within a result:

    - ``absolute_ci`` and ``p_value`` are None when both sides have zero variance (e.g. nobody spent
      anything): the standard error is zero and the t statistic does not exist;
    - ``relative`` and ``relative_ci`` are None when the control mean is 0; ``relative_ci`` is also None
      when the delta-method variance is zero.
    """
    _check_alpha(alpha)
    t = _as_revenue(treat_values)
    c = _as_revenue(control_values)
    n_t, n_c = int(t.shape[0]), int(c.shape[0])
    if n_t < 2 or n_c < 2:
        return None
    m_t, m_c = float(t.mean()), float(c.mean())
    var_t, var_c = float(t.var(ddof=1)), float(c.var(ddof=1))
    absolute_ci: Interval | None = None
    p_value: float | None = None
    if var_t > 0.0 or var_c > 0.0:
        with warnings.catch_warnings():
            # scipy warns about "catastrophic cancellation" when one side is constant; the Welch
            # standard error is still well defined from the other side, and we check finiteness below.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = sps.ttest_ind(t, c, equal_var=False)
            ci = result.confidence_interval(confidence_level=1.0 - alpha)
        p_value = _finite(result.pvalue)
        low, high = _finite(ci.low), _finite(ci.high)
        if low is not None and high is not None:
            absolute_ci = Interval(low, high)
    relative, relative_ci = _relative(m_t, var_t, n_t, m_c, var_c, n_c, alpha)
    return MeanLift(
        absolute=m_t - m_c,
        absolute_ci=absolute_ci,
        relative=relative,
        relative_ci=relative_ci,
        p_value=p_value,
    )


def compare_arms(
    arm_of: np.ndarray,
    converted: np.ndarray,
    revenue: np.ndarray,
    control_label: Any,
    alpha: float = 0.05,
) -> LiftResult:
    """Summarise every arm and compare each non-control arm with the control.

    ``arm_of`` gives each customer's arm label (strings, or bools such as a holdout mask); arm names in
    the result are ``str(label)``. A control label that matches no customer is not an error: its summary
    has ``n == 0`` and every lift is None, so a report over a tiny audience still renders.
    """
    _check_alpha(alpha)
    labels = np.asarray(arm_of)
    conv = _as_converted(converted)
    rev = _as_revenue(revenue)
    if labels.ndim != 1 or not labels.shape == conv.shape == rev.shape:
        raise ValueError("arm_of, converted and revenue must be 1-D and of equal length")
    others = [label for label in np.unique(labels).tolist() if label != control_label]
    control_mask = labels == control_label
    control = summarize_arm(str(control_label), conv[control_mask], rev[control_mask])
    summaries = [control]
    comparisons = []
    for label in others:
        mask = labels == label
        summary = summarize_arm(str(label), conv[mask], rev[mask])
        summaries.append(summary)
        comparisons.append(
            ArmComparison(
                arm=summary.name,
                control=control.name,
                rate=rate_lift(summary, control, alpha),
                revenue=mean_lift(rev[mask], rev[control_mask], alpha),
            )
        )
    return LiftResult(
        control=control.name, alpha=alpha, arms=tuple(summaries), comparisons=tuple(comparisons)
    )
