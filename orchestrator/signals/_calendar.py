"""Calendar periods (``within=this_week``, ``last_month``, ...) in each customer's own time zone.

A period is a half-open range of instants ``[start, end)`` per customer. Its bounds depend only on the
customer's time zone and the evaluation instant, so they are worked out once per distinct zone (there are
few) with ``zoneinfo`` and spread to the customers through their zone's code: no per-customer Python.

Rules (docs/metrics.md, "Calendar periods"):

- the zone is the customer's ``timezone`` attribute, an IANA name; a missing or unknown name is UTC;
- a period starts at the first instant of its first local day: local midnight, or where midnight does not
  exist (clocks jump forward over it) the first valid instant after it; where midnight happens twice
  (clocks go back over it), its first occurrence;
- weeks start on Monday (ISO 8601);
- ``today``, ``this_week``, ``this_month``, ``this_year`` run from the start of the current period to now;
  ``yesterday``, ``last_week``, ``last_month``, ``last_year`` from the start of the previous period to the
  start of the current one.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

US_PER_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The calendar periods ``within=`` accepts, current ones first.
PERIODS: tuple[str, ...] = (
    "today",
    "yesterday",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
    "this_year",
    "last_year",
)
#: The attribute that names a customer's time zone.
ZONE_ATTRIBUTE = "timezone"
DEFAULT_ZONE = "UTC"


@lru_cache(maxsize=4096)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone of an IANA name, or None for a name this machine does not know."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def _us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


@lru_cache(maxsize=65536)
def day_start_us(zone_name: str, day: date) -> int:
    """The first instant of ``day`` in ``zone_name``: local midnight, the first valid instant after it when
    it does not exist, its first occurrence when it happens twice."""
    zone = _zone(zone_name)
    if zone is None:
        zone_name, zone = DEFAULT_ZONE, _zone(DEFAULT_ZONE)
    assert zone is not None
    wall = datetime(day.year, day.month, day.day)
    first = _us(wall.replace(tzinfo=zone, fold=0).astimezone(UTC))
    if _wall(zone, first) == wall:
        return first
    # In a gap: the two readings of the wall time bracket the jump; find it to the second. Every zone's
    # offset changes on a whole second, so the jump is the first whole second with the later offset.
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


def _wall(zone: zoneinfo.ZoneInfo | None, instant_us: int) -> datetime:
    """The local wall time of an instant (no zone: UTC), without its zone."""
    return (_EPOCH + timedelta(microseconds=instant_us)).astimezone(zone or UTC).replace(tzinfo=None)


def _offset(zone: zoneinfo.ZoneInfo, instant_us: int) -> timedelta | None:
    return (_EPOCH + timedelta(microseconds=instant_us)).astimezone(zone).utcoffset()


def _first_days(period: str, today: date) -> tuple[date, date | None]:
    """The first local day of the period and of the one after it (None: the period runs to now)."""
    if period in ("today", "yesterday"):
        current = today
        previous = today - timedelta(days=1)
    elif period in ("this_week", "last_week"):
        current = today - timedelta(days=today.weekday())
        previous = current - timedelta(days=7)
    elif period in ("this_month", "last_month"):
        current = today.replace(day=1)
        previous = (current - timedelta(days=1)).replace(day=1)
    elif period in ("this_year", "last_year"):
        current = today.replace(month=1, day=1)
        previous = current.replace(year=current.year - 1)
    else:
        raise ValueError(f"unknown calendar period {period!r}")
    if period in ("today", "this_week", "this_month", "this_year"):
        return current, None
    return previous, current


def zone_bounds(period: str, zone_name: str, now_us: int) -> tuple[int, int]:
    """``[start, end)`` of the period in one zone at ``now_us`` (``end`` is ``now_us`` for a current one);
    an unknown zone is UTC."""
    name = zone_name if _zone(zone_name) is not None else DEFAULT_ZONE
    today = _wall(_zone(name), now_us).date()
    first, following = _first_days(period, today)
    return day_start_us(name, first), now_us if following is None else day_start_us(name, following)


def zone_codes(column: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct zones of a ``timezone`` column (missing or unknown names become UTC) and each slot's
    code into them (int16: a column of codes small enough to stay in the processor's caches)."""
    if column.dtype != object:
        return [DEFAULT_ZONE], np.zeros(len(column), np.int16)  # no text at all: every zone is missing
    values = column.tolist()
    names: list[str] = []
    index: dict[str, int] = {}
    table: dict[object, int] = {}
    for value in set(values):  # a few distinct values: Python only here
        name = value if isinstance(value, str) and _zone(value) is not None else DEFAULT_ZONE
        table[value] = index.setdefault(name, len(names))
        if table[value] == len(names):
            names.append(name)
    return names, np.fromiter(map(table.__getitem__, values), np.int16, len(values))


def zone_table(period: str, names: list[str], now_us: int) -> np.ndarray:
    """The period's ``[start, end)`` in each zone of ``names``: an array of shape (zones, 2)."""
    return np.array([zone_bounds(period, name, now_us) for name in names], dtype=np.int64).reshape(-1, 2)


def period_bounds(
    period: str, zones: tuple[list[str], np.ndarray], now_us: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer slot, the period's ``[start, end)`` in microseconds, from ``zone_codes``' output."""
    names, codes = zones
    table = zone_table(period, names, now_us)
    return table[codes, 0], table[codes, 1]
