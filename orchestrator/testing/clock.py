"""The simulated clock of tests: it starts at an instant and moves only when told, by a timedelta or by
duration text as journeys write it (``"90s"``, ``"2h"``, ``"3d"``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.clock import SimulatedClock, parse_instant
from orchestrator.durations import parse_duration

#: The instant tests start at unless they say otherwise: Wednesday 1 May 2024, 09:00 UTC.
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def at(instant: str) -> datetime:
    """An instant from ISO text (``Z`` allowed; an offset is required): ``at("2024-05-06T10:00:00Z")``."""
    return parse_instant(instant)


def duration(value: str | timedelta) -> timedelta:
    """A timedelta, or duration text as journeys write it (``"15m"``, ``"2h"``, ``"1d"``)."""
    return value if isinstance(value, timedelta) else parse_duration(value)


class SimClock(SimulatedClock):
    """A ``SimulatedClock`` (the engine's own test clock) that also advances by duration text."""

    def __init__(self, start: datetime = T0) -> None:
        super().__init__(start)

    def advance(self, delta: str | timedelta) -> datetime:
        """Move forward by ``delta`` (``"2h"`` or a timedelta) and return the new instant."""
        return super().advance(duration(delta))
