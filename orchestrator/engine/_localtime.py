"""Instants that depend on a customer's calendar: a local time of day in their time zone, a date attribute.

Both are computed for whole arrays of instances. Python's ``zoneinfo`` is only asked about each distinct
(time zone, local date) pair, never once per instance: the candidate instants of a zone are computed for
every local date the instances span, and each instance picks its own with one binary search.

Rules (documented in the README):

- a customer's ``timezone`` attribute is an IANA name; a missing or unknown name uses the step's
  ``default_timezone`` (UTC unless given);
- "wait until 10:00" means the first instant strictly after the instance reached the step at which the
  local clock reads 10:00 on an allowed weekday;
- a local time that does not exist (clocks jump forward over it) moves to the first valid instant after
  the gap, the moment of the jump; a local time that happens twice (clocks go back) takes the first;
- a date attribute is ISO 8601 text: a date (``2024-03-01``, midnight UTC) or a date and time, with an
  offset or ``Z`` (without one it is read as UTC). Anything else counts as missing.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from orchestrator.clock import EPOCH
from orchestrator.durations import US_PER_SECOND

DAY_US = 86400 * US_PER_SECOND
#: Marks a missing or unreadable date attribute in an array of instants.
MISSING = np.iinfo(np.int64).min


@lru_cache(maxsize=4096)
def zone_or_none(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name, or None for a name this machine does not know."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def _us(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


@lru_cache(maxsize=65536)
def wall_to_us(zone_name: str, day: date, seconds_of_day: int) -> int:
    """The instant at which the clock of ``zone_name`` reads ``seconds_of_day`` on ``day``.

    Nonexistent wall times give the moment the clocks jumped (the first valid instant after them);
    ambiguous ones give their first occurrence.
    """
    zone = zone_or_none(zone_name)
    assert zone is not None, f"unknown zone {zone_name}"
    wall = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds_of_day)
    first = _us(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))
    if datetime.fromtimestamp(first / US_PER_SECOND, zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the jump, fold=1 with the offset after;
    # the jump lies between the two readings. Find it to the second.
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


def _offset(zone: zoneinfo.ZoneInfo, instant_us: int) -> timedelta | None:
    return datetime.fromtimestamp(instant_us / US_PER_SECOND, zone).utcoffset()


def next_local_times(
    after_us: np.ndarray,
    zone_names: np.ndarray,
    seconds_of_day: int,
    weekdays: Iterable[int],
    default_zone: str = "UTC",
) -> np.ndarray:
    """For each instant, the first later instant at which its zone's clock reads ``seconds_of_day`` on one
    of ``weekdays`` (0 = Monday); ``zone_names`` aligned with ``after_us`` (None or unknown: default)."""
    after_us = np.asarray(after_us, dtype=np.int64)
    out = np.empty(len(after_us), dtype=np.int64)
    if not len(after_us):
        return out
    allowed = frozenset(weekdays)
    names = np.array(
        [n if isinstance(n, str) and zone_or_none(n) is not None else default_zone for n in zone_names],
        dtype=object,
    )
    for name in np.unique(names.astype(str)):
        sel = names == name
        instants = after_us[sel]
        # Local dates differ from UTC dates by at most a day; a week ahead always holds an allowed day.
        first_day = (EPOCH + timedelta(microseconds=int(instants.min()))).date() - timedelta(days=1)
        last_day = (EPOCH + timedelta(microseconds=int(instants.max()))).date() + timedelta(days=9)
        candidates = np.array(
            [
                wall_to_us(str(name), first_day + timedelta(days=i), seconds_of_day)
                for i in range((last_day - first_day).days + 1)
                if (first_day + timedelta(days=i)).weekday() in allowed
            ],
            dtype=np.int64,
        )
        candidates.sort()
        out[sel] = candidates[np.searchsorted(candidates, instants, side="right")]
    return out


@lru_cache(maxsize=65536)
def parse_instant_text(text: str) -> int | None:
    """Microseconds of an ISO 8601 date or date-time (no offset: UTC), or None if it is not one."""
    value = text.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return _us(datetime(day.year, day.month, day.day, tzinfo=UTC))
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _us(parsed)


def attribute_instants(values: np.ndarray) -> np.ndarray:
    """Instants (µs) of a column of date attribute values; ``MISSING`` where absent or unreadable."""
    out = np.full(len(values), MISSING, dtype=np.int64)
    for i, value in enumerate(values):
        if isinstance(value, str):
            parsed = parse_instant_text(value)
            if parsed is not None:
                out[i] = parsed
    return out
