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

from orchestrator.signals import DAY_US, UNIT_DAYS, transaction_days


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
    day = np.floor_divide(np.asarray(ts_us, np.int64), DAY_US)
    amount = np.zeros(len(day)) if value is None else np.nan_to_num(np.asarray(value, np.float64), nan=0.0)
    last_day = calibration_end_day if holdout_end_day is None else max(calibration_end_day, holdout_end_day)
    keep = day <= last_day
    customer, day, amount = customer[keep], day[keep], amount[keep]
    if not len(day):
        empty = np.empty(0)
        return PurchaseSummary(
            np.empty(0, np.int64), empty, empty, empty, empty,
            None if holdout_end_day is None else np.empty(0, np.int64),
            calibration_end_day, holdout_end_day,
        )  # fmt: skip
    t_customer, t_day, day_value = transaction_days(customer, day, amount)
    owners, first_at, per_owner = np.unique(t_customer, return_index=True, return_counts=True)
    first_day = t_day[first_at]
    cohort = first_day <= calibration_end_day
    in_calibration = t_day <= calibration_end_day
    owner_of = np.repeat(np.arange(len(owners)), per_owner)
    days_in = np.bincount(owner_of, weights=in_calibration, minlength=len(owners))
    last_in = np.full(len(owners), np.iinfo(np.int64).min)
    np.maximum.at(last_in, owner_of[in_calibration], t_day[in_calibration])
    value_in = np.bincount(owner_of, weights=np.where(in_calibration, day_value, 0.0), minlength=len(owners))
    frequency = days_in - 1
    repeat_value = value_in - day_value[first_at]
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_value / np.maximum(frequency, 1), np.nan)
    holdout = None
    if holdout_end_day is not None:
        after = ~in_calibration & (t_day <= holdout_end_day)
        holdout = np.bincount(owner_of[after], minlength=len(owners)).astype(np.int64)[cohort]
    return PurchaseSummary(
        customer=owners[cohort],
        frequency=frequency[cohort].astype(np.float64),
        recency=((last_in - first_day) / UNIT_DAYS)[cohort].astype(np.float64),
        age=((calibration_end_day - first_day) / UNIT_DAYS)[cohort].astype(np.float64),
        monetary=monetary[cohort],
        holdout=holdout,
        calibration_end_day=calibration_end_day,
        holdout_end_day=holdout_end_day,
    )
