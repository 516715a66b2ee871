"""The call per journey and metric: each rule on a constructed comparison, the entries still needed worked
back through the always-valid interval, and the calls on Hillstrom through ``analyze``."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.measure import analyze
from orchestrator.measure._numbers import Interval
from orchestrator.measure._sequential import always_valid_bounds
from orchestrator.measure._verdict import HARMFUL, NO_EFFECT, NOT_ENOUGH, SHIP, judge

TAU = 0.03


def call(estimate: float, low: float, high: float, *, n: int = 5000, conversions: int | None = 500,
         target: float | None = 0.01, variance: float = 1e-5, per_day: float | None = None):  # fmt: skip
    return judge(estimate=estimate, interval=Interval(low, high), variance=variance, n_t=n, n_c=n,
                 conversions=conversions, target=target, tau=TAU, entries_per_day=per_day)  # fmt: skip


def test_each_rule() -> None:
    assert call(0.02, 0.005, 0.035).call == SHIP
    assert call(-0.02, -0.035, -0.005).call == HARMFUL
    assert call(0.001, -0.006, 0.008).call == NO_EFFECT  # inside +/-0.01
    wide = call(0.004, -0.012, 0.02)
    assert wide.call == NOT_ENOUGH and wide.entries_needed is not None and wide.entries_needed > 0
    assert "too wide to rule out zero or the target" in wide.reason
    # Without a target, an interval holding zero can only wait for more data.
    assert call(0.001, -0.006, 0.008, target=None).call == NOT_ENOUGH


def test_small_samples_get_no_call_whatever_the_interval() -> None:
    few = call(0.3, 0.1, 0.5, n=99)
    assert few.call == NOT_ENOUGH and few.warnings == (
        "small sample: 99 entries in the smaller arm (fewer than 100)",
    )
    rare = call(0.3, 0.1, 0.5, conversions=9)
    assert rare.call == NOT_ENOUGH and rare.warnings == ("few conversions: 9 in both arms (fewer than 10)",)
    assert call(0.3, 0.1, 0.5, conversions=None).call == SHIP  # a mean metric counts no conversions


def test_entries_needed_settle_the_interval_at_todays_estimate() -> None:
    entries, variance = 10_000, 4e-5
    verdict = call(0.004, -0.012, 0.02, n=entries // 2, variance=variance, per_day=250.0)
    needed = verdict.entries_needed
    assert needed is not None and verdict.days_needed == pytest.approx(needed / 250.0)

    def half(total: int) -> float:
        low, high = always_valid_bounds(0.0, variance * entries / total, TAU)
        return float(high - low) / 2

    goal = max(0.004, 0.01 - 0.004)  # exclude zero (0.004) or rule the target out (0.006): the easier
    assert half(entries + needed) <= goal < half(int((entries + needed) * 0.995))


def test_hillstrom_calls(hillstrom_rows: dict[str, np.ndarray]) -> None:
    result = analyze(hillstrom_rows["segment"], "No E-Mail", {"visit": hillstrom_rows["visit"]})
    calls = {c.arm: c.verdict for c in result.metric("visit").comparisons}
    assert calls["Mens E-Mail"] is not None and calls["Mens E-Mail"].call == SHIP
    assert calls["Womens E-Mail"] is not None and calls["Womens E-Mail"].call == SHIP
    # Every call agrees with the always-valid interval shown beside it.
    for comparison in result.metric("visit").comparisons:
        assert comparison.always_valid_ci is not None and comparison.always_valid_ci.low > 0


@pytest.fixture(scope="module")
def hillstrom_rows() -> dict[str, np.ndarray]:
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "hillstrom.csv"
    if not path.exists():
        pytest.skip("the Hillstrom data is not beside the project")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {
        "segment": np.array([r["segment"] for r in rows]),
        "visit": np.array([int(r["visit"]) for r in rows]),
    }
