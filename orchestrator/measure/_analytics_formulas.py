"""The engagement formulas of ``orchestrator analytics``, pure functions over numpy columns.

Time is counted in whole UTC days since 1970-01-01 (``day = ts_us // 86_400_000_000``). Every function
takes the columns of one kind of event (customer keys and days) and works on all customers at once: sorts,
``unique``, ``searchsorted`` and ``bincount``, never a loop over customers. ``docs/metrics.md``
("Engagement analytics") states each rule; the store reading and the report are in ``_analytics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_US = 86_400_000_000
#: Trailing windows of the active-customer counts, in days (the day itself included).
WEEK_DAYS, MONTH_DAYS = 7, 30
#: The retention marks (days after the anchor day) and the width of the window read at each mark.
RETENTION_DAYS: tuple[int, ...] = (30, 60, 90)
RETENTION_WIDTH = 30

_SPAN = np.int64(1 << 32)  # customer * _SPAN + day: one sortable key per (customer, day)


def days_of(ts_us: np.ndarray) -> np.ndarray:
    """The UTC day of each instant (floor division, so instants before 1970 fall on their own day)."""
    return np.floor_divide(np.asarray(ts_us, np.int64), DAY_US)


def week_start(day: np.ndarray | int) -> np.ndarray:
    """The Monday (ISO week start) of each day: 1970-01-01 was a Thursday."""
    day = np.asarray(day, np.int64)
    return day - (day + 3) % 7


def month_start(day: np.ndarray | int) -> np.ndarray:
    """The first day of each day's calendar month."""
    months = np.asarray(day, np.int64).astype("datetime64[D]").astype("datetime64[M]")
    return months.astype("datetime64[D]").astype(np.int64)


def next_month_start(day: np.ndarray | int) -> np.ndarray:
    months = np.asarray(day, np.int64).astype("datetime64[D]").astype("datetime64[M]") + 1
    return months.astype("datetime64[D]").astype(np.int64)


def period_start(day: np.ndarray | int, period: str) -> np.ndarray:
    """The first day of each day's ``week`` (Monday) or ``month``."""
    return week_start(day) if period == "week" else month_start(day)


def period_end(start: np.ndarray | int, period: str) -> np.ndarray:
    """The first day after the period that starts on ``start``."""
    return np.asarray(start, np.int64) + 7 if period == "week" else next_month_start(start)


def distinct_sorted(keys: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (a sort and a comparison with the neighbour: faster than ``np.unique``'s
    hash table on wide integer keys)."""
    keys = np.sort(np.asarray(keys, np.int64))
    if len(keys) < 2:
        return keys
    keep = np.empty(len(keys), bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def active_pairs(customer: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (customer, day) pairs, sorted by customer then day."""
    keys = distinct_sorted(np.asarray(customer, np.int64) * _SPAN + np.asarray(day, np.int64))
    return keys // _SPAN, keys % _SPAN


def trailing_active(customer: np.ndarray, day: np.ndarray, first: int, n_days: int, width: int) -> np.ndarray:
    """Distinct customers active on some day of ``[d - width + 1, d]``, for each day ``d`` of
    ``first .. first + n_days - 1`` (width 1: DAU, 7: WAU, 30: MAU)."""
    return trailing_from_pairs(*active_pairs(customer, day), first, n_days, width)


def trailing_from_pairs(
    cust: np.ndarray, days: np.ndarray, first: int, n_days: int, width: int
) -> np.ndarray:
    """``trailing_active`` from the sorted distinct pairs (``active_pairs``).

    Each active day ``a`` of a customer covers the days ``a .. a + width - 1``; cut at the customer's next
    active day, the covers are disjoint, so adding them up counts each customer once per day."""
    if n_days <= 0:
        return np.zeros(0, np.int64)
    nxt = np.empty_like(days)
    nxt[:-1] = np.where(cust[1:] == cust[:-1], days[1:], np.iinfo(np.int64).max)
    if len(days):
        nxt[-1] = np.iinfo(np.int64).max
    stop = np.minimum(days + width, nxt)
    start = np.clip(days - first, 0, n_days)
    end = np.clip(stop - first, 0, n_days)
    keep = end > start
    delta = np.bincount(start[keep], minlength=n_days + 1) - np.bincount(end[keep], minlength=n_days + 1)
    return np.cumsum(delta[:n_days]).astype(np.int64)


def returned_within(
    anchor_customer: np.ndarray,
    anchor_day: np.ndarray,
    pair_customer: np.ndarray,
    pair_day: np.ndarray,
    low: int,
    high: int,
) -> np.ndarray:
    """For each anchor, whether its customer was active on a day in ``[anchor + low, anchor + high)``.

    ``pair_customer``/``pair_day`` are the sorted distinct active pairs (``active_pairs``)."""
    keys = pair_customer.astype(np.int64) * _SPAN + pair_day.astype(np.int64)
    base = np.asarray(anchor_customer, np.int64) * _SPAN + np.asarray(anchor_day, np.int64)
    at = np.searchsorted(keys, base + low, side="left")
    found = np.zeros(len(base), bool)
    inside = at < len(keys)
    found[inside] = keys[at[inside]] < base[inside] + high
    return found


@dataclass(frozen=True)
class Cohorts:
    """Retention by cohort week: ``size[i]`` anchors in the week starting on day ``weeks[i]``;
    ``retained[k][i]`` of them returned in the window of ``RETENTION_DAYS[k]``, and ``measurable[k][i]``
    whether that window had ended for every anchor of the week by the end of the data."""

    weeks: np.ndarray
    size: np.ndarray
    retained: tuple[np.ndarray, ...]
    measurable: tuple[np.ndarray, ...]

    def rate(self, k: int) -> list[float | None]:
        """Retained over size where measurable, else None (not yet measurable, or an empty week)."""
        return [
            float(r) / float(s) if m and s else None
            for r, s, m in zip(self.retained[k], self.size, self.measurable[k], strict=True)
        ]


def cohort_retention(
    anchor_customer: np.ndarray,
    anchor_day: np.ndarray,
    pair_customer: np.ndarray,
    pair_day: np.ndarray,
    weeks: np.ndarray,
    end_day: int,
    marks: tuple[int, ...] = RETENTION_DAYS,
    width: int = RETENTION_WIDTH,
) -> Cohorts:
    """Anchors grouped by the Monday of their anchor day, for the cohort weeks ``weeks`` (Mondays, sorted);
    an anchor returned at mark N when active on a day in ``[anchor + N, anchor + N + width)``.

    A week is measurable at N when the window of its last possible anchor (the Sunday) has ended before
    ``end_day`` (the first day with no data): ``monday + 6 + N + width <= end_day``."""
    weeks = np.asarray(weeks, np.int64)
    monday = week_start(anchor_day)
    group = np.searchsorted(weeks, monday)
    inside = np.zeros(len(anchor_day), bool)
    if len(weeks):
        inside = (group < len(weeks)) & (weeks[np.minimum(group, len(weeks) - 1)] == monday)
    group = group[inside]
    size = np.bincount(group, minlength=len(weeks)).astype(np.int64)
    retained, measurable = [], []
    for mark in marks:
        back = returned_within(
            anchor_customer[inside], anchor_day[inside], pair_customer, pair_day, mark, mark + width
        )
        retained.append(np.bincount(group[back], minlength=len(weeks)).astype(np.int64))
        measurable.append(weeks + 6 + mark + width <= end_day)
    return Cohorts(weeks, size, tuple(retained), tuple(measurable))


def birth_anchors(pair_customer: np.ndarray, pair_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's first active day (their first-seen day): one anchor per customer."""
    if not len(pair_customer):
        return pair_customer, pair_day
    first = np.ones(len(pair_customer), bool)
    first[1:] = pair_customer[1:] != pair_customer[:-1]
    return pair_customer[first], pair_day[first]


def recurring_anchors(pair_customer: np.ndarray, pair_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One anchor per customer and week they were active in: their first active day of that week."""
    if not len(pair_customer):
        return pair_customer, pair_day
    weeks = week_start(pair_day)
    first = np.ones(len(pair_customer), bool)
    first[1:] = (pair_customer[1:] != pair_customer[:-1]) | (weeks[1:] != weeks[:-1])
    return pair_customer[first], pair_day[first]


def period_members(customer: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Sorted distinct keys ``customer * SPAN + period index`` (membership of a customer in a period)."""
    return distinct_sorted(np.asarray(customer, np.int64) * _SPAN + np.asarray(period, np.int64))


def churn_counts(members: np.ndarray, n_periods: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per period index ``p`` (``0 .. n_periods - 1``, keys from ``period_members``): customers active in
    ``p``, active in ``p - 1``, and active in ``p - 1`` but not in ``p`` (churned in ``p``). Periods
    before 0 count as empty."""
    period = members % _SPAN
    active = np.bincount(period[period < n_periods], minlength=n_periods)[:n_periods]
    previous = np.zeros(n_periods, np.int64)
    previous[1:] = active[:-1]
    nxt = members + 1
    found = np.searchsorted(members, nxt)
    stays = (found < len(members)) & (members[np.minimum(found, len(members) - 1)] == nxt)
    left = period[~stays] + 1
    churned = np.bincount(left[left < n_periods], minlength=n_periods)[:n_periods]
    return active.astype(np.int64), previous, churned.astype(np.int64)


def members_in(members: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Which of ``members`` are also in ``others`` (both sorted distinct keys)."""
    at = np.searchsorted(others, members)
    return (
        (at < len(others)) & (others[np.minimum(at, max(len(others) - 1, 0))] == members)
        if len(others)
        else (np.zeros(len(members), bool))
    )


def count_by_period(members: np.ndarray, n_periods: int) -> np.ndarray:
    period = members % _SPAN
    return np.bincount(period[period < n_periods], minlength=n_periods)[:n_periods].astype(np.int64)


@dataclass(frozen=True)
class SurveyFigures:
    """Per period: NPS responses (0..10), promoters (9, 10), detractors (0..6) and the NPS; CSAT responses
    (1..5), satisfied (4, 5) and their share; CES responses (1..7) and their mean. None where a period has
    no valid response."""

    nps_responses: np.ndarray
    promoters: np.ndarray
    detractors: np.ndarray
    csat_responses: np.ndarray
    satisfied: np.ndarray
    ces_responses: np.ndarray
    ces_sum: np.ndarray

    def nps(self) -> list[float | None]:
        return [
            100.0 * (float(p) - float(d)) / float(n) if n else None
            for p, d, n in zip(self.promoters, self.detractors, self.nps_responses, strict=True)
        ]

    def csat(self) -> list[float | None]:
        return [
            float(s) / float(n) if n else None
            for s, n in zip(self.satisfied, self.csat_responses, strict=True)
        ]

    def ces(self) -> list[float | None]:
        return [
            float(s) / float(n) if n else None for s, n in zip(self.ces_sum, self.ces_responses, strict=True)
        ]


def _valid(score: np.ndarray, low: int, high: int) -> np.ndarray:
    """Whole scores in ``low..high`` (NaN, fractions and anything outside are left out)."""
    score = np.asarray(score, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(score) & (score >= low) & (score <= high) & (score == np.round(score))


def survey_figures(
    nps: tuple[np.ndarray, np.ndarray],
    csat: tuple[np.ndarray, np.ndarray],
    ces: tuple[np.ndarray, np.ndarray],
    n_periods: int,
) -> SurveyFigures:
    """Each argument is (period index, score) of every response of that survey; every response counts
    (a customer who answers twice in a period counts twice)."""

    def count(period: np.ndarray, where: np.ndarray) -> np.ndarray:
        keep = where & (period >= 0) & (period < n_periods)
        return np.bincount(period[keep], minlength=n_periods)[:n_periods].astype(np.int64)

    nps_period, nps_score = (np.asarray(a) for a in nps)
    ok = _valid(nps_score, 0, 10)
    csat_period, csat_score = (np.asarray(a) for a in csat)
    ok_csat = _valid(csat_score, 1, 5)
    ces_period, ces_score = (np.asarray(a) for a in ces)
    ok_ces = _valid(ces_score, 1, 7)
    keep_ces = ok_ces & (ces_period >= 0) & (ces_period < n_periods)
    ces_sum = np.bincount(ces_period[keep_ces], weights=ces_score[keep_ces], minlength=n_periods)[:n_periods]
    with np.errstate(invalid="ignore"):
        return SurveyFigures(
            nps_responses=count(nps_period, ok),
            promoters=count(nps_period, ok & (nps_score >= 9)),
            detractors=count(nps_period, ok & (nps_score <= 6)),
            csat_responses=count(csat_period, ok_csat),
            satisfied=count(csat_period, ok_csat & (csat_score >= 4)),
            ces_responses=count(ces_period, ok_ces),
            ces_sum=ces_sum,
        )
