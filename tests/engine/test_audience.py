"""``engine.audience``: who a journey would reach now, checked against a direct count over a world with
customers in every situation (matching or not, leaving by exit_when, matched at the last tick, inside
already, held out by the published hash, no consent, no address, on the suppression list, excluded,
dropped by quiet hours, capped), on both store backends; the breakdown by an attribute sums to the totals.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.clock import to_us
from orchestrator.engine import UnknownJourney, audience, load_workspace
from orchestrator.holdout import assign_arms
from orchestrator.store import suppress_addresses
from orchestrator.testing import World, at, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

PROMO = """\
id: promo
version: 1
metrics:
  carts: count(add_to_cart, within=7d)
signal: carts >= 1
exit_when: blocked == true
holdout: 20
reentry: after_exit
steps:
  - id: offer
    send: {channel: email, subject: "Hi", template: mail.txt}
  - wait: 30d
"""
WELCOME = """\
id: welcome
version: 1
signal: count(signup, within=30d) >= 1
holdout: 0
steps:
  - id: hello
    send: {channel: email, subject: "Welcome", template: mail.txt}
"""
POLICY = """\
caps:
  email: {per_week: 1}
quiet_hours:
  email: {from: "22:00", to: "07:00", action: drop}
exclusions:
  - name: minors
    when: age < 18
"""
FILES = {
    "journeys/promo.yaml": PROMO,
    "journeys/welcome.yaml": WELCOME,
    "journeys/policy.yaml": POLICY,
    "templates/mail.txt": "Hello",
}
# A Wednesday noon (UTC): midnight in Auckland (quiet hours), the same local week as the day before.
NOW = at("2024-05-08T12:00:00Z")
#: Customers whose first message would go, unless held out.
PLAIN = [f"p{i:02d}" for i in range(40)]
#: One customer per situation, and what stops them (held-out ones aside).
SPECIAL = {
    "no_consent": "no_consent",
    "no_record": "no_consent",  # no consent on record: the policy's default opt-in
    "no_email": "no_address",
    "suppressed": "no_address",
    "minor": "stopped_by_policy",
    "night": "stopped_by_policy",  # Auckland: inside the quiet hours, dropped
    "capped": "stopped_by_policy",  # welcomed by email yesterday: the weekly email cap is reached
}


@pytest.fixture
def shop(world: World) -> World:
    """Customers in every situation, ticked up to just before ``NOW``."""
    world.write_files(FILES)
    tiers = ["gold", "silver", None]
    world.clock.set(NOW - timedelta(days=10))
    world.add_customers(
        *[customer(c, tier=tiers[i % 3]) for i, c in enumerate(PLAIN)],
        customer("no_consent", consent_email=False, tier="gold"),
        customer("no_record", consent_email=None),
        customer("no_email", email=None),
        customer("suppressed"),
        customer("minor", age=15),
        customer("night", timezone="Pacific/Auckland"),
        customer("capped"),
        customer("blocked", blocked=True),
        customer("idle"),  # never carts
        customer("last_tick"),  # carted before the last tick: entered then, edge already passed
        customer("inside"),  # entered ten days ago, stopped matching, matches again while inside
    )
    world.add_events(event("inside", "add_to_cart", NOW - timedelta(days=10, minutes=5)))
    world.tick()  # inside enters
    world.clock.set(NOW - timedelta(days=2))
    world.tick()  # inside's cart is older than 7 days: the signal no longer holds for them
    world.clock.set(NOW - timedelta(days=1))
    world.add_events(event("capped", "signup", NOW - timedelta(days=1, minutes=5)))
    world.tick()  # capped is welcomed by email (sent now: marketing, this local week)
    world.clock.set(NOW - timedelta(hours=1))
    world.add_events(event("last_tick", "add_to_cart", NOW - timedelta(hours=2)))
    world.tick()  # last_tick enters
    cart = NOW - timedelta(minutes=30)
    carts = [*PLAIN, *SPECIAL, "blocked", "last_tick", "inside"]
    world.add_events(*[event(c, "add_to_cart", cart) for c in carts])
    with world.store.begin() as conn:
        suppress_addresses(
            conn,
            [
                {
                    "channel": "email",
                    "address": "suppressed@example.com",
                    "reason": "bounced",
                    "code": None,
                    "message_id": None,
                    "created_us": to_us(NOW),
                }
            ],
        )
    world.clock.set(NOW)
    return world


def _workspace(world: World):  # type: ignore[no-untyped-def]
    return load_workspace([world.folder / "journeys"])


def test_audience_counts_equal_a_direct_count_of_every_situation(shop: World) -> None:
    report = audience(shop.store, _workspace(shop), "promo", to_us(NOW))
    entering = [*PLAIN, *SPECIAL]
    # The holdout by the published hash, computed here directly.
    held = dict(zip(entering, assign_arms("promo", entering, 20.0).held_out.tolist(), strict=True))
    treated = [c for c in entering if not held[c]]
    assert 0 < sum(held.values()) < len(entering)
    assert report.customers == len(PLAIN) + len(SPECIAL) + 4
    assert report.match_now == len(entering) + 3  # blocked, last_tick and inside match too
    assert report.not_entering == {
        "exit_when_holds": 1,
        "matched_at_last_tick": 1,
        "inside_already": 1,
        "reentry_not_allowed": 0,
    }
    assert report.would_enter == len(entering)
    assert report.held_out == sum(held.values()) and report.treated == len(treated)
    stops = {kind: [c for c in treated if SPECIAL.get(c) == kind] for kind in set(SPECIAL.values())}
    assert report.no_consent == len(stops["no_consent"])
    assert report.no_address == len(stops["no_address"])
    assert report.suppressed_address == int("suppressed" in treated)
    assert report.stopped_by_policy == len(stops["stopped_by_policy"])
    assert report.would_be_messaged == len([c for c in treated if c not in SPECIAL])
    assert report.policy == {
        "excluded": int("minor" in treated),
        "quiet_hours": int("night" in treated),
        "capped": int("capped" in treated),
    }
    rules = {r.rule: r.customers for r in report.policy_rules}
    if "capped" in treated:
        assert rules["capped: 1 marketing message(s) per local week on email"] == 1
    if "minor" in treated:
        assert rules["excluded by policy: minors"] == 1
    (first,) = report.first_sends
    assert (first.step, first.channel, first.customers) == ("offer", "email", len(treated))
    assert first.would_be_messaged == report.would_be_messaged


def test_the_next_tick_lets_in_exactly_who_audience_said(shop: World) -> None:
    report = audience(shop.store, _workspace(shop), "promo", to_us(NOW))
    tick = shop.tick()
    assert tick.journeys["promo"].entered == report.would_enter
    assert tick.journeys["promo"].entered_holdout == report.held_out
    sent = {
        m.customer_id
        for m in shop.messages(status="sent")
        if m.journey_id == "promo" and m.created_us == to_us(NOW)
    }
    assert len(sent) == report.would_be_messaged


def test_the_breakdown_by_an_attribute_sums_to_the_totals(shop: World) -> None:
    report = audience(shop.store, _workspace(shop), "promo", to_us(NOW), by="tier")
    values = [g.value for g in report.breakdown]
    assert set(values) == {"gold", "silver", "(none)"}
    totals = report.to_dict()
    for name in report.breakdown[0].counts:
        assert sum(g.counts[name] for g in report.breakdown) == totals[name], name
    gold = next(g for g in report.breakdown if g.value == "gold")
    assert gold.counts["match_now"] == len([c for i, c in enumerate(PLAIN) if i % 3 == 0]) + 1
    top = audience(shop.store, _workspace(shop), "promo", to_us(NOW), by="tier", top=1)
    assert [g.value for g in top.breakdown][1:] == ["other"]
    assert sum(g.counts["would_enter"] for g in top.breakdown) == report.would_enter


def test_a_journey_that_never_ran_lets_in_everyone_who_matches(shop: World) -> None:
    shop.write_files({"journeys/promo2.yaml": PROMO.replace("id: promo", "id: promo2")})
    report = audience(shop.store, _workspace(shop), "promo2", to_us(NOW))
    assert report.match_now == len(PLAIN) + len(SPECIAL) + 3
    assert report.would_enter == report.match_now - 1  # only exit_when keeps one out
    assert report.not_entering["matched_at_last_tick"] == 0


def test_global_holdout_and_unknown_journey(shop: World) -> None:
    report = audience(shop.store, _workspace(shop), "promo", to_us(NOW), global_holdout_percent=100.0)
    assert report.held_out == report.held_out_global == report.would_enter and report.treated == 0
    with pytest.raises(UnknownJourney, match="no journey 'nope'"):
        audience(shop.store, _workspace(shop), "nope", to_us(NOW))


EVENTFUL = """\
id: reorder
version: 1
entry: {event: purchase, within: 6h}
holdout: 0
steps:
  - send: {channel: sms, template: mail.txt}
"""


def test_event_entry_counts_the_entry_events_of_the_window(world: World) -> None:
    world.write_files({"journeys/reorder.yaml": EVENTFUL, "templates/mail.txt": "Thanks"})
    world.clock.set(NOW)
    world.add_customers(*[customer(c) for c in ("a", "b", "c")], customer("d", phone=None))
    world.add_events(
        event("a", "purchase", NOW - timedelta(hours=1)),
        event("a", "purchase", NOW - timedelta(hours=2)),  # one entry each
        event("b", "purchase", NOW - timedelta(hours=7)),  # before the window
        event("d", "purchase", NOW - timedelta(hours=3)),
    )
    report = audience(world.store, _workspace(world), "reorder", to_us(NOW))
    assert (report.entry, report.window) == ("event", "6h")
    assert (report.match_now, report.would_enter, report.no_address, report.would_be_messaged) == (2, 2, 1, 1)
