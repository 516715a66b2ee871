"""Time-travel tests of every step kind: waits (duration, local time of day across daylight-saving changes,
date attribute plus offset), waits for a matching event, branches, splits, exits, exit criteria, goals and
loops, each on a real SQLite file and a simulated clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.clock import to_us
from orchestrator.engine._localtime import next_local_times
from orchestrator.holdout import buckets
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import World, at, customer, event

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def people(*ids: str, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Customers named by id (first name the id in title case), with ``extra`` attributes per id."""
    return [customer(cid, first_name=cid.title(), **extra.get(cid, {})) for cid in ids]


def build(world: World, files: dict[str, str], start: datetime, customers: list[dict[str, Any]]) -> World:
    """``world`` with ``files`` written, its clock at ``start`` and ``customers`` added."""
    world.write_files(files)
    world.clock.set(start)
    world.add_customers(*customers)
    return world


# ---------------------------------------------------------------------------------------------- waits

WAITS = """\
id: waits
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: hello
    send: {channel: email, subject: "Hi", template: hello.txt}
  - id: pause
    wait: 3d
  - id: again
    send: {channel: sms, template: again.txt}
"""


@pytest.mark.parametrize("tick_hours", [6, 7])
def test_wait_counts_from_the_send_and_does_not_drift(world: World, tick_hours: int) -> None:
    t0 = at("2024-05-06T00:00:00Z")
    w = build(
        world,
        {"journeys/waits.yaml": WAITS, "templates/hello.txt": "Hello", "templates/again.txt": "Again"},
        t0,
        people("ann", "bob"),
    )
    w.add_events(event("ann", "signup", t0 - HOUR), event("bob", "signup", t0 - HOUR))
    w.run_until(t0 + DAY, timedelta(hours=tick_hours))
    # Parked at the wait step, due exactly three days after the email went out.
    rows = w.rows("SELECT state, wake_at_us, since_us FROM journey_instances")
    assert {r[0] for r in rows} == {"pause"}
    assert {(r[1] - r[2]) for r in rows} == {3 * 86400 * 1_000_000}
    w.run_until(t0 + 4 * DAY, timedelta(hours=tick_hours))
    first_tick_after = t0 + timedelta(hours=tick_hours * -(-72 // tick_hours))
    for cid in ("ann", "bob"):
        assert w.sends()[cid] == [("hello", t0), ("again", first_tick_after)]
    assert {i.status for i in w.instances()} == {"completed"}


MORNING = """\
id: morning
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: ten
    wait_until: {time: "10:00"%s}
  - id: hello
    send: {channel: email, subject: "Good morning", template: hello.txt}
"""


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # Saturday 19:00 EST; clocks spring forward at 02:00 on Sunday: 10:00 EDT is 14:00 UTC.
        ("America/New_York", "2024-03-10T00:00:00Z", "2024-03-10T14:00:00Z"),
        # Saturday 11:00 EST, past ten: Sunday 10:00, already daylight time.
        ("America/New_York", "2024-03-09T16:00:00Z", "2024-03-10T14:00:00Z"),
        # Saturday 20:00 EDT; clocks fall back on Sunday at 02:00: 10:00 EST is 15:00 UTC.
        ("America/New_York", "2024-11-03T00:00:00Z", "2024-11-03T15:00:00Z"),
        # London springs forward on 31 March at 01:00 UTC: 10:00 BST is 09:00 UTC.
        ("Europe/London", "2024-03-31T00:00:00Z", "2024-03-31T09:00:00Z"),
        # London falls back on 27 October at 01:00 UTC: 10:00 GMT is 10:00 UTC.
        ("Europe/London", "2024-10-27T00:00:00Z", "2024-10-27T10:00:00Z"),
        ("Asia/Tokyo", "2024-03-10T00:00:00Z", "2024-03-10T01:00:00Z"),
        # An unknown or missing zone counts as UTC.
        ("Mars/Olympus", "2024-03-10T00:00:00Z", "2024-03-10T10:00:00Z"),
        (None, "2024-03-10T12:00:00Z", "2024-03-11T10:00:00Z"),
    ],
)
def test_wait_until_local_time_across_daylight_saving(
    world: World, zone: str | None, start: str, expected: str
) -> None:
    t0 = at(start)
    w = build(
        world,
        {"journeys/morning.yaml": MORNING % "", "templates/hello.txt": "Hello"},
        t0,
        people("ann", ann={"timezone": zone}),
    )
    w.add_events(event("ann", "signup", t0 - HOUR))
    w.run_until(t0 + 2 * DAY)
    assert w.sends() == {"ann": [("hello", at(expected))]}


def test_wait_until_allowed_weekdays_and_default_timezone(world: World) -> None:
    weekdays = ", weekdays: [mon, tue, wed, thu, fri], default_timezone: America/Chicago"
    t0 = at("2024-03-08T23:00:00Z")  # Friday evening in New York, 23:00 in London
    zones = {"ny": "America/New_York", "ldn": "Europe/London", "nobody": None, "bad": "Not/AZone"}
    w = build(
        world,
        {"journeys/morning.yaml": MORNING % weekdays, "templates/hello.txt": "Hello"},
        t0,
        people(*zones, **{cid: {"timezone": z} for cid, z in zones.items()}),
    )
    w.add_events(*(event(cid, "signup", t0 - HOUR) for cid in zones))
    w.run_until(t0 + 4 * DAY)
    # Not on the weekend: Monday 11 March, after New York's change to daylight time.
    assert w.sends() == {
        "ny": [("hello", at("2024-03-11T14:00:00Z"))],
        "ldn": [("hello", at("2024-03-11T10:00:00Z"))],
        "nobody": [("hello", at("2024-03-11T15:00:00Z"))],  # Chicago, already on CDT
        "bad": [("hello", at("2024-03-11T15:00:00Z"))],
    }


def us(text: str) -> int:
    return int(at(text).timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("zone", "time", "after", "expected"),
    [
        # 02:30 does not exist in New York on 10 March: the first valid instant, 03:00 EDT.
        ("America/New_York", "02:30", "2024-03-10T05:00:00Z", "2024-03-10T07:00:00Z"),
        # 01:30 happens twice on 3 November: the first one (EDT).
        ("America/New_York", "01:30", "2024-11-03T04:00:00Z", "2024-11-03T05:30:00Z"),
        # ... and only once: strictly after the first, the next is the following day's.
        ("America/New_York", "01:30", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"),
        ("Europe/London", "01:30", "2024-03-30T12:00:00Z", "2024-03-31T01:00:00Z"),
        ("Europe/London", "01:30", "2024-10-26T12:00:00Z", "2024-10-27T00:30:00Z"),
        ("Europe/London", "10:00", "2024-05-06T09:00:00Z", "2024-05-07T09:00:00Z"),
    ],
)
def test_local_time_gaps_and_repeats(zone: str, time: str, after: str, expected: str) -> None:
    hours, minutes = (int(p) for p in time.split(":"))
    got = next_local_times(
        np.array([us(after)]), np.array([zone], dtype=object), hours * 3600 + minutes * 60, range(7)
    )
    assert got.tolist() == [us(expected)]


ANNIVERSARY = """\
id: renewal
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: until_due
    wait_until: {attribute: renewal_at, offset: -7d, missing: ask}
  - id: reminder
    send: {channel: email, subject: "Renewal in a week", template: hello.txt}
  - exit: reminded
  - id: ask
    send: {channel: email, subject: "When do you renew?", template: hello.txt}
"""

STRICT = """\
id: strict
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - wait_until: {attribute: renewal_at, offset: 1d}
  - send: {channel: sms, template: hello.txt}
"""


def test_wait_until_a_date_attribute_plus_offset(world: World) -> None:
    t0 = at("2024-05-06T00:00:00Z")
    dates = {
        "ann": "2024-06-15T09:00:00Z",
        "bob": "2024-06-10",  # a date: midnight UTC
        "cat": None,  # no date at all
        "dan": "soon",  # not a date
        "eve": "2024-05-01",  # a week before is long past: at once
        "fay": "2024-06-20T11:00:00+02:00",
    }
    customers = people(*dates, **{c: ({"renewal_at": d} if d else {}) for c, d in dates.items()})
    w = build(
        world,
        {"journeys/renewal.yaml": ANNIVERSARY, "journeys/strict.yaml": STRICT, "templates/hello.txt": "Hi"},
        t0,
        customers,
    )
    w.add_events(*(event(c, "signup", t0 - HOUR) for c in dates))
    w.run_until(t0 + 14 * DAY, timedelta(hours=3))
    # The date moves while ann waits: at the old wake-up the wait reads it again and waits on.
    with w.store.begin() as conn:
        upsert_customers(conn, [{"id": "ann", "renewal_at": "2024-06-20T09:00:00Z"}], to_us(w.clock.now()))
    w.run_until(t0 + 60 * DAY, timedelta(hours=3))
    renewal = {c: [(s, t) for s, t in sends if s in ("reminder", "ask")] for c, sends in w.sends().items()}
    assert renewal == {
        "ann": [("reminder", at("2024-06-13T09:00:00Z"))],
        "bob": [("reminder", at("2024-06-03T00:00:00Z"))],
        "cat": [("ask", t0)],
        "dan": [("ask", t0)],
        "eve": [("reminder", t0)],
        "fay": [("reminder", at("2024-06-13T09:00:00Z"))],
    }
    rows = w.rows(
        "SELECT c.id, i.status, i.exit_reason FROM journey_instances i JOIN customers c "
        "ON c.key = i.customer_key WHERE i.journey_id = 'strict' ORDER BY c.id"
    )
    assert [tuple(r) for r in rows if r[0] in ("cat", "dan")] == [
        ("cat", "exited", "no renewal_at to wait for"),
        ("dan", "exited", "no renewal_at to wait for"),
    ]


# ---------------------------------------------------------------------------------------------- wait_for

CARTS = """\
id: carts
version: 1
entry: {event: add_to_cart, key: cart_id}
holdout: 0
steps:
  - id: bought
    wait_for:
      event: purchase
      match: {cart_id: entry.cart_id}
      timeout: 4h
      then: exit
  - id: reminder
    send:
      channel: email
      subject: "Your {{ entry.category }} are waiting"
      template: cart.txt
reentry: never
"""


def test_wait_for_a_matching_event_with_a_timeout(world: World) -> None:
    t0 = at("2024-05-06T09:00:00Z")
    names = ("alice", "bob", "carol", "dave", "erin", "frank")
    w = build(
        world,
        {
            "journeys/carts.yaml": CARTS,
            "templates/cart.txt": "Cart {{ entry.cart_id }}, {{ customer.first_name }}",
        },
        t0,
        people(*names),
    )
    m = timedelta(minutes=1)
    w.add_events(
        event("alice", "add_to_cart", t0 + 10 * m, cart_id="A1", category="shoes"),
        event("alice", "purchase", t0 + 60 * m, cart_id="A1", amount=50.0),
        event("bob", "add_to_cart", t0 + 10 * m, cart_id="B1", category="hats"),
        event("bob", "purchase", t0 + 60 * m, cart_id="B2", amount=20.0),  # another cart
        event("carol", "add_to_cart", t0 + 10 * m, cart_id="C1", category="bags"),
        event("carol", "add_to_cart", t0 + 20 * m, cart_id="C1", category="bags"),  # the same cart again
        event("carol", "add_to_cart", t0 + 40 * m, cart_id="C2", category="belts"),
        event("dave", "add_to_cart", t0 + 10 * m, cart_id=7, category="socks"),  # a number as the key
        event("dave", "purchase", t0 + 300 * m, cart_id="7", amount=5.0),  # after the timeout
        event("erin", "add_to_cart", t0 + 10 * m, category="ties"),  # no cart id: no instance
        event("frank", "purchase", t0 + 5 * m, cart_id="F1", amount=9.0),  # before the cart was filled
        event("frank", "add_to_cart", t0 + 10 * m, cart_id="F1", category="caps"),
    )
    w.run_until(t0 + 8 * HOUR, timedelta(minutes=30))
    instances = {(i.customer, i.key): (i.status, i.reason) for i in w.instances()}
    assert instances == {
        ("alice", "A1"): ("exited", "wait_for bought: yes"),
        ("bob", "B1"): ("completed", "completed"),
        ("carol", "C1"): ("completed", "completed"),
        ("carol", "C2"): ("completed", "completed"),
        ("dave", "7"): ("completed", "completed"),
        ("frank", "F1"): ("completed", "completed"),
    }
    # Entered at the cart's own time: the four hours count from it, and the first tick after sends.
    assert w.sends() == {
        "bob": [("reminder", t0 + 4 * HOUR + 30 * m)],
        "carol": [("reminder", t0 + 4 * HOUR + 30 * m), ("reminder", t0 + 5 * HOUR)],
        "dave": [("reminder", t0 + 4 * HOUR + 30 * m)],
        "frank": [("reminder", t0 + 4 * HOUR + 30 * m)],
    }
    carol = sorted((m.subject, m.body) for m in w.sent("carol"))
    assert carol == [
        ("Your bags are waiting", "Cart C1, Carol"),
        ("Your belts are waiting", "Cart C2, Carol"),
    ]


ENTRIES = """\
id: entries
version: 1
entry: {event: add_to_cart, key: cart_id, within: 2h}
holdout: 0
steps:
  - wait: 1h
  - id: ping
    send: {channel: sms, template: ping.txt}
reentry: after_exit
"""


def test_event_entry_is_durable_pending_and_fresh_only(world: World) -> None:
    t0 = at("2024-05-06T09:00:00Z")
    w = build(
        world,
        {"journeys/entries.yaml": ENTRIES, "templates/ping.txt": "{{ entry.cart_id }}"},
        t0,
        people("ann", "bob", "cy"),
    )
    w.add_events(
        event("ann", "add_to_cart", t0 + 3 * HOUR, cart_id="A"),  # stamped ahead: waits for its time
        event("bob", "add_to_cart", t0 - 5 * HOUR, cart_id="B"),  # too old when it arrives
        event("cy", "add_to_cart", t0 - 10 * timedelta(minutes=1), cart_id="C"),
    )
    w.run_until(t0 + 2 * HOUR)
    assert [(i.customer, i.key) for i in w.instances()] == [("cy", "C")]
    w.restart()  # a new process: the cursor is in the store, nothing enters twice
    w.run_until(t0 + 5 * HOUR)
    assert [(i.customer, i.key, i.entered) for i in w.instances()] == [
        ("cy", "C", t0 - 10 * timedelta(minutes=1)),
        ("ann", "A", t0 + 3 * HOUR),
    ]
    # The same cart again after the first instance finished: after_exit lets it in again.
    w.add_events(event("cy", "add_to_cart", t0 + 5 * HOUR + timedelta(minutes=1), cart_id="C"))
    w.run_until(t0 + 8 * HOUR)
    assert [m.body for m in w.sent("cy")] == ["C", "C"]
    assert [m.body for m in w.sent("ann")] == ["A"]
    assert w.sent("bob") == []


# ---------------------------------------------------------------------------------------------- branches

BRANCHES = """\
id: branches
version: 1
metrics:
  spend: sum(purchase.amount, within=30d)
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: vip
    branch: {if: tier == "gold", then: gold}
  - id: big_spender
    branch: {if: spend >= 100, then: spender}
  - id: french
    branch: {if: 'country in ["FR", "BE"]', then: francophone}
  - wait: 2h
  - id: browsed
    branch: {event: product_view, match: {category: shoes}, then: browser}
  - id: other
    send: {channel: sms, template: t.txt}
  - exit: nothing special
  - id: gold
    send: {channel: sms, template: t.txt}
  - exit
  - id: spender
    send: {channel: sms, template: t.txt}
  - exit
  - id: francophone
    send: {channel: sms, template: t.txt}
  - exit
  - id: browser
    send: {channel: sms, template: t.txt}
"""


def test_branches_on_attribute_metric_segment_and_event(world: World) -> None:
    t0 = at("2024-05-06T09:00:00Z")
    extra = {
        "gil": {"tier": "gold", "country": "FR"},
        "sam": {"country": "FR"},
        "fra": {"country": "BE"},
        "bea": {"country": "GB"},
        "old": {"country": "GB"},
        "oth": {"country": "GB"},
    }
    w = build(world, {"journeys/b.yaml": BRANCHES, "templates/t.txt": "x"}, t0, people(*extra, **extra))
    w.add_events(
        *(event(c, "signup", t0 - HOUR) for c in extra),
        event("sam", "purchase", t0 - DAY, amount=150.0),
        event("bea", "product_view", t0 + HOUR, category="shoes"),  # after entry
        event("old", "product_view", t0 - HOUR, category="shoes"),  # before entry: does not count
        event("oth", "product_view", t0 + HOUR, category="hats"),  # another category
    )
    w.run_until(t0 + 3 * HOUR)
    got = {c: [s for s, _ in sends] for c, sends in w.sends().items()}
    assert got == {
        "gil": ["gold"],
        "sam": ["spender"],
        "fra": ["francophone"],
        "bea": ["browser"],
        "old": ["other"],
        "oth": ["other"],
    }
    reasons = {i.customer: i.reason for i in w.instances()}
    assert reasons["old"] == "nothing special" and reasons["bea"] == "completed"


SPLIT = """\
id: splitter
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: coin
    split: {a: 30, b: 70}
  - id: a
    send: {channel: sms, template: t.txt}
  - exit
  - id: b
    send: {channel: sms, template: t.txt}
"""


def test_random_split_is_deterministic_per_customer_and_entry(
    tmp_path: Path, make_store_url: Callable[[str], str]
) -> None:
    t0 = at("2024-05-06T09:00:00Z")
    ids = [f"c{i:03d}" for i in range(200)]
    arms = []
    for run in ("one", "two"):
        folder = tmp_path / run
        folder.mkdir()
        w = build(
            World(folder, store=make_store_url(run)),
            {"journeys/s.yaml": SPLIT, "templates/t.txt": "x"},
            t0,
            people(*ids),
        )
        w.add_events(*(event(c, "signup", t0 - HOUR) for c in ids))
        w.run_until(t0)
        arms.append({c: sends[0][0] for c, sends in w.sends().items()})
        w.close()
    assert arms[0] == arms[1]
    values = np.array([f"{c}:{int(t0.timestamp()) * 1_000_000}" for c in ids])
    expected = np.where(buckets("splitter:split:coin", values) < 0.3, "a", "b")
    assert arms[0] == dict(zip(ids, expected.tolist(), strict=True))
    assert 40 <= list(arms[0].values()).count("a") <= 80


# ---------------------------------------------------------------------------------------------- exits

EXITS = """\
id: exits
version: 1
priority: 5
signal: count(signup, within=1d) > 0
exit_when: count(activated) > 0
holdout: 0
steps:
  - wait: 1d
  - id: first
    send: {channel: sms, template: t.txt}
  - wait: 1d
  - id: second
    send: {channel: sms, template: t.txt}
goal: {event: purchase, within: 5d}
"""


def test_exit_criteria_goal_exit_and_completion(world: World) -> None:
    t0 = at("2024-05-06T09:00:00Z")
    names = ("act", "buy", "all", "pre")
    w = build(world, {"journeys/e.yaml": EXITS, "templates/t.txt": "x"}, t0, people(*names))
    assert w.engine.workspace.plan("exits").priority == 5
    w.add_events(
        *(event(c, "signup", t0 - HOUR) for c in ("act", "buy", "all")),
        event("pre", "activated", t0 - 2 * HOUR),  # already active: exit_when holds, so no entry
        event("pre", "signup", t0 - HOUR),
        event("act", "activated", t0 + 12 * HOUR),
        event("buy", "purchase", t0 + 30 * HOUR),
    )
    w.run_until(t0 + 3 * DAY)
    got = {c: [s for s, _ in sends] for c, sends in w.sends().items()}
    assert got == {"buy": ["first"], "all": ["first", "second"]}
    finished = {i.customer: (i.status, i.reason) for i in w.instances()}
    assert finished == {
        "act": ("exited", "exit_when"),
        "buy": ("converted", "goal: purchase"),
        "all": ("completed", "completed"),
    }


MONTHLY = """\
id: monthly
version: 1
entry: {segment: status == "lapsed"}
exit_when: status != "lapsed"
holdout: 0
steps:
  - id: reactivate
    send: {channel: email, subject: "We miss you", template: t.txt}
  - wait: 30d
  - branch: {if: status == "lapsed", then: reactivate, else: exit}
reentry: after_exit
"""


def test_segment_entry_and_a_monthly_loop_without_bursts(world: World) -> None:
    t0 = at("2024-01-01T00:00:00Z")
    customers = people(
        "ann", "bob", "cy", ann={"status": "lapsed"}, bob={"status": "active"}, cy={"status": "lapsed"}
    )
    w = build(world, {"journeys/m.yaml": MONTHLY, "templates/t.txt": "x"}, t0, customers)
    w.run_until(t0 + 40 * DAY, DAY)
    with w.store.begin() as conn:  # bob lapses: joining the segment enters him
        upsert_customers(conn, [{"id": "bob", "status": "lapsed"}], to_us(w.clock.now()))
    w.run_until(t0 + 95 * DAY, DAY)
    assert [t for _, t in w.sends()["ann"]] == [t0, t0 + 30 * DAY, t0 + 60 * DAY, t0 + 90 * DAY]
    assert [t for _, t in w.sends()["bob"]] == [t0 + 41 * DAY, t0 + 71 * DAY]
    keys = [m.idempotency_key for m in w.sent("ann")]
    assert len(set(keys)) == 4
    with w.store.begin() as conn:  # ann comes back: the exit criteria take her out
        upsert_customers(conn, [{"id": "ann", "status": "active"}], to_us(w.clock.now()))
    # The engine stops for months: one email when it comes back, not a burst of the ones missed.
    w.clock.set(t0 + 200 * DAY)
    w.tick()
    assert [t for _, t in w.sends()["cy"]][-2:] == [t0 + 90 * DAY, t0 + 200 * DAY]
    assert {i.customer: i.reason for i in w.instances() if i.status != "active"} == {"ann": "exit_when"}
