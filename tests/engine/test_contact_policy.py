"""The contact policy on a simulated clock: caps across journeys (counted in each customer's local day),
journey priority, quiet hours in local time across a daylight-saving change (hold and drop), consent (a
missing record is opt-in unless declared otherwise) and unsubscribes, exclusions, and ``policy.yaml``
errors with file, line and column."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from orchestrator.clock import from_us, to_us
from orchestrator.engine._explain import explain
from orchestrator.language import SpecError
from orchestrator.language._policy_file import load_policy_text
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import World, at, customer

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def journey(jid: str, steps: str, *, priority: int = 0) -> str:
    return (
        f'id: {jid}\nversion: 1\npriority: {priority}\nsegment: tier == "gold"\nholdout: 0\nsteps:\n' + steps
    )


def email(step: str, **extra: Any) -> str:
    flags = "".join(f", {k}: {str(v).lower()}" for k, v in extra.items())
    return f'  - id: {step}\n    send: {{channel: email, subject: "{step}", template: t.txt{flags}}}\n'


def person(cid: str, **attrs: Any) -> dict[str, Any]:
    """A gold customer with every address and a recorded yes on every channel (unless ``attrs`` say)."""
    return customer(cid, tier="gold", push_token=f"tok-{cid}", **attrs)


def unrecorded(cid: str, **attrs: Any) -> dict[str, Any]:
    """A customer with every address and no consent on record, except what ``attrs`` say."""
    return {**{k: v for k, v in person(cid).items() if not k.startswith("consent_")}, **attrs}


def send(step: str, channel: str, **extra: Any) -> str:
    flags = "".join(f", {k}: {str(v).lower()}" for k, v in extra.items())
    fields = {"email": 'subject: "s", ', "push": 'title: "t", ', "sms": "", "webhook": "endpoint: crm, "}
    return f"  - id: {step}\n    send: {{channel: {channel}, {fields[channel]}template: t.txt{flags}}}\n"


def make_world(
    world: World,
    policy: str | None,
    journeys: dict[str, str],
    start: datetime,
    people: list[dict[str, Any]],
) -> World:
    files = {f"journeys/{name}.yaml": text for name, text in journeys.items()}
    files["templates/t.txt"] = "Hello {{ customer.id }}"
    if policy is not None:
        files["policy.yaml"] = policy  # next to journeys/
    world.write_files(files)
    world.clock.set(start)
    world.add_customers(*people)
    return world


def ledger(w: World) -> dict[tuple[str, str, str], tuple[str, str | None, datetime | None]]:
    """(customer, journey, step) -> (status, reason, sent at)."""
    rows = w.rows(
        "SELECT c.id, m.journey_id, m.step, m.status, m.reason, m.sent_us FROM messages m "
        "JOIN customers c ON c.key = m.customer_key"
    )
    return {(r[0], r[1], r[2]): (r[3], r[4], from_us(r[5]) if r[5] else None) for r in rows}


def test_caps_hold_across_journeys_and_priority_decides(world: World) -> None:
    # "news" comes first in the ledger (its file sorts first), "promo" has the higher priority.
    w = make_world(
        world,
        "caps:\n  all: {per_day: 1}\n",
        {
            "news": journey("news", email("weekly")),
            "promo": journey("promo", email("offer"), priority=10),
            "receipt": journey("receipt", email("thanks", transactional=True)),
        },
        at("2024-05-06T10:00:00Z"),
        [person("ann")],
    )
    w.tick()
    got = ledger(w)
    assert got[("ann", "promo", "offer")][0] == "sent"
    status, reason, _ = got[("ann", "news", "weekly")]
    assert (
        status == "suppressed"
        and reason == "capped by policy: 1 marketing message(s) per local day across channels"
    )
    assert got[("ann", "receipt", "thanks")][0] == "sent"  # transactional: caps do not apply


def test_daily_cap_counts_in_the_customers_own_day(world: World) -> None:
    twice = journey("twice", email("first") + "  - wait: 5h\n" + email("second"))
    t0 = at("2024-05-06T14:00:00Z")  # 23:00 in Tokyo, 07:00 in Los Angeles
    w = make_world(
        world,
        "caps:\n  email: {per_day: 1}\n",
        {"twice": twice},
        t0,
        [person("tokyo", timezone="Asia/Tokyo"), person("la", timezone="America/Los_Angeles")],
    )
    w.run_until(t0 + 6 * HOUR)
    got = ledger(w)
    # Five hours later it is 04:00 the next day in Tokyo (a new local day), 12:00 the same day in LA.
    assert got[("tokyo", "twice", "second")][:2] == ("sent", None)
    status, reason, _ = got[("la", "twice", "second")]
    assert status == "suppressed" and reason is not None and "per local day on email" in reason


QUIET = """\
quiet_hours:
  sms: {from: "21:00", to: "09:00", action: hold}
  push: {from: "21:00", to: "09:00", action: drop}
"""


def test_quiet_hours_hold_and_drop_in_local_time_across_the_clock_change(world: World) -> None:
    steps = (
        "  - id: text\n    send: {channel: sms, template: t.txt}\n"
        '  - id: nudge\n    send: {channel: push, template: t.txt, title: "Hi"}\n'
    )
    t0 = at("2024-03-30T22:00:00Z")  # London: 22:00 GMT; clocks go forward at 01:00 UTC tonight
    w = make_world(
        world,
        QUIET,
        {"night": journey("night", steps)},
        t0,
        [person("ldn", timezone="Europe/London"), person("nyc", timezone="America/New_York")],
    )
    w.run_until(at("2024-03-31T10:00:00Z"))
    got = ledger(w)
    status, reason, sent = got[("ldn", "night", "text")]
    # Held to 09:00 local, which is 08:00 UTC once British Summer Time has begun (not 09:00 UTC).
    assert (status, sent) == ("sent", at("2024-03-31T08:00:00Z"))
    assert reason is not None and reason.startswith("quiet hours for sms (21:00-09:00 local time): held")
    status, reason, _ = got[("ldn", "night", "nudge")]
    assert status == "suppressed" and reason == "quiet hours for push (21:00-09:00 local time): dropped"
    # 18:00 in New York: nothing quiet about it.
    assert got[("nyc", "night", "text")] == ("sent", None, t0)
    assert got[("nyc", "night", "nudge")] == ("sent", None, t0)


def test_an_unsubscribe_takes_effect_before_the_next_send(world: World) -> None:
    series = journey("series", email("one") + "  - wait: 1d\n" + email("two"))
    t0 = at("2024-05-06T10:00:00Z")
    w = make_world(world, None, {"series": series}, t0, [person("ann"), person("bob")])
    w.tick()
    with w.store.begin() as conn:
        upsert_customers(conn, [{"id": "ann", "consent_email": False}], now_us=to_us(t0 + HOUR))
    w.clock.set(t0 + DAY)
    w.tick()
    got = ledger(w)
    assert got[("ann", "series", "one")][0] == "sent"
    assert got[("ann", "series", "two")][:2] == ("suppressed", "no consent for email")
    assert got[("bob", "series", "two")][0] == "sent"
    assert [m.customer_id for m in w.adapter.sent] == ["ann", "bob", "bob"]  # type: ignore[attr-defined]


def test_no_consent_on_record_means_no_marketing_message_by_default(world: World) -> None:
    # No policy file: a missing consent is opt-in on every channel; a transactional send needs no record,
    # a recorded no stops both; a webhook is not a message to the customer.
    steps = send("mail", "email") + send("text", "sms") + send("ping", "push") + send("crm", "webhook")
    w = make_world(
        world,
        None,
        {
            "promo": journey("promo", steps),
            "receipt": journey("receipt", email("thanks", transactional=True)),
        },
        at("2024-05-06T10:00:00Z"),
        [unrecorded("ann"), person("bob"), person("cat", consent_email=False)],
    )
    w.tick()
    got = ledger(w)
    for step, channel in (("mail", "email"), ("text", "sms"), ("ping", "push")):
        assert got[("ann", "promo", step)][:2] == (
            "suppressed",
            f"no {channel} consent on record (policy: opt-in)",
        )
        assert got[("bob", "promo", step)][0] == "sent"
    assert got[("ann", "promo", "crm")][0] == "sent"
    assert got[("ann", "receipt", "thanks")][0] == "sent"
    assert got[("cat", "promo", "mail")][:2] == ("suppressed", "no consent for email")
    assert got[("cat", "receipt", "thanks")][:2] == ("suppressed", "no consent for email")
    # ``why`` shows the customer's consent and each suppression with its reason.
    report = explain(w.store, "ann")
    assert report.consent == {"email": None, "sms": None, "push": None}
    reasons = {m.step: (m.status, m.reason) for e in report.entries for m in e.messages}
    assert reasons["mail"] == ("suppressed", "no email consent on record (policy: opt-in)")


def test_the_policy_declares_what_a_missing_consent_means_per_channel(world: World) -> None:
    policy = (
        "consent:\n"
        "  missing: {email: opt_out, push: opt_in}\n"  # sms left out: opt-in
        "  transactional_without_consent: [sms]\n"
    )
    steps = send("mail", "email") + send("text", "sms") + send("ping", "push")
    w = make_world(
        world,
        policy,
        {
            "promo": journey("promo", steps),
            "notice": journey("notice", send("alert", "sms", transactional=True)),
        },
        at("2024-05-06T10:00:00Z"),
        [unrecorded("ann"), unrecorded("cat", consent_email=False, consent_sms=False)],
    )
    w.tick()
    got = ledger(w)
    assert got[("ann", "promo", "mail")][0] == "sent"  # opt-out: no record is a yes
    assert got[("ann", "promo", "text")][:2] == ("suppressed", "no sms consent on record (policy: opt-in)")
    assert got[("ann", "promo", "ping")][:2] == ("suppressed", "no push consent on record (policy: opt-in)")
    assert got[("ann", "notice", "alert")][0] == "sent"
    assert got[("cat", "promo", "mail")][:2] == ("suppressed", "no consent for email")  # a no stays a no
    assert got[("cat", "notice", "alert")][0] == "sent"  # listed under transactional_without_consent


def test_exclusions_no_journey_overrides(world: World) -> None:
    policy = (
        "exclusions:\n"
        "  - {name: vulnerable, when: vulnerable == true}\n"
        "  - {name: deceased, when: deceased == true, applies_to: all}\n"
    )
    w = make_world(
        world,
        policy,
        {
            "promo": journey("promo", email("offer"), priority=100),
            "receipt": journey("receipt", email("thanks", transactional=True)),
        },
        at("2024-05-06T10:00:00Z"),
        [person("vic", vulnerable=True), person("dee", deceased=True), person("ann")],
    )
    w.tick()
    got = ledger(w)
    assert got[("vic", "promo", "offer")][:2] == ("suppressed", "excluded by policy: vulnerable")
    assert got[("vic", "receipt", "thanks")][0] == "sent"  # marketing only
    assert got[("dee", "receipt", "thanks")][:2] == ("suppressed", "excluded by policy: deceased")
    assert got[("ann", "promo", "offer")][0] == "sent"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "caps:\n  all: {per_wek: 3}\n",
            "p.yaml:2:9: caps.all: unknown key 'per_wek'; did you mean 'per_week'?",
        ),
        ('quiet_hours:\n  sms: {from: "25:00", to: "09:00"}\n', "p.yaml:2:15: quiet_hours.sms.from: '25:00'"),
        (
            'exclusions:\n  - {name: x, when: "count(purchase, within=1d) > 0"}\n',
            "p.yaml:2:21: exclusions[0].when: an exclusion reads customer attributes only, not events",
        ),
        ("caps:\n  all: {}\n", "p.yaml:2:8: caps.all: a cap needs per_day, per_week or both"),
        ("consent:\n  missing: {email: maybe}\n", "p.yaml:2:20: consent.missing.email: Input should be"),
        (
            "consent:\n  missing: {webhook: opt_in}\n",
            "p.yaml:2:22: consent.missing.webhook: Input should be 'email', 'sms' or 'push'",
        ),
    ],
)
def test_policy_errors_name_file_line_and_column(text: str, where: str) -> None:
    with pytest.raises(SpecError) as info:
        load_policy_text(text, "p.yaml")
    assert str(info.value).startswith(where), str(info.value)
