"""Sends ``at: best_time``: each customer's message waits for the local hour of the week at which they
engage most (shrunk toward everyone's pattern), never into quiet hours; a declared share is sent at once;
the choice and its counts are recorded for both arms and shown by ``why``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from orchestrator.clock import to_us
from orchestrator.engine._best_time import (
    choose_times,
    engagement,
    hour_of_week,
    local_instants,
    zone_codes,
)
from orchestrator.store import sqlite_url
from orchestrator.testing import SimClock, World, at, customer, event

JOURNEY = """\
id: timed
version: 1
signal: count(signup, within=1d) >= 1
holdout: {holdout}
steps:
  - id: hello
    send:
      channel: email
      subject: Hi
      template: mail.txt
      at: best_time
      within: 24h
      best_time: {{compare: {compare}}}
  - exit: done
"""
START = at("2024-05-06T06:30:00Z")  # a Monday


def _files(holdout: int = 0, compare: int = 0) -> dict[str, str]:
    return {
        "journeys/timed.yaml": JOURNEY.format(holdout=holdout, compare=compare),
        "templates/mail.txt": "Hello",
    }


def _opens(name: str, hour_utc: int, days: int = 10) -> list[dict[str, object]]:
    return [
        event(name, "email_open", START.replace(hour=hour_utc, minute=15) - timedelta(days=d))
        for d in range(1, days + 1)
    ]


def test_each_customer_is_sent_at_the_local_hour_they_engage_most(tmp_path: Path) -> None:
    w = World(tmp_path, clock=SimClock(START))
    w.write_files(_files())
    w.add_customers(
        customer("eve", email="e@example.com", consent_email=True),
        customer("tok", email="t@example.com", consent_email=True, timezone="Asia/Tokyo"),
        customer("new", email="n@example.com", consent_email=True),
    )
    # eve opens at 19:15 UTC every evening; tok at 12:15 UTC = 21:15 in Tokyo.
    w.add_events(*_opens("eve", 19), *_opens("tok", 12))
    w.add_events(*(event(c, "signup", START - timedelta(minutes=5)) for c in ("eve", "tok", "new")))
    w.run_for("1d", step="30m")
    sent = {m.customer_id: m.sent_us for m in w.messages(status="sent")}
    # eve at the tick at 19:00 UTC; tok at 21:00 in Tokyo (12:00 UTC); new, without history, at everyone's
    # best hour in the window (eve's and tok's hours score alike for a UTC customer: the earlier, 19:00).
    assert sent == {
        "eve": to_us(at("2024-05-06T19:00:00Z")),
        "tok": to_us(at("2024-05-06T12:00:00Z")),
        "new": to_us(at("2024-05-06T19:00:00Z")),
    }
    choices = w.rows("SELECT policy, hour_of_week FROM send_choices ORDER BY customer_key")
    assert choices == [("best_time", 19), ("best_time", 21), ("best_time", 19)]
    w.close()


def test_a_best_hour_inside_quiet_hours_gives_way_to_the_best_allowed_hour(tmp_path: Path) -> None:
    w = World(tmp_path, clock=SimClock(START))
    files = _files()
    files["policy.yaml"] = 'quiet_hours:\n  email: {from: "21:00", to: "08:00", action: drop}\n'
    w.write_files(files)
    w.add_customers(customer("owl", email="o@example.com", consent_email=True))
    # At 23:15 (quiet) on each of the last 14 days, at 17:15 on each of the last 7: on Mondays twice at
    # 23:00 and once at 17:00.
    w.add_events(*_opens("owl", 23, days=14), *_opens("owl", 17, days=7))
    w.add_events(event("owl", "signup", START - timedelta(minutes=5)))
    w.run_for("1d", step="30m")
    assert [m.sent_us for m in w.messages(status="sent")] == [to_us(at("2024-05-06T17:00:00Z"))]
    (detail,) = w.rows("SELECT detail FROM send_choices")
    assert '"quiet_skipped":true' in detail[0] and '"hour":"mon 17:00"' in detail[0]
    w.close()


def test_the_comparison_share_goes_at_once_and_both_arms_wait_alike(tmp_path: Path) -> None:
    w = World(tmp_path, clock=SimClock(START))
    w.write_files(_files(holdout=30, compare=50))
    names = [f"c{i}" for i in range(40)]
    w.add_customers(*(customer(n, email=f"{n}@example.com", consent_email=True) for n in names))
    w.add_events(*(e for n in names for e in _opens(n, 20, days=7)))
    w.add_events(*(event(n, "signup", START - timedelta(minutes=5)) for n in names))
    w.tick()
    rows = w.rows(
        "SELECT c.id, s.policy, s.send_at_us, i.holdout FROM send_choices s "
        "JOIN journey_instances i ON i.id = s.instance_id JOIN customers c ON c.key = s.customer_key"
    )
    assert len(rows) == 40  # every instance, held out or not, has its choice
    policies = {r[0]: r[1] for r in rows}
    immediate = {n for n, p in policies.items() if p == "immediate"}
    assert 8 <= len(immediate) <= 32  # about half, by the hash
    assert all(r[2] == to_us(START) for r in rows if r[1] == "immediate")
    assert all(r[2] == to_us(at("2024-05-06T20:00:00Z")) for r in rows if r[1] == "best_time")
    sent_now = {m.customer_id for m in w.messages()}
    held = {r[0] for r in rows if r[3]}
    assert sent_now == immediate - held and held
    # The same hash decides again from a fresh store: the share is a pure function of the ids.
    w.run_for("1d", step="1h")
    (tmp_path / "again").mkdir()
    again = World(tmp_path / "again", clock=SimClock(START))
    again.write_files(_files(holdout=30, compare=50))
    again.add_customers(*(customer(n, email=f"{n}@example.com", consent_email=True) for n in names))
    again.add_events(*(event(n, "signup", START - timedelta(minutes=5)) for n in names))
    again.tick()
    redo = again.rows("SELECT c.id, s.policy FROM send_choices s JOIN customers c ON c.key = s.customer_key")
    assert dict(redo) == policies
    # Held-out instances waited at the step with the treated ones and left it at their instant.
    finished = w.rows(
        "SELECT s.policy, i.holdout, i.exited_us FROM journey_instances i "
        "JOIN send_choices s ON s.instance_id = i.id WHERE i.status = 'exited'"
    )
    assert len(finished) == 40
    exits = {(policy, bool(held)): set() for policy, held, _ in finished}
    for policy, held, exited in finished:
        exits[(policy, bool(held))].add(exited)
    assert exits[("best_time", True)] == exits[("best_time", False)] == {to_us(at("2024-05-06T20:30:00Z"))}
    assert exits[("immediate", True)] == exits[("immediate", False)] == {to_us(START)}
    again.close()
    w.close()


def test_shrinkage_takes_thin_histories_toward_the_population() -> None:
    monday = to_us(at("2024-05-06T00:00:00Z"))
    hour = 3600 * 1_000_000
    # Everyone engages at 09:00 on Mondays; customer 1 once at 22:00, customer 2 thirty times at 22:00.
    crowd = np.repeat(np.arange(3, 53), 4)
    customers = np.concatenate([crowd, [1], np.full(30, 2)])
    ts = np.concatenate(
        [
            monday - 7 * 24 * hour + 9 * hour + np.zeros(len(crowd), np.int64),
            [monday - 2 * hour],
            np.full(30, monday - 2 * hour),
        ]
    )
    zones = np.full(60, None, dtype=object)
    found = engagement(customers, ts, zones, "UTC", 60)
    assert found.population.argmax() == 9 and abs(found.population.sum() - 1) < 1e-9
    choice = choose_times(np.array([1, 2, 0]), zones[[1, 2, 0]], monday, 7 * 24 * hour, found, 24.0, "UTC")
    assert list(choice.hour) == [9, 6 * 24 + 22, 9]
    assert list(choice.events) == [1, 30, 0]


def test_local_hours_follow_the_zone_across_a_clock_change() -> None:
    names, codes = zone_codes(np.array(["Europe/London", None, "Nowhere/Else"], dtype=object), "UTC")
    assert names[codes[1]] == "UTC" and names[codes[2]] == "UTC"
    before = to_us(at("2024-03-30T12:00:00Z"))  # Saturday 12:00 GMT
    after = to_us(at("2024-03-31T12:00:00Z"))  # Sunday 13:00 BST
    local = local_instants(np.array([before, after]), np.array([codes[0], codes[0]]), names)
    assert list(hour_of_week(local)) == [5 * 24 + 12, 6 * 24 + 13]


@pytest.mark.parametrize("within", ["8d", "0h"])
def test_a_wait_longer_than_a_week_or_none_is_refused(tmp_path: Path, within: str) -> None:
    from orchestrator.language import SpecError, load_journey_text

    text = JOURNEY.format(holdout=0, compare=0).replace("within: 24h", f"within: {within}")
    with pytest.raises(SpecError):
        load_journey_text(text, "timed.yaml")


def test_why_shows_the_hour_chosen_and_the_counts_behind_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = World(tmp_path, clock=SimClock(START))
    w.write_files(_files())
    w.add_customers(customer("eve", email="e@example.com", consent_email=True))
    w.add_events(*_opens("eve", 19, days=14))
    w.add_events(event("eve", "signup", START - timedelta(minutes=5)))
    w.tick()
    db = sqlite_url(tmp_path / "world.db")
    assert main(["why", "eve", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "at step hello (send email at the best time within 1d)" in out
    assert (
        "hello chose to send at 2024-05-06T19:00:00Z: best time mon 19:00 (UTC): 2 of the customer's 14 "
        "engagement events in that hour" in out
    )
    assert main(["why", "eve", "--db", db, "--format", "json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["entries"]
    (choice,) = entry["choices"]
    assert (choice["policy"], choice["hour"], choice["detail"]["events_in_hour"]) == (
        "best_time",
        "mon 19:00",
        2,
    )
    w.close()
