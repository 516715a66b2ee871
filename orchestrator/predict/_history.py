"""The models fitted on a store's purchase history: what ``orchestrator predict fit`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from orchestrator.errors import InvalidInputError
from orchestrator.predict._fit import Fitted, NotEnoughHistory, fit_models
from orchestrator.predict._summary import PurchaseSummary, summarize
from orchestrator.signals import DAY_US, UNIT_DAYS
from orchestrator.store import Store, load_events, save_prediction_fit

EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class HoldoutCheck:
    """The cohort's repeat transactions after the calibration period: predicted against observed."""

    end: date
    weeks: float
    expected: float
    observed: int


@dataclass(frozen=True)
class FitReport:
    """A fit, what it read and, with a holdout period, how well it predicts it."""

    event: str
    value: str
    calibration_end: date
    fitted: Fitted
    holdout: HoldoutCheck | None

    def to_dict(self) -> dict[str, Any]:
        bg, gg = self.fitted.beta_geo, self.fitted.gamma_gamma
        out: dict[str, Any] = {
            "r": bg.r,
            "alpha": bg.alpha,
            "a": bg.a,
            "b": bg.b,
            "p": None if gg is None else gg.p,
            "q": None if gg is None else gg.q,
            "gamma": None if gg is None else gg.gamma,
            "time_unit": "week",
            "event": self.event,
            "value": self.value,
            "calibration_end": self.calibration_end.isoformat(),
            "customers": self.fitted.customers,
            "repeat_customers": self.fitted.repeat_customers,
            "fit_seconds": round(self.fitted.seconds, 3),
        }
        if self.holdout is not None:
            out["holdout"] = {
                "end": self.holdout.end.isoformat(),
                "weeks": self.holdout.weeks,
                "expected_repeat_purchases": self.holdout.expected,
                "observed_repeat_purchases": self.holdout.observed,
            }
        return out


def purchase_summary(
    store: Store, event: str, value: str, calibration_end: date, holdout_end: date | None = None
) -> PurchaseSummary:
    """The summary (``predict._summary``) of the ``event`` events in the store, valued by ``value``."""
    if holdout_end is not None and holdout_end <= calibration_end:
        raise InvalidInputError(
            f"the holdout's end {holdout_end.isoformat()} is not after the calibration's end "
            f"{calibration_end.isoformat()}"
        )
    last = holdout_end or calibration_end
    until_us = ((last - EPOCH).days + 1) * DAY_US
    with store.connect() as conn:
        columns = load_events(conn, until_us=until_us, properties=[value], only=[event])
    amounts = columns.properties[value]
    if not isinstance(amounts, np.ndarray):
        raise InvalidInputError(f"{event}.{value} has values that are not numbers: it cannot value purchases")
    return summarize(
        columns.customer,
        columns.ts,
        amounts,
        (calibration_end - EPOCH).days,
        None if holdout_end is None else (holdout_end - EPOCH).days,
    )


def fit_history(
    store: Store,
    calibration_end: date,
    *,
    event: str = "purchase",
    value: str = "amount",
    holdout_end: date | None = None,
) -> FitReport:
    """Fit BG/NBD and Gamma-Gamma on the ``event`` events up to ``calibration_end`` (included); with
    ``holdout_end``, also predict the calibration cohort's repeat transactions up to that day and count
    the ones that happened."""
    summary = purchase_summary(store, event, value, calibration_end, holdout_end)
    if not len(summary):
        raise NotEnoughHistory(f"no {event} event on or before {calibration_end.isoformat()}: nothing to fit")
    fitted = fit_models(summary)
    holdout = None
    if holdout_end is not None and summary.holdout is not None:
        weeks = (holdout_end - calibration_end).days / UNIT_DAYS
        expected = fitted.beta_geo.expected_purchases(weeks, summary.frequency, summary.recency, summary.age)
        holdout = HoldoutCheck(holdout_end, weeks, float(expected.sum()), int(summary.holdout.sum()))
    return FitReport(event, value, calibration_end, fitted, holdout)


def save_fit(store: Store, report: FitReport, fitted_us: int) -> int:
    """Keep the fit in the store (``prediction_fits``) with its day and parameters; its id. The newest fit
    of each purchase event and value property is ``store.latest_prediction_fits``."""
    parameters = {k: v for k, v in report.to_dict().items() if k not in ("event", "value", "calibration_end")}
    with store.begin() as conn:
        return save_prediction_fit(
            conn, fitted_us, report.event, report.value, (report.calibration_end - EPOCH).days, parameters
        )
