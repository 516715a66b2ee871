"""Lift statistics: treatment arms against a control (holdout) arm, pure functions over numpy arrays.

This module gathers the public names of the parts, so ``from orchestrator.measure._stats import ...`` keeps
working; each part states its own contract:

- ``numbers``: ``Interval``, input checks, the relative lift and its log-ratio interval;
- ``rates``: per-arm totals (``summarize_arm``) and the lift of a 0/1 metric (``rate_lift``: Newcombe
  interval, pooled z-test);
- ``means``: the lift of any other metric (``mean_lift``: Welch);
- ``power``: minimum detectable effect (``mde_rate``/``mde_mean``) and the sample-ratio check (``srm_check``);
- ``sequential``: the always-valid interval (``always_valid_bounds``);
- ``cuped``: the CUPED-adjusted lift (``cuped_lift``);
- ``analysis``: ``analyze``, the one entry point of both the journey report and ``orchestrator lift``.

Undefined is ``None``, never NaN and never an exception: every number returned is finite. What is
undefined, and why, is stated on each function.
"""

from __future__ import annotations

from orchestrator.measure._analysis import (
    MEAN,
    MISSING_SEGMENT,
    RATE,
    LiftAnalysis,
    MetricArm,
    MetricComparison,
    MetricResult,
    Segment,
    analyze,
    compare_metric,
    metric_kind,
    segment_labels,
)
from orchestrator.measure._cuped import CupedLift, cuped_lift
from orchestrator.measure._means import MEAN_METHOD, MeanLift, mean_lift
from orchestrator.measure._numbers import Interval
from orchestrator.measure._power import SRM_THRESHOLD, Mde, SrmCheck, mde_mean, mde_rate, srm_check
from orchestrator.measure._rates import RATE_METHOD, ArmSummary, RateLift, rate_lift, summarize_arm
from orchestrator.measure._sequential import DEFAULT_SEQUENTIAL_TAU, SEQUENTIAL_METHOD, always_valid_bounds

__all__ = [
    "DEFAULT_SEQUENTIAL_TAU",
    "MEAN",
    "MEAN_METHOD",
    "MISSING_SEGMENT",
    "RATE",
    "RATE_METHOD",
    "SEQUENTIAL_METHOD",
    "SRM_THRESHOLD",
    "ArmSummary",
    "CupedLift",
    "Interval",
    "LiftAnalysis",
    "Mde",
    "MeanLift",
    "MetricArm",
    "MetricComparison",
    "MetricResult",
    "RateLift",
    "Segment",
    "SrmCheck",
    "always_valid_bounds",
    "analyze",
    "compare_metric",
    "cuped_lift",
    "mde_mean",
    "mde_rate",
    "mean_lift",
    "metric_kind",
    "rate_lift",
    "segment_labels",
    "srm_check",
    "summarize_arm",
]
