"""The fitted models' predictions for every customer at once, in closed form (numpy and scipy).

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
