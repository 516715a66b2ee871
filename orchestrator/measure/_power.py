"""Is the experiment able to tell, and is its split intact: minimum detectable effect and sample-ratio check.

``mde_rate`` / ``mde_mean`` give the smallest lift the current arm sizes detect at a given power (None when
no such lift exists); ``srm_check`` tests the arm sizes against the declared split (None when there is no
ratio to test). Both take counts and summary figures only, never per-customer arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from orchestrator.measure._numbers import check_alpha, check_power, finite

# ------------------------------------------------------------------------------ minimum detectable effect


@dataclass(frozen=True)
class Mde:
    """The smallest increase over the control that the current arm sizes detect with probability ``power``
    in a two-sided test at level ``alpha``; ``relative`` is None when the control mean is 0."""

    absolute: float
    relative: float | None
    power: float
    alpha: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _effect_size(
    solver: NormalIndPower | TTestIndPower, n_treat: int, n_control: int, alpha: float, power: float
) -> float | None:
    """The standardized effect size (Cohen's h or d) that ``solver`` finds detectable with these arm sizes.

    statsmodels ``solve_power`` returns a one-element array when its first root finder gave up and a
    fallback found the root; None when no root was found or it is not finite.
    """
    solved = solver.solve_power(
        effect_size=None, nobs1=n_treat, alpha=alpha, power=power, ratio=n_control / n_treat
    )
    flat = np.asarray(solved, dtype=np.float64).reshape(-1)
    return finite(flat[0]) if flat.size == 1 else None


def mde_rate(
    p_control: float, n_treat: int, n_control: int, alpha: float = 0.05, power: float = 0.8
) -> Mde | None:
    """MDE of a conversion rate: Cohen's h solved with statsmodels ``NormalIndPower``, mapped back to a
    rate through the arcsine transform. None below 2 customers per arm, or when no rate up to 1 is
    detectable."""
    check_alpha(alpha)
    check_power(power)
    if n_treat < 2 or n_control < 2 or not 0.0 <= p_control <= 1.0:
        return None
    effect = _effect_size(NormalIndPower(), n_treat, n_control, alpha, power)
    if effect is None:
        return None
    angle = math.asin(math.sqrt(p_control)) + effect / 2.0
    if angle > math.pi / 2.0:
        return None
    absolute = math.sin(angle) ** 2 - p_control
    return Mde(
        absolute=absolute,
        relative=absolute / p_control if p_control > 0.0 else None,
        power=power,
        alpha=alpha,
        method="Cohen's h from statsmodels NormalIndPower.solve_power, mapped back via arcsine",
    )


def mde_mean(
    mean_control: float,
    sd_control: float,
    n_treat: int,
    n_control: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Mde | None:
    """MDE of a mean: Cohen's d solved with statsmodels ``TTestIndPower`` times the control's standard
    deviation. None below 2 values per arm or when the control has no spread."""
    check_alpha(alpha)
    check_power(power)
    if n_treat < 2 or n_control < 2 or not sd_control > 0.0:
        return None
    effect = _effect_size(TTestIndPower(), n_treat, n_control, alpha, power)
    if effect is None:
        return None
    absolute = effect * sd_control
    return Mde(
        absolute=absolute,
        relative=absolute / mean_control if mean_control != 0.0 else None,
        power=power,
        alpha=alpha,
        method="Cohen's d from statsmodels TTestIndPower.solve_power times the control standard deviation",
    )


# ------------------------------------------------------------------------------------ sample ratio mismatch

SRM_THRESHOLD = 0.001
"""A sample-ratio-mismatch p-value below this flags the split as broken (the usual industry threshold)."""


@dataclass(frozen=True)
class SrmCheck:
    """Chi-square goodness of fit of the arm sizes to the declared split (scipy ``chisquare``).

    ``expected`` holds expected counts (the declared shares scaled to the observed total). ``chi2`` is None
    only when an arm declared at zero weight has customers; ``p_value`` is then 0 and the check is flagged.
    """

    arms: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float | None
    p_value: float
    threshold: float
    declared: str

    @property
    def flagged(self) -> bool:
        return self.p_value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "declared": self.declared,
            "observed": dict(zip(self.arms, self.observed, strict=True)),
            "expected": dict(zip(self.arms, self.expected, strict=True)),
            "chi2": self.chi2,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "method": "chi-square goodness of fit of arm sizes to the declared split",
        }


def srm_check(
    observed: Mapping[str, int],
    expected_weights: Mapping[str, float],
    declared: str = "",
    threshold: float = SRM_THRESHOLD,
) -> SrmCheck | None:
    """Sample-ratio-mismatch check of arm sizes ``observed`` against ``expected_weights`` (any scale).

    Every observed arm must have a weight (ValueError otherwise: the split would be undeclared); declared
    arms with no customer count as 0 observed. None when fewer than two arms or no customer at all: there is
    no ratio to test.
    """
    missing = sorted(set(observed) - set(expected_weights))
    if missing:
        raise ValueError(f"no declared share for arm(s) {', '.join(map(repr, missing))}")
    if any(not (w >= 0.0 and math.isfinite(w)) for w in expected_weights.values()):
        raise ValueError("declared shares must be finite and non-negative")
    arms = tuple(expected_weights)
    counts = np.array([int(observed.get(arm, 0)) for arm in arms], dtype=np.int64)
    weights = np.array([float(expected_weights[arm]) for arm in arms])
    total = int(counts.sum())
    if len(arms) < 2 or total == 0 or weights.sum() <= 0.0:
        return None
    expected = weights / weights.sum() * total
    if ((expected == 0.0) & (counts > 0)).any():
        return SrmCheck(
            arms, tuple(counts.tolist()), tuple(expected.tolist()), None, 0.0, threshold, declared
        )
    used = expected > 0.0
    if used.sum() < 2:
        return None
    result = sps.chisquare(counts[used], expected[used])
    chi2, p = finite(result.statistic), finite(result.pvalue)
    return SrmCheck(
        arms,
        tuple(counts.tolist()),
        tuple(float(x) for x in expected),
        chi2,
        p if p is not None else 0.0,
        threshold,
        declared,
    )
