"""The seven journeys of ``examples/journeys`` on a simulated clock: customers walk through every branch and
the outbox shows who got which message when. Held-out customers get nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.channels._outbox import OutboxAdapter
from orchestrator.clock import to_us
from orchestrator.engine._workspace import validate_paths
from orchestrator.holdout import bucket, journey_seed
from orchestrator.testing import SimClock, World, at, customer, event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "journeys"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def held_out_id(journey_id: str, percent: float = 10) -> str:
    """A customer id that the journey's holdout keeps out (from the published hash)."""
    return next(
        c for c in (f"h{i}" for i in range(1000)) if bucket(journey_seed(journey_id), c) < percent / 100
    )


def treated(journey_id: str, *ids: str) -> tuple[str, ...]:
    for cid in ids:
        assert bucket(journey_seed(journey_id), cid) >= 0.10, f"pick another id than {cid}: it is held out"
    return ids


def person(cid: str, **attrs: Any) -> dict[str, Any]:
    return customer(cid, **({"first_name": cid.title(), "push_token": f"tok-{cid}"} | attrs))


def example_world(tmp_path: Path, file: str, start: datetime, customers: list[dict[str, Any]]) -> World:
    made = World(
        tmp_path, clock=SimClock(start), journeys=EXAMPLES / file, adapter=OutboxAdapter(tmp_path / "outbox")
    )
    made.add_customers(*customers)
    return made


def steps(w: World) -> dict[str, list[tuple[str, datetime]]]:
    return w.sends()


def outbox_files(w: World, channel: str) -> list[Path]:
    return sorted((w.folder / "outbox" / channel).glob("*"))


def test_examples_validate() -> None:
    files, problems = validate_paths([EXAMPLES])
    assert len(files) == 11 and problems == []


# ---------------------------------------------------------------------------------------------- 1


def test_high_value_winback(tmp_path: Path) -> None:
    jid = "high_value_winback"
    t0 = at("2024-05-06T06:00:00Z")  # a Monday, 06:00 UTC
    came_back, pushed_back, silent, new_york, small = treated(jid, "ann", "bob", "cyd", "nyc", "sml")
    held = held_out_id(jid)
    everyone = [came_back, pushed_back, silent, new_york, small, held]
    w = example_world(
        tmp_path,
        "high_value_winback.yaml",
        t0,
        [person(c, timezone="America/New_York" if c == new_york else "Europe/London") for c in everyone],
    )
    history = []
    for cid in everyone:
        history.append(event(cid, "purchase", t0 - 100 * DAY, amount=300.0 if cid == small else 600.0))
        # Ten sessions in the four weeks before the last two, two in the last two weeks: a 60% drop.
        history += [event(cid, "session_start", t0 - (20 + 2 * i) * DAY) for i in range(10)]
        history += [event(cid, "session_start", t0 - (5 + i) * DAY) for i in range(2)]
    w.add_events(
        *history,
        event(came_back, "session_start", at("2024-05-07T12:00:00Z")),  # within 3 days of the email
        event(pushed_back, "session_start", at("2024-05-11T12:00:00Z")),  # after the push
        event(silent, "purchase", at("2024-05-14T12:00:00Z"), amount=75.0),
    )
    w.run_until(t0 + 10 * DAY)
    london = "2024-05-{:02d}T09:00:00Z"  # 10:00 BST
    ny = "2024-05-{:02d}T14:00:00Z"  # 10:00 EDT
    assert steps(w) == {
        came_back: [("offer", at(london.format(6)))],
        pushed_back: [("offer", at(london.format(6))), ("push", at(london.format(9)))],
        silent: [
            ("offer", at(london.format(6))),
            ("push", at(london.format(9))),
            ("sms", at(london.format(13))),
        ],
        new_york: [("offer", at(ny.format(6))), ("push", at(ny.format(9))), ("sms", at(ny.format(13)))],
    }
    status = {i.customer: (i.status, i.reason) for i in w.instances()}
    assert status[came_back] == ("exited", "wait_for visited_after_email: yes")
    assert status[pushed_back] == ("exited", "wait_for visited_after_push: yes")
    assert status[silent] == ("completed", "completed")  # bought the day after the SMS: still a conversion
    assert small not in status and status[held][0] == "completed"
    assert w.rows("SELECT revenue FROM conversions") == [(75.0,)]
    assert len(outbox_files(w, "email")) == 4 and len(outbox_files(w, "sms")) == 2
    offer = w.sent(silent, "offer")[0]
    assert offer.subject == "Cyd, a personal thank-you: 20% off this week"


# ---------------------------------------------------------------------------------------------- 2


def test_cart_abandonment_by_cart(tmp_path: Path) -> None:
    jid = "cart_abandonment_by_cart"
    t0 = at("2024-05-06T09:00:00Z")
    paid, other, shipping, payment, many = treated(jid, "pat", "oli", "sue", "quin", "max")
    held = held_out_id(jid)
    everyone = [paid, other, shipping, payment, many, held]
    w = example_world(tmp_path, "cart_abandonment.yaml", t0, [person(c) for c in everyone])
    m = timedelta(minutes=1)

    def cart(cid: str, cart_id: str, at_: datetime) -> dict[str, Any]:
        return event(cid, "add_to_cart", at_, cart_id=cart_id, category="boots")

    def step(cid: str, cart_id: str, name: str, at_: datetime) -> dict[str, Any]:
        return event(cid, "checkout_step", at_, cart_id=cart_id, step=name)

    w.add_events(
        cart(paid, "P1", t0 + 10 * m),
        event(paid, "purchase", t0 + 60 * m, cart_id="P1", amount=80.0),  # the same cart: leaves
        cart(other, "O1", t0 + 10 * m),
        event(other, "purchase", t0 + 60 * m, cart_id="O2", amount=20.0),  # another cart: stays
        cart(shipping, "S1", t0 + 10 * m),
        step(shipping, "S1", "contact", t0 + 15 * m),
        step(shipping, "S1", "shipping_selection", t0 + 20 * m),
        cart(payment, "Q1", t0 + 10 * m),
        step(payment, "Q1", "shipping_selection", t0 + 20 * m),
        step(payment, "Q1", "payment", t0 + 25 * m),
        cart(many, "M1", t0 + 10 * m),
        cart(many, "M2", t0 + 30 * m),
        cart(many, "M1", t0 + 2 * HOUR),  # the same cart again: still one reminder for it
        cart(held, "H1", t0 + 10 * m),
        event(other, "purchase", t0 + DAY, cart_id="O1", amount=30.0),  # buys the first cart later
    )
    w.run_until(t0 + 2 * DAY, timedelta(minutes=30))
    four_and_a_half = t0 + 4 * HOUR + 30 * m
    assert steps(w) == {
        other: [("reminder", four_and_a_half)],
        shipping: [("reminder_with_free_shipping", four_and_a_half)],
        payment: [("reminder", four_and_a_half)],
        many: [("reminder", four_and_a_half), ("reminder", four_and_a_half)],
    }
    carts = {(i.customer, i.key): i.status for i in w.instances()}
    assert carts == {
        (paid, "P1"): "converted",
        (other, "O1"): "exited",  # reminded, then bought that cart: a conversion all the same
        (shipping, "S1"): "completed",
        (payment, "Q1"): "exited",
        (many, "M1"): "exited",
        (many, "M2"): "exited",
        (held, "H1"): "exited",
    }
    conversions = sorted(w.rows("SELECT revenue FROM conversions"))
    assert conversions == [(30.0,), (80.0,)]
    free = w.sent(shipping)[0]
    assert free.subject == "Sue, shipping is on us" and "(S1)" in free.body
    assert sorted(m.body.split("(")[1][:2] for m in w.sent(many)) == ["M1", "M2"]
    assert len(outbox_files(w, "email")) == 5


# ---------------------------------------------------------------------------------------------- 3


def test_browse_intent(tmp_path: Path) -> None:
    jid = "browse_intent_push"
    t0 = at("2024-05-06T09:00:00Z")
    pusher, mailer, bought, other_buy, casual = treated(jid, "amy", "ben", "cal", "dot", "eli")
    held = held_out_id(jid)
    everyone = [pusher, mailer, bought, other_buy, casual, held]
    customers = [person(c) for c in everyone]
    customers[1]["push_token"] = None  # the mailer has no app
    w = example_world(tmp_path, "browse_intent.yaml", t0, customers)
    history = []
    for cid in everyone:
        views = 3 if cid == casual else 5
        history += [
            event(cid, "product_view", t0 - (i + 1) * DAY, category="trail boots") for i in range(views)
        ]
        history += [event(cid, "wishlist_add", t0 - (i + 1) * HOUR, category="trail boots") for i in range(2)]
    history.append(event(bought, "purchase", t0 - 10 * DAY, category="trail boots", amount=90.0))
    history.append(event(other_buy, "purchase", t0 - 10 * DAY, category="hats", amount=20.0))
    w.add_events(*history)
    w.run_until(t0)
    assert steps(w) == {pusher: [("push", t0)], mailer: [("email", t0)], other_buy: [("push", t0)]}
    push = json.loads(outbox_files(w, "push")[0].read_text())
    assert push["title"] == "Still thinking about trail boots?"
    assert push["link"] == "shop://category/trail%20boots"
    assert w.sent(mailer)[0].subject == "New in trail boots, picked for you"
    reasons = {i.customer: i.reason for i in w.instances()}
    # Bought in the category viewed most within 30 days: the signal does not hold, so no entry at all.
    assert bought not in reasons and casual not in reasons


# ---------------------------------------------------------------------------------------------- 4


def test_tier_at_risk_series_depends_on_where_they_dropped_off(tmp_path: Path) -> None:
    jid = "tier_at_risk"
    t0 = at("2024-05-06T09:00:00Z")
    returner, checkout, carter, quiet, revived, drifting = treated(
        jid, "rae", "chk", "kat", "qui", "rev", "dri"
    )
    held = held_out_id(jid)
    everyone = [returner, checkout, carter, quiet, revived, drifting, held]
    w = example_world(tmp_path, "tiers/at_risk.yaml", t0, [person(c) for c in everyone])
    history = []
    for cid in everyone:
        last = 20 if cid == drifting else 40  # drifting becomes at-risk ten days later
        history += [event(cid, "session_start", t0 - (last + i) * DAY) for i in range(3)]
        history.append(event(cid, "purchase", t0 - (last + 5) * DAY, amount=40.0))
    history += [
        event(returner, "return_requested", t0 - 50 * DAY),
        event(checkout, "add_to_cart", t0 - 44 * DAY),
        event(checkout, "checkout_step", t0 - 44 * DAY, step="shipping_selection"),
        event(revived, "checkout_step", t0 - 44 * DAY, step="shipping_selection"),
        event(carter, "add_to_cart", t0 - 44 * DAY),
        event(revived, "session_start", t0 + 2 * DAY),  # active again before the push
    ]
    w.add_events(*history)
    w.run_until(t0 + 14 * DAY, 6 * HOUR)
    assert steps(w) == {
        returner: [("return_help", t0)],
        checkout: [("shipping_help", t0), ("shipping_reminder", t0 + 4 * DAY)],
        carter: [("cart_help", t0)],
        quiet: [("catch_up", t0)],
        revived: [("shipping_help", t0)],
        drifting: [("catch_up", t0 + 10 * DAY + 6 * HOUR)],
    }
    status = {i.customer: (i.status, i.reason) for i in w.instances()}
    assert status[revived] == ("exited", "exit_when")
    assert status[held] == ("completed", "completed")  # walked to the end, sent nothing


def test_tier_highly_active_and_lapsed(tmp_path: Path) -> None:
    t0 = at("2024-05-06T00:00:00Z")
    keen, busy = treated("tier_highly_active", "kee", "bus")
    gone, back = treated("tier_lapsed", "gon", "bak")
    customers = [person(keen, timezone="Asia/Tokyo"), person(busy), person(gone), person(back)]
    files = [EXAMPLES / "tiers" / "highly_active.yaml", EXAMPLES / "tiers" / "lapsed.yaml"]
    w = World(tmp_path, clock=SimClock(t0), journeys=files, adapter=OutboxAdapter(tmp_path / "outbox"))
    w.add_customers(*customers)
    history = [event(keen, "session_start", t0 - (i + 1) * DAY) for i in range(10)]
    history += [event(busy, "session_start", t0 - (i + 1) * 2 * DAY) for i in range(5)]  # only regular
    history += [event(c, "purchase", t0 - 100 * DAY, amount=10.0) for c in (gone, back)]
    history.append(event(back, "session_start", t0 + 45 * DAY))  # comes back after a month and a half
    w.add_events(*history)
    w.run_until(t0 + 75 * DAY, 12 * HOUR)
    got = steps(w)
    assert got[keen] == [("early_access", at("2024-05-07T00:00:00Z"))]  # 09:00 in Tokyo
    assert busy not in got
    assert got[gone] == [
        ("reactivation", t0),
        ("reactivation", t0 + 30 * DAY),
        ("reactivation", t0 + 60 * DAY),
    ]
    assert got[back] == [("reactivation", t0), ("reactivation", t0 + 30 * DAY)]
    assert {i.customer: i.reason for i in w.instances() if i.customer == back} == {back: "exit_when"}


# ---------------------------------------------------------------------------------------------- 5


def test_nps_loop(tmp_path: Path) -> None:
    jid = "nps_loop"
    t0 = at("2024-05-06T00:00:00Z")
    critic, fan, neutral, silent, undated, veteran = treated(jid, "cri", "fan", "neu", "sil", "und", "vet")
    first = t0 - 80 * DAY
    customers = [
        person(c, first_purchase_at=first.isoformat()) for c in (critic, fan, neutral, silent, veteran)
    ]
    customers.append(person(undated))
    w = example_world(tmp_path, "nps_loop.yaml", t0, customers)
    history = [event(c, "purchase", first, amount=25.0) for c in (critic, fan, neutral, silent, undated)]
    history.append(event(veteran, "purchase", t0 - 200 * DAY, amount=25.0))
    survey_at = first + 90 * DAY
    history += [
        event(
            critic, "nps_response", survey_at + DAY + 10 * timedelta(minutes=1), score=3, comment="Too slow"
        ),
        event(fan, "nps_response", survey_at + 2 * DAY, score=10),
        event(neutral, "nps_response", survey_at + DAY, score=7),
    ]
    w.add_events(*history)
    w.run_until(t0 + 30 * DAY)
    responded = survey_at + DAY + HOUR  # the first tick after the response
    assert steps(w) == {
        critic: [("survey", survey_at), ("tell_customer_success", responded)],
        fan: [("survey", survey_at), ("referral", survey_at + 4 * DAY)],
        neutral: [("survey", survey_at)],
        silent: [("survey", survey_at)],
    }
    hook = json.loads(outbox_files(w, "webhook")[0].read_text())
    assert hook["endpoint"] == "customer-success"
    assert hook["body"] == {
        "customer_id": critic,
        "email": f"{critic}@example.com",
        "score": 3,
        "comment": "Too slow",
    }
    assert "Thank you for the 10!" in w.sent(fan, "referral")[0].body
    status = {i.customer: (i.status, i.reason) for i in w.instances()}
    assert status[critic] == ("exited", "handed to customer success")
    assert status[neutral] == ("exited", "branch promoter: no")
    assert status[silent] == ("exited", "wait_for response: no")
    assert status[undated] == ("exited", "no first_purchase_at to wait for")
    assert veteran not in status


# ---------------------------------------------------------------------------------------------- 6


def test_replenishment(tmp_path: Path) -> None:
    jid = "replenishment"
    t0 = at("2024-05-06T09:00:00Z")
    pusher, mailer, texter, recent = treated(jid, "pia", "mae", "tex", "rec")
    customers = [person(pusher), person(mailer, push_token=None), person(texter, email=None), person(recent)]
    w = example_world(tmp_path, "replenishment.yaml", t0, customers)
    history = []
    for cid in (pusher, mailer, texter):
        history += [
            event(cid, "refill_purchase", t0 - (100 + 85 * i) * DAY, product="coffee pods") for i in range(4)
        ]
    history += [
        event(recent, "refill_purchase", t0 - (30 + 85 * i) * DAY, product="filters") for i in range(4)
    ]
    # Descaler bought in between, on its own 85-day cycle: taken together the gaps would be 40-45 days.
    history += [
        event(recent, "refill_purchase", t0 - (70 + 85 * i) * DAY, product="descaler") for i in range(4)
    ]
    history += [event(pusher, "push_open", t0 - (i + 1) * DAY) for i in range(3)]
    history += [event(pusher, "email_open", t0 - 2 * DAY)]
    history.append(event(mailer, "refill_purchase", t0 + 3 * DAY, product="coffee pods", amount=18.0))
    w.add_events(*history)
    w.run_until(t0 + 70 * DAY, DAY)
    # Refills of each product every 85 days: the median gap is 85 days; "recent" last bought 30 days
    # before t0, so its interval passes 55 days later (not 10, as gaps across products would say).
    assert steps(w) == {
        pusher: [("push", t0)],
        mailer: [("email", t0)],
        texter: [("sms", t0)],
        recent: [("email", t0 + 55 * DAY)],  # no more push opens than email opens
    }
    assert w.sent(mailer)[0].subject == "Running low on coffee pods?"
    assert w.rows("SELECT revenue FROM conversions") == [(18.0,)]


# ---------------------------------------------------------------------------------------------- 7


@pytest.mark.parametrize("outbox", [True])
def test_onboarding_activation(tmp_path: Path, outbox: bool) -> None:
    jid = "onboarding_activation"
    t0 = at("2024-05-06T09:00:00Z")
    idle, quick, later, partial, stale = treated(jid, "ida", "qui", "lat", "par", "sta")
    w = example_world(
        tmp_path, "onboarding.yaml", t0, [person(c) for c in (idle, quick, later, partial, stale)]
    )
    core = ("create_project", "invite_teammate", "connect_integration")
    w.add_events(
        *(event(c, "signup", t0 - HOUR) for c in (idle, quick, later, partial)),
        *(event(quick, name, t0 + (i + 1) * HOUR) for i, name in enumerate(core)),
        *(event(later, name, t0 + 3 * DAY + i * HOUR) for i, name in enumerate(core)),
        *(event(partial, name, t0 + DAY) for name in core[:2]),
        event(stale, "signup", t0 - 3 * DAY),  # reaches the engine three days late: no entry
    )
    w.run_until(t0 + 8 * DAY)
    assert steps(w) == {
        idle: [("day_2_nudge", t0 + 2 * DAY - HOUR), ("day_5_email", t0 + 5 * DAY - HOUR)],
        later: [("day_2_nudge", t0 + 2 * DAY - HOUR)],
        partial: [("day_2_nudge", t0 + 2 * DAY - HOUR), ("day_5_email", t0 + 5 * DAY - HOUR)],
    }
    status = {i.customer: (i.status, i.reason) for i in w.instances()}
    # The goal is the condition itself: the first tick at which it holds converts (hourly ticks here).
    assert status[quick] == ("converted", "goal: core_actions_done >= 3")
    assert status[later] == ("converted", "goal: core_actions_done >= 3")
    converted = dict(w.rows("SELECT customer_key, converted_us FROM conversions"))
    assert sorted(converted.values()) == [to_us(t0 + 4 * HOUR), to_us(t0 + 3 * DAY + 3 * HOUR)]
    assert stale not in status
    assert len(outbox_files(w, "push")) == 3 and len(outbox_files(w, "email")) == 2
