"""Signals: the expression language over behaviour and its vectorised, incremental evaluator.

``_lang`` parses an expression (``count(view, 7d) >= 3 and ltv > 100``) into a syntax tree and checks it
against the built-in functions (``_builtins``, their numpy forms in ``_builtin_values``). ``_frame`` holds the
evaluator's inputs (events and customers as numpy columns by customer key), ``_evaluate`` the ``Evaluator``
that computes a condition for every customer at once. Between ticks, ``_log`` keeps the events in memory,
``_incremental`` keeps every aggregate current over that log, ``_kept_conditions`` re-evaluates a condition
only for the customers whose result may have changed, and ``_horizon`` works out which of them time alone
may change.

This package knows no database and no runtime: the store reads plain columns and the engine hands them
over. Other packages import from here, not from the modules.
"""

from __future__ import annotations

from orchestrator.signals import _lang as lang
from orchestrator.signals._clv import (
    DAY_US,
    UNIT_DAYS,
    BetaGeo,
    Fit,
    GammaGamma,
    day_summary,
    transaction_days,
)
from orchestrator.signals._evaluate import AggregateCache, Evaluator, fit_for, to_python
from orchestrator.signals._frame import Categorical, CustomerFrame, EventFrame, Property, column_from_values
from orchestrator.signals._incremental import IncrementalAggregates
from orchestrator.signals._kept_conditions import IncrementalConditions
from orchestrator.signals._lang import Call, ExpressionError, Node, free_names, parse
from orchestrator.signals._log import EventLog, property_uses

__all__ = [
    "DAY_US",
    "UNIT_DAYS",
    "AggregateCache",
    "BetaGeo",
    "Call",
    "Categorical",
    "CustomerFrame",
    "Evaluator",
    "EventFrame",
    "EventLog",
    "ExpressionError",
    "Fit",
    "GammaGamma",
    "IncrementalAggregates",
    "IncrementalConditions",
    "Node",
    "Property",
    "column_from_values",
    "day_summary",
    "fit_for",
    "free_names",
    "lang",
    "parse",
    "property_uses",
    "to_python",
    "transaction_days",
]
