"""Per-arm totals (``summarize_arm``) and the lift of a conversion rate (``rate_lift``).

A rate's absolute lift ``p_t - p_c`` comes with a Newcombe hybrid-score interval (statsmodels
``confint_proportions_2indep(method="newcomb", compare="diff")``) and a two-sided pooled two-proportion
z-test p-value (statsmodels ``proportions_ztest``); its relative lift ``p_t / p_c - 1`` with the
log-ratio interval of ``numbers.relative_lift`` (Katz), taking ``var = p (1 - p)``. Undefined results
are None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from orchestrator.measure._numbers import (
    Interval,
    as_converted,
    as_revenue,
    check_alpha,
    finite,
    relative_lift,
)

RATE_METHOD = (
    "absolute: Newcombe hybrid-score CI; p-value: pooled two-proportion z-test, two-sided; "
    "relative: log-ratio CI"
)


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

    @classmethod
    def from_counts(cls, name: str, conversions: int, n: int) -> ArmSummary:
        """An arm known by its counts alone (no revenue): what ``rate_lift`` needs."""
        return cls(name, n, conversions, conversions / n if n else None, 0.0, None, None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RateLift:
    """Lift of a treatment conversion rate over the control rate (methods: see the module docstring)."""

    absolute: float
    absolute_ci: Interval
    relative: float | None
    relative_ci: Interval | None
    p_value: float | None
    method: str = RATE_METHOD

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, intervals as ``{"low", "high"}``."""
        return asdict(self)


def summarize_arm(name: str, converted: np.ndarray, revenue: np.ndarray) -> ArmSummary:
    """Totals for one arm. ``converted`` is bool (or 0/1) per customer, ``revenue`` finite floats."""
    conv = as_converted(converted)
    rev = as_revenue(revenue)
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
      ``relative_ci`` is also None when the treatment rate is 0 (no log of the ratio) or the log-ratio
      variance is zero,
      i.e. both rates are 1;
    - ``p_value`` is None when the pooled rate is 0 or 1 (nobody, or everybody, converted in both arms):
      the pooled standard error is zero and the z statistic does not exist.
    """
    check_alpha(alpha)
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
        p_value = finite(p)
    ci_low, ci_high = finite(low), finite(high)
    if ci_low is None or ci_high is None:  # pragma: no cover - Wilson bounds are finite for n >= 1
        raise ArithmeticError("Newcombe interval is not finite")
    relative, relative_ci = relative_lift(
        p_t, p_t * (1.0 - p_t), treat.n, p_c, p_c * (1.0 - p_c), control.n, alpha
    )
    return RateLift(
        absolute=p_t - p_c,
        absolute_ci=Interval(ci_low, ci_high),
        relative=relative,
        relative_ci=relative_ci,
        p_value=p_value,
    )


def rate_difference_variance(p_treat: float, n_treat: int, p_control: float, n_control: int) -> float:
    """Sampling variance of ``p_t - p_c`` with each arm's own rate (unpooled), as the always-valid interval
    of a rate difference uses it."""
    return p_treat * (1.0 - p_treat) / n_treat + p_control * (1.0 - p_control) / n_control
