"""Measurement: lift statistics and lift reports (reads the store only).

The holdout assignment both the engine and the reports use is ``orchestrator.holdout``.

- ``stats`` gathers the statistics, pure functions over numpy arrays: ``numbers`` (intervals, input
  checks, delta method), ``rates`` (per-arm totals, rate lifts), ``means`` (Welch mean lifts), ``power``
  (MDE, sample-ratio check), ``sequential`` (always-valid intervals), ``cuped``, and ``analysis``
  (``analyze``, segments).
- ``report`` gathers a journey's report: ``entry_rows`` (per-entry columns from the store, their export),
  ``timeline`` (cumulative lift by day), ``journey`` (``journey_report``).
- ``text`` / ``html``: plain text and self-contained HTML pages for any analysis and journey report, both
  writing figures through ``formats``.

The names below are imported when first used (PEP 562): the statistics load scipy and statsmodels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.measure.experiment import InputError, read_experiment
    from orchestrator.measure.html import render_analysis_html, render_journey_html
    from orchestrator.measure.report import export_entries, format_table, journey_report
    from orchestrator.measure.sequential import DEFAULT_SEQUENTIAL_TAU
    from orchestrator.measure.stats import analyze
    from orchestrator.measure.text import format_analysis, report_text

_EXPORTS: dict[str, str] = {
    "DEFAULT_SEQUENTIAL_TAU": "orchestrator.measure.sequential",
    "InputError": "orchestrator.measure.experiment",
    "analyze": "orchestrator.measure.stats",
    "export_entries": "orchestrator.measure.report",
    "format_analysis": "orchestrator.measure.text",
    "format_table": "orchestrator.measure.report",
    "journey_report": "orchestrator.measure.report",
    "read_experiment": "orchestrator.measure.experiment",
    "render_analysis_html": "orchestrator.measure.html",
    "render_journey_html": "orchestrator.measure.html",
    "report_text": "orchestrator.measure.text",
}

__all__ = [
    "DEFAULT_SEQUENTIAL_TAU",
    "InputError",
    "analyze",
    "export_entries",
    "format_analysis",
    "format_table",
    "journey_report",
    "read_experiment",
    "render_analysis_html",
    "render_journey_html",
    "report_text",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
