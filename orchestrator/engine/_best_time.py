"""Each customer's best time to be sent a message: the hour of the week at which they engage most.

A send step written ``at: best_time`` delays its message, for each instance, to the first instant within
``within`` (24h unless given) of reaching the step whose local hour of the week scores highest:

- **engagement**: the customer's events of the configured types (``email_open``, ``email_click`` and
  ``session_start`` unless ``best_time: {events: [...]}`` says otherwise) in the ``lookback`` (90 days)
  before now, counted per hour of the week (168 bins, Monday 00:00-01:00 is 0) in the customer's own time
  zone (their ``timezone`` attribute; missing or unknown: the contact policy's default zone, UTC without a
  policy). All customers' counts come from one ``np.unique`` over ``customer * 168 + hour``;
- **shrinkage**: the population's pattern is the share of all those events in each hour, with one event
  added to every hour (so no hour is impossible). A customer's score for hour ``h`` is the posterior mean of
  a Dirichlet-multinomial with ``prior`` pseudo-events (24 unless given) spread as the population's
  pattern: ``(count[h] + prior * share[h]) / (events + prior)``. A customer with no history gets the
  population's best hour; one with many events their own;
- **candidates**: the instant the step is reached (its local hour as it is now) and the start of every
  following local hour up to ``within`` later. Candidates inside the contact policy's quiet hours for the
  step's channel are never chosen (a transactional send ignores quiet hours, as dispatch does); when every
  candidate is quiet, the message goes at once and dispatch holds or drops it as the policy says;
- **choice**: the candidate with the highest score; ties go to the earliest.

``best_time: {compare: P}`` sends P percent of the instances at once instead (policy ``immediate``),
chosen by ``buckets("<journey>:best_time:<step>", "<customer id>:<entered_us>")``: a salt of its own, so
the share is independent of the holdout and of splits. Caps still apply at dispatch.

Local hours are computed per distinct zone: the zone's UTC offset is asked once per UTC hour in the range
of the instants (zone changes happen on whole hours), and every instant reads its offset from that table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.zones import zone_or_none

HOURS_OF_WEEK = 168
HOUR_US = 3600 * US_PER_SECOND
DAY_US = 24 * HOUR_US
#: 1970-01-01 was a Thursday: 72 hours after the Monday 00:00 that starts its week.
_EPOCH_HOUR_OF_WEEK = 72
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
IMMEDIATE, BEST_TIME = "immediate", "best_time"


def hour_name(hour_of_week: int) -> str:
    """``tue 19:00`` for hour 43."""
    return f"{WEEKDAY_NAMES[hour_of_week // 24]} {hour_of_week % 24:02d}:00"


def zone_codes(zones: np.ndarray, default_zone: str) -> tuple[list[str], np.ndarray]:
    """The distinct zones of a ``timezone`` column (missing or unknown names: ``default_zone``) and each
    row's code into them; zoneinfo is asked once per distinct value."""
    values = zones.tolist() if len(zones) else []
    names: list[str] = []
    index: dict[str, int] = {}
    table: dict[object, int] = {}
    for value in set(values):
        name = value if isinstance(value, str) and zone_or_none(value) is not None else default_zone
        if name not in index:
            index[name] = len(names)
            names.append(name)
        table[value] = index[name]
    return names, np.fromiter(map(table.__getitem__, values), np.int64, len(values))


def _offsets(zone_name: str, first_hour: int, last_hour: int) -> np.ndarray:
    """The zone's UTC offset (microseconds) at each UTC hour from ``first_hour`` to ``last_hour``."""
    zone = zone_or_none(zone_name)
    if zone is None or zone_name == "UTC":
        return np.zeros(last_hour - first_hour + 1, np.int64)
    out = np.empty(last_hour - first_hour + 1, np.int64)
    for i, hour in enumerate(range(first_hour, last_hour + 1)):
        offset = datetime.fromtimestamp(hour * 3600, UTC).astimezone(zone).utcoffset()
        out[i] = 0 if offset is None else round(offset.total_seconds() * US_PER_SECOND)
    return out


def local_instants(ts_us: np.ndarray, codes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Each instant as its local wall-clock reading in microseconds (the zone ``names[codes[i]]``)."""
    ts_us = np.asarray(ts_us, np.int64)
    out = ts_us.copy()
    for code, name in enumerate(names):
        sel = codes == code
        if not sel.any():
            continue
        ts = ts_us[sel]
        first, last = int(ts.min() // HOUR_US), int(ts.max() // HOUR_US)
        out[sel] = ts + _offsets(name, first, last)[ts // HOUR_US - first]
    return out


def hour_of_week(local_us: np.ndarray) -> np.ndarray:
    """The hour of the week (0 = Monday 00:00) of local wall-clock readings."""
    return (local_us // HOUR_US + _EPOCH_HOUR_OF_WEEK) % HOURS_OF_WEEK


@dataclass(frozen=True)
class Engagement:
    """Engagement counts per customer and hour of the week, kept sparse (only hours with events), and the
    population's pattern."""

    keys: np.ndarray  # sorted customer * 168 + hour of the hours with events
    counts: np.ndarray  # events in each of those
    totals: np.ndarray  # per customer key: events in all hours (dense over the customer keys)
    population: np.ndarray  # 168 shares summing to 1 (one event added to every hour)
    population_events: int

    def count(self, customers: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """Events of ``customers[i]`` in ``hours[i, j]`` (``hours`` shaped (n, m))."""
        wanted = customers[:, None] * HOURS_OF_WEEK + hours
        pos = np.searchsorted(self.keys, wanted)
        pos = np.minimum(pos, max(len(self.keys) - 1, 0))
        if not len(self.keys):
            return np.zeros(wanted.shape, np.int64)
        return np.where(self.keys[pos] == wanted, self.counts[pos], 0)

    def total(self, customers: np.ndarray) -> np.ndarray:
        """Events of each of ``customers`` in all hours."""
        out = np.zeros(len(customers), np.int64)
        inside = customers < len(self.totals)
        out[inside] = self.totals[customers[inside]]
        return out


def engagement(
    customer: np.ndarray, ts_us: np.ndarray, zones: np.ndarray, default_zone: str, n_customers: int
) -> Engagement:
    """Counts per customer key and local hour of the week of events (``customer``, ``ts_us``), each customer's
    zone from ``zones`` (indexed by customer key)."""
    names, codes = zone_codes(zones, default_zone)
    if len(customer):
        how = hour_of_week(local_instants(ts_us, codes[customer], names))
    else:
        how = np.zeros(0, np.int64)
    keys, counts = np.unique(customer.astype(np.int64) * HOURS_OF_WEEK + how, return_counts=True)
    totals = np.bincount(customer.astype(np.int64), minlength=n_customers)
    per_hour = np.bincount(how, minlength=HOURS_OF_WEEK).astype(np.float64)
    population = (per_hour + 1.0) / (per_hour.sum() + HOURS_OF_WEEK)
    return Engagement(keys, counts, totals, population, len(customer))


@dataclass(frozen=True)
class TimeChoice:
    """Per instance: when to send, the local hour of the week chosen, and the figures behind it."""

    send_at_us: np.ndarray
    hour: np.ndarray  # -1 where every candidate was quiet
    count: np.ndarray  # the customer's events in that hour
    events: np.ndarray  # the customer's events in all hours
    score: np.ndarray  # the shrunk score of that hour
    population_share: np.ndarray  # the population's share of that hour
    zone: np.ndarray  # object: the zone name used
    quiet_skipped: np.ndarray  # bool: a better-scoring hour fell in quiet hours


def quiet_mask(local_us: np.ndarray, start_s: int, end_s: int) -> np.ndarray:
    """Where local wall-clock readings fall in a quiet window (``end`` before ``start`` wraps midnight)."""
    seconds = (local_us % DAY_US) // US_PER_SECOND
    if start_s < end_s:
        return (seconds >= start_s) & (seconds < end_s)
    return (seconds >= start_s) | (seconds < end_s)


def choose_times(
    customers: np.ndarray,
    zones: np.ndarray,
    now_us: int,
    window_us: int,
    found: Engagement,
    prior: float,
    default_zone: str,
    quiet: tuple[int, int] | None = None,
) -> TimeChoice:
    """The best instant within ``window_us`` of ``now_us`` for each customer key in ``customers`` (zones
    aligned with them), scored from ``found`` with ``prior`` pseudo-events; never inside ``quiet`` (start
    and end seconds of the local day)."""
    n = len(customers)
    names, codes = zone_codes(zones, default_zone)
    steps = int(window_us // HOUR_US)
    now = np.full(n, now_us, np.int64)
    local_now = local_instants(now, codes, names)
    # The start of the next local hour: a zone's offset changes on whole hours, so these stay hour starts.
    next_start = now + (HOUR_US - local_now % HOUR_US)
    offsets = np.arange(steps + 1, dtype=np.int64) * HOUR_US
    candidates = np.concatenate([now[:, None], next_start[:, None] + offsets[None, :]], axis=1)
    valid = candidates <= now_us + window_us
    flat_codes = np.repeat(codes, candidates.shape[1])
    local = local_instants(candidates.ravel(), flat_codes, names).reshape(candidates.shape)
    hours = hour_of_week(local)
    counts = found.count(customers, hours)
    events = found.total(customers)
    share = found.population[hours]
    score = (counts + prior * share) / (events[:, None] + prior)
    allowed = valid.copy()
    if quiet is not None:
        allowed &= ~quiet_mask(local, *quiet)
    ranked = np.where(allowed, score, -np.inf)
    pick = np.argmax(ranked, axis=1)  # the first of equal scores: the earliest
    rows = np.arange(n)
    none_allowed = ~allowed.any(axis=1)
    best_anywhere = np.where(valid, score, -np.inf).max(axis=1) if n else np.zeros(0)
    chosen_score = score[rows, pick]
    return TimeChoice(
        send_at_us=np.where(none_allowed, now_us, candidates[rows, pick]),
        hour=np.where(none_allowed, -1, hours[rows, pick]),
        count=np.where(none_allowed, 0, counts[rows, pick]),
        events=events,
        score=np.where(none_allowed, np.nan, chosen_score),
        population_share=np.where(none_allowed, np.nan, share[rows, pick]),
        zone=np.array(names, dtype=object)[codes] if n else np.zeros(0, object),
        quiet_skipped=~none_allowed & (best_anywhere > chosen_score),
    )
