"""The Bayesian view of a conversion-rate comparison: the chance the treated arm beats the holdout, and the
expected loss of keeping it (or of dropping it), as GrowthBook's Bayesian engine reports them.

Each arm's rate gets a uniform prior, Beta(1, 1), so after ``x`` conversions in ``n`` entries its posterior
is Beta(1 + x, 1 + n - x). With ``T`` and ``C`` the treated and held-out rates drawn from their posteriors:

- **chance to beat the holdout** = P(T > C) = the integral over t of f_T(t) F_C(t);
- **expected loss of shipping** = E[max(C - T, 0)]: what is given up, in conversion-rate points, if the
  journey is kept and it is in fact the worse arm; **expected loss of dropping** = E[max(T - C, 0)].

Both integrals are taken numerically (scipy's adaptive quadrature over the posteriors' mass), exact to far
below the figures shown. The view is optional and descriptive: the call of the report
(``_verdict``) comes from the always-valid interval, not from these figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from scipy import integrate, stats

METHOD = "Beta(1, 1) priors; P(T > C) and expected losses by numerical integration"


@dataclass(frozen=True)
class BayesView:
    chance_to_beat: float
    expected_loss_ship: float  # rate points (0.01 = 1 point)
    expected_loss_drop: float
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bayes_rates(x_t: int, n_t: int, x_c: int, n_c: int) -> BayesView | None:
    """The Bayesian view of ``x_t`` conversions in ``n_t`` treated entries against ``x_c`` in ``n_c``
    held-out ones; None when an arm has no entry."""
    if n_t <= 0 or n_c <= 0 or not (0 <= x_t <= n_t and 0 <= x_c <= n_c):
        return None
    treat = stats.beta(1 + x_t, 1 + n_t - x_t)
    control = stats.beta(1 + x_c, 1 + n_c - x_c)
    # Integrate where either posterior has its mass: quadrature over all of [0, 1] can miss a narrow peak.
    low = max(0.0, min(treat.ppf(1e-12), control.ppf(1e-12)))
    high = min(1.0, max(treat.isf(1e-12), control.isf(1e-12)))
    points = sorted({float(treat.mean()), float(control.mean())})

    def integral(function: Any) -> float:
        value, _ = integrate.quad(function, low, high, points=points, limit=200, epsabs=1e-12, epsrel=1e-10)
        return float(value)

    chance = integral(lambda t: treat.pdf(t) * control.cdf(t))
    # E[max(C - T, 0)] = integral over t of f_T(t) * E[(C - t)+], with E[(C - t)+] = integral_t^1 (1 - F_C).
    # For a Beta(a, b): E[(C - t)+] = mean * sf_{a+1, b}(t) - t * sf_{a, b}(t).
    a_c, b_c = 1 + x_c, 1 + n_c - x_c
    a_t, b_t = 1 + x_t, 1 + n_t - x_t
    shifted_c = stats.beta(a_c + 1, b_c)
    shifted_t = stats.beta(a_t + 1, b_t)
    mean_c, mean_t = a_c / (a_c + b_c), a_t / (a_t + b_t)
    loss_ship = integral(lambda t: treat.pdf(t) * (mean_c * shifted_c.sf(t) - t * control.sf(t)))
    loss_drop = integral(lambda c: control.pdf(c) * (mean_t * shifted_t.sf(c) - c * treat.sf(c)))
    return BayesView(
        chance_to_beat=min(max(chance, 0.0), 1.0),
        expected_loss_ship=max(loss_ship, 0.0),
        expected_loss_drop=max(loss_drop, 0.0),
    )
