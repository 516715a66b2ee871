"""Measurement: deterministic holdout assignment and lift statistics.

- ``holdout``: GrowthBook-compatible (hash v2) bucketing of customer ids and holdout masks.
- ``stats``: per-arm summaries and lift of treatment over control (rates and revenue per customer).
"""

from orchestrator.measure.holdout import GLOBAL_SEED, bucket, buckets, in_holdout, journey_seed

__all__ = ["GLOBAL_SEED", "bucket", "buckets", "in_holdout", "journey_seed"]
