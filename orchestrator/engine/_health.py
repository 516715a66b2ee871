"""Is the engine healthy? Journeys marked failed, and whether the last tick is recent.

One rule for every face that asks (the ``status`` command, the HTTP service's ``/readyz``): the last tick
is stale when it is older than ``stale_after`` at the given clock; by default three times the usual
interval between the recent ticks (at least a minute; an hour when only one tick ran). A store where no
tick ran yet is not stale: nothing says when one should have run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.store import Connection, JourneyFailure, failed_journeys, recent_tick_instants

HOUR_US = 3600 * US_PER_SECOND
#: Without an explicit bound, the last tick is stale after this many of the usual intervals between ticks.
STALE_INTERVALS = 3
MIN_STALE_AFTER_US = 60 * US_PER_SECOND


def default_stale_after_us(instants: list[int]) -> int:
    """Three times the median interval between the recent ticks (at least a minute; an hour after one)."""
    gaps = np.diff(np.array(instants, dtype=np.int64))
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return HOUR_US
    return max(MIN_STALE_AFTER_US, STALE_INTERVALS * int(np.median(gaps)))


@dataclass(frozen=True)
class EngineHealth:
    """What ``engine_health`` found. ``last_tick_us`` is None when no tick ran; ``age_us`` and
    ``stale_after_us`` are None when there is no tick or no clock to judge it by."""

    failed: tuple[JourneyFailure, ...]
    last_tick_us: int | None
    age_us: int | None
    stale_after_us: int | None

    @property
    def stale(self) -> bool:
        return (
            self.age_us is not None and self.stale_after_us is not None and self.age_us > self.stale_after_us
        )

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stale

    def to_dict(self) -> dict[str, Any]:
        """As plain data (the ``health`` part of ``status --format json``)."""
        return {
            "ok": self.ok,
            "failed_journeys": [
                {
                    "journey": f.journey_id,
                    "error": f.error,
                    "since": from_us(f.since_us).isoformat(),
                    "last_seen": from_us(f.last_us).isoformat(),
                }
                for f in self.failed
            ],
            "last_tick_stale": self.stale,
            "last_tick_age_seconds": None if self.age_us is None else round(self.age_us / US_PER_SECOND, 3),
            "stale_after_seconds": None
            if self.stale_after_us is None
            else self.stale_after_us / US_PER_SECOND,
        }


def judge_health(
    failed: list[JourneyFailure],
    instants: list[int],
    clock_us: int | None,
    stale_after_us: int | None = None,
) -> EngineHealth:
    """The verdict from what was read: the failed journeys, the recent tick instants (oldest first), the
    clock and the explicit bound (None: ``default_stale_after_us``)."""
    if not instants or clock_us is None:
        return EngineHealth(tuple(failed), instants[-1] if instants else None, None, None)
    after = default_stale_after_us(instants) if stale_after_us is None else stale_after_us
    return EngineHealth(tuple(failed), instants[-1], clock_us - instants[-1], after)


def engine_health(conn: Connection, clock_us: int | None, stale_after_us: int | None = None) -> EngineHealth:
    """The engine's health as the store tells it: journeys marked failed, and the last tick's age at
    ``clock_us`` against ``stale_after_us`` (None: the default rule)."""
    return judge_health(failed_journeys(conn), recent_tick_instants(conn), clock_us, stale_after_us)
