"""``analyze``: every arm against the control on every metric, the one code path of every lift report.

It puts the parts together over per-customer numpy columns: per arm and metric the n, total, mean (the rate
of a 0/1 metric), standard deviation and interval (``summarize_metric``); per arm against the control the
lift (``rate_lift`` or ``mean_lift``), the MDE, the always-valid interval and optional CUPED
(``compare_metric``); the sample-ratio-mismatch check; and the same again within each value of a segment
column. It reads no store and keeps no state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from orchestrator.measure._bayes import BayesView, bayes_rates
from orchestrator.measure._cuped import CupedLift, cuped_lift
from orchestrator.measure._means import MeanLift, mean_lift
from orchestrator.measure._numbers import (
    Interval,
    as_converted,
    as_revenue,
    check_alpha,
    check_power,
    interval_dict,
)
from orchestrator.measure._power import Mde, SrmCheck, mde_mean, mde_rate, srm_check
from orchestrator.measure._rates import ArmSummary, RateLift, rate_difference_variance, rate_lift
from orchestrator.measure._sequential import DEFAULT_SEQUENTIAL_TAU, SEQUENTIAL_METHOD, always_valid_interval
from orchestrator.measure._verdict import DEFAULT_TARGET_SHARE, Verdict, judge

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
        return {"name": self.name, "n": self.n, **head, "sd": self.sd, "ci": interval_dict(self.ci)}


def summarize_metric(name: str, values: np.ndarray, kind: str, alpha: float = 0.05) -> MetricArm:
    """Summary of ``values`` (one arm) as a rate or a mean metric."""
    v = as_revenue(values)
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
    verdict: Verdict | None = None
    bayes: BayesView | None = None  # the Bayesian view of a rate, when asked for

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
            "always_valid_ci": interval_dict(self.always_valid_ci),
            "always_valid_method": SEQUENTIAL_METHOD.format(tau=self.sequential_tau),
            "mde": None if self.mde is None else self.mde.to_dict(),
            "cuped": None if self.cuped is None else self.cuped.to_dict(),
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            **({} if self.bayes is None else {"bayes": self.bayes.to_dict()}),
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
    entries_per_day: float | None = None,
    bayes: bool = False,
) -> MetricResult:
    """Every arm of ``arm_of`` (string labels) against ``control`` on metric ``values``.

    A rate metric gets ``rate_lift`` (Newcombe, z-test, log-ratio relative interval) and ``mde_rate``; a
    mean metric ``mean_lift`` (Welch, log-ratio relative interval) and ``mde_mean``. The always-valid
    interval uses the unpooled variance of the difference. Arms come control first, then the others in
    sorted order. Each comparison gets its call (``_verdict.judge``); ``entries_per_day`` (both arms'
    entries per day, when they arrive over time) turns the entries it still needs into days.
    """
    check_alpha(alpha)
    check_power(power)
    labels = np.asarray(arm_of).astype(str)
    v = as_revenue(values)
    if labels.ndim != 1 or labels.shape != v.shape:
        raise ValueError("arm_of and the metric values must be 1-D and of equal length")
    kind = kind or metric_kind(v)
    if kind == RATE:
        as_converted(v)  # a rate metric must be 0/1
    x = None if covariate is None else as_revenue(covariate[1])
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
            _compare(
                summary, control_summary, v[mask], v[control_mask], kind, alpha, power, sequential_tau,
                entries_per_day, bayes,
            )
        )  # fmt: skip
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
    entries_per_day: float | None = None,
    bayes: bool = False,
) -> MetricComparison:
    lift: RateLift | MeanLift | None
    mde: Mde | None = None
    variance: float | None = None
    if kind == RATE:
        as_t = ArmSummary.from_counts(treat.name, round(treat.total), treat.n)
        as_c = ArmSummary.from_counts(control.name, round(control.total), control.n)
        lift = rate_lift(as_t, as_c, alpha)
        if control.mean is not None:
            mde = mde_rate(control.mean, treat.n, control.n, alpha, power)
        if lift is not None and treat.mean is not None and control.mean is not None:
            variance = rate_difference_variance(treat.mean, treat.n, control.mean, control.n)
    else:
        lift = mean_lift(treat_values, control_values, alpha)
        if control.mean is not None and control.sd is not None:
            mde = mde_mean(control.mean, control.sd, treat.n, control.n, alpha, power)
        if lift is not None and treat.sd is not None and control.sd is not None:
            variance = treat.sd**2 / treat.n + control.sd**2 / control.n
    always_valid: Interval | None = None
    tau = 0.0
    if lift is not None and variance is not None:
        pooled_sd = float(np.concatenate([treat_values, control_values]).std(ddof=1))
        tau = tau_sd * pooled_sd
        always_valid = always_valid_interval(lift.absolute, variance, tau, alpha)
    target = None if control.mean is None else DEFAULT_TARGET_SHARE * abs(control.mean)
    verdict = judge(
        estimate=None if lift is None else lift.absolute,
        interval=always_valid,
        variance=variance,
        n_t=treat.n,
        n_c=control.n,
        conversions=round(treat.total + control.total) if kind == RATE else None,
        target=target,
        tau=tau,
        alpha=alpha,
        entries_per_day=entries_per_day,
    )
    return MetricComparison(
        arm=treat.name,
        control=control.name,
        lift=lift,
        mde=mde,
        always_valid_ci=always_valid,
        sequential_tau=tau_sd,
        cuped=None,
        verdict=verdict,
        bayes=(
            bayes_rates(round(treat.total), treat.n, round(control.total), control.n)
            if bayes and kind == RATE
            else None
        ),
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
    entries_per_day: float | None = None,
    bayes: bool = False,
) -> LiftAnalysis:
    """The full lift analysis over per-customer numpy arrays, the one code path of every report.

    ``arm_of`` holds each customer's arm (as strings); ``metrics`` maps a metric name to its values;
    ``kinds`` may force ``"rate"``/``"mean"`` (default: 0/1 metrics are rates). ``expected_shares`` is the
    declared split by arm (any scale; default: equal shares over the arms present). ``covariates`` maps a
    metric name to (covariate name, pre-entry values) for CUPED. ``segments`` is (column name, value per
    customer): the same analysis is repeated within each value, sorted. ``entries_per_day`` (entries of
    all arms per day) gives each call's days still needed (not the segments': their rates differ).
    """
    check_alpha(alpha)
    check_power(power)
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
                entries_per_day=entries_per_day,
                bayes=bayes,
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
