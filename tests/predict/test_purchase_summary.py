"""The purchase summary the models read, worked out by hand on a few customers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from orchestrator.predict import summarize

DAY_US = 86_400 * 1_000_000
EPOCH = date(1970, 1, 1)


def day(text: str, hour: int = 0) -> int:
    return (date.fromisoformat(text) - EPOCH).days * DAY_US + hour * 3600 * 1_000_000


END = (date(2024, 1, 31) - EPOCH).days  # calibration: through 31 January, that day included
HOLDOUT_END = (date(2024, 3, 1) - EPOCH).days


def test_counts_by_day_and_measures_in_weeks() -> None:
    purchases = [
        # customer 1: two purchases on 3 January (one transaction day of 30), then 10 and 24 January.
        (1, day("2024-01-03", 9), 10.0),
        (1, day("2024-01-03", 18), 20.0),
        (1, day("2024-01-10"), 5.0),
        (1, day("2024-01-24", 23), 7.0),
        # customer 2: one purchase on the calibration's last day, then one in the holdout.
        (2, day("2024-01-31", 23), 50.0),
        (2, day("2024-02-14"), 8.0),
        # customer 3: first buys after the calibration: not in the cohort.
        (3, day("2024-02-02"), 9.0),
        # customer 4: a purchase without a value still counts as a transaction day.
        (4, day("2024-01-17"), 4.0),
        (4, day("2024-01-24"), np.nan),
        (4, day("2024-03-01", 12), 1.0),  # the holdout's last day is included
        (4, day("2024-03-02"), 1.0),  # and the day after is not
    ]
    rng = np.random.default_rng(3)
    order = rng.permutation(len(purchases))  # any order
    customer, ts, value = (np.array([purchases[i][k] for i in order]) for k in range(3))
    summary = summarize(customer, ts, value, END, HOLDOUT_END)

    assert summary.customer.tolist() == [1, 2, 4]
    # 1: days 3, 10, 24 Jan: x = 2; t_x = 21 days = 3 weeks; T = 28 days = 4 weeks; m_x = (5 + 7) / 2.
    # 2: one day, 31 Jan: x = 0; t_x = 0; T = 0; no m_x.
    # 4: days 17 and 24 Jan: x = 1; t_x = 1 week; T = 14 days = 2 weeks; m_x = 0 (no value).
    assert summary.frequency.tolist() == [2, 0, 1]
    assert summary.recency.tolist() == [3.0, 0.0, 1.0]
    assert summary.age.tolist() == [4.0, 0.0, 2.0]
    assert summary.monetary[0] == pytest.approx(6.0) and np.isnan(summary.monetary[1])
    assert summary.monetary[2] == 0.0
    assert summary.holdout is not None and summary.holdout.tolist() == [0, 1, 1]
    assert summary.repeaters.tolist() == [True, False, True]


def test_without_a_holdout_and_without_purchases() -> None:
    summary = summarize(np.array([5, 5]), np.array([day("2024-01-01"), day("2024-02-10")]), None, END)
    assert summary.holdout is None
    assert (summary.frequency.tolist(), summary.age.tolist()) == ([0], [30 / 7])
    nothing = summarize(np.array([], np.int64), np.array([], np.int64), np.array([]), END)
    assert len(nothing) == 0 and not nothing.repeaters.any()
