"""A journey whose signal reads a calendar period enters each customer by their own local day: the engine
loads the ``timezone`` attribute and hands it to the kept aggregates at every tick, a zone that changes
takes effect at the next tick, and the results match a from-scratch evaluation (``orchestrator.testing``)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.engine._snapshot import needed_columns
from orchestrator.engine._workspace import load_workspace
from orchestrator.testing import SimClock, World, at, customer, event, write_files

JOURNEY = """\
id: today
version: 1
signal: count(product_view, within=today) >= 1 and tenure() < 30
holdout: 0
reentry: never
steps:
  - send: {channel: email, subject: Hi, template: mail.txt}
"""
FILES = {"journeys/today.yaml": JOURNEY, "templates/mail.txt": "Hello"}


def test_a_period_signal_uses_each_customers_local_day(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    assert "timezone" in needed_columns(load_workspace([tmp_path / "journeys"]).plans)[1]
    # 16:00 UTC on 6 May = 01:00 on 7 May in Tokyo.
    w = World(tmp_path, clock=SimClock(at("2024-05-06T16:00:00Z")))
    w.add_customers(
        customer("tokyo", email="t@example.com", timezone="Asia/Tokyo"),
        customer("utc", email="u@example.com"),
        customer("mover", email="m@example.com", timezone="Asia/Tokyo"),
    )
    # 14:00 UTC: 23:00 on 6 May in Tokyo (yesterday there), today in UTC.
    w.add_events(*(event(c, "product_view", at("2024-05-06T14:00:00Z")) for c in ("tokyo", "utc", "mover")))
    w.tick()
    assert [i.customer for i in w.instances()] == ["utc"]
    # The mover moves to New York (10:00 on 6 May there): the view is today for them at the next tick.
    w.clock.set(at("2024-05-06T16:30:00Z"))
    w.add_customers(customer("mover", email="m@example.com", timezone="America/New_York"))
    w.tick()
    assert sorted(i.customer for i in w.instances()) == ["mover", "utc"]
    # A view at 15:30 UTC stamped late (00:30 on 7 May in Tokyo) makes it today in Tokyo.
    w.clock.set(at("2024-05-06T17:00:00Z"))
    w.add_events(event("tokyo", "product_view", at("2024-05-06T15:30:00Z")))
    w.tick()
    assert sorted(i.customer for i in w.instances()) == ["mover", "tokyo", "utc"]
    w.close()
