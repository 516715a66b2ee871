"""``orchestrator predict scores``: every customer's predictions from the newest kept fit, worked by hand on a
few customers; the rows written to CSV and Parquet; one line with the cause when no fit is kept."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from orchestrator.ingest import ingest_events_records
from orchestrator.predict import NoFitKept, score_customers
from orchestrator.store import open_store, save_prediction_fit

NOW = datetime(2024, 6, 3, 12, tzinfo=UTC)
NOW_US = int(NOW.timestamp() * 1_000_000)
PARAMETERS = {"r": 0.5, "alpha": 2.0, "a": 0.5, "b": 1.5, "p": 6.0, "q": 4.0, "gamma": 10.0}
# Purchase days before NOW's day and their amounts.
HISTORIES = {
    "steady": [(70, 20.0), (56, 30.0), (42, 10.0), (28, 20.0)],
    "once": [(30, 50.0)],
    "gone": [(140, 5.0), (133, 15.0)],
}


def store_url(tmp_path: Path, *, fit: dict[str, object] | None = PARAMETERS) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    store = open_store(url)
    day = NOW.replace(hour=9)
    records = [
        {"customer_id": c, "event": "purchase", "ts": day - timedelta(days=d), "properties": {"amount": a}}
        for c, days in HISTORIES.items()
        for d, a in days
    ]
    records.append({"customer_id": "browser", "event": "view", "ts": day, "properties": {}})
    ingest_events_records(store, records, now_us=NOW_US)
    if fit is not None:
        with store.begin() as conn:
            save_prediction_fit(conn, 1, "purchase", "amount", 19_000, fit)
    store.dispose()
    return url


def by_hand(days: list[tuple[int, float]], weeks: float) -> tuple[float, float, float]:
    """p_alive, expected purchases over ``weeks`` and the expected value of a purchase, by the formulas."""
    from scipy.special import hyp2f1

    r, alpha, a, b = (PARAMETERS[k] for k in ("r", "alpha", "a", "b"))
    p, q, gamma = (PARAMETERS[k] for k in ("p", "q", "gamma"))
    ordered = sorted(days, reverse=True)
    first, last = ordered[0][0], ordered[-1][0]
    x, t_x, age = len(days) - 1, (first - last) / 7, first / 7
    alive = 1.0 if x == 0 else 1 / (1 + a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x))
    z = weeks / (alpha + age + weeks)
    head = (a + b + x - 1) / (a - 1)
    tail = 1 - ((alpha + age) / (alpha + age + weeks)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    expected = head * tail / (1 + (x > 0) * a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x))
    m = sum(v for _, v in ordered[1:]) / x if x else 0.0
    return alive, expected, p * (gamma + x * m) / (p * x + q - 1)


def test_scores_match_the_formulas_by_hand(tmp_path: Path) -> None:
    store = open_store(store_url(tmp_path))
    try:
        scores = score_customers(store, NOW_US, horizon_days=91)
    finally:
        store.dispose()
    assert sorted(scores.customer_id.tolist()) == sorted(HISTORIES)  # the browser never bought
    for i, who in enumerate(scores.customer_id.tolist()):
        alive, expected, spend = by_hand(HISTORIES[who], 13.0)
        assert scores.p_alive[i] == pytest.approx(alive, rel=1e-9)
        assert scores.expected_purchases[i] == pytest.approx(expected, rel=1e-9)
        assert scores.expected_value[i] == pytest.approx(spend, rel=1e-9)
        assert scores.predicted_clv[i] == pytest.approx(expected * spend, rel=1e-9)


def test_the_rows_written_to_csv_and_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = store_url(tmp_path)
    now = NOW.isoformat()
    assert main(["predict", "scores", "--db", url, "--now", now, "-o", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "fit 1 of purchase.amount" in out and "3 customers who bought" in out
    assert "3 rows written to" in out
    with (tmp_path / "s.csv").open() as f:
        rows = {row["customer_id"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(HISTORIES)
    assert rows["once"]["frequency"] == "0" and float(rows["once"]["p_alive"]) == 1.0
    alive, expected, spend = by_hand(HISTORIES["gone"], 365 / 7)
    assert float(rows["gone"]["p_alive"]) == pytest.approx(alive, rel=1e-9)
    assert float(rows["gone"]["predicted_clv"]) == pytest.approx(expected * spend, rel=1e-9)
    argv = ["predict", "scores", "--db", url, "--now", now, "--format", "json"]
    assert main([*argv, "-o", str(tmp_path / "s.parquet")]) == 0
    summary = json.loads(capsys.readouterr().out)
    table = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert summary["rows_written"] == len(table["customer_id"]) == 3
    assert summary["predicted_clv_total"] == pytest.approx(float(np.sum(table["predicted_clv"])), rel=1e-12)
    assert table["fit"] == [1, 1, 1]


def test_without_a_fit_or_with_a_bad_file_name_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = store_url(tmp_path, fit=None)
    store = open_store(url)
    try:
        with pytest.raises(NoFitKept):
            score_customers(store, NOW_US)
    finally:
        store.dispose()
    assert main(["predict", "scores", "--db", url]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "orchestrator predict scores: the store keeps no fit of the purchase models: run orchestrator "
        "predict fit --event purchase --value amount --save"
    )
    assert main(["predict", "scores", "--db", url, "-o", str(tmp_path / "s.xlsx")]) == 2
    assert "write a .csv or .parquet file" in capsys.readouterr().err
