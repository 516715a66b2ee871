"""Time zones: when a customer's local wall clock reads a given time on a given day.

One rule, shared by the steps that wait for a local time or a date (``engine._localtime``) and by the
calendar periods of signals (``signals._calendar``): a local time that does not exist (clocks jump forward
over it) is the first valid instant after the gap, the moment of the jump; a local time that happens twice
(clocks go back over it) is its first occurrence.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from orchestrator.clock import EPOCH
from orchestrator.durations import US_PER_SECOND

__all__ = ["local_wall", "wall_to_us", "zone_or_none"]


@lru_cache(maxsize=4096)
def zone_or_none(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name, or None for a name this machine does not know."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def _us(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def local_wall(zone: zoneinfo.ZoneInfo | None, instant_us: int) -> datetime:
    """The local wall time of an instant (no zone: UTC), without its zone."""
    return (EPOCH + timedelta(microseconds=instant_us)).astimezone(zone or UTC).replace(tzinfo=None)


def _offset(zone: zoneinfo.ZoneInfo, instant_us: int) -> timedelta | None:
    return (EPOCH + timedelta(microseconds=instant_us)).astimezone(zone).utcoffset()


@lru_cache(maxsize=65536)
def wall_to_us(zone_name: str, day: date, seconds_of_day: int) -> int:
    """The instant at which the clock of ``zone_name`` (a zone this machine knows) reads
    ``seconds_of_day`` on ``day``: in a gap, the moment of the jump; when it happens twice, the first."""
    zone = zone_or_none(zone_name)
    assert zone is not None, f"unknown zone {zone_name}"
    wall = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds_of_day)
    first = _us(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))
    if local_wall(zone, first) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the jump, fold=1 with the offset after;
    # the jump lies between the two readings. Every zone's offset changes on a whole second: find it.
    second = _us(wall.replace(tzinfo=zone, fold=1).astimezone(UTC))
    lo, hi = sorted((first, second))
    after = _offset(zone, hi)
    while hi - lo > US_PER_SECOND:
        mid = (lo + hi) // 2 // US_PER_SECOND * US_PER_SECOND
        if mid <= lo:
            break
        if _offset(zone, mid) == after:
            hi = mid
        else:
            lo = mid
    return hi
