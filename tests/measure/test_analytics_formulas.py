"""The engagement formulas on tiny data, against values worked out by hand (docs/metrics.md, "Engagement
analytics"), and the trailing counts against a plain set-based count on random data."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from orchestrator.measure import _analytics_formulas as f

#: 2024-01-01 was a Monday: day numbers below count from it.
MONDAY = (date(2024, 1, 1) - date(1970, 1, 1)).days


def test_days_weeks_and_months_in_utc() -> None:
    # 2024-01-01T00:00:00Z and one microsecond before it.
    assert f.days_of(np.array([MONDAY * f.DAY_US, MONDAY * f.DAY_US - 1])).tolist() == [MONDAY, MONDAY - 1]
    # Sunday 2024-01-07 is in the week of Monday the 1st; Monday the 8th starts the next one.
    assert f.week_start(np.array([MONDAY, MONDAY + 6, MONDAY + 7])).tolist() == [MONDAY, MONDAY, MONDAY + 7]
    # 1970-01-01 (a Thursday) is in the week of Monday 1969-12-29.
    assert int(f.week_start(0)) == -3
    # 2024-02-29 is in February; its month ends on 1 March (a leap year: 29 days).
    feb29 = (date(2024, 2, 29) - date(1970, 1, 1)).days
    assert int(f.month_start(feb29)) == MONDAY + 31
    assert int(f.period_end(f.month_start(feb29), "month")) == MONDAY + 31 + 29
    assert int(f.period_end(MONDAY, "week")) == MONDAY + 7


def test_dau_wau_mau_by_hand() -> None:
    # a: days 0, 1, 10; b: day 5; c: days 0 and 40 (twice on day 0: one customer-day). Days 0..44.
    customer = np.array([1, 1, 1, 2, 3, 3, 3])
    day = np.array([0, 1, 10, 5, 0, 0, 40])
    dau = f.trailing_active(customer, day, 0, 45, 1)
    wau = f.trailing_active(customer, day, 0, 45, 7)
    mau = f.trailing_active(customer, day, 0, 45, 30)
    assert dau[[0, 1, 2, 5, 10, 40]].tolist() == [2, 1, 0, 1, 1, 1]
    assert int(dau.sum()) == 6  # six customer-days
    # WAU on day d: active on some day of [d - 6, d].
    assert wau[[0, 6, 7, 8, 10, 12, 16, 17, 40, 44]].tolist() == [2, 3, 2, 1, 2, 1, 1, 0, 1, 1]
    # MAU on day d: active on some day of [d - 29, d]. Day 29: a, b, c; day 30: a (1, 10) and b (5), c's
    # day 0 has left; day 35: a (10); day 39: a (10) still; day 40: c (40), a's day 10 has left.
    assert mau[[10, 29, 30, 35, 39, 40]].tolist() == [3, 3, 2, 1, 1, 1]
    # A window that starts later sees the activity before it: day 7 counted from day 7.
    assert f.trailing_active(customer, day, 7, 3, 7).tolist() == wau[7:10].tolist()
    # No activity at all, an empty window.
    assert f.trailing_active(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 3, 30).tolist() == [0, 0, 0]
    assert len(f.trailing_active(customer, day, 0, 0, 7)) == 0


@pytest.mark.parametrize("width", [1, 7, 30])
def test_trailing_counts_match_sets_of_customers(width: int) -> None:
    rng = np.random.default_rng(width)
    customer = rng.integers(0, 40, 400)
    day = rng.integers(0, 90, 400)
    got = f.trailing_active(customer, day, 20, 60, width)
    expected = [
        len({c for c, d in zip(customer, day, strict=True) if t - width < d <= t}) for t in range(20, 80)
    ]
    assert got.tolist() == expected


def _cohort_data() -> tuple[np.ndarray, np.ndarray]:
    """Active days, relative to Monday M:
    a (1): first seen M+0, back on M+35 and M+95; b (2): seen once, M+2;
    c (3): first seen M+1, back on M+29 and M+61; d (4): first seen M+7, never back;
    g (5): first seen M+63, back on M+100."""
    rows = [(1, 0), (1, 35), (1, 95), (2, 2), (3, 1), (3, 29), (3, 61), (4, 7), (5, 63), (5, 100)]
    customer = np.array([c for c, _ in rows])
    day = np.array([MONDAY + d for _, d in rows])
    return f.active_pairs(customer, day)


def test_birth_cohorts_by_hand() -> None:
    cust, day = _cohort_data()
    weeks = MONDAY + 7 * np.arange(11)  # weeks 0..10
    end = MONDAY + 126  # the first day with no data
    anchor_customer, anchor_day = f.birth_anchors(cust, day)
    assert anchor_customer.tolist() == [1, 2, 3, 4, 5]
    assert (anchor_day - MONDAY).tolist() == [0, 2, 1, 7, 63]
    cohorts = f.cohort_retention(anchor_customer, anchor_day, cust, day, weeks, end)
    assert cohorts.size.tolist() == [3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    d30, d60, d90 = (cohorts.rate(k) for k in range(3))
    # Week 0 (a, b, c): at 30 days a (back on day 35, in [30, 60)); c's M+29 is offset 28 from M+1, too
    # early, and its M+61 is offset 60, in [60, 90).
    assert d30[0] == pytest.approx(1 / 3)
    # At 60 days c (offset 60); at 90 days a (offset 95). b, seen once, never counts.
    assert d60[0] == pytest.approx(1 / 3) and d90[0] == pytest.approx(1 / 3)
    assert [int(r[0]) for r in cohorts.retained] == [1, 1, 1]
    # Week 1: d alone, never back: measured, and zero, at 30 and 60 days (its windows ended by M+126).
    assert d30[1] == 0.0 and d60[1] == 0.0
    # At 90 days: the window of a customer first seen on Sunday M+13 ends at M+13+120 > M+126: not yet.
    assert d90[1] is None and not cohorts.measurable[2][1]
    # Week 9: g came back on day 37 of its life, but the window [30, 60) of its week's Sunday ends after
    # the data: not measurable, shown as None and not as 0 (or 1).
    assert not cohorts.measurable[0][9] and d30[9] is None and int(cohorts.size[9]) == 1
    # An empty week is measurable but has no rate.
    assert cohorts.measurable[0][2] and d30[2] is None


def test_compounded_cohorts_by_hand() -> None:
    cust, day = _cohort_data()
    weeks = MONDAY + 7 * np.arange(11)
    end = MONDAY + 126
    anchor_customer, anchor_day = f.recurring_anchors(cust, day)
    # One anchor per customer and active week, on their first active day of it.
    pairs = sorted(zip(anchor_customer.tolist(), (anchor_day - MONDAY).tolist(), strict=True))
    assert pairs == [(1, 0), (1, 35), (1, 95), (2, 2), (3, 1), (3, 29), (3, 61), (4, 7), (5, 63), (5, 100)]
    cohorts = f.cohort_retention(anchor_customer, anchor_day, cust, day, weeks, end)
    assert cohorts.size.tolist() == [3, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    d30, d60, d90 = (cohorts.rate(k) for k in range(3))
    # Week 0 is the birth cohort (nobody was seen before it).
    assert (d30[0], d60[0], d90[0]) == (pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1 / 3))
    # Week 4: c, anchored on M+29, back on M+61 (offset 32): retained at 30 days, not at 60; 90 not yet.
    assert (d30[4], d60[4], d90[4]) == (1.0, 0.0, None)
    # Week 5: a, anchored on M+35, back on M+95 (offset 60): not at 30 days; 60 not yet measurable.
    assert (d30[5], d60[5]) == (0.0, None)
    # Week 8: c on M+61 never came back: 0 at 30 days. Week 9: g, 30 days not yet measurable.
    assert d30[8] == 0.0 and d30[9] is None


def test_churn_by_hand() -> None:
    # x in periods 0 and 1, y in 0 only, z in 1 and 2, w in 2; period 3 is empty.
    customer = np.array([1, 1, 2, 3, 3, 4])
    period = np.array([0, 1, 0, 1, 2, 2])
    members = f.period_members(customer, period)
    active, previous, churned = f.churn_counts(members, 4)
    assert active.tolist() == [2, 2, 2, 0]
    assert previous.tolist() == [0, 2, 2, 2]
    # Period 1: y left; period 2: x left; period 3 (nobody active): z and w left.
    assert churned.tolist() == [0, 1, 1, 2]


def test_conversion_members_by_hand() -> None:
    active = f.period_members(np.array([1, 2, 3, 1]), np.array([0, 0, 0, 1]))
    # Customer 2 converted in period 0; customer 1 in period 2 (not active then); customer 9 never active.
    converted = f.period_members(np.array([2, 1, 9]), np.array([0, 2, 0]))
    inside = f.members_in(active, converted)
    assert f.count_by_period(active, 3).tolist() == [3, 1, 0]
    assert f.count_by_period(active[inside], 3).tolist() == [1, 0, 0]
    assert f.members_in(active, np.zeros(0, np.int64)).tolist() == [False] * 4


def test_survey_scores_by_hand() -> None:
    nps = (
        np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 5]),
        # period 0: 10, 9 promoters; 8, 7 passives; 6, 0 detractors; 11 and null left out -> NPS 0
        # period 1: 10, 10, 3 -> (2 - 1) / 3; period 5 is outside the 3 periods
        np.array([10, 9, 8, 7, 6, 0, 11, np.nan, 10, 10, 3, 10], float),
    )
    csat = (np.array([0, 0, 0, 0, 0, 0]), np.array([5, 4, 3, 1, 6, 4.5]))  # 6 and 4.5 left out: 2 of 4
    ces = (np.array([0, 0, 0, 0, 2]), np.array([1, 7, 4, 8, 2], float))  # 8 left out: (1 + 7 + 4) / 3
    figures = f.survey_figures(nps, csat, ces, 3)
    assert figures.nps_responses.tolist() == [6, 3, 0]
    assert figures.promoters.tolist() == [2, 2, 0] and figures.detractors.tolist() == [2, 1, 0]
    assert figures.nps() == [0.0, pytest.approx(100 / 3), None]
    assert figures.csat_responses.tolist() == [4, 0, 0] and figures.csat() == [0.5, None, None]
    assert figures.ces_responses.tolist() == [3, 0, 1] and figures.ces() == [4.0, None, 2.0]
