"""Every customer's predictions now, from the newest kept fit: what ``orchestrator predict scores`` writes.

The values are those the rule language's ``p_alive(purchase)``, ``expected_purchases(purchase, H)`` and
``predicted_clv(purchase.amount, H)`` give at the same instant (the same day summary and closed forms,
``signals._clv``), one row per customer who bought before that instant, for analysts to read beside the
fit they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import SetupError, UsageError
from orchestrator.predict._history import EPOCH
from orchestrator.predict._summary import summarize
from orchestrator.signals import DAY_US, UNIT_DAYS, BetaGeo, GammaGamma
from orchestrator.store import Store, StoredFit, customer_ids, latest_prediction_fits, load_events

#: The quantiles of ``p_alive`` the summary gives.
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class NoFitKept(SetupError):
    """The store keeps no fit of the purchase models asked for (the message says how to make one)."""


@dataclass(frozen=True)
class Scores:
    """Per customer who bought before ``now_us`` (keys ascending): their purchase summary and predictions;
    ``expected_value`` and ``predicted_clv`` are NaN when the fit has no Gamma-Gamma part or the customer
    has no repeat purchase with a value."""

    fit: StoredFit
    now_us: int
    horizon_days: float
    customer_id: np.ndarray  # object: the business ids
    frequency: np.ndarray
    recency: np.ndarray
    age: np.ndarray
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    expected_value: np.ndarray
    predicted_clv: np.ndarray

    def __len__(self) -> int:
        return len(self.customer_id)

    def summary(self) -> dict[str, Any]:
        """The figures ``predict scores`` prints: the fit used, how many were scored, the spread of
        ``p_alive``, and the expected purchases and value summed over everyone scored."""
        alive = self.p_alive
        clv = self.predicted_clv[np.isfinite(self.predicted_clv)]
        return {
            "fit": self.fit.id,
            "fitted_at_us": self.fit.fitted_us,
            "event": self.fit.event,
            "value": self.fit.value,
            "calibration_end": _iso_day(self.fit.calibration_end_day),
            "now_us": self.now_us,
            "horizon_days": self.horizon_days,
            "customers": len(self),
            "p_alive_quantiles": (
                {str(q): float(np.quantile(alive, q)) for q in QUANTILES} if len(alive) else {}
            ),
            "p_alive_below_0_3": int((alive < 0.3).sum()),
            "expected_purchases_total": float(self.expected_purchases.sum()),
            "predicted_clv_total": float(clv.sum()) if len(clv) else None,
        }


def score_customers(
    store: Store,
    now_us: int,
    *,
    event: str = "purchase",
    value: str = "amount",
    horizon_days: float = 365.0,
) -> Scores:
    """Score every customer who bought ``event`` before ``now_us`` with the newest fit of (``event``,
    ``value``), else the newest fit of ``event`` (then without values); ``NoFitKept`` when there is none."""
    if not horizon_days > 0:
        raise UsageError("the horizon must be longer than zero")
    with store.connect() as conn:
        stored = latest_prediction_fits(conn)
        fit = stored.get((event, value))
        if fit is None:
            of_event = sorted((f for f in stored.values() if f.event == event), key=lambda f: f.id)
            if not of_event:
                raise NoFitKept(
                    f"the store keeps no fit of the {event} models: run orchestrator predict fit "
                    f"--event {event} --value {value} --save"
                )
            fit = of_event[-1]
        columns = load_events(conn, until_us=now_us, properties=[fit.value], only=[event])
        amounts = columns.properties[fit.value]
        numbers = amounts if isinstance(amounts, np.ndarray) and amounts.dtype.kind == "f" else None
        today = now_us // DAY_US
        summary = summarize(columns.customer, columns.ts, numbers, today)
        ids = customer_ids(conn, summary.customer.tolist())
    params = fit.parameters
    beta_geo = BetaGeo(float(params["r"]), float(params["alpha"]), float(params["a"]), float(params["b"]))
    x, t_x, age = summary.frequency, summary.recency, summary.age
    weeks = horizon_days / UNIT_DAYS
    expected = beta_geo.expected_purchases(weeks, x, t_x, age)
    spend = np.full(len(summary), np.nan)
    if params.get("p") is not None and numbers is not None:
        gamma_gamma = GammaGamma(float(params["p"]), float(params["q"]), float(params["gamma"]))
        spend = gamma_gamma.expected_spend(x, summary.monetary)
    return Scores(
        fit=fit,
        now_us=now_us,
        horizon_days=horizon_days,
        customer_id=ids,
        frequency=x,
        recency=t_x,
        age=age,
        p_alive=beta_geo.p_alive(x, t_x, age),
        expected_purchases=expected,
        expected_value=spend,
        predicted_clv=expected * spend,
    )


def export_scores(scores: Scores, path: Path) -> int:
    """Write one row per customer to ``path`` (``.csv`` or ``.parquet``); the number of rows.

    Columns: customer_id, frequency (repeat purchase days), recency_weeks, age_weeks, p_alive,
    expected_purchases (over the horizon), expected_value (of one purchase), predicted_clv, and the fit's
    id."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UsageError(f"{path}: the export format follows the extension, .parquet or .csv")

    def numbers(values: np.ndarray) -> Any:
        return pa.array(values, mask=~np.isfinite(values))

    table = pa.table(
        {
            "customer_id": pa.array(scores.customer_id.tolist(), type=pa.string()),
            "frequency": pa.array(scores.frequency.astype(np.int64)),
            "recency_weeks": pa.array(scores.recency),
            "age_weeks": pa.array(scores.age),
            "p_alive": pa.array(scores.p_alive),
            "expected_purchases": pa.array(scores.expected_purchases),
            "expected_value": numbers(scores.expected_value),
            "predicted_clv": numbers(scores.predicted_clv),
            "fit": pa.array(np.full(len(scores), scores.fit.id, np.int64)),
        }
    )
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, path)
    return table.num_rows


def _iso_day(day: int) -> str:
    return (EPOCH + timedelta(days=day)).isoformat()
