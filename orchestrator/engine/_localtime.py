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
- a date attribute is ISO 8601 text: a date (``2024-03-01``: that day in the customer's time zone, from
  local midnight, or the first valid instant of the day where midnight does not exist) or a date and time,
  with an offset or ``Z`` (without one it is read as UTC). Anything else counts as missing;
- a wait for a date ends at the date plus the offset (for a date, its whole days on the customer's
  calendar and the rest as elapsed time); with a time of day, at that local time on the day (the local
  day of a date and time) moved by the offset's days; with ``every``, at the first anniversary
  (``year``; 29 February is 28 February in other years) or monthly day (``month``; a day past the
  month's end is its last day) at that local time strictly after the instance reached the step.
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


def _zone_codes(zone_names: np.ndarray, default_zone: str) -> tuple[list[str], np.ndarray]:
    """The distinct zones of the instances (their own where this machine knows it, else ``default_zone``)
    and each instance's index into them."""
    codes: dict[object, int] = {}
    index = np.fromiter((codes.setdefault(n, len(codes)) for n in zone_names), np.int64, len(zone_names))
    zones = [n if isinstance(n, str) and zone_or_none(n) is not None else default_zone for n in codes]
    distinct = sorted(set(zones))
    return distinct, np.array([distinct.index(z) for z in zones], np.int64)[index]


@lru_cache(maxsize=65536)
def parse_date_text(text: str) -> tuple[bool, int] | None:
    """An ISO 8601 date as ``(True, its proleptic ordinal)``, a date and time as ``(False, µs)`` (no offset:
    UTC), or None if the text is neither."""
    value = text.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            return True, date.fromisoformat(value).toordinal()
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return False, _us(parsed)


def _parsed(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(readable, is a date without time, ordinal or µs) of a column of date attribute values: each
    distinct text is parsed once."""
    codes: dict[str, int] = {}
    index = np.fromiter(
        (codes.setdefault(v, len(codes)) if isinstance(v, str) else -1 for v in values), np.int64, len(values)
    )
    parsed = [parse_date_text(text) for text in codes] + [None]  # index -1: not a text
    ok = np.array([p is not None for p in parsed], bool)
    is_day = np.array([p is not None and p[0] for p in parsed], bool)
    number = np.array([0 if p is None else p[1] for p in parsed], np.int64)
    return ok[index], is_day[index], number[index]


def readable_dates(values: np.ndarray) -> np.ndarray:
    """Where a column of date attribute values holds a date or a date and time (not absent or unreadable)."""
    return _parsed(values)[0]


@lru_cache(maxsize=65536)
def _local_day(zone_name: str, instant_us: int) -> int:
    """The ordinal of the day the clock of ``zone_name`` shows at ``instant_us``."""
    zone = zone_or_none(zone_name)
    return (EPOCH + timedelta(microseconds=instant_us)).astimezone(zone).date().toordinal()


#: ``date.toordinal()`` of 1 January 1970, day 0 of numpy's ``datetime64[D]``.
_ORDINAL_1970 = 719163


def _in_month(months: np.ndarray, day_of_month: np.ndarray) -> np.ndarray:
    """Ordinals of the ``day_of_month`` (1-31) of ``months`` (months since January 1970), a day past a
    month's end being its last day."""
    start = months.astype("datetime64[M]").astype("datetime64[D]")
    length = ((months + 1).astype("datetime64[M]").astype("datetime64[D]") - start).astype(np.int64)
    return start.astype(np.int64) + np.minimum(day_of_month, length) - 1 + _ORDINAL_1970


def _anniversaries(days: np.ndarray, every: str, first: np.ndarray, count: int) -> np.ndarray:
    """For each day ordinal, its anniversaries (``year``: the same month and day, 29 February as 28
    February in other years; ``month``: the same day of the month) in ``count`` periods from ``first``
    (a year number, or months since January 1970), as an array of shape (len(days), count)."""
    as_date = (days - _ORDINAL_1970).astype("datetime64[D]")
    month = as_date.astype("datetime64[M]")
    day_of_month = (as_date - month.astype("datetime64[D]")).astype(np.int64) + 1
    periods = first[:, None] + np.arange(count)
    # A year's anniversary is in its month of the date; a month's is in that month.
    months = (periods - 1970) * 12 + (month.astype(np.int64) % 12)[:, None] if every == "year" else periods
    return _in_month(months, np.broadcast_to(day_of_month[:, None], months.shape))


def _walls(zone_name: str, days: np.ndarray, seconds_of_day: int) -> np.ndarray:
    """``wall_to_us`` for an array of day ordinals (each distinct day once); ``MISSING`` for a day out of
    the calendar's range."""
    unique, inverse = np.unique(days, return_inverse=True)
    walls = np.empty(len(unique), np.int64)
    for i, day in enumerate(unique.tolist()):
        try:
            walls[i] = wall_to_us(zone_name, date.fromordinal(day), seconds_of_day)
        except (ValueError, OverflowError):
            walls[i] = MISSING
    return walls[inverse.reshape(days.shape)]


def date_wakes(
    values: np.ndarray,
    zone_names: np.ndarray,
    after_us: np.ndarray,
    *,
    offset_us: int = 0,
    seconds_of_day: int | None = None,
    every: str | None = None,
    default_zone: str = "UTC",
) -> np.ndarray:
    """For each instance, when its wait for a date attribute ends (see the module docstring); ``MISSING``
    where the value is absent or unreadable. ``values`` (the attribute), ``zone_names`` (the customers'
    ``timezone``) and ``after_us`` (when each instance reached the step) are aligned; ``seconds_of_day``
    is the local time the wait ends at (None: a plain date wait, at the date plus the offset); ``every``
    (``year`` or ``month``; needs ``seconds_of_day``) makes it the next anniversary after ``after_us``."""
    after_us = np.asarray(after_us, dtype=np.int64)
    if every is not None and seconds_of_day is None:
        seconds_of_day = 0  # an anniversary without a time: local midnight
    ok, is_day, number = _parsed(values)
    out = np.full(len(after_us), MISSING, np.int64)
    # Whole days of the offset move the date on the calendar; what is left (less than a day, of the same
    # sign) is elapsed time: -36h is a day and a half before local midnight.
    sign = -1 if offset_us < 0 else 1
    offset_days, rest_us = (sign * part for part in divmod(abs(offset_us), DAY_US))
    if seconds_of_day is None:  # a date and time plus the offset, as elapsed time
        instant = ok & ~is_day
        out[instant] = number[instant] + offset_us
        ok = ok & is_day
    if not ok.any():
        return out
    zones, zone_of = _zone_codes(zone_names, default_zone)
    for code, name in enumerate(zones):
        sel = np.flatnonzero(ok & (zone_of == code))
        if not len(sel):
            continue
        days = number[sel].copy()
        timed = ~is_day[sel]
        if timed.any():  # the local day of a date and time, each distinct instant once
            instants, inverse = np.unique(number[sel][timed], return_inverse=True)
            local = np.array([_local_day(name, us) for us in instants.tolist()], dtype=np.int64)
            days[timed] = local[inverse.ravel()]
        if every is None:
            walls = _walls(name, days + offset_days, seconds_of_day or 0)
            if seconds_of_day is None:
                walls = np.where(walls == MISSING, MISSING, walls + rest_us)
            out[sel] = walls
            continue
        # The first occurrence strictly after the instance reached the step lies in one of the periods
        # from the one before that instant (less the offset, in UTC) to the two after it.
        shifted = (after_us[sel] - offset_us).astype("datetime64[us]")
        if every == "year":
            first = shifted.astype("datetime64[Y]").astype(np.int64) + 1970 - 1
        else:
            first = shifted.astype("datetime64[M]").astype(np.int64) - 1
        walls = _walls(name, _anniversaries(days, every, first, 4) + offset_days, seconds_of_day or 0)
        later = walls > after_us[sel][:, None]
        out[sel] = walls[np.arange(len(sel)), later.argmax(axis=1)]
    return out
