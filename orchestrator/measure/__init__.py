"""Measurement: deterministic holdout assignment, lift statistics and lift reports (reads the store only).

- ``holdout``: GrowthBook-compatible (hash v2) bucketing, the global and per-journey holdout layers.
- ``stats`` gathers the statistics, pure functions over numpy arrays: ``numbers`` (intervals, input
  checks, delta method), ``rates`` (per-arm totals, rate lifts), ``means`` (Welch mean lifts), ``power``
  (MDE, sample-ratio check), ``sequential`` (always-valid intervals), ``cuped``, and ``analysis``
  (``analyze``, segments).
- ``report`` gathers a journey's report: ``entries`` (per-entry columns from the store, their export),
  ``timeline`` (cumulative lift by day), ``journey`` (``journey_report``).
- ``text`` / ``html``: plain text and self-contained HTML pages for any analysis and journey report, both
  writing figures through ``formats``.
"""

from orchestrator.measure.holdout import (
    GLOBAL_SEED,
    Assignments,
    assign_arms,
    bucket,
    buckets,
    global_holdout,
    in_holdout,
    journey_seed,
)

__all__ = [
    "GLOBAL_SEED",
    "Assignments",
    "assign_arms",
    "bucket",
    "buckets",
    "global_holdout",
    "in_holdout",
    "journey_seed",
]
