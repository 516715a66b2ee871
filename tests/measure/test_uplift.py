"""The uplift view (``measure._uplift``): Qini and AUUC against hand-computed values on a tiny array and
against scikit-uplift's metric functions on the engine's own out-of-fold predictions for Hillstrom (visit,
Womens E-Mail against No E-Mail), the quadrant rule, a feature with no uplift structure, the encoding of
features, and the inputs it refuses."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from orchestrator.measure._experiment import InputError
from orchestrator.measure._uplift import (
    LOST_CAUSES,
    MIN_ROWS_PER_ARM,
    PERSUADABLES,
    SLEEPING_DOGS,
    SURE_THINGS,
    auuc,
    encode_features,
    qini_coefficient,
    qini_curve,
    quadrant_of,
    quadrants,
    uplift_curve,
    uplift_estimate,
)

ROOT = Path(__file__).resolve().parents[2]
HILLSTROM = ROOT.parent / "shared" / "data" / "hillstrom.csv"
CONTROL, WOMENS = "No E-Mail", "Womens E-Mail"
FEATURES = ("recency", "history", "mens", "womens", "zip_code", "newbie", "channel")


def _sklift() -> tuple[object, object]:
    metrics = pytest.importorskip("sklift.metrics")
    return metrics.qini_auc_score, metrics.uplift_auc_score


def _sklift_scores(y: np.ndarray, uplift: np.ndarray, treated: np.ndarray) -> tuple[float, float]:
    qini_auc_score, uplift_auc_score = _sklift()
    with warnings.catch_warnings():
        # scikit-uplift 0.5.1 calls scikit-learn's stable_cumsum, deprecated in scikit-learn 1.8.
        warnings.simplefilter("ignore", FutureWarning)
        return (
            float(qini_auc_score(y.astype(int), uplift, treated.astype(int))),  # type: ignore[operator]
            float(uplift_auc_score(y.astype(int), uplift, treated.astype(int))),  # type: ignore[operator]
        )


# --- The figures on a tiny array, by hand -----------------------------------------------------------------

# Eight rows, sorted by score already. Worked out in the test below with fractions.
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
TREATED = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
Y = np.array([1, 0, 1, 0, 1, 0, 0, 0], dtype=bool)


def _trapezoid(values: list[Fraction], xs: list[int]) -> Fraction:
    return sum(
        ((values[i] + values[i + 1]) / 2 * (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)), Fraction(0)
    )


def test_qini_and_auuc_by_hand() -> None:
    # Top k rows: N_T, N_C, Y_T, Y_C for k = 1..8.
    n_t = [1, 1, 2, 3, 3, 3, 4, 4]
    n_c = [0, 1, 1, 1, 2, 3, 3, 4]
    y_t = [1, 1, 2, 2, 2, 2, 2, 2]
    y_c = [0, 0, 0, 0, 1, 1, 1, 1]
    q = [Fraction(0)] + [
        Fraction(yt) - (Fraction(yc) * Fraction(nt, nc) if nc else 0)
        for nt, nc, yt, yc in zip(n_t, n_c, y_t, y_c, strict=True)
    ]
    u = [Fraction(0)] + [
        ((Fraction(yt, nt) if nt else 0) - (Fraction(yc, nc) if nc else 0)) * (nt + nc)
        for nt, nc, yt, yc in zip(n_t, n_c, y_t, y_c, strict=True)
    ]
    assert q == [0, 1, 1, 2, 2, Fraction(1, 2), 1, Fraction(2, 3), 1]
    xs, values = qini_curve(Y, SCORE, TREATED)
    assert xs.tolist() == list(range(9))
    np.testing.assert_allclose(values, [float(v) for v in q], rtol=0, atol=1e-12)
    np.testing.assert_allclose(uplift_curve(Y, SCORE, TREATED)[1], [float(v) for v in u], atol=1e-12)

    # Perfect Qini ordering: treated responders (rows 0, 2) first, the control responder (row 4) last;
    # the five others tie. Its curve is at k = 0, 2, 7, 8: 0, 2, 2, 2 - 1 * 4/4.
    perfect_q = _trapezoid([Fraction(0), Fraction(2), Fraction(2), Fraction(1)], [0, 2, 7, 8])
    random_q = Fraction(8 * 1, 2)
    expected_qini = (_trapezoid(q, list(range(9))) - random_q) / (perfect_q - random_q)
    assert expected_qini == Fraction(28, 57)
    assert qini_coefficient(Y, SCORE, TREATED) == pytest.approx(float(expected_qini), rel=1e-12)

    # Perfect uplift ordering: 1 control responder, 2 treated non-responders, so the scores are
    # 2 * (y == t) + t: groups 3 (rows 0, 2), 2 (1, 5, 7), 1 (3, 6), 0 (4), at k = 2, 5, 7, 8.
    perfect_u = _trapezoid(
        [Fraction(0), Fraction(2), Fraction(5), Fraction(7, 2), Fraction(2)], [0, 2, 5, 7, 8]
    )
    random_u = Fraction(8 * 2, 2)
    expected_auuc = (_trapezoid(u, list(range(9))) - random_u) / (perfect_u - random_u)
    assert expected_auuc == Fraction(68, 189)
    assert auuc(Y, SCORE, TREATED) == pytest.approx(float(expected_auuc), rel=1e-12)

    # The same by scikit-uplift.
    assert _sklift_scores(Y, SCORE, TREATED) == pytest.approx((28 / 57, 68 / 189), rel=1e-12)


def test_ties_enter_together_and_a_constant_score_is_random() -> None:
    flat = np.full(8, 0.5)
    xs, values = qini_curve(Y, flat, TREATED)
    assert xs.tolist() == [0, 8] and values.tolist() == [0.0, 1.0]
    assert qini_coefficient(Y, flat, TREATED) == 0.0
    assert auuc(Y, flat, TREATED) == 0.0
    # Order within a tie does not change the curve: reversing the rows gives the same figures.
    tied = np.array([0.9, 0.9, 0.7, 0.7, 0.7, 0.4, 0.3, 0.3])
    forward = (qini_coefficient(Y, tied, TREATED), auuc(Y, tied, TREATED))
    backward = (
        qini_coefficient(Y[::-1], tied[::-1], TREATED[::-1]),
        auuc(Y[::-1], tied[::-1], TREATED[::-1]),
    )
    assert forward == pytest.approx(backward, rel=1e-12)
    assert forward == pytest.approx(_sklift_scores(Y, tied, TREATED), rel=1e-12)


# --- Quadrants --------------------------------------------------------------------------------------------


def test_quadrant_rule() -> None:
    p_treated = np.array([0.30, 0.30, 0.10, 0.10, 0.20, 0.25])
    p_control = np.array([0.10, 0.30, 0.10, 0.30, 0.20, 0.19])
    got = quadrant_of(p_treated, p_control, 0.20).tolist()
    # at the threshold counts as responding
    assert got == [PERSUADABLES, SURE_THINGS, LOST_CAUSES, SLEEPING_DOGS, SURE_THINGS, PERSUADABLES]

    y = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    t = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    by_name = {q.name: q for q in quadrants(p_treated, p_control, y, t, 0.20)}
    assert list(by_name) == [PERSUADABLES, SURE_THINGS, LOST_CAUSES, SLEEPING_DOGS]
    persuadables = by_name[PERSUADABLES]  # rows 0 (treated, 1) and 5 (control, 0)
    assert (persuadables.n, persuadables.treated_n, persuadables.control_n) == (2, 1, 1)
    assert persuadables.share == pytest.approx(2 / 6)
    assert (persuadables.treated_rate, persuadables.control_rate) == (1.0, 0.0)
    assert persuadables.observed_difference == 1.0
    assert persuadables.predicted_uplift == pytest.approx((0.20 + 0.06) / 2)
    sure = by_name[SURE_THINGS]  # rows 1 and 4, both control, both responded
    assert (sure.n, sure.treated_n, sure.treated_rate, sure.control_rate) == (2, 0, None, 1.0)
    assert sure.observed_difference is None
    assert sum(q.n for q in by_name.values()) == 6


# --- A feature with no uplift structure ---------------------------------------------------------------------


def _simulated(
    seed: int, structured: bool, n: int = 8000
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    treated = rng.random(n) < 0.5
    effect = np.where(x > 0, 0.20, -0.05) if structured else np.full(n, 0.05)
    y = rng.random(n) < 0.20 + treated * effect
    return {"x": x, "colour": colour}, y, treated


QINI_BOUND = 0.06
"""Simulated with no uplift structure, the Qini coefficient at 8000 rows spreads with a standard deviation
near 0.015 around 0; an effect that depends on a feature gives 0.1 and more."""


@pytest.mark.parametrize("learner", ["logistic", "boosting"])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_feature_without_uplift_structure_gives_a_qini_near_zero(learner: str, seed: int) -> None:
    features, y, t = _simulated(seed, structured=False)
    flat = uplift_estimate(features, y, t, metric="y", treatment="T", control="C", learner=learner)
    assert flat.qini is not None and abs(flat.qini) < QINI_BOUND
    features, y, t = _simulated(seed, structured=True)
    real = uplift_estimate(features, y, t, metric="y", treatment="T", control="C", learner=learner)
    assert real.qini is not None and real.qini > 2 * QINI_BOUND
    assert real.auuc is not None and flat.auuc is not None and real.auuc > flat.auuc
    # With a real effect, the persuadables the model finds respond to the message more than the others.
    by_name = {q.name: q for q in real.quadrants}
    lost = by_name[LOST_CAUSES].observed_difference
    assert by_name[PERSUADABLES].observed_difference is not None and lost is not None
    assert by_name[PERSUADABLES].observed_difference > lost


def test_scored_out_of_fold_a_structureless_feature_shows_no_uplift_that_in_sample_scoring_would() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    features, y, t = _simulated(1, structured=False)
    result = uplift_estimate(features, y, t, metric="y", treatment="T", control="C", learner="boosting")
    again = uplift_estimate(features, y, t, metric="y", treatment="T", control="C", learner="boosting")
    np.testing.assert_array_equal(result.uplift, again.uplift)  # deterministic
    # The same trees scored on the rows they were fitted on find "uplift" in noise.
    x = encode_features(features).matrix

    def fitted(rows: np.ndarray) -> HistGradientBoostingClassifier:
        model = HistGradientBoostingClassifier(
            max_depth=3,
            learning_rate=0.05,
            max_iter=100,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=0,
        )
        return model.fit(x[rows], y[rows])

    with threadpool_limits(limits=1):  # as the engine fits: threads only slow models this size
        in_sample = fitted(t).predict_proba(x)[:, 1] - fitted(~t).predict_proba(x)[:, 1]
    spurious = qini_coefficient(y, in_sample, t)
    assert spurious is not None and spurious > 2 * QINI_BOUND
    assert result.qini is not None and abs(result.qini) < QINI_BOUND


def test_rows_of_one_customer_stay_in_one_fold() -> None:
    features, y, t = _simulated(4, structured=True, n=1500)
    # Every customer twice (a re-entry), with the same features and arm and an outcome of its own.
    twice = {name: np.concatenate([column, column]) for name, column in features.items()}
    rng = np.random.default_rng(5)
    y2 = np.concatenate([y, rng.random(y.size) < 0.3])
    t2 = np.concatenate([t, t])
    customer = np.concatenate([np.arange(y.size), np.arange(y.size)])
    grouped = uplift_estimate(twice, y2, t2, metric="y", treatment="T", control="C", groups=customer)
    # Scored by the same two models, a customer's two rows get the same predictions.
    np.testing.assert_array_equal(grouped.p_treated[: y.size], grouped.p_treated[y.size :])
    np.testing.assert_array_equal(grouped.p_control[: y.size], grouped.p_control[y.size :])
    loose = uplift_estimate(twice, y2, t2, metric="y", treatment="T", control="C")
    assert (loose.p_treated[: y.size] != loose.p_treated[y.size :]).mean() > 0.5


# --- Features ---------------------------------------------------------------------------------------------


def test_feature_encoding() -> None:
    n = 40
    text = np.array(["a"] * 20 + ["b"] * 12 + ["c"] * 3 + ["d"] + [None, "", None, " "], dtype=object)
    number = np.arange(n, dtype=float)
    number[[3, 7]] = np.nan
    encoded = encode_features(
        {"plan": text, "age": number, "same": np.ones(n), "flag": np.arange(n) % 2 == 0}
    )
    assert encoded.columns == (
        "plan=a",
        "plan=b",
        "plan=(other)",
        "plan=(missing)",
        "age",
        "age (missing)",
        "flag",
    )
    m = encoded.matrix
    assert m.shape == (n, 7)
    assert m[:, :4].sum(axis=1).tolist() == [1.0] * n  # every row in exactly one group
    assert m[:, 2].sum() == 4 and m[:, 3].sum() == 4  # c and d are too rare for a column of their own
    median = float(np.nanmedian(number))
    assert m[3, 4] == median and m[3, 5] == 1.0 and m[4, 4] == 4.0 and m[4, 5] == 0.0
    infos = {f.name: f for f in encoded.features}
    assert infos["same"].used is False and infos["same"].columns == 0
    assert (infos["plan"].kind, infos["plan"].levels, infos["plan"].missing) == ("text", 4, 4)
    assert (infos["age"].kind, infos["age"].missing) == ("number", 2)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("few", f"too few rows for an uplift model: T has 30, each arm needs at least {MIN_ROWS_PER_ARM}"),
        ("constant", "every row has the same outcome (0): an uplift model needs rows with both outcomes"),
        ("arm constant", "C has 0 rows with outcome 1 and 200 with 0: each arm needs at least 5 of each"),
        ("no features", "the uplift view needs at least one feature known before entry"),
        ("flat features", "every feature ('x', 'z') has a single value: nothing tells the customers apart"),
        ("not binary", "the uplift view needs a 0/1 outcome"),
    ],
)
def test_refuses_what_cannot_support_a_model(case: str, message: str) -> None:
    rng = np.random.default_rng(0)
    n = 400
    t = np.arange(n) < 200
    y = rng.random(n) < 0.3
    features: dict[str, np.ndarray] = {"x": rng.normal(size=n), "z": rng.choice(["a", "b"], n).astype(object)}
    if case == "few":
        t = np.arange(n) < 30
    elif case == "constant":
        y = np.zeros(n, bool)
    elif case == "arm constant":
        y = t & y
    elif case == "no features":
        features = {}
    elif case == "flat features":
        features = {"x": np.ones(n), "z": np.array(["a"] * n, dtype=object)}
    y_in: np.ndarray = y.astype(float) * 2 if case == "not binary" else y
    with pytest.raises(InputError) as caught:
        uplift_estimate(features, y_in, t, metric="y", treatment="T", control="C")
    assert message in str(caught.value)


def test_without_scikit_learn_the_cli_names_the_extra(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "e.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arm", "y", "x"])
        writer.writerows([["A" if i % 2 else "B", int(rng.random() < 0.3), rng.normal()] for i in range(400)])
    script = (
        "import sys; sys.modules['sklearn'] = None\n"  # as if scikit-learn were not installed
        "from orchestrator.cli import main\n"
        f"sys.exit(main(['lift', {str(path)!r}, '--arm', 'arm', '--control', 'A', '--metric', 'y', "
        "'--uplift', '--feature', 'x']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "orchestrator lift: the uplift view needs the optional extra 'uplift' (scikit-learn is not "
        "installed): pip install 'orchestrator[uplift]'"
    ]


# --- Hillstrom against scikit-uplift ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hillstrom() -> dict[str, np.ndarray]:
    if not HILLSTROM.exists():
        pytest.skip(f"Hillstrom data set not found at {HILLSTROM}")
    with HILLSTROM.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["segment"] in (CONTROL, WOMENS)]
    out = {name: np.array([r[name] for r in rows], dtype=object) for name in ("zip_code", "channel")}
    for name in ("recency", "history", "mens", "womens", "newbie", "visit"):
        out[name] = np.array([float(r[name]) for r in rows])
    out["treated"] = np.array([r["segment"] == WOMENS for r in rows])
    return out


def test_hillstrom_qini_and_auuc_match_scikit_uplift(hillstrom: dict[str, np.ndarray]) -> None:
    result = uplift_estimate(
        {name: hillstrom[name] for name in FEATURES},
        hillstrom["visit"],
        hillstrom["treated"],
        metric="visit",
        treatment=WOMENS,
        control=CONTROL,
    )
    assert (result.treated_n, result.control_n) == (21387, 21306)
    # The rows the figures were computed on are the input rows, in order.
    np.testing.assert_array_equal(result.outcome, hillstrom["visit"] == 1.0)
    np.testing.assert_array_equal(result.treated, hillstrom["treated"])
    qini, area = _sklift_scores(result.outcome, result.uplift, result.treated)
    assert result.qini == pytest.approx(qini, rel=1e-9)
    assert result.auuc == pytest.approx(area, rel=1e-9)
    # The model orders customers better than random by far more than chance would (see QINI_BOUND: at
    # 42,693 rows a structureless feature spreads with a standard deviation near 0.007).
    assert qini > 0.03 and area > 0.0
    # The curve ends at the incremental visits of the whole population, from the arms' totals alone.
    y, t = result.outcome, result.treated
    total = y[t].sum() - y[~t].sum() * t.sum() / (~t).sum()
    assert result.curve[-1].qini == pytest.approx(total, rel=1e-12)
    assert result.curve[-1].random == pytest.approx(total, rel=1e-12)
    assert result.curve[0].qini == 0.0 and len(result.curve) == 101
    assert result.threshold == pytest.approx(float(y.mean()), rel=1e-12)
    counts = {q.name: q.n for q in result.quadrants}
    assert sum(counts.values()) == len(y)
    by_name = {q.name: q for q in result.quadrants}
    persuadable, lost = by_name[PERSUADABLES], by_name[LOST_CAUSES]
    assert persuadable.observed_difference is not None and lost.observed_difference is not None
    assert persuadable.observed_difference > lost.observed_difference
