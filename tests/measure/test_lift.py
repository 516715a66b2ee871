"""``orchestrator lift`` on the Hillstrom e-mail experiment: every figure of the JSON output against values
computed here independently (csv module + statsmodels + scipy), plus the command's errors and options."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import proportion as smp
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
HILLSTROM = ROOT.parent / "shared" / "data" / "hillstrom.csv"
CONTROL = "No E-Mail"
TREATMENTS = ["Mens E-Mail", "Womens E-Mail"]
TOL = 1e-9
Z = float(sps.norm.ppf(0.975))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def columns() -> dict[str, np.ndarray]:
    if not HILLSTROM.exists():
        pytest.skip(f"Hillstrom data set not found at {HILLSTROM}")
    with HILLSTROM.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {"segment": np.array([r["segment"] for r in rows])}
    for name in ("visit", "conversion", "spend", "history"):
        out[name] = np.array([float(r[name]) for r in rows])
    return out


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory, columns: dict[str, np.ndarray]) -> dict[str, Any]:
    target = tmp_path_factory.mktemp("lift") / "hillstrom.json"
    argv = ["lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL]
    argv += ["--metric", "visit", "--metric", "conversion", "--metric", "spend", "--format", "json"]
    assert main([*argv, "--output", str(target)]) == 0
    result: dict[str, Any] = json.loads(target.read_text())
    return result


def _metric(output: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in output["metrics"] if m["name"] == name)


def _comparison(metric: dict[str, Any], arm: str) -> dict[str, Any]:
    return next(c for c in metric["comparisons"] if c["arm"] == arm)


def _arm(metric: dict[str, Any], arm: str) -> dict[str, Any]:
    return next(a for a in metric["arms"] if a["name"] == arm)


def _delta_ci(m_t: float, v_t: float, n_t: int, m_c: float, v_c: float, n_c: int) -> tuple[float, float]:
    """Relative lift interval on the log of the ratio, as gradient' Sigma gradient of log m_t - log m_c."""
    gradient = np.array([1.0 / m_t, -1.0 / m_c])
    se = math.sqrt(gradient @ np.diag([v_t / n_t, v_c / n_c]) @ gradient)
    centre = math.log(m_t / m_c)
    return math.exp(centre - Z * se) - 1.0, math.exp(centre + Z * se) - 1.0


def test_arms_and_split_check(output: dict[str, Any], columns: dict[str, np.ndarray]) -> None:
    names, counts = np.unique(columns["segment"], return_counts=True)
    sizes = dict(zip(names.tolist(), counts.tolist(), strict=True))
    assert output["control"] == CONTROL
    assert output["source"]["rows"] == 64000
    assert {a["name"]: a["n"] for a in output["arms"]} == sizes
    expected = sps.chisquare([sizes[CONTROL], *(sizes[t] for t in TREATMENTS)])
    assert output["srm"]["chi2"] == pytest.approx(expected.statistic, rel=1e-12)
    assert output["srm"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert output["srm"]["flagged"] is False


@pytest.mark.parametrize("metric", ["visit", "conversion"])
@pytest.mark.parametrize("treatment", TREATMENTS)
def test_rate_figures(
    output: dict[str, Any], columns: dict[str, np.ndarray], metric: str, treatment: str
) -> None:
    got = _metric(output, metric)
    assert got["kind"] == "rate"
    t = columns[metric][columns["segment"] == treatment]
    c = columns[metric][columns["segment"] == CONTROL]
    x_t, n_t, x_c, n_c = int(t.sum()), t.size, int(c.sum()), c.size
    p_t, p_c = x_t / n_t, x_c / n_c
    for name, x, n, p in ((treatment, x_t, n_t, p_t), (CONTROL, x_c, n_c, p_c)):
        arm = _arm(got, name)
        assert (arm["n"], arm["conversions"]) == (n, x)
        assert arm["rate"] == pytest.approx(p, abs=TOL)
        assert arm["sd"] == pytest.approx(float(np.std(t if name == treatment else c, ddof=1)), abs=TOL)
        low, high = proportion_confint(x, n, method="wilson")
        assert (arm["ci"]["low"], arm["ci"]["high"]) == pytest.approx((low, high), abs=TOL)

    cmp = _comparison(got, treatment)
    assert cmp["control"] == CONTROL
    assert cmp["absolute"] == pytest.approx(p_t - p_c, abs=TOL)
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb", compare="diff")
    assert (cmp["absolute_ci"]["low"], cmp["absolute_ci"]["high"]) == pytest.approx((low, high), abs=TOL)
    _, p_value = proportions_ztest([x_t, x_c], [n_t, n_c])
    assert cmp["p_value"] == pytest.approx(p_value, rel=1e-9, abs=1e-300)
    # A second test of the same hypothesis agrees closely (the score test differs by O(1/n) terms).
    score = smp.test_proportions_2indep(x_t, n_t, x_c, n_c, method="score", compare="diff")
    assert math.log(cmp["p_value"]) == pytest.approx(math.log(score.pvalue), rel=0.02)
    assert cmp["relative"] == pytest.approx(p_t / p_c - 1, abs=TOL)
    r_low, r_high = _delta_ci(p_t, p_t * (1 - p_t), n_t, p_c, p_c * (1 - p_c), n_c)
    assert (cmp["relative_ci"]["low"], cmp["relative_ci"]["high"]) == pytest.approx((r_low, r_high), abs=TOL)

    # MDE: the effect statsmodels says is detected with exactly the declared 80% power.
    mde = cmp["mde"]
    assert mde["power"] == 0.8 and mde["alpha"] == 0.05
    h = proportion_effectsize(p_c + mde["absolute"], p_c)
    assert NormalIndPower().power(h, nobs1=n_t, alpha=0.05, ratio=n_c / n_t) == pytest.approx(0.8, abs=1e-3)
    assert mde["relative"] == pytest.approx(mde["absolute"] / p_c)

    # Always-valid interval: the normal-mixture boundary with tau = 0.1 pooled sd, by hand.
    v = p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c
    tau2 = (0.1 * float(np.concatenate([t, c]).std(ddof=1))) ** 2
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / 0.05) + math.log((v + tau2) / v)))
    assert cmp["always_valid_ci"]["low"] == pytest.approx(p_t - p_c - half, abs=TOL)
    assert cmp["always_valid_ci"]["high"] == pytest.approx(p_t - p_c + half, abs=TOL)
    assert cmp["cuped"] is None


@pytest.mark.parametrize("treatment", TREATMENTS)
def test_spend_figures(output: dict[str, Any], columns: dict[str, np.ndarray], treatment: str) -> None:
    got = _metric(output, "spend")
    assert got["kind"] == "mean"
    t = columns["spend"][columns["segment"] == treatment]
    c = columns["spend"][columns["segment"] == CONTROL]
    arm = _arm(got, treatment)
    assert arm["mean"] == pytest.approx(t.mean(), abs=TOL)
    assert arm["sd"] == pytest.approx(t.std(ddof=1), abs=TOL)
    assert arm["total"] == pytest.approx(t.sum(), abs=1e-6)
    cmp = _comparison(got, treatment)
    welch = sps.ttest_ind(t, c, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert cmp["absolute"] == pytest.approx(t.mean() - c.mean(), abs=TOL)
    assert (cmp["absolute_ci"]["low"], cmp["absolute_ci"]["high"]) == pytest.approx(
        (ci.low, ci.high), abs=TOL
    )
    assert cmp["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    r_low, r_high = _delta_ci(t.mean(), t.var(ddof=1), t.size, c.mean(), c.var(ddof=1), c.size)
    assert (cmp["relative_ci"]["low"], cmp["relative_ci"]["high"]) == pytest.approx((r_low, r_high), abs=TOL)
    d = cmp["mde"]["absolute"] / c.std(ddof=1)
    power = TTestIndPower().power(d, nobs1=t.size, alpha=0.05, ratio=c.size / t.size)
    assert power == pytest.approx(0.8, abs=1e-3)


# --- Options -------------------------------------------------------------------------------------------


def test_table_and_html_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL, "--metric", "visit"
    )
    assert code == 0
    assert "Mens E-Mail vs No E-Mail: +7.66 pts" in out
    assert "split check" in out and "MDE at 80% power" in out
    page = tmp_path / "lift.html"
    args = ["lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL, "--metric", "spend"]
    code, _, err = run(capsys, *args, "--format", "html", "--output", str(page))
    assert code == 0 and str(page) in err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 2
    assert "<script" not in html and " src=" not in html and " href=" not in html


def test_covariate_and_segments(capsys: pytest.CaptureFixture[str], columns: dict[str, np.ndarray]) -> None:
    code, out, err = run(
        capsys,
        "lift",
        str(HILLSTROM),
        "--arm",
        "segment",
        "--control",
        CONTROL,
        "--metric",
        "spend",
        "--covariate",
        "history",
        "--by",
        "zip_code",
        "--format",
        "json",
    )
    assert code == 0, err
    result = json.loads(out)
    cuped = _comparison(_metric(result, "spend"), "Mens E-Mail")["cuped"]
    assert cuped["covariate"] == "history"
    mask = np.isin(columns["segment"], ["Mens E-Mail", CONTROL])
    y, x = columns["spend"][mask], columns["history"][mask]
    assert cuped["theta"] == pytest.approx(np.cov(y, x)[0, 1] / x.var(ddof=1), rel=1e-9)
    assert cuped["variance_reduction"] == pytest.approx(np.corrcoef(y, x)[0, 1] ** 2, abs=1e-9)
    segments = result["segments"]
    assert segments["column"] == "zip_code"
    assert [s["value"] for s in segments["values"]] == ["Rural", "Surburban", "Urban"]
    assert sum(a["n"] for s in segments["values"] for a in s["arms"]) == 64000


def test_declared_split(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL, "--metric", "visit"]
    split = ["--split", "No E-Mail=2", "--split", "Mens E-Mail=1", "--split", "Womens E-Mail=1"]
    code, out, _ = run(capsys, *args, *split, "--format", "json")
    assert code == 0
    srm = json.loads(out)["srm"]
    assert srm["flagged"] is True  # the data is an equal split, not the declared 2:1:1
    assert srm["expected"][CONTROL] == pytest.approx(32000.0)


def test_broken_split_is_flagged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    arm = np.where(rng.random(40_000) < 0.5, "B", "A")
    keep = ~((arm == "B") & (rng.random(arm.size) < 0.06))  # 6% of B's rows lost
    path = tmp_path / "broken.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arm", "converted"])
        writer.writerows([a, int(rng.random() < 0.1)] for a in arm[keep])
    code, out, _ = run(capsys, "lift", str(path), "--arm", "arm", "--control", "A", "--metric", "converted")
    assert code == 0
    assert "SAMPLE RATIO MISMATCH" in out
    code, out, _ = run(
        capsys,
        "lift",
        str(path),
        "--arm",
        "arm",
        "--control",
        "A",
        "--metric",
        "converted",
        "--format",
        "json",
    )
    srm = json.loads(out)["srm"]
    observed = [int((arm[keep] == name).sum()) for name in ("A", "B")]
    assert srm["flagged"] is True and srm["p_value"] == pytest.approx(
        sps.chisquare(observed).pvalue, rel=1e-9
    )


# --- Errors ----------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "argv", "message"),
    [
        ("g,y\nA,1\nB,0\n", ["--arm", "grp", "--metric", "y"], "no column 'grp'; the columns are 'g', 'y'"),
        ("g,y\nA,1\nB,0\n", ["--arm", "g", "--metric", "z"], "no column 'z'"),
        (
            "g,y\nB,1\nC,0\n",
            ["--arm", "g", "--metric", "y"],
            "control value 'A' does not occur in column 'g'",
        ),
        (
            "g,y\nA,1\nB,x1\n",
            ["--arm", "g", "--metric", "y"],
            "metric column 'y' has 'x1', not a number at line 3",
        ),
        ("g,y\nA,1\nB,\n", ["--arm", "g", "--metric", "y"], "metric column 'y' has an empty value at line 3"),
        ("g,y\nA,1\nB,inf\n", ["--arm", "g", "--metric", "y"], "non-finite value 'inf' at line 3"),
        (
            "g,y,c\nA,1,2\nB,0,?\n",
            ["--arm", "g", "--metric", "y", "--covariate", "c"],
            "covariate column 'c'",
        ),
        ("g,y\nA,1\n,0\n", ["--arm", "g", "--metric", "y"], "arm column 'g' is empty at line 3"),
        ("g,y\nA,1\nA,0\n", ["--arm", "g", "--metric", "y"], "has only the control value"),
    ],
)
def test_input_errors_name_column_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, argv: list[str], message: str
) -> None:
    path = _write(tmp_path / "t.csv", body)
    code, out, err = run(capsys, "lift", str(path), "--control", "A", *argv)
    assert code == 1
    assert message in err and out == ""


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "g,y\nA,1\nB,0\nA,0\nB,1\n")
    base = ["lift", str(path), "--arm", "g", "--control", "A", "--metric", "y"]
    code, _, err = run(capsys, *base, "--split", "A=1")
    assert code == 2 and "no share for arm(s) 'B'" in err
    code, _, err = run(capsys, *base, "--split", "A")
    assert code == 2 and "write ARM=WEIGHT" in err
    code, _, err = run(capsys, *base, "--split", "A=x", "--split", "B=1")
    assert code == 2 and "'x' is not a number" in err
    code, _, err = run(capsys, "lift", str(path), "--arm", "g", "--control", "A", "--metric", "g")
    assert code == 2 and "cannot also be a --metric" in err
    code, _, err = run(
        capsys, "lift", str(tmp_path / "missing.csv"), "--arm", "g", "--control", "A", "--metric", "y"
    )
    assert code == 1 and "no such file" in err
    code, _, err = run(capsys, *base, "--power", "1.5")
    assert code == 2 and err == (
        "orchestrator lift: Invalid value for '--power': expected a number between 0 and 1, got 1.5 "
        "(see 'orchestrator lift --help')\n"
    )
