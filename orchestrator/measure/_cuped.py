"""CUPED: the lift of a mean after removing the variance a pre-entry covariate explains (``cuped_lift``).

Same expected lift as ``mean_lift`` on the raw values, narrower interval; None where the adjustment does not
exist (an arm below two values, or a constant covariate or metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.measure._means import MeanLift, mean_lift
from orchestrator.measure._numbers import as_revenue


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
    t, c = as_revenue(treat_values), as_revenue(control_values)
    xt, xc = as_revenue(treat_covariate), as_revenue(control_covariate)
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
