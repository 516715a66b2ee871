"""Lift statistics checked against independent computations on the Hillstrom e-mail experiment."""

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
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from orchestrator.measure.stats import (
    ArmSummary,
    compare_arms,
    mean_lift,
    rate_lift,
    summarize_arm,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hillstrom.csv"
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


def _delta_relative_ci(
    m_t: float, v_t: float, n_t: int, m_c: float, v_c: float, n_c: int, z: float
) -> tuple[float, float]:
    """Delta method written as gradient' Sigma gradient for g(m_t, m_c) = m_t / m_c - 1."""
    gradient = np.array([1.0 / m_c, -m_t / m_c**2])
    sigma = np.diag([v_t / n_t, v_c / n_c])
    se = math.sqrt(gradient @ sigma @ gradient)
    rel = m_t / m_c - 1.0
    return rel - z * se, rel + z * se


# --- Known facts about the data set ------------------------------------------------------------------


def test_hillstrom_visit_rates_match_the_literature(hillstrom: dict[str, np.ndarray]) -> None:
    result = compare_arms(hillstrom["segment"], hillstrom["visit"], hillstrom["spend"], CONTROL)
    assert len(hillstrom["segment"]) == 64000
    assert abs(result.arm("Mens E-Mail").rate - 0.1828) < 5e-4  # type: ignore[operator]
    assert abs(result.arm("Womens E-Mail").rate - 0.1514) < 5e-4  # type: ignore[operator]
    assert abs(result.arm(CONTROL).rate - 0.1062) < 5e-4  # type: ignore[operator]
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

    # Relative lift and its delta-method interval.
    assert lift.relative == pytest.approx(p_t / p_c - 1, abs=TOL)
    r_low, r_high = _delta_relative_ci(
        p_t, p_t * (1 - p_t), n_t, p_c, p_c * (1 - p_c), n_c, 1.959963984540054
    )
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
    r_low, r_high = _delta_relative_ci(
        t.mean(), t.var(ddof=1), t.size, c.mean(), c.var(ddof=1), c.size, sps.norm.ppf(0.975)
    )
    assert lift.relative_ci is not None
    assert lift.relative_ci.low == pytest.approx(r_low, abs=TOL)
    assert lift.relative_ci.high == pytest.approx(r_high, abs=TOL)


def test_compare_arms_agrees_with_parts_and_serialises(hillstrom: dict[str, np.ndarray]) -> None:
    result = compare_arms(hillstrom["segment"], hillstrom["visit"], hillstrom["spend"], CONTROL)
    assert result.control == CONTROL
    assert sorted(c.arm for c in result.comparisons) == ["Mens E-Mail", "Womens E-Mail"]
    mens = result.comparison("Mens E-Mail")
    t_visit, c_visit = _arm(hillstrom, "Mens E-Mail", "visit"), _arm(hillstrom, CONTROL, "visit")
    t_spend, c_spend = _arm(hillstrom, "Mens E-Mail", "spend"), _arm(hillstrom, CONTROL, "spend")
    assert mens.rate == rate_lift(
        summarize_arm("Mens E-Mail", t_visit, t_spend), summarize_arm(CONTROL, c_visit, c_spend)
    )
    assert mens.revenue == mean_lift(t_spend, c_spend)
    summary = result.arm("Mens E-Mail")
    assert summary.n == t_visit.size and summary.conversions == int(t_visit.sum())
    assert summary.revenue_total == pytest.approx(float(t_spend.sum()), abs=1e-6)
    assert summary.revenue_per_customer == pytest.approx(float(t_spend.mean()), abs=TOL)
    assert summary.revenue_sd == pytest.approx(float(np.std(t_spend, ddof=1)), abs=TOL)

    payload = result.to_dict()
    _assert_plain(payload)
    text = json.dumps(payload, allow_nan=False)
    assert json.loads(text)["comparisons"][0]["rate"]["absolute_ci"]["low"] is not None


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
    assert lift.relative_ci is None  # delta-method variance is exactly zero here


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


def test_compare_arms_with_tiny_and_missing_arms() -> None:
    arms = np.array(["holdout", "holdout", "holdout", "email", "sms", "sms"])
    converted = np.array([0, 1, 0, 1, 1, 0])
    revenue = np.array([0.0, 10.0, 0.0, 5.0, 7.0, 0.0])
    result = compare_arms(arms, converted, revenue, "holdout")
    assert result.comparison("email").rate is None and result.comparison("email").revenue is None
    sms = result.comparison("sms")
    assert sms.rate is not None and sms.revenue is not None
    _assert_plain(result.to_dict())

    missing = compare_arms(arms, converted, revenue, "nobody")
    assert missing.arm("nobody").n == 0
    assert all(c.rate is None and c.revenue is None for c in missing.comparisons)
    assert len(missing.comparisons) == 3
    _assert_plain(missing.to_dict())


def test_compare_arms_with_boolean_holdout_mask() -> None:
    rng = np.random.default_rng(2)
    held = rng.random(5000) < 0.1
    converted = rng.random(5000) < np.where(held, 0.05, 0.08)
    revenue = np.where(converted, 20.0, 0.0)
    result = compare_arms(held, converted, revenue, control_label=True)
    assert result.control == "True"
    assert [c.arm for c in result.comparisons] == ["False"]
    lift = result.comparisons[0].rate
    assert lift is not None
    p_t, p_c = converted[~held].mean(), converted[held].mean()
    assert lift.absolute == pytest.approx(p_t - p_c, abs=TOL)


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
        compare_arms(np.array(["a", "b"]), np.array([1, 0, 1]), np.array([0.0, 0.0, 0.0]), "a")
