"""``engine._explain``: what happened to one customer, as typed data read from the store (entries with their
arm, messages with reasons and retries, conversions, suppressed addresses), without the command line."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest

from orchestrator.clock import to_us
from orchestrator.engine._explain import (
    ConversionStory,
    EntryStory,
    Explanation,
    MessageStory,
    SuppressionStory,
    UnknownCustomer,
    explain,
)
from orchestrator.store import address_suppressions, customer_contact, suppress_addresses
from orchestrator.testing import World, at, customer, event

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

SHOP = """\
id: shop
version: 1
signal: count(add_to_cart, within=1d) > 0
holdout: 0
goal: {event: purchase, within: 7d, revenue: amount}
steps:
  - id: mail
    send: {channel: email, subject: "Your cart", template: mail.txt}
  - id: text
    send: {channel: sms, template: text.txt}
  - wait: 2d
"""
FILES = {
    "journeys/shop.yaml": SHOP,
    "templates/mail.txt": "Hi {{ customer.first_name }}, your cart is waiting.",
    "templates/text.txt": "Cart waiting!",
    "policy.yaml": 'quiet_hours:\n  sms: {from: "21:00", to: "09:00", action: hold}\n',
}
START = at("2024-05-06T22:00:00Z")  # 23:00 in London: the SMS waits for 09:00


@pytest.fixture
def shop(world: World) -> World:
    """The plugin's world at ``START``: ann entered the shop journey at its first tick."""
    world.clock.set(START)
    world.write_files(FILES)
    world.add_customers(
        customer(
            "ann", first_name="Ann", phone="+447700900123", timezone="Europe/London", consent_push=False
        ),
        {"id": "bob", "email": "bob@example.com"},  # no consent on record, never entered
    )
    world.add_events(event("ann", "add_to_cart", START - timedelta(minutes=5)))
    world.tick()
    return world


def test_explain_tells_entries_arm_messages_and_held_sends(shop: World) -> None:
    report = explain(shop.store, "ann")
    assert isinstance(report, Explanation)
    assert report.customer == "ann"
    assert report.consent == {"email": True, "sms": True, "push": False}
    (entry,) = report.entries
    assert isinstance(entry, EntryStory)
    # Both sends are in the ledger (the SMS held for the quiet hours): the instance waits at the wait step.
    assert (entry.journey, entry.version, entry.status, entry.step) == ("shop", 1, "active", "step-3")
    assert entry.entered == entry.at_step_since == "2024-05-06T22:00:00Z"
    assert entry.next_look == "2024-05-08T22:00:00Z"
    assert entry.arm == "treatment" and entry.arm_reason is not None and "treatment" in entry.arm_reason
    assert entry.finished is None and entry.conversion is None
    mail, text = entry.messages
    assert mail == MessageStory(
        step="mail",
        channel="email",
        status="sent",
        reason=None,
        attempts=mail.attempts,
        queued="2024-05-06T22:00:00Z",
        sent="2024-05-06T22:00:00Z",
        next_attempt=None,
        recipient="ann@example.com",
        transactional=False,
    )
    assert (text.status, text.sent, text.next_attempt) == ("queued", None, "2024-05-07T08:00:00Z")
    assert text.reason is not None and text.reason.startswith("quiet hours for sms")
    assert report.suppressions == []


def test_explain_tells_conversions_and_finished_entries(shop: World) -> None:
    shop.clock.set(at("2024-05-07T11:00:00Z"))
    shop.add_events(event("ann", "purchase", at("2024-05-07T11:00:00Z"), amount=40.0))
    shop.clock.set(at("2024-05-06T23:00:00Z"))
    shop.run_until(at("2024-05-07T12:00:00Z"))
    (entry,) = explain(shop.store, "ann", "shop").entries
    assert entry.conversion == ConversionStory(at="2024-05-07T11:00:00Z", revenue=40.0, event="purchase")
    assert (entry.status, entry.step, entry.at_step_since, entry.next_look) == ("converted", None, None, None)
    assert entry.finished == "2024-05-07T12:00:00Z" and entry.finish_reason == "goal: purchase"
    assert [m.status for m in entry.messages] == ["sent", "sent"]


def test_explain_lists_the_suppressed_addresses_of_the_customer(shop: World) -> None:
    with shop.store.begin() as conn:
        suppress_addresses(
            conn,
            [
                {
                    "channel": channel,
                    "address": address,
                    "reason": reason,
                    "code": None,
                    "message_id": None,
                    "created_us": to_us(START),
                }
                for channel, address, reason in (
                    ("sms", "+447700900123", "STOP"),
                    ("email", "ann@example.com", "bounced"),
                    ("email", "someone@example.com", "complaint"),
                )
            ],
        )
    report = explain(shop.store, "ann")
    # In the order of the customer's channels (email, SMS, push), and only the customer's addresses.
    assert report.suppressions == [
        SuppressionStory("email", "ann@example.com", "bounced", "2024-05-06T22:00:00Z"),
        SuppressionStory("sms", "+447700900123", "STOP", "2024-05-06T22:00:00Z"),
    ]
    with shop.store.connect() as conn:
        contact = customer_contact(conn, "ann")
        assert contact is not None and contact.phone == "+447700900123" and contact.push_token is None
        assert [s.reason for s in address_suppressions(conn, [("email", "x@example.com")])] == []


def test_explain_filters_by_journey_and_refuses_an_unknown_customer(shop: World) -> None:
    assert explain(shop.store, "ann", "other").entries == []
    never = explain(shop.store, "bob")
    assert never.entries == [] and never.consent == {"email": None, "sms": None, "push": None}
    with pytest.raises(UnknownCustomer, match="no customer 'nobody' in the store"):
        explain(shop.store, "nobody")


def test_explanation_as_plain_data_keeps_the_json_field_order(shop: World) -> None:
    data = explain(shop.store, "ann").to_dict()
    assert list(data) == ["customer", "consent", "entries", "suppressions", "conversions"]
    (entry,) = data["entries"]
    assert list(entry) == [f.name for f in fields(EntryStory)]
    assert list(entry)[:4] == ["journey", "version", "entered", "arm"]
    assert list(entry["messages"][0]) == [f.name for f in fields(MessageStory)]
    assert entry["messages"][1]["next_attempt"] == "2024-05-07T08:00:00Z"
