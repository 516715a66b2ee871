"""Sends on ``channel: best(email, push, sms)``: each customer's channel is the reachable one they answer
most (responses per send from the ledger, shrunk toward everyone's rate), ties in the order written; a
declared share goes on the first listed channel; ``why`` shows the counts; the journey language refuses
lists it cannot use."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.engine._best_channel import channel_counts, choose_channels
from orchestrator.language import SpecError, load_journey_text
from orchestrator.store import sqlite_url
from orchestrator.testing import SimClock, World, at, customer, event

PAST = """\
id: past
version: 1
entry: {event: news}
reentry: always
holdout: 0
steps:
  - send: {channel: email, subject: News, template: t.txt}
  - wait: 1d
  - send: {channel: push, title: News, template: t.txt}
  - wait: 1d
  - send: {channel: sms, template: t.txt}
"""
OFFER = """\
id: offer
version: 1
entry: {{event: browse}}
holdout: 0
steps:
  - id: pick
    send:
      channel: best(email, push, sms)
      subject: Hi
      title: Hi
      template: t.txt
      best_channel: {{compare: {compare}}}
"""
T0 = at("2024-05-01T09:00:00Z")


def _world(tmp_path: Path, compare: int = 0) -> World:
    w = World(tmp_path, clock=SimClock(T0 - timedelta(hours=1)))
    w.write_files(
        {
            "journeys/past.yaml": PAST,
            "journeys/offer.yaml": OFFER.format(compare=compare),
            "templates/t.txt": "Hello",
        }
    )
    w.tick()  # the journeys start here: events after now enter them
    w.clock.set(T0)
    return w


def test_each_customer_gets_the_reachable_channel_they_answer_most(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _world(tmp_path)
    people = ("pushy", "mailer", "nopush", "optout")
    w.add_customers(
        customer("pushy", push_token="tok-p"),
        customer("mailer", push_token="tok-m"),
        customer("nopush"),  # no push token: push is not reachable
        customer("optout", push_token="tok-o"),
    )
    # Two rounds of news, a day apart on each channel; pushy and optout answer the pushes within the hour,
    # mailer and nopush the emails.
    for day in (0, 4):
        start = T0 + timedelta(days=day)
        w.clock.set(start)
        w.add_events(*(event(c, "news", start - timedelta(minutes=1)) for c in people))
        w.tick()
        w.clock.set(start + timedelta(hours=1))
        w.add_events(*(event(c, "session_start", w.clock.now()) for c in ("mailer", "nopush")))
        w.clock.set(start + timedelta(days=1))
        w.tick()
        w.clock.set(start + timedelta(days=1, hours=1))
        w.add_events(*(event(c, "session_start", w.clock.now()) for c in ("pushy", "optout")))
        w.clock.set(start + timedelta(days=2))
        w.tick()
    sent = {(m.customer_id, m.channel) for m in w.messages(status="sent")}
    assert len(sent) == 11 and ("nopush", "push") not in sent
    # optout withdraws push consent: it is their best channel, but no longer reachable.
    w.add_customers(customer("optout", push_token="tok-o", consent_push=False))
    w.clock.set(T0 + timedelta(days=10))
    w.add_events(*(event(c, "browse", w.clock.now() - timedelta(minutes=1)) for c in people))
    w.tick()
    got = {m.customer_id: m.channel for m in w.messages() if m.journey_id == "offer"}
    assert got == {"pushy": "push", "mailer": "email", "nopush": "email", "optout": "email"}
    choices = dict(
        w.rows("SELECT c.id, s.policy FROM send_choices s JOIN customers c ON c.key = s.customer_key")
    )
    assert set(choices.values()) == {"best_channel"}
    assert main(["why", "pushy", "--journey", "offer", "--db", sqlite_url(tmp_path / "world.db")]) == 0
    out = capsys.readouterr().out
    assert "pick chose to send at" in out and "best channel push: email 0 answered of 2 sends" in out
    assert "push 2 answered of 2 sends" in out
    assert main(["why", "optout", "--journey", "offer", "--db", sqlite_url(tmp_path / "world.db")]) == 0
    out = capsys.readouterr().out
    assert "best channel email:" in out and "push 2 answered of 2 sends" in out and "not reachable" in out
    w.close()


def test_the_comparison_share_goes_on_the_first_listed_channel(tmp_path: Path) -> None:
    w = _world(tmp_path, compare=50)
    names = [f"c{i}" for i in range(30)]
    w.add_customers(*(customer(n, push_token=f"tok-{n}") for n in names))
    w.add_events(*(event(n, "browse", T0 - timedelta(minutes=1)) for n in names))
    w.tick()
    rows = w.rows(
        "SELECT c.id, s.policy, s.channel FROM send_choices s JOIN customers c ON c.key = s.customer_key"
    )
    fixed = {r[0] for r in rows if r[1] == "fixed:email"}
    assert 5 <= len(fixed) <= 25 and all(r[2] == "email" for r in rows if r[1] == "fixed:email")
    sent = {m.customer_id: m.channel for m in w.messages()}
    assert {c for c, ch in sent.items() if ch == "email"} >= fixed and len(sent) == 30
    w.close()


def test_counts_shrink_toward_everyones_rate_and_ties_go_in_the_order_written() -> None:
    # Customer 1: three pushes, all answered within the hour; customer 2: nothing sent.
    keys = np.array([1, 1, 1, 3, 3, 3, 3])
    channels = np.array(["push"] * 3 + ["email"] * 4, dtype=object)
    sent_us = np.array([0, 10, 20, 0, 10, 20, 30]) * 3_600_000_000
    ev_customer, ev_ts = np.array([1, 1, 1, 3]), np.array([1, 11, 21, 40]) * 3_600_000_000 - 1_800_000_000
    counts = channel_counts(
        ("email", "push", "sms"), keys, channels, sent_us, ev_customer, ev_ts, 3_600_000_000, 5
    )
    assert list(counts.population) == [0.0, 1.0, pytest.approx(3 / 7)]  # sms: none sent, everyone's rate
    reachable = np.ones((2, 3), bool)
    choice = choose_channels(counts, np.array([1, 2]), reachable, prior=10)
    assert list(choice.pick) == [1, 1]  # push: everyone answers pushes
    flat = channel_counts(("email", "sms"), keys[:0], channels[:0], sent_us[:0], ev_customer, ev_ts, 1, 5)
    assert list(choose_channels(flat, np.array([2]), np.ones((1, 2), bool), 10).pick) == [0]


@pytest.mark.parametrize(
    ("channel", "extra", "message"),
    [
        ("best(email, fax)", "subject: Hi", "'fax' is not one"),
        ("best(sms)", "", "at least two different channels"),
        ("best(email, push)", "", "best() lists email: give a subject"),
        ("best(push, sms)", "subject: Hi", "subject and html are for email, not push or sms"),
        ("best(push, sms)", "at: best_time", "not both yet"),
        ("sms", "best_channel: {compare: 10}", "best_channel belongs to a send on channel: best"),
    ],
)
def test_lists_it_cannot_use_are_refused(channel: str, extra: str, message: str) -> None:
    text = "id: j\nversion: 1\nsignal: 'true'\nholdout: 0\nsteps:\n  - send:\n"
    text += f"      channel: {channel}\n      template: t.txt\n"
    if extra:
        text += f"      {extra}\n"
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_journey_text(text, "j.yaml")
