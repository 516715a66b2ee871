"""The uplift view where people read it: ``orchestrator lift --uplift`` on Hillstrom and ``orchestrator report
JOURNEY --uplift`` on a store written here (text, JSON and the HTML page), each figure against the pure
functions or scikit-uplift on the same rows, and the one-line notes and errors."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from orchestrator.cli import main
from orchestrator.clock import to_us
from orchestrator.measure import journey_report
from orchestrator.measure._uplift import PERSUADABLES, uplift_estimate
from orchestrator.store import open_store, register_version, sqlite_url
from orchestrator.store._customers import upsert_customers

ROOT = Path(__file__).resolve().parents[2]
HILLSTROM = ROOT.parent / "shared" / "data" / "hillstrom.csv"
CONTROL, WOMENS, MENS = "No E-Mail", "Womens E-Mail", "Mens E-Mail"
FEATURES = ("recency", "history", "mens", "womens", "zip_code", "newbie", "channel")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _sklift_scores(y: np.ndarray, uplift: np.ndarray, treated: np.ndarray) -> tuple[float, float]:
    metrics = pytest.importorskip("sklift.metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-uplift 0.5.1 on scikit-learn >= 1.8
        return (
            float(metrics.qini_auc_score(y.astype(int), uplift, treated.astype(int))),
            float(metrics.uplift_auc_score(y.astype(int), uplift, treated.astype(int))),
        )


# --- orchestrator lift --uplift -------------------------------------------------------------------------


def _lift_args(*more: str) -> list[str]:
    args = ["lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL, "--metric", "visit", "--uplift"]
    for name in FEATURES:
        args += ["--feature", name]
    return [*args, *more]


@pytest.fixture(scope="module")
def hillstrom() -> dict[str, np.ndarray]:
    if not HILLSTROM.exists():
        pytest.skip(f"Hillstrom data set not found at {HILLSTROM}")
    with HILLSTROM.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {
        name: np.array([r[name] for r in rows], dtype=object) for name in ("segment", "zip_code", "channel")
    }
    for name in ("recency", "history", "mens", "womens", "newbie", "visit", "spend"):
        out[name] = np.array([float(r[name]) for r in rows])
    return out


def test_lift_json_has_the_uplift_of_every_arm(
    capsys: pytest.CaptureFixture[str], hillstrom: dict[str, np.ndarray]
) -> None:
    code, out, err = run(capsys, *_lift_args("--metric", "spend", "--format", "json"))
    assert code == 0, err
    report = json.loads(out)
    uplift = report["uplift"]
    assert "model estimate" in uplift["estimate"]
    assert [(c["metric"], c["arm"], c["control"]) for c in uplift["comparisons"]] == [
        ("visit", MENS, CONTROL),
        ("visit", WOMENS, CONTROL),
    ]
    assert uplift["notes"] == ["spend: not a 0/1 outcome, so no uplift view"]
    womens = uplift["comparisons"][1]
    # The same rows through the library (the CSV module's parse here) give the same figures.
    rows = np.isin(hillstrom["segment"], [WOMENS, CONTROL])
    result = uplift_estimate(
        {name: hillstrom[name][rows] for name in FEATURES},
        hillstrom["visit"][rows],
        hillstrom["segment"][rows] == WOMENS,
        metric="visit",
        treatment=WOMENS,
        control=CONTROL,
    )
    qini, area = _sklift_scores(result.outcome, result.uplift, result.treated)
    assert womens["qini_coefficient"] == pytest.approx(qini, rel=1e-9)
    assert womens["auuc"] == pytest.approx(area, rel=1e-9)
    assert (womens["treated_n"], womens["control_n"]) == (21387, 21306)
    assert womens["treated_rate"] == pytest.approx(hillstrom["visit"][hillstrom["segment"] == WOMENS].mean())
    assert womens["learner"]["name"] == "logistic" and womens["learner"]["folds"] == 5
    assert [f["name"] for f in womens["features"]] == list(FEATURES)
    assert {f["name"]: f["kind"] for f in womens["features"]}["zip_code"] == "text"
    assert sum(q["n"] for q in womens["quadrants"]) == 21387 + 21306
    assert [q["name"] for q in womens["quadrants"]] == [
        "persuadables",
        "sure things",
        "lost causes",
        "sleeping dogs",
    ]
    assert len(womens["curve"]) == 101 and womens["curve"][-1]["share"] == 1.0
    # The lift itself is unchanged by --uplift.
    assert [m["name"] for m in report["metrics"]] == ["visit", "spend"]


def test_lift_text_and_page(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, *_lift_args("--treatment", WOMENS))
    assert code == 0, err
    assert "Womens E-Mail vs No E-Mail: +4.52 pts" in out  # the lift comes first
    section = out[out.index("uplift: who the message moves") :]
    assert "model estimate" in section.splitlines()[0]
    assert "visit: Womens E-Mail vs No E-Mail" in section and "Mens E-Mail vs" not in section
    assert "Qini coefficient 0." in section and "AUUC 0." in section
    for name in ("persuadables", "sure things", "lost causes", "sleeping dogs"):
        assert f"\n      {name} " in section
    page = tmp_path / "lift.html"
    code, _, err = run(capsys, *_lift_args("--treatment", WOMENS, "--format", "html", "-o", str(page)))
    assert code == 0, err
    html = page.read_text()
    assert "Uplift: who the message moves" in html and "(model estimate)" in html
    assert html.count("<svg") == 3  # the rate and lift charts of visit, then the Qini curve
    assert "Qini curve: incremental visit" in html
    assert "<script" not in html and " src=" not in html and " href=" not in html


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--uplift"], 2, "--uplift needs at least one --feature COLUMN known before the experiment"),
        (["--feature", "recency"], 2, "--feature is read by the uplift view: add --uplift"),
        (["--uplift", "--feature", "visit"], 2, "--feature 'visit' cannot be a --metric"),
        (["--uplift", "--feature", "segment"], 2, "--feature 'segment' cannot be the arm column"),
        (["--uplift", "--feature", "nope"], 1, "no column 'nope'"),
        (["--uplift", "--feature", "recency", "--treatment", "Kids"], 1, "--treatment 'Kids' does not occur"),
    ],
)
def test_lift_uplift_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], extra: list[str], code: int, message: str
) -> None:
    if not HILLSTROM.exists():
        pytest.skip(f"Hillstrom data set not found at {HILLSTROM}")
    argv = ["lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL, "--metric", "visit", *extra]
    got, out, err = run(capsys, *argv)
    assert (got, out) == (code, "")
    assert len(err.strip().splitlines()) == 1 and message in err


def test_lift_uplift_without_a_binary_metric_fails(capsys: pytest.CaptureFixture[str]) -> None:
    if not HILLSTROM.exists():
        pytest.skip(f"Hillstrom data set not found at {HILLSTROM}")
    argv = ["lift", str(HILLSTROM), "--arm", "segment", "--control", CONTROL, "--metric", "spend"]
    code, out, err = run(capsys, *argv, "--uplift", "--feature", "recency")
    assert (code, out) == (1, "")
    assert err.strip() == "orchestrator lift: no uplift view: spend: not a 0/1 outcome, so no uplift view"


# --- orchestrator report JOURNEY --uplift ------------------------------------------------------------------

START = datetime(2024, 3, 1, tzinfo=UTC)
JOURNEY = """\
id: welcome
version: 1
signal: count(signup, within=1d) > 0
holdout: 30
steps:
  - send:
      channel: email
      subject: "Welcome"
      template: welcome.txt
goal: {event: purchase, within: 3d}
"""


@dataclass
class Built:
    url: str
    n: int


def build_store(path: Path, n: int, *, attributes: bool = True, seed: int = 7) -> Built:
    """Customers with a numeric ``score`` and a text ``plan``, one journey whose entrants are treated or held
    out (30%), and conversions where the message helps only customers with a positive score (and puts
    off the others a little); the last tick is after every goal window closed."""
    rng = np.random.default_rng(seed)
    store = open_store(sqlite_url(path))
    ids = [f"c{i:05d}" for i in range(n)]
    score = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    held = rng.random(n) < 0.3
    entered = to_us(START) + rng.integers(0, 5 * 86400, n) * 1_000_000
    effect = np.where(score > 0, 0.30, -0.05)
    converted = rng.random(n) < 0.15 + np.where(held, 0.0, effect)
    with store.begin() as conn:
        rows: list[dict[str, Any]] = [{"id": c} for c in ids]
        if attributes:
            rows = [
                {"id": c, "score": round(float(s), 4), "plan": str(p), "email": f"{c}@example.com"}
                for c, s, p in zip(ids, score, plan, strict=True)
            ]
        upsert_customers(conn, rows, 0)
        keys = dict(conn.execute(text("SELECT id, key FROM customers")).all())
        register_version(conn, "welcome", 1, "d1", JOURNEY, 0)
        conn.execute(
            text(
                "INSERT INTO holdout_assignments (journey_id, customer_key, arm, bucket, percent, "
                "assigned_us, reason, layer) VALUES ('welcome', :k, :a, 0.5, 30, :t, 'bucket', 'journey')"
            ),
            [
                {"k": keys[ids[i]], "a": "holdout" if held[i] else "treatment", "t": int(entered[i])}
                for i in range(n)
            ],
        )
        for i in range(n):
            instance = conn.execute(
                text(
                    "INSERT INTO journey_instances (journey_id, version, customer_key, state, status, "
                    "holdout, entered_us) VALUES ('welcome', 1, :k, 's0', 'completed', :h, :t) RETURNING id"
                ),
                {"k": keys[ids[i]], "h": bool(held[i]), "t": int(entered[i])},
            ).scalar()
            if converted[i]:
                conn.execute(
                    text(
                        "INSERT INTO conversions (instance_id, journey_id, version, customer_key, holdout, "
                        "entered_us, converted_us, revenue) VALUES (:i, 'welcome', 1, :k, :h, :t, :c, 0)"
                    ),
                    {
                        "i": instance,
                        "k": keys[ids[i]],
                        "h": bool(held[i]),
                        "t": int(entered[i]),
                        "c": int(entered[i]) + 3600 * 1_000_000,
                    },
                )
        conn.execute(
            text("INSERT INTO ticks (now_us, seconds, summary) VALUES (:t, 0.1, '{}')"),
            {"t": to_us(START + timedelta(days=10))},
        )
    store.dispose()
    return Built(sqlite_url(path), n)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_store(tmp_path_factory.mktemp("uplift") / "u.db", 2000)


def test_report_json_has_the_uplift_of_the_journey(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "welcome", "--db", built.url, "--format", "json")
    assert code == 0, err
    assert "uplift" not in json.loads(out)  # only when asked for
    code, out, err = run(capsys, "report", "welcome", "--db", built.url, "--format", "json", "--uplift")
    assert code == 0, err
    report = json.loads(out)
    arms = {a["name"]: a for a in report["lift"]["arms"]}
    (comparison,) = report["uplift"]["comparisons"]
    assert report["uplift"]["notes"] == []
    assert (comparison["metric"], comparison["arm"], comparison["control"]) == (
        "conversion",
        "treatment",
        "holdout",
    )
    assert (
        comparison["treated_n"] == arms["treatment"]["n"] and comparison["control_n"] == arms["holdout"]["n"]
    )
    assert comparison["treated_rate"] == pytest.approx(arms["treatment"]["rate"], rel=1e-12)
    assert comparison["control_rate"] == pytest.approx(arms["holdout"]["rate"], rel=1e-12)
    # The stored attributes, not the contact columns (email is set for everyone).
    assert [f["name"] for f in comparison["features"]] == ["plan", "score"]
    # The message helps only customers with a positive score: the model finds them.
    assert comparison["qini_coefficient"] > 0.1
    quadrants = {q["name"]: q for q in comparison["quadrants"]}
    assert quadrants[PERSUADABLES]["observed_difference"] > quadrants["lost causes"]["observed_difference"]

    # The same figures from the library, and from scikit-uplift on its predictions.
    store = open_store(built.url, create=False)
    try:
        view = journey_report(store, "welcome", uplift=True).uplift
    finally:
        store.dispose()
    assert view is not None
    (result,) = view.results
    assert result.qini == pytest.approx(comparison["qini_coefficient"], rel=1e-12)
    qini, area = _sklift_scores(result.outcome, result.uplift, result.treated)
    assert comparison["qini_coefficient"] == pytest.approx(qini, rel=1e-9)
    assert comparison["auuc"] == pytest.approx(area, rel=1e-9)


def test_report_uplift_on_named_attributes_text_and_page(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["report", "welcome", "--db", built.url, "--uplift", "--feature", "score"]
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    (comparison,) = json.loads(out)["uplift"]["comparisons"]
    assert [f["name"] for f in comparison["features"]] == ["score"]
    code, out, err = run(capsys, *args, "--uplift-model", "boosting")
    assert code == 0, err
    section = out[out.index("  uplift: who the message moves") :]
    assert "model estimate" in section.splitlines()[0]
    assert "conversion: treatment vs holdout" in section
    assert "gradient-boosted trees per arm" in section
    assert "features (1 used, 1 model columns): score (number)" in section
    assert "persuadables" in section and "sleeping dogs" in section
    page = tmp_path / "report.html"
    code, _, err = run(capsys, *args, "--format", "html", "-o", str(page))
    assert code == 0, err
    html = page.read_text()
    assert "Uplift: who the message moves" in html and "Qini curve: incremental conversion" in html
    assert "<script" not in html and " src=" not in html


def test_report_uplift_tells_in_one_line_why_there_is_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = build_store(tmp_path / "small.db", 60)
    code, out, err = run(capsys, "report", "welcome", "--db", small.url, "--uplift")
    assert code == 0, err
    notes = [line for line in out.splitlines() if "no uplift view" in line]
    assert len(notes) == 1 and "too few rows for an uplift model: treatment has" in notes[0]
    code, out, _ = run(capsys, "report", "welcome", "--db", small.url, "--uplift", "--format", "json")
    uplift = json.loads(out)["uplift"]
    assert uplift["comparisons"] == [] and len(uplift["notes"]) == 1

    bare = build_store(tmp_path / "bare.db", 400, attributes=False)
    code, out, err = run(capsys, "report", "welcome", "--db", bare.url, "--uplift")
    assert code == 0, err
    assert "note: no uplift view: no customer attribute is stored, so there is nothing to model on" in out


def test_report_uplift_option_errors(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "welcome", "--db", built.url, "--uplift", "--feature", "scor")
    assert (code, out) == (2, "")
    assert "--feature 'scor': no customer in the store has this attribute; did you mean 'score'?" in err
    code, out, err = run(capsys, "report", "welcome", "--db", built.url, "--feature", "score")
    assert (code, out) == (2, "")
    assert "--feature names what the uplift view models on: add --uplift" in err
