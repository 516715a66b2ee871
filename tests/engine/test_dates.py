"""Dates as the customer sees them: a date attribute is a day in the customer's own time zone, a wait can
end at a local time on that day, and anniversaries (``every: year`` / ``every: month``) recur. Every test
runs the whole stepping path on a real store through ``orchestrator.testing``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from orchestrator.clock import to_us
from orchestrator.engine import audience, explain, load_workspace
from orchestrator.engine._localtime import MISSING, date_wakes
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import World, at, customer, event

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def build(world: World, journey: str, start: datetime, people: dict[str, dict[str, Any]]) -> World:
    """``world`` with the journey ``j.yaml``, its template, its clock at ``start``, ``people`` added and a
    signup an hour before ``start`` for each (the journeys enter on it)."""
    world.write_files({"journeys/j.yaml": journey, "templates/hi.txt": "Hi {{ customer.first_name }}"})
    world.clock.set(start)
    world.add_customers(*(customer(cid, first_name=cid.title(), **attrs) for cid, attrs in people.items()))
    world.add_events(*(event(cid, "signup", start - HOUR) for cid in people))
    return world


HEAD = """\
id: j
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
"""
SEND = """\
  - id: hi
    send: {channel: email, subject: "Happy birthday", template: hi.txt}
"""

TWO_WAITS = (
    HEAD
    + """\
  - wait_until: {attribute: birthday}
  - wait_until: {time: "09:00"}
"""
    + SEND
)


def test_a_date_then_a_local_time_sends_on_the_day_in_tokyo(world: World) -> None:
    # Tokyo is UTC+9 all year. The birthday 2024-06-10 starts at 00:00 Tokyo = 2024-06-09T15:00Z; the first
    # 09:00 Tokyo after that is 2024-06-10T00:00Z. Read as midnight UTC (09:00 Tokyo), the date would let
    # the first 09:00 *after* it be the next day's: 2024-06-11T00:00Z, a day late.
    t0 = at("2024-06-01T00:00:00Z")
    w = build(world, TWO_WAITS, t0, {"kei": {"timezone": "Asia/Tokyo", "birthday": "2024-06-10"}})
    w.run_until(t0 + 12 * DAY)
    assert w.sends() == {"kei": [("hi", at("2024-06-10T00:00:00Z"))]}


def us(text: str) -> int:
    return int(at(text).timestamp()) * 1_000_000


def wakes(w: World) -> dict[str, tuple[str, datetime | None]]:
    """Per customer of an active instance: its step and when the engine looks at it next."""
    rows = w.rows(
        "SELECT c.id, i.state, i.wake_at_us FROM journey_instances i JOIN customers c "
        "ON c.key = i.customer_key WHERE i.status = 'active' ORDER BY c.id"
    )
    epoch = at("1970-01-01T00:00:00Z")
    return {r[0]: (r[1], None if r[2] is None else epoch + timedelta(microseconds=r[2])) for r in rows}


ON_THE_DAY = (
    HEAD
    + """\
  - id: eve
    wait_until:
      {attribute: renewal_at, time: "09:00", offset: -1d, default_timezone: Europe/Paris, missing: ask}
"""
    + SEND
    + """\
  - exit: reminded
  - id: ask
    send: {channel: sms, template: hi.txt}
"""
)


def test_a_date_at_a_local_time_in_one_step(world: World) -> None:
    t0 = at("2024-06-01T00:00:00Z")
    people = {
        # 09:00 on the day before the date, in each one's zone:
        "kei": {"timezone": "Asia/Tokyo", "renewal_at": "2024-06-10"},  # 9 June 09:00 JST = 00:00Z
        "nia": {"timezone": "America/New_York", "renewal_at": "2024-06-10"},  # 9 June 09:00 EDT = 13:00Z
        "pau": {"renewal_at": "2024-06-10"},  # no zone: the step's Paris, 9 June 09:00 CEST = 07:00Z
        "zed": {"timezone": "Not/AZone", "renewal_at": "2024-06-10"},  # unknown zone: Paris too
        # 02:00Z on 10 June is 22:00 on 9 June in New York: the local day is the 9th, the day before the 8th.
        "dt": {"timezone": "America/New_York", "renewal_at": "2024-06-10T02:00:00Z"},  # 8 June 13:00Z
        "old": {"timezone": "Asia/Tokyo", "renewal_at": "2024-05-01"},  # long past: at once
        "non": {},  # no date: the missing path
        "bad": {"renewal_at": "next week"},  # not a date: the missing path
    }
    w = build(world, ON_THE_DAY, t0, people)
    w.tick()
    assert wakes(w) == {
        "kei": ("eve", at("2024-06-09T00:00:00Z")),
        "nia": ("eve", at("2024-06-09T13:00:00Z")),
        "pau": ("eve", at("2024-06-09T07:00:00Z")),
        "zed": ("eve", at("2024-06-09T07:00:00Z")),
        "dt": ("eve", at("2024-06-08T13:00:00Z")),
    }
    w.run_until(t0 + 10 * DAY)
    assert w.sends() == {
        "kei": [("hi", at("2024-06-09T00:00:00Z"))],
        "nia": [("hi", at("2024-06-09T13:00:00Z"))],
        "pau": [("hi", at("2024-06-09T07:00:00Z"))],
        "zed": [("hi", at("2024-06-09T07:00:00Z"))],
        "dt": [("hi", at("2024-06-08T13:00:00Z"))],
        "old": [("hi", t0)],
        "non": [("ask", t0)],
        "bad": [("ask", t0)],
    }


def test_a_day_whose_midnight_does_not_exist_starts_at_the_jump(world: World) -> None:
    # Santiago springs forward on 8 September 2024 at 00:00 (-04) to 01:00 (-03): the day's first instant
    # is 01:00 -03 = 04:00Z. A plain date wait ends there.
    journey = HEAD + "  - wait_until: {attribute: renewal_at}\n" + SEND
    t0 = at("2024-09-01T00:00:00Z")
    w = build(world, journey, t0, {"sol": {"timezone": "America/Santiago", "renewal_at": "2024-09-08"}})
    w.tick()
    assert wakes(w)["sol"][1] == at("2024-09-08T04:00:00Z")
    w.clock.set(at("2024-09-08T04:00:00Z"))
    w.tick()
    assert w.sends() == {"sol": [("hi", at("2024-09-08T04:00:00Z"))]}


BIRTHDAYS = """\
id: j
version: 1
segment: consent_email
holdout: 0
steps:
  - id: birthday
    wait_until: {attribute: birthday, every: %s, time: "%s"}
  - id: hi
    send: {channel: email, subject: "Happy birthday", template: hi.txt}
  - branch: {if: consent_email, then: birthday, else: exit}
"""


def step_to(w: World, instant: str) -> None:
    """Move the clock to ``instant`` and tick there."""
    w.clock.set(at(instant))
    w.tick()


def test_anniversaries_every_year_across_zones_leap_years_and_the_day_itself(world: World) -> None:
    t0 = at("2024-06-10T10:00:00Z")  # a Monday; 19:00 in Tokyo, 06:00 in New York
    people = {
        "kei": {"timezone": "Asia/Tokyo", "birthday": "1990-06-10"},  # today, but 09:00 JST has passed
        "nia": {"timezone": "America/New_York", "birthday": "1985-06-10"},  # 09:00 EDT is still ahead
        "lea": {"birthday": "2000-02-29"},  # UTC; next falls on 28 February 2025, then 29 Feb 2028
        "fut": {"timezone": "America/New_York", "birthday": "2031-06-11"},  # the year does not matter
        "dt": {"timezone": "Asia/Tokyo", "birthday": "1990-06-11T20:00:00Z"},  # 12 June in Tokyo
        "non": {},  # no birthday: the missing path (exit)
    }
    w = build(world, BIRTHDAYS % ("year", "09:00"), t0, people)
    w.tick()
    assert wakes(w) == {
        "kei": ("birthday", at("2025-06-10T00:00:00Z")),  # strictly after reaching the step: next year
        "nia": ("birthday", at("2024-06-10T13:00:00Z")),
        "lea": ("birthday", at("2025-02-28T09:00:00Z")),
        "fut": ("birthday", at("2024-06-11T13:00:00Z")),
        "dt": ("birthday", at("2024-06-12T00:00:00Z")),
    }
    assert {i.customer: i.reason for i in w.instances() if i.status != "active"} == {
        "non": "no birthday to wait for"
    }
    step_to(w, "2024-06-10T13:00:00Z")
    step_to(w, "2024-06-11T13:00:00Z")
    step_to(w, "2024-06-12T00:00:00Z")
    # Each sent at its 09:00, then back at the wait for the next year's.
    assert w.sends() == {
        "nia": [("hi", at("2024-06-10T13:00:00Z"))],
        "fut": [("hi", at("2024-06-11T13:00:00Z"))],
        "dt": [("hi", at("2024-06-12T00:00:00Z"))],
    }
    assert wakes(w)["nia"] == ("birthday", at("2025-06-10T13:00:00Z"))
    assert wakes(w)["dt"] == ("birthday", at("2025-06-12T00:00:00Z"))
    # Two years running, with the leap day: 28 February 2025, then 2026 and 2027, then 29 February 2028.
    for instant in ("2025-02-28T09:00:00Z", "2026-02-28T09:00:00Z", "2027-02-28T09:00:00Z"):
        step_to(w, instant)
    assert wakes(w)["lea"] == ("birthday", at("2028-02-29T09:00:00Z"))
    step_to(w, "2028-02-29T09:00:00Z")
    assert [t for _, t in w.sends()["lea"]] == [
        at("2025-02-28T09:00:00Z"),
        at("2026-02-28T09:00:00Z"),
        at("2027-02-28T09:00:00Z"),
        at("2028-02-29T09:00:00Z"),
    ]
    keys = [m.idempotency_key for m in w.sent("lea")]
    assert len(set(keys)) == 4  # one ledger row per visit of the looped step


def test_an_engine_stopped_for_years_sends_one_birthday_message(world: World) -> None:
    t0 = at("2024-06-01T00:00:00Z")
    w = build(world, BIRTHDAYS % ("year", "09:00"), t0, {"ann": {"birthday": "1990-06-10"}})
    w.tick()
    step_to(w, "2027-01-01T00:00:00Z")  # 2024, 2025 and 2026 missed: one message now, then 2027's
    assert w.sends() == {"ann": [("hi", at("2027-01-01T00:00:00Z"))]}
    assert wakes(w)["ann"] == ("birthday", at("2027-06-10T09:00:00Z"))


def test_a_time_that_does_not_exist_on_the_day_moves_to_the_jump(world: World) -> None:
    # New York springs forward on 10 March 2024 at 02:00 EST to 03:00 EDT: 02:30 does not exist and the
    # wait ends at the jump, 03:00 EDT = 07:00Z. In 2025 (9 March is the change) 10 March 02:30 EDT exists.
    t0 = at("2024-03-01T00:00:00Z")
    w = build(
        world,
        BIRTHDAYS % ("year", "02:30"),
        t0,
        {"nyc": {"timezone": "America/New_York", "birthday": "1980-03-10"}},
    )
    w.tick()
    assert wakes(w)["nyc"] == ("birthday", at("2024-03-10T07:00:00Z"))
    step_to(w, "2024-03-10T07:00:00Z")
    assert w.sends() == {"nyc": [("hi", at("2024-03-10T07:00:00Z"))]}
    assert wakes(w)["nyc"] == ("birthday", at("2025-03-10T06:30:00Z"))


def test_a_renewal_day_every_month_falls_on_short_months_last_day(world: World) -> None:
    t0 = at("2024-01-31T12:00:00Z")  # the 31st, after 09:00: next is February's last day, the 29th
    w = build(world, BIRTHDAYS % ("month", "09:00"), t0, {"rob": {"birthday": "2023-08-31"}})
    w.tick()
    for instant in ("2024-02-29T09:00:00Z", "2024-03-31T09:00:00Z", "2024-04-30T09:00:00Z"):
        step_to(w, instant)
    assert [t for _, t in w.sends()["rob"]] == [
        at("2024-02-29T09:00:00Z"),
        at("2024-03-31T09:00:00Z"),
        at("2024-04-30T09:00:00Z"),
    ]
    assert wakes(w)["rob"] == ("birthday", at("2024-05-31T09:00:00Z"))


@pytest.mark.parametrize(
    ("birthday", "zone", "after", "kwargs", "expected"),
    [
        # Three days before 2 January, at 09:00 UTC: 30 December of the year before.
        (
            "1990-01-02",
            "UTC",
            "2024-12-29T10:00:00Z",
            {"every": "year", "offset": -3},
            "2024-12-30T09:00:00Z",
        ),
        # ... strictly after the instant the instance reached the step: the next one.
        (
            "1990-01-02",
            "UTC",
            "2024-12-30T09:00:00Z",
            {"every": "year", "offset": -3},
            "2025-12-30T09:00:00Z",
        ),
        # Kiritimati is UTC+14: 1 April 00:00 there is 31 March 10:00Z, within the UTC month before.
        (
            "2024-01-01",
            "Pacific/Kiritimati",
            "2024-03-31T09:00:00Z",
            {"every": "month", "time": 0},
            "2024-03-31T10:00:00Z",
        ),
        # Pago Pago is UTC-11: 31 December 2024 23:59 there is 1 January 2025 10:59Z, in the UTC year after.
        (
            "2000-12-31",
            "Pacific/Pago_Pago",
            "2025-01-01T05:00:00Z",
            {"every": "year", "time": 86340},
            "2025-01-01T10:59:00Z",
        ),
        # A date and time without an offset is UTC, and a plain wait adds the offset as elapsed time.
        (
            "2024-06-10T09:00:00",
            "Asia/Tokyo",
            "2024-06-01T00:00:00Z",
            {"offset_us": -86400 * 10**6},
            "2024-06-09T09:00:00Z",
        ),
        # A date less 36 hours in New York: a day back on the calendar (11 March, 00:00 EDT = 04:00Z),
        # then 12 hours: 10 March 12:00 EDT.
        (
            "2024-03-12",
            "America/New_York",
            "2024-03-01T00:00:00Z",
            {"offset_us": -36 * 3600 * 10**6},
            "2024-03-10T16:00:00Z",
        ),
        # A day ahead on the calendar across the change: 11 March 00:00 EDT (not 24 hours after 10 March).
        (
            "2024-03-10",
            "America/New_York",
            "2024-03-01T00:00:00Z",
            {"offset_us": 86400 * 10**6},
            "2024-03-11T04:00:00Z",
        ),
    ],
)
def test_date_wakes_by_hand(
    birthday: str, zone: str, after: str, kwargs: dict[str, Any], expected: str
) -> None:
    day_us = 86400 * 10**6
    options: dict[str, Any] = {"offset_us": kwargs.get("offset_us", kwargs.get("offset", 0) * day_us)}
    if "every" in kwargs:
        options |= {"every": kwargs["every"], "seconds_of_day": kwargs.get("time", 9 * 3600)}
    got = date_wakes(
        np.array([birthday], dtype=object), np.array([zone], dtype=object), np.array([us(after)]), **options
    )
    assert got.tolist() == [us(expected)]


def test_unreadable_dates_are_missing() -> None:
    values = np.array(["1990-02-30", "soon", None, 19900101, "", "1990-02-28"], dtype=object)
    got = date_wakes(
        values, np.full(6, None, dtype=object), np.zeros(6, np.int64), every="year", seconds_of_day=0
    )
    assert (got == MISSING).tolist() == [True, True, True, True, True, False]


def test_why_and_the_audience_estimate_say_when_the_wait_ends(world: World) -> None:
    t0 = at("2024-06-01T00:00:00Z")
    people = {"kei": {"timezone": "Asia/Tokyo", "birthday": "1990-06-10"}, "non": {}}
    w = build(world, BIRTHDAYS % ("year", "09:00"), t0, people)
    report = audience(w.store, load_workspace([w.folder / "journeys"]), "j", to_us(t0))
    assert "birthday: the wait until 09:00 on the anniversary of birthday is taken to have come " in " ".join(
        report.notes
    )
    w.tick()
    [entry] = explain(w.store, "kei").entries
    assert (entry.step, entry.step_words) == ("birthday", "wait until 09:00 on the anniversary of birthday")
    assert entry.next_look == "2024-06-10T00:00:00Z"
    [gone] = explain(w.store, "non").entries
    assert (gone.step_words, gone.finish_words) == (
        None,
        "left at birthday because the customer has no birthday to wait for",
    )


def test_a_birthday_moved_while_waiting(world: World) -> None:
    t0 = at("2024-01-01T00:00:00Z")
    people = {"ann": {"birthday": "1990-12-20"}, "bob": {"birthday": "1990-10-01"}}
    w = build(world, BIRTHDAYS % ("year", "09:00"), t0, people)
    w.tick()
    assert {c: t for c, (_, t) in wakes(w).items()} == {
        "ann": at("2024-12-20T09:00:00Z"),
        "bob": at("2024-10-01T09:00:00Z"),
    }
    with w.store.begin() as conn:  # ann's is corrected to March, bob's to 1 December
        upsert_customers(
            conn,
            [{"id": "ann", "birthday": "1990-03-05"}, {"id": "bob", "birthday": "1990-12-01"}],
            to_us(t0),
        )
    # The engine looks again when each wait was due. bob's birthday moved later: the wait goes on.
    # ann's moved earlier, to a day already past: no belated email on 20 December, the next 5 March.
    step_to(w, "2024-10-01T09:00:00Z")
    step_to(w, "2024-12-01T09:00:00Z")
    step_to(w, "2024-12-20T09:00:00Z")
    assert w.sends() == {"bob": [("hi", at("2024-12-01T09:00:00Z"))]}
    assert wakes(w)["ann"] == ("birthday", at("2025-03-05T09:00:00Z"))
    step_to(w, "2025-03-05T09:00:00Z")
    assert w.sends()["ann"] == [("hi", at("2025-03-05T09:00:00Z"))]
