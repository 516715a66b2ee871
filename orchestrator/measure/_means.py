"""The lift of a mean metric such as revenue per customer (``mean_lift``).

Absolute lift ``m_t - m_c`` with Welch's unequal-variance t-test p-value and interval (scipy
``ttest_ind(equal_var=False)``); relative lift with the log-ratio interval of ``numbers.relative_lift``,
taking the sample variance (ddof=1). Undefined results are None.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from orchestrator.measure._numbers import Interval, as_revenue, check_alpha, finite, relative_lift

MEAN_METHOD = "absolute: Welch t-test CI; p-value: Welch t-test, two-sided; relative: log-ratio CI"


@dataclass(frozen=True)
class MeanLift:
    """Lift of treatment revenue per customer over control (methods: see the module docstring)."""

    absolute: float
    absolute_ci: Interval | None
    relative: float | None
    relative_ci: Interval | None
    p_value: float | None
    method: str = MEAN_METHOD

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, intervals as ``{"low", "high"}`` (or None)."""
        return asdict(self)


def mean_lift(treat_values: np.ndarray, control_values: np.ndarray, alpha: float = 0.05) -> MeanLift | None:
    """Lift of the treatment mean (revenue per customer) over the control mean at confidence ``1 - alpha``.

    None when either side has fewer than 2 values: Welch's test needs a sample variance on each side.
    Within a result:

    - ``absolute_ci`` and ``p_value`` are None when both sides have zero variance (e.g. nobody spent
      anything): the standard error is zero and the t statistic does not exist;
    - ``relative`` and ``relative_ci`` are None when the control mean is 0; ``relative_ci`` is also None
      when the log-ratio variance is zero or a mean is not above zero.
    """
    check_alpha(alpha)
    t = as_revenue(treat_values)
    c = as_revenue(control_values)
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
        p_value = finite(result.pvalue)
        low, high = finite(ci.low), finite(ci.high)
        if low is not None and high is not None:
            absolute_ci = Interval(low, high)
    relative, relative_ci = relative_lift(m_t, var_t, n_t, m_c, var_c, n_c, alpha)
    return MeanLift(
        absolute=m_t - m_c,
        absolute_ci=absolute_ci,
        relative=relative,
        relative_ci=relative_ci,
        p_value=p_value,
    )
