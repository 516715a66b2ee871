"""What the buy-till-you-die models read of each customer's purchases, for every customer at once.

A customer's purchases are counted by **day** (UTC): two purchases on one day are one transaction, their
values summed. Over a calibration period that ends on a given day (that day included), for each customer
whose first purchase falls in it:

- ``frequency`` x: the number of transaction days after the first (repeat transactions);
- ``recency`` t_x: the time from the first transaction day to the last, in weeks (0 without a repeat);
- ``age`` T: the time from the first transaction day to the calibration's last day, in weeks;
- ``monetary`` m_x: the mean value of the repeat transaction days (the first day left out; NaN without a
  repeat).

These are not the ``recency`` and ``frequency`` built-ins of the rule language (``docs/metrics.md``), which
count events and measure time to now. With a holdout end, ``holdout`` counts each customer's transaction
days after the calibration's last day up to the holdout's last day (included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.signals import DAY_US, day_summary, transaction_days


@dataclass(frozen=True)
class PurchaseSummary:
    """Per customer of the cohort (those whose first purchase is in the calibration period), aligned."""

    customer: np.ndarray  # int64 customer keys, ascending
    frequency: np.ndarray  # float64 repeat transaction days
    recency: np.ndarray  # float64 weeks, first to last transaction day
    age: np.ndarray  # float64 weeks, first transaction day to the calibration's last day
    monetary: np.ndarray  # float64 mean value of the repeat days (NaN without one)
    holdout: np.ndarray | None  # int64 transaction days in the holdout period, when one is given
    calibration_end_day: int  # days since 1970-01-01 (UTC), included
    holdout_end_day: int | None

    def __len__(self) -> int:
        return len(self.customer)

    @property
    def repeaters(self) -> np.ndarray:
        """A mask of the customers with at least one repeat transaction in calibration."""
        return self.frequency > 0


def summarize(
    customer: np.ndarray,
    ts_us: np.ndarray,
    value: np.ndarray | None,
    calibration_end_day: int,
    holdout_end_day: int | None = None,
) -> PurchaseSummary:
    """The summary of purchases (``customer`` keys, instants ``ts_us``, ``value`` or None), any order.

    A purchase without a value (NaN) counts as a transaction and adds nothing to its day's value.
    """
    customer = np.asarray(customer, np.int64)
    ts_us = np.asarray(ts_us, np.int64)
    day = np.floor_divide(ts_us, DAY_US)
    n = int(customer.max()) + 1 if len(customer) else 0
    kept = day <= calibration_end_day
    calibration = day_summary(
        customer[kept],
        ts_us[kept],
        None if value is None else np.asarray(value)[kept],
        n,
        calibration_end_day,
    )
    cohort = np.flatnonzero(calibration.bought)  # whose first purchase is in the calibration period
    holdout = None
    if holdout_end_day is not None:
        after = ~kept & (day <= holdout_end_day)
        owners, _, _ = transaction_days(customer[after], day[after], np.zeros(int(after.sum())))
        holdout = np.bincount(owners, minlength=n).astype(np.int64)[cohort]
    return PurchaseSummary(
        customer=cohort.astype(np.int64),
        frequency=calibration.frequency[cohort],
        recency=calibration.recency[cohort],
        age=calibration.age[cohort],
        monetary=calibration.monetary[cohort],
        holdout=holdout,
        calibration_end_day=calibration_end_day,
        holdout_end_day=holdout_end_day,
    )
