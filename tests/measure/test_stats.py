"""Lift statistics checked against independent computations on the Hillstrom e-mail experiment, plus the
split check, MDE, always-valid intervals, CUPED and segments on data with known answers."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from orchestrator.measure._stats import (
    DEFAULT_SEQUENTIAL_TAU,
    ArmSummary,
    always_valid_bounds,
    analyze,
    compare_metric,
    cuped_lift,
    mde_mean,
    mde_rate,
    mean_lift,
    metric_kind,
    rate_lift,
    segment_labels,
    srm_check,
    summarize_arm,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "hillstrom.csv"
CONTROL = "No E-Mail"
TOL = 1e-9


@pytest.fixture(scope="module")
def hillstrom() -> dict[str, np.ndarray]:
    if not DATA.exists():
        pytest.skip(f"Hillstrom data set not found at {DATA}")
    with DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "segment": np.array([row["segment"] for row in rows]),
        "visit": np.array([int(row["visit"]) for row in rows]),
        "conversion": np.array([int(row["conversion"]) for row in rows]),
        "spend": np.array([float(row["spend"]) for row in rows]),
    }


def _arm(data: dict[str, np.ndarray], segment: str, column: str) -> np.ndarray:
    return data[column][data["segment"] == segment]


def _log_relative_ci(
    m_t: float, v_t: float, n_t: int, m_c: float, v_c: float, n_c: int, z: float
) -> tuple[float, float]:
    """The relative lift's interval on the log of the ratio: the delta method written as gradient' Sigma
    gradient for g(m_t, m_c) = log m_t - log m_c, taken back through exp, minus one."""
    gradient = np.array([1.0 / m_t, -1.0 / m_c])
    sigma = np.diag([v_t / n_t, v_c / n_c])
    se = math.sqrt(gradient @ sigma @ gradient)
    centre = math.log(m_t / m_c)
    return math.exp(centre - z * se) - 1.0, math.exp(centre + z * se) - 1.0


# --- Known facts about the data set ------------------------------------------------------------------


def test_hillstrom_visit_rates_match_the_literature(hillstrom: dict[str, np.ndarray]) -> None:
    result = compare_metric("visit", hillstrom["visit"], hillstrom["segment"], CONTROL)
    assert result.kind == "rate"
    assert len(hillstrom["segment"]) == 64000
    assert abs(result.arm("Mens E-Mail").mean - 0.1828) < 5e-4  # type: ignore[operator]
    assert abs(result.arm("Womens E-Mail").mean - 0.1514) < 5e-4  # type: ignore[operator]
    assert abs(result.arm(CONTROL).mean - 0.1062) < 5e-4  # type: ignore[operator]
    assert sum(arm.n for arm in result.arms) == 64000
    assert result.arms[0].name == CONTROL


# --- Rates against statsmodels and hand formulas -----------------------------------------------------


@pytest.mark.parametrize("treatment", ["Mens E-Mail", "Womens E-Mail"])
@pytest.mark.parametrize("metric", ["visit", "conversion"])
def test_rate_lift_matches_independent_computation(
    hillstrom: dict[str, np.ndarray], treatment: str, metric: str
) -> None:
    t = _arm(hillstrom, treatment, metric)
    c = _arm(hillstrom, CONTROL, metric)
    x_t, n_t, x_c, n_c = int(t.sum()), t.size, int(c.sum()), c.size
    p_t, p_c = x_t / n_t, x_c / n_c

    lift = rate_lift(summarize_arm(treatment, t, np.zeros(n_t)), summarize_arm(CONTROL, c, np.zeros(n_c)))
    assert lift is not None

    assert lift.absolute == pytest.approx(p_t - p_c, abs=TOL)

    # Newcombe interval, once through statsmodels ...
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff")
    assert lift.absolute_ci.low == pytest.approx(low, abs=TOL)
    assert lift.absolute_ci.high == pytest.approx(high, abs=TOL)
    # ... and once by Newcombe's (1998) method 10 from two Wilson score intervals.
    l_t, u_t = proportion_confint(x_t, n_t, alpha=0.05, method="wilson")
    l_c, u_c = proportion_confint(x_c, n_c, alpha=0.05, method="wilson")
    d = p_t - p_c
    assert lift.absolute_ci.low == pytest.approx(d - math.hypot(p_t - l_t, u_c - p_c), abs=TOL)
    assert lift.absolute_ci.high == pytest.approx(d + math.hypot(u_t - p_t, p_c - l_c), abs=TOL)

    # Pooled two-proportion z-test, via statsmodels and by hand.
    _, p_sm = proportions_ztest([x_t, x_c], [n_t, n_c])
    pooled = (x_t + x_c) / (n_t + n_c)
    z = d / math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    p_hand = 2 * sps.norm.sf(abs(z))
    assert lift.p_value == pytest.approx(p_sm, rel=TOL, abs=TOL)
    assert lift.p_value == pytest.approx(p_hand, rel=1e-6, abs=TOL)

    # Relative lift and its interval on the log of the ratio, by hand and through statsmodels (Katz).
    assert lift.relative == pytest.approx(p_t / p_c - 1, abs=TOL)
    k_low, k_high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="log", compare="ratio")
    assert lift.relative_ci is not None
    assert (lift.relative_ci.low, lift.relative_ci.high) == pytest.approx((k_low - 1, k_high - 1), abs=TOL)
    r_low, r_high = _log_relative_ci(p_t, p_t * (1 - p_t), n_t, p_c, p_c * (1 - p_c), n_c, 1.959963984540054)
    assert lift.relative_ci is not None
    assert lift.relative_ci.low == pytest.approx(r_low, abs=TOL)
    assert lift.relative_ci.high == pytest.approx(r_high, abs=TOL)
    assert lift.relative_ci.low < lift.relative < lift.relative_ci.high  # type: ignore[operator]


def test_rate_lift_respects_alpha(hillstrom: dict[str, np.ndarray]) -> None:
    t = _arm(hillstrom, "Womens E-Mail", "conversion")
    c = _arm(hillstrom, CONTROL, "conversion")
    treat = summarize_arm("t", t, np.zeros(t.size))
    control = summarize_arm("c", c, np.zeros(c.size))
    wide, narrow = rate_lift(treat, control, alpha=0.01), rate_lift(treat, control, alpha=0.2)
    assert wide is not None and narrow is not None
    low, high = confint_proportions_2indep(
        int(t.sum()), t.size, int(c.sum()), c.size, method="newcomb", compare="diff", alpha=0.2
    )
    assert narrow.absolute_ci.low == pytest.approx(low, abs=TOL)
    assert narrow.absolute_ci.high == pytest.approx(high, abs=TOL)
    assert wide.absolute_ci.low < narrow.absolute_ci.low < narrow.absolute_ci.high < wide.absolute_ci.high
    assert wide.relative_ci is not None and narrow.relative_ci is not None
    assert wide.relative_ci.high - wide.relative_ci.low > narrow.relative_ci.high - narrow.relative_ci.low
    assert wide.p_value == narrow.p_value  # the test does not depend on alpha


# --- Revenue per customer against scipy and statsmodels ----------------------------------------------


@pytest.mark.parametrize("treatment", ["Mens E-Mail", "Womens E-Mail"])
def test_mean_lift_matches_independent_computation(hillstrom: dict[str, np.ndarray], treatment: str) -> None:
    t = _arm(hillstrom, treatment, "spend")
    c = _arm(hillstrom, CONTROL, "spend")
    lift = mean_lift(t, c)
    assert lift is not None

    assert lift.absolute == pytest.approx(t.mean() - c.mean(), abs=TOL)
    welch = sps.ttest_ind(t, c, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert lift.p_value == pytest.approx(welch.pvalue, rel=TOL, abs=TOL)
    assert lift.absolute_ci is not None
    assert lift.absolute_ci.low == pytest.approx(ci.low, abs=TOL)
    assert lift.absolute_ci.high == pytest.approx(ci.high, abs=TOL)

    # A second library: statsmodels' Welch test and interval.
    compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    _, p_sm, _ = compare.ttest_ind(usevar="unequal")
    low_sm, high_sm = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    assert lift.p_value == pytest.approx(p_sm, rel=1e-7)
    assert lift.absolute_ci.low == pytest.approx(low_sm, abs=TOL)
    assert lift.absolute_ci.high == pytest.approx(high_sm, abs=TOL)

    assert lift.relative == pytest.approx(t.mean() / c.mean() - 1, abs=TOL)
    r_low, r_high = _log_relative_ci(
        t.mean(), t.var(ddof=1), t.size, c.mean(), c.var(ddof=1), c.size, sps.norm.ppf(0.975)
    )
    assert lift.relative_ci is not None
    assert lift.relative_ci.low == pytest.approx(r_low, abs=TOL)
    assert lift.relative_ci.high == pytest.approx(r_high, abs=TOL)


def test_analyze_agrees_with_parts_and_serialises(hillstrom: dict[str, np.ndarray]) -> None:
    metrics = {name: hillstrom[name] for name in ("visit", "spend")}
    result = analyze(hillstrom["segment"], CONTROL, metrics)
    assert result.control == CONTROL
    assert [name for name, _ in result.arms] == [CONTROL, "Mens E-Mail", "Womens E-Mail"]
    visit, spend = result.metric("visit"), result.metric("spend")
    assert (visit.kind, spend.kind) == ("rate", "mean")
    assert sorted(c.arm for c in visit.comparisons) == ["Mens E-Mail", "Womens E-Mail"]
    t_visit, c_visit = _arm(hillstrom, "Mens E-Mail", "visit"), _arm(hillstrom, CONTROL, "visit")
    t_spend, c_spend = _arm(hillstrom, "Mens E-Mail", "spend"), _arm(hillstrom, CONTROL, "spend")
    assert visit.comparison("Mens E-Mail").lift == rate_lift(
        summarize_arm("Mens E-Mail", t_visit, t_spend), summarize_arm(CONTROL, c_visit, c_spend)
    )
    assert spend.comparison("Mens E-Mail").lift == mean_lift(t_spend, c_spend)
    summary = spend.arm("Mens E-Mail")
    assert summary.n == t_visit.size and visit.arm("Mens E-Mail").total == int(t_visit.sum())
    assert summary.total == pytest.approx(float(t_spend.sum()), abs=1e-6)
    assert summary.mean == pytest.approx(float(t_spend.mean()), abs=TOL)
    assert summary.sd == pytest.approx(float(np.std(t_spend, ddof=1)), abs=TOL)
    # Per-arm intervals: Wilson for a rate, Student t for a mean.
    low, high = proportion_confint(int(t_visit.sum()), t_visit.size, alpha=0.05, method="wilson")
    assert visit.arm("Mens E-Mail").ci.low == pytest.approx(low, abs=TOL)  # type: ignore[union-attr]
    assert visit.arm("Mens E-Mail").ci.high == pytest.approx(high, abs=TOL)  # type: ignore[union-attr]
    t_low, t_high = DescrStatsW(t_spend).tconfint_mean(alpha=0.05)
    assert summary.ci.low == pytest.approx(t_low, abs=TOL)  # type: ignore[union-attr]
    assert summary.ci.high == pytest.approx(t_high, abs=TOL)  # type: ignore[union-attr]

    payload = result.to_dict()
    _assert_plain(payload)
    text = json.dumps(payload, allow_nan=False)
    decoded = json.loads(text)
    assert decoded["metrics"][0]["comparisons"][0]["absolute_ci"]["low"] is not None
    assert decoded["metrics"][0]["arms"][1]["conversions"] == int(t_visit.sum())
    assert decoded["metrics"][1]["arms"][1]["mean"] == pytest.approx(float(t_spend.mean()))


def _assert_plain(value: Any) -> None:
    """Only JSON-native Python types all the way down (no numpy scalars, no NaN)."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for item in value.values():
            _assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)
        if type(value) is float:
            assert math.isfinite(value)


# --- Coverage: the intervals do what they claim ------------------------------------------------------


def test_rate_intervals_cover_at_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    p_c, p_t, n, sims = 0.10, 0.12, 4000, 1000
    x_t = rng.binomial(n, p_t, sims)
    x_c = rng.binomial(n, p_c, sims)
    abs_hits = rel_hits = 0
    for a, b in zip(x_t, x_c, strict=True):
        lift = rate_lift(_counts("t", int(a), n), _counts("c", int(b), n))
        assert lift is not None and lift.relative_ci is not None
        abs_hits += lift.absolute_ci.low <= p_t - p_c <= lift.absolute_ci.high
        rel_hits += lift.relative_ci.low <= p_t / p_c - 1 <= lift.relative_ci.high
    # 1000 draws: binomial sd of the coverage is ~0.007, so 0.93..0.97 is a ~3 sd band around 0.95.
    assert 0.93 <= abs_hits / sims <= 0.97
    assert 0.93 <= rel_hits / sims <= 0.97


def test_revenue_intervals_cover_at_nominal_rate() -> None:
    rng = np.random.default_rng(5)
    n, sims = 4000, 400
    mu_c, mu_t = math.exp(0.5), 1.2 * math.exp(0.5)  # lognormal(0, 1) means, true relative lift +20%
    abs_hits = rel_hits = 0
    for _ in range(sims):
        t = 1.2 * rng.lognormal(0.0, 1.0, n)
        c = rng.lognormal(0.0, 1.0, n)
        lift = mean_lift(t, c)
        assert lift is not None and lift.absolute_ci is not None and lift.relative_ci is not None
        abs_hits += lift.absolute_ci.low <= mu_t - mu_c <= lift.absolute_ci.high
        rel_hits += lift.relative_ci.low <= 0.2 <= lift.relative_ci.high
    assert 0.92 <= abs_hits / sims <= 0.98  # 400 draws: sd ~0.011
    assert 0.92 <= rel_hits / sims <= 0.98


def _counts(name: str, conversions: int, n: int) -> ArmSummary:
    return summarize_arm(name, np.arange(n) < conversions, np.zeros(n))


# --- Edge cases: undefined is None, never NaN, never a crash -----------------------------------------


def _no_nan(lift: Any) -> None:
    _assert_plain(lift.to_dict())


@pytest.fixture(autouse=True)
def _warnings_are_errors() -> Any:
    # A RuntimeWarning (division by zero, invalid value) would mean a NaN was produced somewhere.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def test_zero_conversions_in_control() -> None:
    lift = rate_lift(_counts("t", 30, 1000), _counts("c", 0, 1000))
    assert lift is not None
    _no_nan(lift)
    assert lift.relative is None and lift.relative_ci is None
    assert lift.absolute == pytest.approx(0.03, abs=TOL)
    assert lift.absolute_ci.low < 0.03 < lift.absolute_ci.high
    assert lift.p_value is not None and lift.p_value < 1e-6


def test_zero_conversions_everywhere() -> None:
    lift = rate_lift(_counts("t", 0, 500), _counts("c", 0, 500))
    assert lift is not None
    _no_nan(lift)
    assert lift.absolute == 0.0
    assert lift.p_value is None  # pooled rate 0: z statistic undefined
    assert lift.relative is None
    assert lift.absolute_ci.low < 0.0 < lift.absolute_ci.high  # Newcombe still gives an honest interval


def test_all_converted() -> None:
    both = rate_lift(_counts("t", 200, 200), _counts("c", 300, 300))
    assert both is not None
    _no_nan(both)
    assert both.absolute == 0.0 and both.relative == 0.0
    assert both.p_value is None and both.relative_ci is None
    treat_only = rate_lift(_counts("t", 200, 200), _counts("c", 150, 300))
    assert treat_only is not None
    _no_nan(treat_only)
    assert treat_only.relative == pytest.approx(1.0, abs=TOL)
    assert treat_only.relative_ci is not None and treat_only.relative_ci.low > 0
    assert treat_only.p_value is not None and treat_only.p_value < 1e-6


def test_treatment_rate_zero_has_relative_but_no_interval() -> None:
    lift = rate_lift(_counts("t", 0, 400), _counts("c", 40, 400))
    assert lift is not None
    _no_nan(lift)
    assert lift.relative == -1.0
    assert lift.relative_ci is None  # no log of a zero ratio: -100% with no interval


def test_single_customer_arms() -> None:
    assert rate_lift(_counts("t", 1, 1), _counts("c", 10, 100)) is None
    assert rate_lift(_counts("t", 10, 100), _counts("c", 0, 1)) is None
    assert mean_lift(np.array([5.0]), np.array([1.0, 2.0])) is None
    assert mean_lift(np.array([1.0, 2.0]), np.array([])) is None
    one = summarize_arm("solo", np.array([True]), np.array([3.5]))
    assert (one.n, one.conversions, one.rate, one.revenue_per_customer) == (1, 1, 1.0, 3.5)
    assert one.revenue_sd is None
    empty = summarize_arm("none", np.array([], dtype=bool), np.array([]))
    assert (empty.n, empty.rate, empty.revenue_per_customer, empty.revenue_sd) == (0, None, None, None)
    _assert_plain(empty.to_dict())


def test_analyze_with_tiny_and_missing_arms() -> None:
    arms = np.array(["holdout", "holdout", "holdout", "email", "sms", "sms"])
    converted = np.array([0, 1, 0, 1, 1, 0])
    revenue = np.array([0.0, 10.0, 0.0, 5.0, 7.0, 0.0])
    result = analyze(arms, "holdout", {"conversion": converted, "revenue": revenue})
    conversion, rev = result.metric("conversion"), result.metric("revenue")
    assert conversion.comparison("email").lift is None and rev.comparison("email").lift is None
    assert conversion.comparison("email").mde is None  # one customer: no power to speak of
    assert conversion.comparison("sms").lift is not None and rev.comparison("sms").lift is not None
    _assert_plain(result.to_dict())

    missing = analyze(arms, "nobody", {"conversion": converted, "revenue": revenue})
    assert dict(missing.arms)["nobody"] == 0
    assert all(c.lift is None for m in missing.metrics for c in m.comparisons)
    assert len(missing.metric("conversion").comparisons) == 3
    _assert_plain(missing.to_dict())


def test_analyze_with_boolean_holdout_mask() -> None:
    rng = np.random.default_rng(2)
    held = rng.random(5000) < 0.1
    converted = rng.random(5000) < np.where(held, 0.05, 0.08)
    result = analyze(held, "True", {"conversion": converted}, expected_shares={"True": 10, "False": 90})
    assert result.control == "True"
    comparison = result.metric("conversion").comparisons[0]
    assert comparison.arm == "False"
    assert comparison.lift is not None
    p_t, p_c = converted[~held].mean(), converted[held].mean()
    assert comparison.lift.absolute == pytest.approx(p_t - p_c, abs=TOL)
    assert result.srm is not None and not result.srm.flagged


def test_mean_lift_degenerate_variances() -> None:
    nothing = mean_lift(np.zeros(50), np.zeros(60))
    assert nothing is not None
    _no_nan(nothing)
    assert nothing.absolute == 0.0
    assert nothing.absolute_ci is None and nothing.p_value is None
    assert nothing.relative is None and nothing.relative_ci is None  # control mean 0

    constant_control = mean_lift(np.array([1.0, 3.0, 2.0, 4.0]), np.full(10, 2.0))
    assert constant_control is not None
    _no_nan(constant_control)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's spurious warning on a constant sample
        welch = sps.ttest_ind([1.0, 3.0, 2.0, 4.0], np.full(10, 2.0), equal_var=False)
    assert constant_control.p_value == pytest.approx(welch.pvalue, abs=TOL)
    assert constant_control.relative == pytest.approx(0.25, abs=TOL)
    assert constant_control.relative_ci is not None


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        summarize_arm("x", np.array([0, 2]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError):
        summarize_arm("x", np.array([True, False]), np.array([np.nan, 1.0]))
    with pytest.raises(ValueError):
        summarize_arm("x", np.array([True, False]), np.array([1.0]))
    with pytest.raises(ValueError):
        mean_lift(np.array([1.0, np.inf]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        rate_lift(_counts("t", 1, 10), _counts("c", 1, 10), alpha=0.0)
    with pytest.raises(ValueError):
        compare_metric("m", np.array([1, 0, 1]), np.array(["a", "b"]), "a")
    with pytest.raises(ValueError):
        compare_metric("m", np.array([1.0, 2.0]), np.array(["a", "b"]), "a", kind="rate")  # 2 is no rate
    with pytest.raises(ValueError):
        analyze(np.array(["a", "b"]), "a", {"m": np.array([1.0, 0.0])}, power=1.0)
    with pytest.raises(ValueError):
        analyze(np.array(["a", "b"]), "a", {"m": np.array([1.0, 0.0])}, sequential_tau=0.0)
    with pytest.raises(ValueError, match="no declared share"):
        analyze(np.array(["a", "b"]), "a", {"m": np.array([1.0, 0.0])}, expected_shares={"a": 1})


# --- Sample ratio mismatch -----------------------------------------------------------------------------


def test_srm_matches_scipy_and_passes_a_fair_split(hillstrom: dict[str, np.ndarray]) -> None:
    names, counts = np.unique(hillstrom["segment"], return_counts=True)
    check = srm_check(
        dict(zip(names.tolist(), counts.tolist(), strict=True)), dict.fromkeys(names.tolist(), 1)
    )
    assert check is not None
    expected = sps.chisquare(counts)  # equal expected counts by default
    assert check.chi2 == pytest.approx(expected.statistic, rel=1e-12)
    assert check.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert not check.flagged and check.p_value > 0.5


def test_srm_fires_on_a_broken_split() -> None:
    # A 50/50 experiment where 3% of treatment assignments were lost (a typical logging bug).
    rng = np.random.default_rng(8)
    arm = np.where(rng.random(40_000) < 0.5, "treatment", "control")
    lost = (arm == "treatment") & (rng.random(arm.size) < 0.03)
    broken = arm[~lost]
    result = analyze(broken, "control", {"m": np.zeros(broken.size)})
    assert result.srm is not None and result.srm.flagged
    assert result.srm.p_value < 0.001
    observed = [int((broken == name).sum()) for name in ("control", "treatment")]
    assert result.srm.p_value == pytest.approx(sps.chisquare(observed).pvalue, rel=1e-9)
    assert result.srm.to_dict()["flagged"] is True
    # The intact split passes, and the declared split is honoured (a 90/10 split is not a mismatch).
    assert not analyze(arm, "control", {"m": np.zeros(arm.size)}).srm.flagged  # type: ignore[union-attr]
    skewed = np.where(rng.random(20_000) < 0.1, "holdout", "treatment")
    declared = analyze(
        skewed, "holdout", {"m": np.zeros(skewed.size)}, expected_shares={"holdout": 10, "treatment": 90}
    )
    assert declared.srm is not None and not declared.srm.flagged
    assert analyze(skewed, "holdout", {"m": np.zeros(skewed.size)}).srm.flagged  # type: ignore[union-attr]


def test_srm_edge_cases() -> None:
    assert srm_check({"a": 10}, {"a": 1}) is None  # one arm: no ratio
    assert srm_check({"a": 0, "b": 0}, {"a": 1, "b": 1}) is None
    zero = srm_check({"a": 10, "b": 3}, {"a": 1, "b": 0})  # customers in an arm declared at 0%
    assert zero is not None and zero.flagged and zero.chi2 is None and zero.p_value == 0.0
    empty_arm = srm_check({"a": 100}, {"a": 1, "b": 1})  # a declared arm nobody reached
    assert empty_arm is not None and empty_arm.flagged and empty_arm.observed == (100, 0)
    with pytest.raises(ValueError):
        srm_check({"a": 1, "c": 2}, {"a": 1, "b": 1})
    with pytest.raises(ValueError):
        srm_check({"a": 1, "b": 2}, {"a": -1, "b": 1})


# --- Minimum detectable effect -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p_c", "n_t", "n_c"), [(0.1062, 21307, 21306), (0.0057, 21387, 21306), (0.3, 500, 80)]
)
def test_rate_mde_has_the_declared_power(p_c: float, n_t: int, n_c: int) -> None:
    mde = mde_rate(p_c, n_t, n_c, alpha=0.05, power=0.8)
    assert mde is not None and mde.absolute > 0
    effect = proportion_effectsize(p_c + mde.absolute, p_c)
    achieved = NormalIndPower().power(effect, nobs1=n_t, alpha=0.05, ratio=n_c / n_t)
    assert achieved == pytest.approx(0.8, abs=1e-3)
    assert mde.relative == pytest.approx(mde.absolute / p_c)
    # Four times the customers roughly halves the MDE; more power needs a larger effect.
    bigger = mde_rate(p_c, 4 * n_t, 4 * n_c)
    assert bigger is not None and 0.45 < bigger.absolute / mde.absolute < 0.55
    stronger = mde_rate(p_c, n_t, n_c, power=0.9)
    assert stronger is not None and stronger.absolute > mde.absolute


def test_mean_mde_has_the_declared_power(hillstrom: dict[str, np.ndarray]) -> None:
    c = _arm(hillstrom, CONTROL, "spend")
    t = _arm(hillstrom, "Mens E-Mail", "spend")
    sd = float(c.std(ddof=1))
    mde = mde_mean(float(c.mean()), sd, t.size, c.size)
    assert mde is not None
    achieved = TTestIndPower().power(mde.absolute / sd, nobs1=t.size, alpha=0.05, ratio=c.size / t.size)
    assert achieved == pytest.approx(0.8, abs=1e-3)
    # Normal approximation by hand: (z_0.975 + z_0.8) * sd * sqrt(1/n_t + 1/n_c).
    by_hand = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd * math.sqrt(1 / t.size + 1 / c.size)
    assert mde.absolute == pytest.approx(by_hand, rel=1e-3)
    assert mde_mean(1.0, 0.0, 100, 100) is None  # no spread in the control: nothing to scale by
    assert mde_rate(0.5, 1, 100) is None
    assert mde_rate(0.9999, 20, 20) is None  # no rate up to 1 is detectable with 20 per arm


# --- Always-valid interval -----------------------------------------------------------------------------


def test_always_valid_bounds_formula_and_shape() -> None:
    # Independent form: the mixture likelihood ratio sqrt(V/(V+t2)) exp(d^2 t2 / (2 V (V+t2))) equals
    # 1/alpha exactly at the interval's ends.
    v, tau, alpha, estimate = 2.5e-5, 0.03, 0.05, 0.012
    low, high = always_valid_bounds(estimate, v, tau, alpha)
    for end in (float(low), float(high)):
        d = estimate - end
        ratio = math.sqrt(v / (v + tau**2)) * math.exp(d**2 * tau**2 / (2 * v * (v + tau**2)))
        assert ratio == pytest.approx(1 / alpha, rel=1e-9)
    # Wider than the fixed-horizon interval, centred on the estimate, vectorised, NaN when undefined.
    z_half = sps.norm.ppf(0.975) * math.sqrt(v)
    assert float(high) - estimate > z_half
    assert float(high) - estimate == pytest.approx(estimate - float(low))
    lows, highs = always_valid_bounds(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, 4.0]), 1.0)
    assert np.isnan(lows[1]) and np.isnan(highs[1]) and np.isfinite(lows[[0, 2]]).all()


def test_always_valid_interval_survives_daily_peeking() -> None:
    """A/A tests checked after every batch: the fixed-horizon 95% interval excludes the true difference
    (0) at some look far more often than 5%; the always-valid interval stays near or below 5%."""
    rng = np.random.default_rng(42)
    sims, looks, batch, p = 2000, 100, 200, 0.1
    x_t = np.cumsum(rng.binomial(batch, p, (sims, looks)), axis=1)
    x_c = np.cumsum(rng.binomial(batch, p, (sims, looks)), axis=1)
    n = batch * np.arange(1, looks + 1)
    p_t, p_c = x_t / n, x_c / n
    diff = p_t - p_c
    variance = (p_t * (1 - p_t) + p_c * (1 - p_c)) / n
    pooled = (x_t + x_c) / (2 * n)
    tau = DEFAULT_SEQUENTIAL_TAU * np.sqrt(pooled * (1 - pooled))
    low, high = always_valid_bounds(diff, variance, tau, alpha=0.05)
    ever_av = ((low > 0) | (high < 0)).any(axis=1).mean()
    z = sps.norm.ppf(0.975) * np.sqrt(variance)
    ever_fixed = ((diff - z > 0) | (diff + z < 0)).any(axis=1).mean()
    print(f"\nA/A with {looks} looks: fixed-horizon ever wrong {ever_fixed:.3f}, always-valid {ever_av:.3f}")
    assert ever_fixed > 0.2
    assert ever_av <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims)


def test_comparisons_carry_always_valid_intervals(hillstrom: dict[str, np.ndarray]) -> None:
    result = compare_metric("visit", hillstrom["visit"], hillstrom["segment"], CONTROL)
    for comparison in result.comparisons:
        assert comparison.lift is not None and comparison.always_valid_ci is not None
        assert comparison.always_valid_ci.low < comparison.lift.absolute_ci.low
        assert comparison.always_valid_ci.high > comparison.lift.absolute_ci.high
        assert comparison.to_dict()["always_valid_method"].startswith("always-valid")
    wider = compare_metric("visit", hillstrom["visit"], hillstrom["segment"], CONTROL, sequential_tau=1.0)
    narrow_cmp, wide_cmp = result.comparisons[0], wider.comparisons[0]
    assert narrow_cmp.always_valid_ci != wide_cmp.always_valid_ci  # tau tunes the interval


# --- CUPED -----------------------------------------------------------------------------------------------


def _cuped_world(rng: np.random.Generator, n: int, effect: float) -> tuple[np.ndarray, ...]:
    pre = rng.gamma(2.0, 5.0, n)  # pre-entry spend
    treated = rng.random(n) < 0.5
    outcome = 0.8 * pre + rng.normal(0.0, 4.0, n) + effect * treated
    return pre, treated, outcome


def test_cuped_reduces_variance_and_stays_unbiased() -> None:
    rng = np.random.default_rng(7)
    effect, sims, n = 1.5, 300, 2000
    plain, adjusted, covered = [], [], 0
    for _ in range(sims):
        pre, treated, outcome = _cuped_world(rng, n, effect)
        cuped = cuped_lift(outcome[treated], pre[treated], outcome[~treated], pre[~treated], "pre")
        lift = mean_lift(outcome[treated], outcome[~treated])
        assert cuped is not None and lift is not None and cuped.lift.absolute_ci is not None
        plain.append(lift.absolute)
        adjusted.append(cuped.lift.absolute)
        covered += cuped.lift.absolute_ci.low <= effect <= cuped.lift.absolute_ci.high
    plain_arr, adjusted_arr = np.array(plain), np.array(adjusted)
    # Unbiased: the mean estimate is within 4 standard errors of the truth.
    assert abs(adjusted_arr.mean() - effect) < 4 * adjusted_arr.std(ddof=1) / math.sqrt(sims)
    # corr(pre, outcome)^2 is about 0.8 here, so the estimates spread far less than without CUPED.
    assert adjusted_arr.var(ddof=1) < 0.4 * plain_arr.var(ddof=1)
    assert 0.92 <= covered / sims <= 0.98


def test_cuped_figures_and_edge_cases() -> None:
    rng = np.random.default_rng(3)
    pre, treated, outcome = _cuped_world(rng, 5000, 1.0)
    cuped = cuped_lift(outcome[treated], pre[treated], outcome[~treated], pre[~treated], "pre")
    assert cuped is not None
    theta = np.cov(outcome, pre, ddof=1)[0, 1] / pre.var(ddof=1)
    assert cuped.theta == pytest.approx(theta, rel=1e-12)
    corr = np.corrcoef(outcome, pre)[0, 1]
    assert cuped.variance_reduction == pytest.approx(corr**2, abs=1e-9)
    adjusted = outcome - theta * (pre - pre.mean())
    welch = sps.ttest_ind(adjusted[treated], adjusted[~treated], equal_var=False)
    assert cuped.lift.p_value == pytest.approx(welch.pvalue, rel=1e-9, abs=1e-300)
    assert cuped.to_dict()["covariate"] == "pre"
    # A constant covariate explains nothing: CUPED is undefined rather than a copy of the plain lift.
    assert cuped_lift(outcome[:10], np.ones(10), outcome[10:20], np.ones(10)) is None
    assert cuped_lift(outcome[:1], pre[:1], outcome[10:20], pre[10:20]) is None
    with pytest.raises(ValueError):
        cuped_lift(outcome[:10], pre[:9], outcome[10:20], pre[10:20])


# --- Segments and metric kinds ----------------------------------------------------------------------------


def test_segments_repeat_the_analysis_within_each_value(hillstrom: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    tier = rng.choice(np.array(["gold", "silver", None], dtype=object), hillstrom["segment"].size)
    result = analyze(hillstrom["segment"], CONTROL, {"visit": hillstrom["visit"]}, segments=("tier", tier))
    assert result.segment_column == "tier"
    assert [s.value for s in result.segments] == ["(missing)", "gold", "silver"]
    gold = tier == "gold"
    sub = result.segment("gold")
    direct = compare_metric("visit", hillstrom["visit"][gold], hillstrom["segment"][gold], CONTROL)
    assert sub.metric("visit").comparisons == direct.comparisons
    assert sum(dict(s.analysis.arms)[CONTROL] for s in result.segments) == dict(result.arms)[CONTROL]
    payload = result.to_dict()
    _assert_plain(payload)
    assert payload["segments"]["values"][1]["value"] == "gold"
    assert segment_labels(np.array([1.0, 2.5, np.nan])).tolist() == ["1", "2.5", "(missing)"]


def test_metric_kind() -> None:
    assert metric_kind(np.array([0, 1, 1])) == "rate"
    assert metric_kind(np.array([True, False])) == "rate"
    assert metric_kind(np.array([0.0, 1.0])) == "rate"
    assert metric_kind(np.array([0.0, 2.0])) == "mean"
    assert metric_kind(np.array([0.5])) == "mean"


def test_relative_intervals_never_fall_below_minus_100_percent() -> None:
    """Small arms, as in a journey with 13 held-out entries: the old delta-method interval of 368% ran
    from -519% to +1255%; the log-ratio one stays above -100% and holds the estimate, for every count."""
    for x_t in range(1, 40):
        for x_c in range(1, 13):
            lift = rate_lift(_counts("t", x_t, 40), _counts("c", x_c, 13))
            assert lift is not None and lift.relative is not None
            if lift.relative_ci is None:
                assert x_t == 40
                continue
            assert -1.0 < lift.relative_ci.low <= lift.relative <= lift.relative_ci.high
    mean = mean_lift(np.array([0.0, 0.0, 5.0, 1.0]), np.array([0.0, 40.0, 0.0, 0.0, 0.0]))
    assert mean is not None and mean.relative_ci is not None and mean.relative_ci.low > -1.0
