"""``orchestrator why`` explains a customer's journeys from the store (entries, arm, messages with their
reasons, delays, suppressions, conversions); ``preview`` renders exactly what a step would send without
sending it; ``validate --db`` lists template reads of attributes no customer has."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.store import sqlite_url
from orchestrator.testing import SimClock, World, at, customer, event, write_files

SHOP = """\
id: shop
version: 1
signal: count(add_to_cart, within=1d) > 0
holdout: 0
metrics:
  carts: count(add_to_cart, within=30d)
goal: {event: purchase, within: 7d, revenue: amount}
steps:
  - id: mail
    send:
      channel: email
      subject: "{{ customer.first_name }}, {{ metrics.carts }} cart(s)"
      template: mail.txt
  - id: text
    send: {channel: sms, template: text.txt}
  - wait: 2d
"""
FILES = {
    "journeys/shop.yaml": SHOP,
    "templates/mail.txt": "Hi {{ customer.first_name }}, your cart is waiting.",
    "templates/text.txt": "Cart waiting, {{ customer.first_name }}!",
    "policy.yaml": 'quiet_hours:\n  sms: {from: "21:00", to: "09:00", action: hold}\n',
}


@pytest.fixture
def shop(tmp_path: Path) -> World:
    write_files(tmp_path, FILES)
    t0 = at("2024-05-06T22:00:00Z")  # 23:00 in London: the SMS waits for 09:00
    people = [
        customer("ann", first_name="Ann", timezone="Europe/London"),
    ]
    w = World(tmp_path, clock=SimClock(t0))
    w.add_customers(*people)
    w.add_events(event("ann", "add_to_cart", t0 - timedelta(minutes=5)))
    w.tick()
    return w


def test_why_explains_entries_messages_delays_and_conversions(
    shop: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = sqlite_url(tmp_path / "world.db")
    assert main(["why", "ann", "--db", db, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (entry,) = report["entries"]
    assert (entry["journey"], entry["arm"], entry["status"]) == ("shop", "treatment", "active")
    mail, text = entry["messages"]
    assert (mail["step"], mail["status"], mail["sent"]) == ("mail", "sent", "2024-05-06T22:00:00Z")
    assert text["status"] == "queued" and text["next_attempt"] == "2024-05-07T08:00:00Z"
    assert text["reason"].startswith("quiet hours for sms (21:00-09:00 local time): held until")

    shop.clock.set(at("2024-05-07T11:00:00Z"))
    shop.add_events(event("ann", "purchase", at("2024-05-07T11:00:00Z"), amount=40.0))
    shop.clock.set(at("2024-05-06T23:00:00Z"))
    shop.run_until(at("2024-05-07T12:00:00Z"))
    assert main(["why", "ann", "--journey", "shop", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "text (sms) sent, sent 2024-05-07T08:00:00Z: quiet hours for sms" in out
    assert "    entered because the signal held: count(add_to_cart, within=1d) > 0\n" in out
    assert "converted 2024-05-07T11:00:00Z: shop v1, arm treatment (purchase), revenue 40.00" in out
    assert "converted 2024-05-07T12:00:00Z: reached the goal: purchase of 40.00 on 2024-05-07" in out
    assert main(["why", "nobody", "--db", db]) == 1


def test_preview_renders_what_would_be_sent_without_sending(
    shop: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = sqlite_url(tmp_path / "world.db")
    journeys = str(tmp_path / "journeys")
    sent_before = shop.rows("SELECT COUNT(*) FROM messages")
    args = ["preview", "shop", "mail", "--customer", "ann", "--journeys", journeys, "--db", db]
    assert main([*args, "--now", "2024-05-06T22:30:00Z", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["subject"] == "Ann, 1 cart(s)" and row["body"] == "Hi Ann, your cart is waiting."
    assert row["recipient"] == "ann@example.com" and row["status"] == "queued"
    assert main(["preview", "shop", "text", "--customer", "ann", "--journeys", journeys, "--db", db]) == 0
    assert "Cart waiting, Ann!" in capsys.readouterr().out
    assert shop.rows("SELECT COUNT(*) FROM messages") == sent_before  # nothing queued, nothing sent
    assert main(["preview", "shop", "nope", "--customer", "ann", "--journeys", journeys, "--db", db]) == 2


def test_validate_lists_customer_attributes_no_customer_has(
    shop: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "templates" / "text.txt").write_text(
        "Hi {{ customer.first_name }}, {{ customer.loyalty_tier }}"
    )
    db = sqlite_url(tmp_path / "world.db")
    # The store has seen add_to_cart only: the goal's purchase, yet to come, is declared in a tracking plan.
    assert main(["validate", str(tmp_path / "journeys"), "--db", db]) == 1
    assert "shop.yaml:7:15: unknown event 'purchase': not in the store (a name" in capsys.readouterr().err
    (tmp_path / "journeys" / "events.yaml").write_text(
        "events:\n  add_to_cart:\n  purchase: {properties: [amount]}\n"
    )
    assert main(["validate", str(tmp_path / "journeys"), "--db", db]) == 0
    out = capsys.readouterr().out
    assert (
        f"{tmp_path / 'templates' / 'text.txt'}:1: customer.loyalty_tier: no customer in the store has it"
        in out
    )
    assert "first_name" not in out
