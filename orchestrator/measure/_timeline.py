"""The cumulative conversion-rate lift by entry day: what the report's timeline shows.

Contract: ``cumulative_lift`` is a pure function of per-entry columns (entry instant, arm, converted); each
day's point holds the fixed-horizon interval of ``rate_lift`` and the always-valid interval, the one that
stays valid when the timeline is read every day.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.holdout import HOLDOUT, TREATMENT
from orchestrator.measure._numbers import Interval
from orchestrator.measure._rates import ArmSummary, rate_difference_variance, rate_lift
from orchestrator.measure._sequential import DEFAULT_SEQUENTIAL_TAU, always_valid_interval

DAY_US = 86400 * US_PER_SECOND


@dataclass(frozen=True)
class TimelinePoint:
    """The conversion-rate lift over entries up to the end of one entry day (UTC), cumulative."""

    day: str
    n_treatment: int
    n_holdout: int
    rate_treatment: float | None
    rate_holdout: float | None
    absolute: float | None
    ci: Interval | None
    always_valid_ci: Interval | None

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, intervals as ``{"low", "high"}`` (or None)."""
        return asdict(self)


def cumulative_lift(
    entered_us: np.ndarray,
    arm_of: np.ndarray,
    converted: np.ndarray,
    treatment: str = TREATMENT,
    control: str = HOLDOUT,
    alpha: float = 0.05,
    sequential_tau: float = DEFAULT_SEQUENTIAL_TAU,
) -> tuple[TimelinePoint, ...]:
    """Lift of ``treatment`` over ``control`` on entries up to the end of each UTC entry day.

    Counts are cumulated with one sort; the interval of each day comes from ``rate_lift`` and the
    always-valid interval from ``always_valid_interval`` (the one to read when looking every day).
    """
    labels = np.asarray(arm_of).astype(str)
    keep = (labels == treatment) | (labels == control)
    entered = np.asarray(entered_us, dtype=np.int64)[keep]
    is_t = labels[keep] == treatment
    conv = np.asarray(converted, dtype=bool)[keep]
    if not entered.size:
        return ()
    order = np.argsort(entered, kind="stable")
    entered, is_t, conv = entered[order], is_t[order], conv[order]
    days = np.unique(entered // DAY_US)
    ends = np.searchsorted(entered, (days + 1) * DAY_US, side="left")
    cum = {
        "n_t": np.cumsum(is_t)[ends - 1],
        "n_c": np.cumsum(~is_t)[ends - 1],
        "x_t": np.cumsum(is_t & conv)[ends - 1],
        "x_c": np.cumsum(~is_t & conv)[ends - 1],
    }
    points = []
    for i, day in enumerate(days.tolist()):
        n_t, n_c = int(cum["n_t"][i]), int(cum["n_c"][i])
        x_t, x_c = int(cum["x_t"][i]), int(cum["x_c"][i])
        p_t = x_t / n_t if n_t else None
        p_c = x_c / n_c if n_c else None
        lift = rate_lift(
            ArmSummary.from_counts(treatment, x_t, n_t), ArmSummary.from_counts(control, x_c, n_c), alpha
        )
        always_valid = None
        if lift is not None and p_t is not None and p_c is not None:
            variance = rate_difference_variance(p_t, n_t, p_c, n_c)
            # The sample standard deviation of the 0/1 outcome over both arms, as ``compare_metric`` uses;
            # from the counts, since the timeline holds no per-entry values at each day's end.
            n = n_t + n_c
            pooled = (x_t + x_c) / n
            sd = math.sqrt(pooled * (1 - pooled) * n / (n - 1))
            always_valid = always_valid_interval(lift.absolute, variance, sequential_tau * sd, alpha)
        points.append(
            TimelinePoint(
                day=from_us(day * DAY_US).date().isoformat(),
                n_treatment=n_t,
                n_holdout=n_c,
                rate_treatment=p_t,
                rate_holdout=p_c,
                absolute=None if lift is None else lift.absolute,
                ci=None if lift is None else lift.absolute_ci,
                always_valid_ci=always_valid,
            )
        )
    return tuple(points)
