"""Lift statistics: treatment arms against a control (holdout) arm, pure functions over numpy arrays.

``analyze`` is the one entry point of both the journey report and ``orchestrator lift``: per arm and
metric n, total, mean (the rate of a 0/1 metric), standard deviation and interval; per arm against the
control the lift below, the minimum detectable effect (``mde_rate``/``mde_mean``), an always-valid interval
(``always_valid_bounds``), optional CUPED (``cuped_lift``); the sample-ratio-mismatch check
(``srm_check``); and the same again within each value of a segment column.

Two kinds of metric:

- rate (a 0/1 metric such as conversion, ``RateLift``): absolute lift ``p_t - p_c`` with a Newcombe
  hybrid-score interval (statsmodels ``confint_proportions_2indep(method="newcomb", compare="diff")``),
  a two-sided pooled two-proportion z-test p-value (statsmodels ``proportions_ztest``), and relative lift
  ``p_t / p_c - 1`` with a delta-method interval;
- mean (any other number, such as revenue per customer, ``MeanLift``): absolute lift ``m_t - m_c`` with
  Welch's unequal-variance t-test p-value and interval (scipy ``ttest_ind(equal_var=False)``), and relative
  lift with a delta-method interval.

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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

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


# ------------------------------------------------------------------------------------ sample ratio mismatch

SRM_THRESHOLD = 0.001
"""A sample-ratio-mismatch p-value below this flags the split as broken (the usual industry threshold)."""


@dataclass(frozen=True)
class SrmCheck:
    """Chi-square goodness of fit of the arm sizes to the declared split (scipy ``chisquare``).

    ``expected`` holds expected counts (the declared shares scaled to the observed total). ``chi2`` is None
    only when an arm declared at zero weight has customers; ``p_value`` is then 0 and the check is flagged.
    """

    arms: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float | None
    p_value: float
    threshold: float
    declared: str

    @property
    def flagged(self) -> bool:
        return self.p_value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "declared": self.declared,
            "observed": dict(zip(self.arms, self.observed, strict=True)),
            "expected": dict(zip(self.arms, self.expected, strict=True)),
            "chi2": self.chi2,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "method": "chi-square goodness of fit of arm sizes to the declared split",
        }


def srm_check(
    observed: Mapping[str, int],
    expected_weights: Mapping[str, float],
    declared: str = "",
    threshold: float = SRM_THRESHOLD,
) -> SrmCheck | None:
    """Sample-ratio-mismatch check of arm sizes ``observed`` against ``expected_weights`` (any scale).

    Every observed arm must have a weight (ValueError otherwise: the split would be undeclared); declared
    arms with no customer count as 0 observed. None when fewer than two arms or no customer at all: there is
    no ratio to test.
    """
    missing = sorted(set(observed) - set(expected_weights))
    if missing:
        raise ValueError(f"no declared share for arm(s) {', '.join(map(repr, missing))}")
    if any(not (w >= 0.0 and math.isfinite(w)) for w in expected_weights.values()):
        raise ValueError("declared shares must be finite and non-negative")
    arms = tuple(expected_weights)
    counts = np.array([int(observed.get(arm, 0)) for arm in arms], dtype=np.int64)
    weights = np.array([float(expected_weights[arm]) for arm in arms])
    total = int(counts.sum())
    if len(arms) < 2 or total == 0 or weights.sum() <= 0.0:
        return None
    expected = weights / weights.sum() * total
    if ((expected == 0.0) & (counts > 0)).any():
        return SrmCheck(
            arms, tuple(counts.tolist()), tuple(expected.tolist()), None, 0.0, threshold, declared
        )
    used = expected > 0.0
    if used.sum() < 2:
        return None
    result = sps.chisquare(counts[used], expected[used])
    chi2, p = _finite(result.statistic), _finite(result.pvalue)
    return SrmCheck(
        arms,
        tuple(counts.tolist()),
        tuple(float(x) for x in expected),
        chi2,
        p if p is not None else 0.0,
        threshold,
        declared,
    )


# ------------------------------------------------------------------------------ minimum detectable effect


@dataclass(frozen=True)
class Mde:
    """The smallest increase over the control that the current arm sizes detect with probability ``power``
    in a two-sided test at level ``alpha``; ``relative`` is None when the control mean is 0."""

    absolute: float
    relative: float | None
    power: float
    alpha: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "absolute": self.absolute,
            "relative": self.relative,
            "power": self.power,
            "alpha": self.alpha,
            "method": self.method,
        }


def _solved(value: Any) -> float | None:
    """A statsmodels ``solve_power`` result as a float: it returns a one-element array when its first root
    finder gave up and a fallback found the root."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    return _finite(flat[0]) if flat.size == 1 else None


def _check_power(power: float) -> None:
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be within (0, 1), got {power}")


def mde_rate(
    p_control: float, n_treat: int, n_control: int, alpha: float = 0.05, power: float = 0.8
) -> Mde | None:
    """MDE of a conversion rate: Cohen's h solved with statsmodels ``NormalIndPower``, mapped back to a
    rate through the arcsine transform. None below 2 customers per arm, or when no rate up to 1 is
    detectable."""
    _check_alpha(alpha)
    _check_power(power)
    if n_treat < 2 or n_control < 2 or not 0.0 <= p_control <= 1.0:
        return None
    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=n_treat, alpha=alpha, power=power, ratio=n_control / n_treat
    )
    effect = _solved(h)
    if effect is None:
        return None
    angle = math.asin(math.sqrt(p_control)) + effect / 2.0
    if angle > math.pi / 2.0:
        return None
    absolute = math.sin(angle) ** 2 - p_control
    return Mde(
        absolute=absolute,
        relative=absolute / p_control if p_control > 0.0 else None,
        power=power,
        alpha=alpha,
        method="Cohen's h from statsmodels NormalIndPower.solve_power, mapped back via arcsine",
    )


def mde_mean(
    mean_control: float,
    sd_control: float,
    n_treat: int,
    n_control: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Mde | None:
    """MDE of a mean: Cohen's d solved with statsmodels ``TTestIndPower`` times the control's standard
    deviation. None below 2 values per arm or when the control has no spread."""
    _check_alpha(alpha)
    _check_power(power)
    if n_treat < 2 or n_control < 2 or not sd_control > 0.0:
        return None
    d = TTestIndPower().solve_power(
        effect_size=None, nobs1=n_treat, alpha=alpha, power=power, ratio=n_control / n_treat
    )
    effect = _solved(d)
    if effect is None:
        return None
    absolute = effect * sd_control
    return Mde(
        absolute=absolute,
        relative=absolute / mean_control if mean_control != 0.0 else None,
        power=power,
        alpha=alpha,
        method="Cohen's d from statsmodels TTestIndPower.solve_power times the control standard deviation",
    )


# ------------------------------------------------------------------------------- always-valid intervals

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
    _check_alpha(alpha)
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


def _always_valid(estimate: float, variance: float, tau: float, alpha: float) -> Interval | None:
    low, high = always_valid_bounds(estimate, variance, tau, alpha)
    lo, hi = _finite(low), _finite(high)
    return None if lo is None or hi is None else Interval(lo, hi)


# ---------------------------------------------------------------------------------------------- CUPED


@dataclass(frozen=True)
class CupedLift:
    """Lift after CUPED variance reduction with a pre-entry covariate (Deng, Xu, Kohavi and Walker, 2013).

    ``theta`` = cov(metric, covariate) / var(covariate) over both arms together; each value is adjusted to
    ``y - theta * (x - mean(x))``, which leaves the expected difference unchanged and removes the part of
    the variance the covariate explains (``variance_reduction``, about the squared correlation).
    """

    covariate: str
    theta: float
    variance_reduction: float
    lift: MeanLift

    def to_dict(self) -> dict[str, Any]:
        return {
            "covariate": self.covariate,
            "theta": self.theta,
            "variance_reduction": self.variance_reduction,
            **self.lift.to_dict(),
            "method": "CUPED (theta over both arms); " + self.lift.method,
        }


def cuped_lift(
    treat_values: np.ndarray,
    treat_covariate: np.ndarray,
    control_values: np.ndarray,
    control_covariate: np.ndarray,
    covariate: str = "covariate",
    alpha: float = 0.05,
) -> CupedLift | None:
    """CUPED-adjusted lift of the treatment mean over the control mean (Welch on the adjusted values).

    None when an arm has fewer than 2 values, or the covariate or the metric is constant over both arms
    (there is nothing to regress on, or nothing to reduce).
    """
    t, c = _as_revenue(treat_values), _as_revenue(control_values)
    xt, xc = _as_revenue(treat_covariate), _as_revenue(control_covariate)
    if t.shape != xt.shape or c.shape != xc.shape:
        raise ValueError("each arm needs one covariate value per metric value")
    if t.size < 2 or c.size < 2:
        return None
    y, x = np.concatenate([t, c]), np.concatenate([xt, xc])
    var_x, var_y = float(x.var(ddof=1)), float(y.var(ddof=1))
    if not var_x > 0.0 or not var_y > 0.0:
        return None
    theta = float(np.cov(y, x, ddof=1)[0, 1]) / var_x
    x_mean = float(x.mean())
    adjusted = y - theta * (x - x_mean)
    lift = mean_lift(adjusted[: t.size], adjusted[t.size :], alpha)
    if lift is None:  # pragma: no cover - both arms have 2+ values here
        return None
    reduction = 1.0 - float(adjusted.var(ddof=1)) / var_y
    return CupedLift(covariate=covariate, theta=theta, variance_reduction=reduction, lift=lift)


# ------------------------------------------------------------------------------------ metrics and arms

RATE, MEAN = "rate", "mean"


def metric_kind(values: np.ndarray) -> str:
    """``"rate"`` for a 0/1 (or boolean) metric, ``"mean"`` for anything else numeric."""
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        return RATE
    return RATE if arr.size and bool(np.isin(arr, (0, 1)).all()) else MEAN


@dataclass(frozen=True)
class MetricArm:
    """One arm's summary of one metric: ``total`` (conversions for a rate), ``mean`` (the rate), the sample
    standard deviation and a confidence interval of the mean (Wilson for rates, Student t for means)."""

    name: str
    kind: str
    n: int
    total: float
    mean: float | None
    sd: float | None
    ci: Interval | None

    def to_dict(self) -> dict[str, Any]:
        if self.kind == RATE:
            head: dict[str, Any] = {"conversions": int(self.total), "rate": self.mean}
        else:
            head = {"total": self.total, "mean": self.mean}
        return {"name": self.name, "n": self.n, **head, "sd": self.sd, "ci": _interval_dict(self.ci)}


def summarize_metric(name: str, values: np.ndarray, kind: str, alpha: float = 0.05) -> MetricArm:
    """Summary of ``values`` (one arm) as a rate or a mean metric."""
    v = _as_revenue(values)
    n = int(v.size)
    total = float(v.sum())
    mean = float(v.mean()) if n else None
    sd = float(v.std(ddof=1)) if n >= 2 else None
    ci: Interval | None = None
    if kind == RATE and n:
        low, high = proportion_confint(round(total), n, alpha=alpha, method="wilson")
        ci = Interval(float(low), float(high))
    elif mean is not None and sd is not None and sd > 0.0:
        low, high = sps.t.interval(1.0 - alpha, n - 1, loc=mean, scale=sd / math.sqrt(n))
        ci = Interval(float(low), float(high))
    return MetricArm(name=name, kind=kind, n=n, total=total, mean=mean, sd=sd, ci=ci)


@dataclass(frozen=True)
class MetricComparison:
    """One arm against the control on one metric: the lift (None when undefined), the MDE, the always-valid
    interval of the absolute lift, and the CUPED-adjusted lift when a covariate was given."""

    arm: str
    control: str
    lift: RateLift | MeanLift | None
    mde: Mde | None
    always_valid_ci: Interval | None
    sequential_tau: float
    cuped: CupedLift | None

    def to_dict(self) -> dict[str, Any]:
        lift = (
            self.lift.to_dict()
            if self.lift is not None
            else dict.fromkeys(("absolute", "absolute_ci", "relative", "relative_ci", "p_value", "method"))
        )
        return {
            "arm": self.arm,
            "control": self.control,
            **lift,
            "always_valid_ci": _interval_dict(self.always_valid_ci),
            "always_valid_method": SEQUENTIAL_METHOD.format(tau=self.sequential_tau),
            "mde": None if self.mde is None else self.mde.to_dict(),
            "cuped": None if self.cuped is None else self.cuped.to_dict(),
        }


@dataclass(frozen=True)
class MetricResult:
    name: str
    kind: str
    arms: tuple[MetricArm, ...]
    comparisons: tuple[MetricComparison, ...]

    def arm(self, name: str) -> MetricArm:
        for summary in self.arms:
            if summary.name == name:
                return summary
        raise KeyError(name)

    def comparison(self, name: str) -> MetricComparison:
        for comparison in self.comparisons:
            if comparison.arm == name:
                return comparison
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "arms": [a.to_dict() for a in self.arms],
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def compare_metric(
    name: str,
    values: np.ndarray,
    arm_of: np.ndarray,
    control: str,
    kind: str | None = None,
    covariate: tuple[str, np.ndarray] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    sequential_tau: float = DEFAULT_SEQUENTIAL_TAU,
) -> MetricResult:
    """Every arm of ``arm_of`` (string labels) against ``control`` on metric ``values``.

    A rate metric gets ``rate_lift`` (Newcombe, z-test, delta method) and ``mde_rate``; a mean metric
    ``mean_lift`` (Welch, delta method) and ``mde_mean``. The always-valid interval uses the unpooled
    variance of the difference. Arms come control first, then the others in sorted order.
    """
    _check_alpha(alpha)
    _check_power(power)
    labels = np.asarray(arm_of).astype(str)
    v = _as_revenue(values)
    if labels.ndim != 1 or labels.shape != v.shape:
        raise ValueError("arm_of and the metric values must be 1-D and of equal length")
    kind = kind or metric_kind(v)
    if kind == RATE:
        _as_converted(v)  # a rate metric must be 0/1
    x = None if covariate is None else _as_revenue(covariate[1])
    if x is not None and x.shape != v.shape:
        raise ValueError("the covariate must have one value per metric value")
    control_mask = labels == control
    control_summary = summarize_metric(control, v[control_mask], kind, alpha)
    arms = [control_summary]
    comparisons = []
    for label in sorted(set(labels.tolist()) - {control}):
        mask = labels == label
        summary = summarize_metric(label, v[mask], kind, alpha)
        arms.append(summary)
        comparisons.append(
            _compare(summary, control_summary, v[mask], v[control_mask], kind, alpha, power, sequential_tau)
        )
        if x is not None and covariate is not None:
            cuped = cuped_lift(v[mask], x[mask], v[control_mask], x[control_mask], covariate[0], alpha)
            comparisons[-1] = replace(comparisons[-1], cuped=cuped)
    return MetricResult(name=name, kind=kind, arms=tuple(arms), comparisons=tuple(comparisons))


def _compare(
    treat: MetricArm,
    control: MetricArm,
    treat_values: np.ndarray,
    control_values: np.ndarray,
    kind: str,
    alpha: float,
    power: float,
    tau_sd: float,
) -> MetricComparison:
    lift: RateLift | MeanLift | None
    mde: Mde | None = None
    variance: float | None = None
    if kind == RATE:
        as_t = ArmSummary(treat.name, treat.n, round(treat.total), treat.mean, 0.0, None, None)
        as_c = ArmSummary(control.name, control.n, round(control.total), control.mean, 0.0, None, None)
        lift = rate_lift(as_t, as_c, alpha)
        if control.mean is not None:
            mde = mde_rate(control.mean, treat.n, control.n, alpha, power)
        if lift is not None and treat.mean is not None and control.mean is not None:
            variance = (
                treat.mean * (1.0 - treat.mean) / treat.n + control.mean * (1.0 - control.mean) / control.n
            )
    else:
        lift = mean_lift(treat_values, control_values, alpha)
        if control.mean is not None and control.sd is not None:
            mde = mde_mean(control.mean, control.sd, treat.n, control.n, alpha, power)
        if lift is not None and treat.sd is not None and control.sd is not None:
            variance = treat.sd**2 / treat.n + control.sd**2 / control.n
    always_valid: Interval | None = None
    if lift is not None and variance is not None:
        pooled_sd = float(np.concatenate([treat_values, control_values]).std(ddof=1))
        always_valid = _always_valid(lift.absolute, variance, tau_sd * pooled_sd, alpha)
    return MetricComparison(
        arm=treat.name,
        control=control.name,
        lift=lift,
        mde=mde,
        always_valid_ci=always_valid,
        sequential_tau=tau_sd,
        cuped=None,
    )


# ------------------------------------------------------------------------------------- whole analysis


@dataclass(frozen=True)
class Segment:
    value: str
    analysis: LiftAnalysis

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, **self.analysis.to_dict()}


@dataclass(frozen=True)
class LiftAnalysis:
    """Every arm against the control on every metric, with the split check and optional segments."""

    control: str
    alpha: float
    power: float
    sequential_tau: float
    arms: tuple[tuple[str, int], ...]
    srm: SrmCheck | None
    metrics: tuple[MetricResult, ...]
    segment_column: str | None = None
    segments: tuple[Segment, ...] = ()

    def metric(self, name: str) -> MetricResult:
        for result in self.metrics:
            if result.name == name:
                return result
        raise KeyError(name)

    def segment(self, value: str) -> LiftAnalysis:
        for segment in self.segments:
            if segment.value == value:
                return segment.analysis
        raise KeyError(value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "control": self.control,
            "alpha": self.alpha,
            "power": self.power,
            "arms": [{"name": name, "n": n} for name, n in self.arms],
            "srm": None if self.srm is None else self.srm.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
        }
        if self.segment_column is not None:
            out["segments"] = {
                "column": self.segment_column,
                "note": "per-segment figures are descriptive: many comparisons, no multiplicity correction",
                "values": [s.to_dict() for s in self.segments],
            }
        return out


MISSING_SEGMENT = "(missing)"


def segment_labels(values: np.ndarray) -> np.ndarray:
    """Segment values as strings: integral floats without ``.0``, None and NaN as ``(missing)``."""
    labels = []
    for value in np.asarray(values).tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            labels.append(MISSING_SEGMENT)
        elif isinstance(value, float) and value.is_integer():
            labels.append(str(int(value)))
        else:
            labels.append(str(value))
    return np.array(labels, dtype=object)


def analyze(
    arm_of: np.ndarray,
    control: str,
    metrics: Mapping[str, np.ndarray],
    *,
    kinds: Mapping[str, str] | None = None,
    expected_shares: Mapping[str, float] | None = None,
    split_declared: str = "",
    covariates: Mapping[str, tuple[str, np.ndarray]] | None = None,
    segments: tuple[str, np.ndarray] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    sequential_tau: float = DEFAULT_SEQUENTIAL_TAU,
) -> LiftAnalysis:
    """The full lift analysis over per-customer numpy arrays, the one code path of every report.

    ``arm_of`` holds each customer's arm (as strings); ``metrics`` maps a metric name to its values;
    ``kinds`` may force ``"rate"``/``"mean"`` (default: 0/1 metrics are rates). ``expected_shares`` is the
    declared split by arm (any scale; default: equal shares over the arms present). ``covariates`` maps a
    metric name to (covariate name, pre-entry values) for CUPED. ``segments`` is (column name, value per
    customer): the same analysis is repeated within each value, sorted.
    """
    _check_alpha(alpha)
    _check_power(power)
    if not sequential_tau > 0.0:
        raise ValueError(f"sequential tau must be positive, got {sequential_tau}")
    labels = np.asarray(arm_of).astype(str)
    names, counts = np.unique(labels, return_counts=True)
    sizes = dict(zip(names.tolist(), counts.tolist(), strict=True))
    order = [control, *sorted(set(sizes) - {control})]
    arms = tuple((name, int(sizes.get(name, 0))) for name in order)
    if expected_shares is None:
        shares: Mapping[str, float] = dict.fromkeys(order, 1.0)
        declared = split_declared or "equal shares (no split declared)"
    else:
        shares = expected_shares
        declared = split_declared or ", ".join(f"{k}: {v:g}" for k, v in expected_shares.items())
    srm = srm_check(sizes, shares, declared)
    results = []
    for name, values in metrics.items():
        results.append(
            compare_metric(
                name,
                values,
                labels,
                control,
                kind=None if kinds is None else kinds.get(name),
                covariate=None if covariates is None else covariates.get(name),
                alpha=alpha,
                power=power,
                sequential_tau=sequential_tau,
            )
        )
    found_segments: list[Segment] = []
    column = None
    if segments is not None:
        column, raw = segments
        seg = segment_labels(raw)
        if seg.shape != labels.shape:
            raise ValueError("the segment column must have one value per customer")
        for value in sorted(set(seg.tolist())):
            mask = seg == value
            sub_kinds = {m.name: m.kind for m in results}
            found_segments.append(
                Segment(
                    value,
                    analyze(
                        labels[mask],
                        control,
                        {name: np.asarray(values)[mask] for name, values in metrics.items()},
                        kinds=sub_kinds,
                        expected_shares=expected_shares,
                        split_declared=split_declared,
                        covariates=None
                        if covariates is None
                        else {k: (cname, np.asarray(cv)[mask]) for k, (cname, cv) in covariates.items()},
                        alpha=alpha,
                        power=power,
                        sequential_tau=sequential_tau,
                    ),
                )
            )
    return LiftAnalysis(
        control=control,
        alpha=alpha,
        power=power,
        sequential_tau=sequential_tau,
        arms=arms,
        srm=srm,
        metrics=tuple(results),
        segment_column=column,
        segments=tuple(found_segments),
    )
