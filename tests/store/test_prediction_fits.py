"""Fits of the churn and lifetime-value models kept in the store: the newest of each event and value."""

from __future__ import annotations

import pytest

from orchestrator.store import Store, latest_prediction_fits, save_prediction_fit

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_the_newest_fit_of_each_event_and_value(store: Store) -> None:
    with store.begin() as conn:
        assert latest_prediction_fits(conn) == {}
        first = save_prediction_fit(conn, 100, "purchase", "amount", 10_000, {"r": 0.2, "alpha": 4.0})
        other = save_prediction_fit(conn, 150, "order", "total", 10_001, {"r": 0.5})
        newer = save_prediction_fit(conn, 200, "purchase", "amount", 10_002, {"r": 0.3, "alpha": 4.5})
    with store.connect() as conn:
        fits = latest_prediction_fits(conn)
    assert first < other < newer
    assert set(fits) == {("purchase", "amount"), ("order", "total")}
    purchase = fits[("purchase", "amount")]
    assert (purchase.id, purchase.fitted_us, purchase.calibration_end_day) == (newer, 200, 10_002)
    assert purchase.parameters == {"r": 0.3, "alpha": 4.5}
    assert fits[("order", "total")].parameters == {"r": 0.5}
