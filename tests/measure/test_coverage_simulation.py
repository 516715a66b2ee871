"""The simulated shop of ``benchmarks/coverage.py``, small: the engine's lift report counts exactly the
entries and conversions the declared story drew, held out by the engine's own hash, and reads the true
effect back; the Wilson intervals of the coverage rates against statsmodels. (The coverage figures
themselves come from the benchmark's 200 runs, not from this test.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def coverage_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coverage_benchmark", ROOT / "benchmarks" / "coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_report_counts_what_the_story_drew() -> None:
    cov = coverage_module()
    story = cov.Story(customers=1200, base=0.1, effect=0.05)
    result = cov.run_once(story, 3)
    assert result.entries == result.treated + result.held_out == 1200  # every visitor entered once
    assert 0.4 < result.held_out / 1200 < 0.6  # the declared 50% holdout, by the engine's hash
    # Every purchase the story drew falls inside its entry's goal window: each is one conversion.
    assert (result.treated_conversions, result.held_out_conversions) == (
        result.drawn_treated,
        result.drawn_held_out,
    )
    expected = result.treated_conversions / result.treated - result.held_out_conversions / result.held_out
    assert result.lift == pytest.approx(expected, abs=1e-12)
    assert result.fixed_low < result.lift < result.fixed_high
    assert result.looks == story.arrival_days  # a look a day from the first closed window to the end
    assert not result.srm_flagged


@pytest.mark.parametrize(("k", "n"), [(95, 100), (190, 200), (0, 200), (200, 200)])
def test_the_wilson_intervals_match_statsmodels(k: int, n: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    low, high = coverage_module().wilson(k, n)
    expected = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    if (k, n) == (95, 100):  # by hand: centre 0.969207 / 1.038415 = 0.93335, half 0.045106
        assert (round(low, 4), round(high, 4)) == (0.8882, 0.9785)
