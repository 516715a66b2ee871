"""Fitting BG/NBD and Gamma-Gamma to a purchase summary, with PyMC-Marketing's CLV models.

The fit is the maximum a posteriori under flat priors on the positive parameters, which is the maximum
likelihood fit of the papers (``signals._clv`` gives the formulas). PyMC-Marketing (and PyMC, PyTensor,
pandas under it) is the optional extra ``orchestrator[predict]``, imported only here and only when a fit
runs; without it a fit says how to install it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.errors import InvalidInputError, SetupError
from orchestrator.predict._summary import PurchaseSummary
from orchestrator.signals import BetaGeo, GammaGamma


class PredictSetupError(SetupError):
    """The optional extra the predictions need is not installed."""


class NotEnoughHistory(InvalidInputError):
    """The purchase history cannot support a fit (too few customers or repeat purchases)."""


@dataclass(frozen=True)
class Fitted:
    """Both models' parameters and what they were fitted on."""

    beta_geo: BetaGeo
    gamma_gamma: GammaGamma | None  # None when no customer has a repeat purchase with a value
    customers: int
    repeat_customers: int
    seconds: float


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyMC, PyTensor and ArviZ print warnings and progress on import and fit: none of it is ours to show."""
    loggers = [logging.getLogger(name) for name in ("pymc", "pytensor", "pymc_marketing", "arviz")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _libraries() -> tuple[Any, Any, Any]:
    """pandas, PyMC-Marketing's ``clv`` and the ``Prior`` class, or a ``PredictSetupError``."""
    try:
        with _quiet():
            import pandas as pd
            from pymc_extras.prior import Prior
            from pymc_marketing import clv
    except ImportError as exc:
        raise PredictSetupError(
            f"predictions need the optional extra 'predict' ({exc.name} is missing): "
            "pip install 'orchestrator[predict]'"
        ) from None
    return pd, clv, Prior


def _point(result: Any, name: str) -> float:
    """A parameter's value in a MAP fit's result (one chain, one draw)."""
    return float(np.asarray(result[name]).reshape(-1)[0])


def fit_models(summary: PurchaseSummary) -> Fitted:
    """BG/NBD on every customer of the summary and Gamma-Gamma on those with a repeat purchase."""
    if len(summary) < 2 or not summary.repeaters.any():
        raise NotEnoughHistory(
            f"the purchase history has {len(summary)} customer(s) and "
            f"{int(summary.repeaters.sum())} with a repeat purchase in the calibration period: "
            "a fit needs several customers and some repeat purchases"
        )
    pd, clv, prior = _libraries()
    started = time.perf_counter()
    with _quiet():
        data = pd.DataFrame(
            {
                "customer_id": summary.customer,
                "frequency": summary.frequency,
                "recency": summary.recency,
                "T": summary.age,
            }
        )
        flat = {name: prior("HalfFlat") for name in ("r", "alpha", "a", "b")}
        beta_geo = clv.BetaGeoModel(data=data, model_config=flat)
        beta_geo.fit(method="map", progressbar=False)
        bg = BetaGeo(*(_point(beta_geo.fit_result, name) for name in ("r", "alpha", "a", "b")))
        repeat = summary.repeaters & np.isfinite(summary.monetary) & (summary.monetary > 0)
        gg = None
        if repeat.sum() >= 2:
            spend = pd.DataFrame(
                {
                    "customer_id": summary.customer[repeat],
                    "monetary_value": summary.monetary[repeat],
                    "frequency": summary.frequency[repeat],
                }
            )
            gamma_gamma = clv.GammaGammaModel(
                data=spend, model_config={name: prior("HalfFlat") for name in ("p", "q", "v")}
            )
            gamma_gamma.fit(method="map", progressbar=False)
            gg = GammaGamma(*(_point(gamma_gamma.fit_result, name) for name in ("p", "q", "v")))
    return Fitted(
        beta_geo=bg,
        gamma_gamma=gg,
        customers=len(summary),
        repeat_customers=int(summary.repeaters.sum()),
        seconds=time.perf_counter() - started,
    )
