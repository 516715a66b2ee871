"""Predictions from purchase history: who is likely to leave and what a customer is worth ahead.

Buy-till-you-die models fitted per workspace on the store's purchases: BG/NBD (the probability a customer
is still active, their expected purchases over a horizon) and Gamma-Gamma (the expected value of a
purchase). ``fit_history`` fits both (with PyMC-Marketing, the optional extra ``orchestrator[predict]``);
``BetaGeo`` and ``GammaGamma`` score every customer at once in closed form; ``score_customers`` scores the
store's customers with the newest kept fit and ``export_scores`` writes them to CSV or Parquet.
``docs/predict.md`` gives the definitions, which differ from the rule language's ``recency`` and
``frequency``.
"""

from orchestrator.predict._fit import Fitted, NotEnoughHistory, PredictSetupError, fit_models
from orchestrator.predict._history import FitReport, HoldoutCheck, fit_history, purchase_summary, save_fit
from orchestrator.predict._scores import NoFitKept, Scores, export_scores, score_customers
from orchestrator.predict._summary import PurchaseSummary, summarize
from orchestrator.signals import UNIT_DAYS, BetaGeo, GammaGamma

__all__ = [
    "UNIT_DAYS",
    "BetaGeo",
    "FitReport",
    "Fitted",
    "GammaGamma",
    "HoldoutCheck",
    "NoFitKept",
    "NotEnoughHistory",
    "PredictSetupError",
    "PurchaseSummary",
    "Scores",
    "export_scores",
    "fit_history",
    "fit_models",
    "purchase_summary",
    "save_fit",
    "score_customers",
    "summarize",
]
