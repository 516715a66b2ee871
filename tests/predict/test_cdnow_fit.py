"""BG/NBD and Gamma-Gamma fitted on the CDNOW sample through the command line, against the published
parameters (../shared/data/README.md gives the conventions), and the closed-form scores against
PyMC-Marketing's own functions on the same fit."""

from __future__ import annotations

import json
import warnings
from contextlib import redirect_stdout
from datetime import UTC, date, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.ingest import ingest_events_records
from orchestrator.predict import BetaGeo, GammaGamma, purchase_summary
from orchestrator.store import open_store

CDNOW = Path(__file__).resolve().parents[3] / "shared" / "data" / "CDNOW_sample.txt"
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "gamma": 15.44}


def cdnow_lines() -> list[list[str]]:
    return [line.split() for line in CDNOW.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cdnow_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CDNOW sample as purchase events (one per line, at midnight UTC of its day) in a SQLite store."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cdnow') / 'cdnow.db'}"
    store = open_store(url)
    records = [
        {
            "customer_id": cid,
            "event": "purchase",
            "ts": f"{d[:4]}-{d[4:6]}-{d[6:]}T00:00:00Z",
            "properties": {"amount": float(value), "cds": int(n)},
        }
        for cid, _, d, n, value in cdnow_lines()
    ]
    now_us = int(datetime(1998, 7, 1, tzinfo=UTC).timestamp() * 1_000_000)
    report = ingest_events_records(store, records, now_us=now_us)
    store.dispose()
    assert report.accepted == len(records) == 6919
    return url


@pytest.fixture(scope="module")
def fitted(cdnow_db: str) -> dict[str, Any]:
    """``orchestrator predict fit --format json`` once for the module (capsys is per test)."""
    out = StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "predict", "fit", "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30",
                "--format", "json", "--db", cdnow_db,
            ]
        )  # fmt: skip
    assert code == 0
    return dict(json.loads(out.getvalue()))


def test_parameters_within_one_percent_of_the_published_fit(fitted: dict[str, Any]) -> None:
    for name, published in PUBLISHED.items():
        assert fitted[name] == pytest.approx(published, rel=0.01), name
    assert (fitted["customers"], fitted["repeat_customers"]) == (2357, 946)
    assert fitted["time_unit"] == "week"


def test_the_holdout_is_counted_from_the_file(fitted: dict[str, Any]) -> None:
    """Weeks 40 to 78: the observed repeat transactions (days with a purchase, per customer) counted in
    plain Python from the file, and the model's expectation printed beside them."""
    days: set[tuple[str, str]] = {
        (cid, d) for cid, _, d, _, _ in cdnow_lines() if "19971001" <= d <= "19980630"
    }
    holdout = fitted["holdout"]
    assert holdout["observed_repeat_purchases"] == len(days)
    assert holdout["weeks"] == 39.0
    # The sum of each customer's conditional expectation (equation 10): close to, not equal to, what happened.
    assert 0.8 * len(days) < holdout["expected_repeat_purchases"] < 1.2 * len(days)


def test_the_table_says_the_same(cdnow_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["predict", "fit", "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--db", cdnow_db]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "fitted on 2357 customers (946 with a repeat purchase)" in out
    assert "BG/NBD       r = 0.2426  alpha = 4.4136  a = 0.7930  b = 2.4262" in out
    assert "Gamma-Gamma  p = 6.2496" in out
    assert "repeat purchases expected, 1,882 observed" in out


def test_a_saved_fit_is_kept_with_its_day(cdnow_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.store import latest_prediction_fits

    code = main(["predict", "fit", "--calibration-end", "1997-09-30", "--save", "--db", cdnow_db])
    out = capsys.readouterr().out
    assert code == 0
    store = open_store(cdnow_db, create=False)
    with store.connect() as conn:
        kept = latest_prediction_fits(conn)[("purchase", "amount")]
    store.dispose()
    assert f"kept in the store as fit {kept.id}" in out
    assert kept.calibration_end_day == (date(1997, 9, 30) - date(1970, 1, 1)).days
    assert kept.parameters["r"] == pytest.approx(PUBLISHED["r"], rel=0.01)
    assert kept.parameters["gamma"] == pytest.approx(PUBLISHED["gamma"], rel=0.01)
    assert kept.parameters["customers"] == 2357 and kept.parameters["time_unit"] == "week"


def test_closed_forms_equal_pymc_marketing(cdnow_db: str, fitted: dict[str, Any]) -> None:
    """p_alive, expected purchases and expected spend for every CDNOW customer, from the fitted parameters,
    equal what PyMC-Marketing's models compute from the same parameters."""
    import pandas as pd
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymc_marketing import clv

    store = open_store(cdnow_db, create=False)
    summary = purchase_summary(store, "purchase", "amount", date(1997, 9, 30))
    store.dispose()
    bg = BetaGeo(fitted["r"], fitted["alpha"], fitted["a"], fitted["b"])
    gg = GammaGamma(fitted["p"], fitted["q"], fitted["gamma"])

    def posterior(**values: float) -> xr.Dataset:
        return xr.Dataset({k: (("chain", "draw"), np.array([[v]])) for k, v in values.items()})

    data = pd.DataFrame(
        {"customer_id": summary.customer, "frequency": summary.frequency, "recency": summary.recency,
         "T": summary.age}
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = clv.BetaGeoModel(data=data)
        model.build_model()
        model.idata = None
        from arviz import InferenceData

        model.idata = InferenceData(posterior=posterior(r=bg.r, alpha=bg.alpha, a=bg.a, b=bg.b))
        alive = model.expected_probability_alive(data=data).mean(("chain", "draw")).values
        ahead = model.expected_purchases(data=data, future_t=39).mean(("chain", "draw")).values
    np.testing.assert_allclose(bg.p_alive(summary.frequency, summary.recency, summary.age), alive, rtol=1e-9)
    np.testing.assert_allclose(
        bg.expected_purchases(39, summary.frequency, summary.recency, summary.age), ahead, rtol=1e-7
    )
    assert (bg.p_alive(summary.frequency, summary.recency, summary.age)[summary.frequency == 0] == 1).all()

    spend = pd.DataFrame(
        {"customer_id": summary.customer, "monetary_value": np.nan_to_num(summary.monetary),
         "frequency": summary.frequency}
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gamma_gamma = clv.GammaGammaModel(data=spend[summary.frequency > 0])
        gamma_gamma.build_model()
        gamma_gamma.idata = InferenceData(posterior=posterior(p=gg.p, q=gg.q, v=gg.gamma))
        expected = gamma_gamma.expected_customer_spend(data=spend).mean(("chain", "draw")).values
    np.testing.assert_allclose(gg.expected_spend(summary.frequency, summary.monetary), expected, rtol=1e-9)
