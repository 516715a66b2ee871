"""Dates as the customer sees them: a date attribute is a day in the customer's own time zone, a wait can
end at a local time on that day, and anniversaries (``every: year`` / ``every: month``) recur. Every test
runs the whole stepping path on a real store through ``orchestrator.testing``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

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
