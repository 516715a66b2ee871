"""The Bayesian view of a rate comparison: the chance to beat the holdout against Evan Miller's exact sum for
Beta posteriors, and the expected losses against a large Monte Carlo draw, with the identity that ties them
(E[T - C] = loss of dropping - loss of shipping)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaln

from orchestrator.measure._bayes import bayes_rates


def miller(a_t: int, b_t: int, a_c: int, b_c: int) -> float:
    """P(T > C) for T ~ Beta(a_t, b_t), C ~ Beta(a_c, b_c), integer a_t (Evan Miller's closed form)."""
    total = 0.0
    for i in range(a_t):
        total += math.exp(
            betaln(a_c + i, b_t + b_c) - math.log(b_t + i) - betaln(1 + i, b_t) - betaln(a_c, b_c)
        )
    return total


@pytest.mark.parametrize(
    ("x_t", "n_t", "x_c", "n_c"), [(12, 100, 8, 100), (3, 13, 1, 13), (130, 1000, 100, 1000)]
)
def test_chance_to_beat_matches_the_closed_form(x_t: int, n_t: int, x_c: int, n_c: int) -> None:
    view = bayes_rates(x_t, n_t, x_c, n_c)
    assert view is not None
    assert view.chance_to_beat == pytest.approx(
        miller(1 + x_t, 1 + n_t - x_t, 1 + x_c, 1 + n_c - x_c), abs=1e-7
    )


def test_expected_losses_match_monte_carlo() -> None:
    x_t, n_t, x_c, n_c = 40, 400, 30, 380
    view = bayes_rates(x_t, n_t, x_c, n_c)
    assert view is not None
    rng = np.random.default_rng(8)
    t = rng.beta(1 + x_t, 1 + n_t - x_t, 4_000_000)
    c = rng.beta(1 + x_c, 1 + n_c - x_c, 4_000_000)
    assert view.chance_to_beat == pytest.approx(float((t > c).mean()), abs=1e-3)
    assert view.expected_loss_ship == pytest.approx(float(np.maximum(c - t, 0).mean()), rel=1e-2)
    assert view.expected_loss_drop == pytest.approx(float(np.maximum(t - c, 0).mean()), rel=1e-2)
    # E[T] - E[C] = E[(T - C)+] - E[(C - T)+], exactly.
    difference = (1 + x_t) / (2 + n_t) - (1 + x_c) / (2 + n_c)
    assert view.expected_loss_drop - view.expected_loss_ship == pytest.approx(difference, abs=1e-9)


def test_no_entries_no_view() -> None:
    assert bayes_rates(0, 0, 3, 10) is None
    same = bayes_rates(5, 50, 5, 50)
    assert same is not None and same.chance_to_beat == pytest.approx(0.5, abs=1e-9)


def test_lift_bayes_in_json_and_text(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    from orchestrator.cli import main

    table = Path(str(tmp_path)) / "ab.csv"
    rows = ["arm,converted"] + ["a,1"] * 30 + ["a,0"] * 170 + ["b,1"] * 45 + ["b,0"] * 155
    table.write_text("\n".join(rows) + "\n")
    argv = ["lift", str(table), "--arm", "arm", "--control", "a", "--metric", "converted", "--bayes"]
    assert main([*argv, "--format", "json"]) == 0
    [comparison] = json.loads(capsys.readouterr().out)["metrics"][0]["comparisons"]
    expected = bayes_rates(45, 200, 30, 200)
    assert expected is not None
    assert comparison["bayes"]["chance_to_beat"] == pytest.approx(expected.chance_to_beat, abs=1e-12)
    assert main(argv) == 0
    assert f"chance to beat a {expected.chance_to_beat:.1%}" in capsys.readouterr().out
    assert main([*argv[:-1], "--format", "json"]) == 0  # without --bayes: no view
    assert "bayes" not in json.loads(capsys.readouterr().out)["metrics"][0]["comparisons"][0]
