"""Buy-till-you-die predictions for every customer at once, in closed form (numpy and scipy): what
``p_alive(e)``, ``expected_purchases(e, H)`` and ``predicted_clv(e.p, H)`` read, given the parameters a fit
found (``orchestrator.predict`` fits them; the engine hands the newest fit to the evaluator).

Each customer's purchases are counted by UTC day (``transaction_days``): frequency x, the transaction days
after the first; recency t_x, first to last day; age T, first day to the day of the evaluation; all in
weeks; m_x the mean value of the repeat days (``docs/predict.md``).

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"), with parameters r, alpha
(per week), a, b and a customer's frequency x, recency t_x and age T (weeks, ``predict._summary``):

- the probability the customer is still active:
  ``1 / (1 + [x > 0] * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))``;
- the expected number of transactions in the next t weeks (equation 10 of the paper), with the Gauss
  hypergeometric function 2F1;
- for a customer never seen, the expected number in t weeks (equation 7).

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"), with parameters p, q, gamma: the expected value of a
transaction of a customer with x repeat transactions of mean value m_x,
``p * (gamma + x * m_x) / (p * x + q - 1)`` (the population's mean ``p * gamma / (q - 1)`` for x = 0).

The predicted value over a horizon is the expected transactions in it times the expected value of one,
undiscounted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import hyp2f1

DAY_US = 86_400 * 1_000_000
#: The models' unit of time, in days: parameters such as alpha are per week.
UNIT_DAYS = 7


@dataclass(frozen=True)
class BetaGeo:
    """BG/NBD parameters (time in weeks)."""

    r: float
    alpha: float
    a: float
    b: float

    def _odds_dead(self, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray) -> np.ndarray:
        """``[x > 0] * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)``, in logs for large x."""
        x = np.asarray(frequency, np.float64)
        has = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds = (
                np.log(self.a)
                - np.log(np.where(has, self.b + x - 1, 1.0))
                + (self.r + x) * (np.log(self.alpha + age) - np.log(self.alpha + recency))
            )
        return np.where(has, np.exp(log_odds), 0.0)

    def p_alive(self, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The probability each customer is still active at the end of their age."""
        return 1.0 / (1.0 + self._odds_dead(frequency, recency, age))

    def expected_purchases(
        self, weeks: float, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray
    ) -> np.ndarray:
        """Each customer's expected transactions in the next ``weeks`` weeks."""
        if weeks <= 0:
            return np.zeros(len(np.asarray(frequency)))
        x = np.asarray(frequency, np.float64)
        age = np.asarray(age, np.float64)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = weeks / (alpha + age + weeks)
        head = (a + b + x - 1) / (a - 1)
        decay = ((alpha + age) / (alpha + age + weeks)) ** (r + x)
        tail = 1.0 - decay * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return head * tail / (1.0 + self._odds_dead(x, recency, age))

    def expected_new(self, weeks: float) -> float:
        """The expected transactions in ``weeks`` weeks of a customer just acquired."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = weeks / (alpha + weeks)
        decay = (alpha / (alpha + weeks)) ** r
        return float((a + b - 1) / (a - 1) * (1.0 - decay * hyp2f1(r, b, a + b - 1, z)))


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma parameters of the value of a transaction."""

    p: float
    q: float
    gamma: float

    def expected_spend(self, frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
        """Each customer's expected value of a transaction; the population's mean without a repeat."""
        x = np.asarray(frequency, np.float64)
        m = np.nan_to_num(np.asarray(monetary, np.float64), nan=0.0)
        return self.p * (self.gamma + x * m) / (self.p * x + self.q - 1.0)


@dataclass(frozen=True)
class Fit:
    """A fit's two models, for the evaluator: ``gamma_gamma`` is None when it could not be fitted."""

    beta_geo: BetaGeo
    gamma_gamma: GammaGamma | None


def transaction_days(
    customer: np.ndarray, day: np.ndarray, amount: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (customer, day) pairs with a purchase, sorted by customer then day, with each day's value."""
    if not len(day):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    low = int(day.min())
    span = int(day.max()) - low + 1
    keys, inverse = np.unique(customer.astype(np.int64) * span + (day - low), return_inverse=True)
    return keys // span, keys % span + low, np.bincount(inverse, weights=amount, minlength=len(keys))


@dataclass(frozen=True)
class DaySummary:
    """Per customer slot: x, t_x and T in weeks, m_x (NaN without a repeat), and whether they bought."""

    frequency: np.ndarray
    recency: np.ndarray
    age: np.ndarray
    monetary: np.ndarray
    bought: np.ndarray


def day_summary(
    customer: np.ndarray, ts_us: np.ndarray, value: np.ndarray | None, n: int, today: int
) -> DaySummary:
    """The summary of every slot's purchases (any order, all on or before ``today``, a UTC day number)."""
    day = np.floor_divide(np.asarray(ts_us, np.int64), DAY_US)
    amount = np.zeros(len(day)) if value is None else np.nan_to_num(np.asarray(value, np.float64), nan=0.0)
    t_customer, t_day, day_value = transaction_days(np.asarray(customer, np.int64), day, amount)
    days = np.bincount(t_customer, minlength=n)[:n].astype(np.float64)
    bought = days > 0
    first = np.full(n, today, np.int64)
    last = np.full(n, today, np.int64)
    firsts = np.ones(len(t_day), bool)  # the first day of each customer (pairs are sorted)
    firsts[1:] = t_customer[1:] != t_customer[:-1]
    first[t_customer[firsts]] = t_day[firsts]
    lasts = np.ones(len(t_day), bool)
    lasts[:-1] = t_customer[1:] != t_customer[:-1]
    last[t_customer[lasts]] = t_day[lasts]
    frequency = np.maximum(days - 1, 0)
    repeat_value = np.bincount(t_customer, weights=day_value, minlength=n)[:n].astype(np.float64)
    repeat_value[t_customer[firsts]] -= day_value[firsts]
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_value / np.maximum(frequency, 1), np.nan)
    return DaySummary(
        frequency=frequency,
        recency=(last - first) / UNIT_DAYS,
        age=(today - first) / UNIT_DAYS,
        monetary=monetary,
        bought=bought,
    )
