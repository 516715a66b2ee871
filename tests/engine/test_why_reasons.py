"""``explain`` says why: the values of the entry condition's metrics recorded at entry (and kept however the
events change after), each exit's reason in words from the journey's definition (branch, wait_for timeout,
exit step, goal, exit_when, retire), and one line per conversion."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.clock import to_us
from orchestrator.engine import explain
from orchestrator.engine._reasons import entry_reason, finish_reason, held_part
from orchestrator.language import load_journey_text
from orchestrator.store import retire_journey
from orchestrator.testing import World, at, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

TRIP = """\
id: trip
version: 1
metrics:
  quiet_days: since(session_start) / 1d
  sessions: count(session_start, within=30d)
signal: quiet_days > 5 and tier == "gold"
exit_when: count(complaint, within=30d) > 0
holdout: 0
goal: {event: purchase, within: 30d, revenue: amount}
steps:
  - id: mail
    send: {channel: email, subject: "Hi", template: mail.txt}
  - wait: 1d
  - id: came_back
    branch:
      if: since(session_start) < 1d
      then: exit
  - id: wait_click
    wait_for: {event: email_click, timeout: 2d, else: exit}
  - id: bye
    exit: clicked
"""
FILES = {"journeys/trip.yaml": TRIP, "templates/mail.txt": "Hello"}
START = at("2024-05-06T09:00:00Z")
PEOPLE = ("back", "timeout", "clicker", "buyer", "complainer", "stays")


@pytest.fixture
def trip(world: World) -> World:
    """Six gold customers, quiet for a different number of days, all entering at ``START``."""
    world.write_files(FILES)
    world.clock.set(START - timedelta(days=20))
    world.add_customers(*[customer(c, tier="gold") for c in PEOPLE])
    world.add_events(
        *[event(c, "session_start", START - timedelta(days=6 + i)) for i, c in enumerate(PEOPLE)],
        event("back", "session_start", START - timedelta(days=15)),
    )
    world.clock.set(START)
    world.tick()
    return world


def _entry(world: World, who: str):  # type: ignore[no-untyped-def]
    (entry,) = explain(world.store, who, "trip").entries
    return entry


def test_the_values_that_let_a_customer_in_are_recorded_and_stay(trip: World) -> None:
    entry = _entry(trip, "back")
    assert entry.entry_values == {"quiet_days": 6.0, "tier": "gold"}
    assert entry.entered_because == (
        'entered because the signal held: quiet_days > 5 and tier == "gold" (quiet_days = 6, tier = "gold")'
    )
    assert _entry(trip, "timeout").entry_values == {"quiet_days": 7.0, "tier": "gold"}
    # Events after entry change what the metrics say now, not what let the customer in.
    trip.add_events(event("back", "session_start", START + timedelta(hours=1)))
    trip.clock.set(START + timedelta(hours=2))
    trip.tick()
    assert _entry(trip, "back").entry_values == {"quiet_days": 6.0, "tier": "gold"}


def test_each_exit_is_said_in_words_from_the_journey(trip: World) -> None:
    trip.add_events(
        event("back", "session_start", START + timedelta(hours=12)),
        event("buyer", "purchase", START + timedelta(hours=6), amount=42.0),
        event("complainer", "complaint", START + timedelta(hours=6)),
        event("clicker", "email_click", START + timedelta(days=1, hours=12)),
    )
    trip.run_until(START + timedelta(days=2))
    said = {who: _entry(trip, who) for who in PEOPLE}
    assert said["back"].finish_code == "branch"
    assert said["back"].finish_words == "left at came_back because since(session_start) < 1d held"
    assert said["back"].finish_reason == "branch came_back: yes"  # the stored code is kept
    assert (said["clicker"].finish_code, said["clicker"].finish_words) == (
        "exit_step",
        "left at bye: clicked",
    )
    assert said["buyer"].finish_code == "goal"
    assert said["buyer"].finish_words == "reached the goal: purchase of 42.00 on 2024-05-06"
    assert said["complainer"].finish_code == "exit_when"
    assert said["complainer"].finish_words == "left because exit_when held: count(complaint, within=30d) > 0"
    assert said["timeout"].status == "active" and said["timeout"].finish_words is None
    trip.run_until(START + timedelta(days=3, hours=1))
    timeout = _entry(trip, "timeout")
    assert timeout.finish_code == "wait_for"
    assert timeout.finish_words == "left at wait_click because no email_click within 2d"


def test_a_retired_journey_is_said_as_such(trip: World) -> None:
    with trip.store.begin() as conn:
        retire_journey(conn, "trip", to_us(START + timedelta(hours=1)))
    stays = _entry(trip, "stays")
    assert (stays.status, stays.finish_code) == ("exited", "retired")
    assert stays.finish_words == "left when the journey was retired"


def test_conversions_are_one_line_each(trip: World) -> None:
    trip.add_events(event("buyer", "purchase", START + timedelta(hours=6), amount=42.0))
    trip.run_until(START + timedelta(hours=7))
    report = explain(trip.store, "buyer")
    (line,) = report.conversions
    assert (line.journey, line.version, line.arm, line.event, line.revenue) == (
        "trip",
        1,
        "treatment",
        "purchase",
        42.0,
    )
    assert line.at == "2024-05-06T15:00:00Z"
    assert report.to_dict()["conversions"][0]["revenue"] == 42.0
    assert explain(trip.store, "stays").conversions == []


def test_words_without_recorded_values_or_a_stored_source() -> None:
    journey = load_journey_text(TRIP, "trip.yaml").journey
    assert entry_reason(journey, None, recorded=False).endswith("(metric values not recorded for this entry)")
    assert entry_reason(None, None, recorded=False) == "entered (the journey version's source is not stored)"
    counted = journey.model_copy(update={"signal": "count(purchase, within=7d) > 0"})
    assert entry_reason(counted, None, recorded=False) == (
        "entered because the signal held: count(purchase, within=7d) > 0"
    )
    assert finish_reason(None, "exited", "branch came_back: yes").words == "branch came_back: yes"
    assert finish_reason(journey, "exited", "left by migration to version 2").code == "migrated"
    assert finish_reason(journey, "completed", "completed").words == "went through every step"


def test_the_alternative_of_an_or_that_let_the_customer_in_is_named() -> None:
    signal = "days_quiet > 30 or (prior_sessions > 0 and 10 * recent_sessions < 3 * prior_sessions)"
    quiet = {"days_quiet": 34.2, "recent_sessions": 0, "prior_sessions": 3}
    assert held_part(signal, quiet) == "days_quiet > 30"
    fell = {"days_quiet": 8.4, "recent_sessions": 1, "prior_sessions": 7}
    assert held_part(signal, fell) == "(prior_sessions > 0 and 10 * recent_sessions < 3 * prior_sessions)"
    assert held_part("days_quiet > 30", quiet) is None  # one alternative: the whole signal is said
    assert held_part("count(purchase, within=7d) > 0 or vip", {"vip": False}) is None
