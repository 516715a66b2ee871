"""The injected clock: the core never reads the wall clock itself.

Every function of the engine that needs "now" receives a ``Clock``; tests, the demo and backtests pass a
``SimulatedClock`` and move it forward, the daemon passes ``SystemClock``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = to_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = to_utc(instant)

    def advance(self, delta: timedelta) -> datetime:
        self._now = self._now + delta
        return self._now


def to_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch, the unit every stored instant uses."""
    value = to_utc(value)
    return (value - EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant; ``Z`` is accepted, a missing offset is an error."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return to_utc(value)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
