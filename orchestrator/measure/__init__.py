"""Measurement: deterministic holdout assignment, lift statistics and lift reports (reads the store only).

- ``holdout``: GrowthBook-compatible (hash v2) bucketing, the global and per-journey holdout layers.
- ``stats``: ``analyze`` and its parts: per-arm summaries, lifts with intervals and p-values, MDE,
  always-valid intervals, CUPED, the sample-ratio-mismatch check, segments.
- ``report``: a journey's report from the store, its per-entry export and terminal table.
- ``html`` / ``text``: self-contained HTML pages and plain text for any analysis.
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
