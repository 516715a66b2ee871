"""``engine._plan_report`` (what a changed journey would do to the customers inside) and
``engine._status.status_report`` (what the engine holds), called directly on a small store: typed results,
no command line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.clock import SimulatedClock, from_us, to_us
from orchestrator.engine._plan_report import Fate, PlanReport, plan_report
from orchestrator.engine._status import ChannelBacklog, JourneyStatus, StatusReport, status_report
from orchestrator.engine._workspace import load_workspace
from orchestrator.store import open_store, sqlite_url
from orchestrator.testing import SimClock, World, at, customer, event, write_files

DAY = timedelta(days=1)
#: Day 0, at midnight: the reports below are read at instants counted from it.
START = at("2024-05-06T00:00:00Z")
V1 = """\
id: nurture
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: welcome
    send: {channel: email, subject: "Welcome", template: t.txt}
  - id: pause
    wait: 2d
  - id: tips
    send: {channel: email, subject: "Tips", template: t.txt}
  - id: rest
    wait: 5d
"""
V2 = (
    V1.replace("version: 1", "version: 2").replace("id: rest", "id: long_rest")
    + "migrate:\n  from_version: 1\n  states:\n    rest: long_rest\n"
)


@pytest.fixture
def started(tmp_path: Path) -> World:
    """Version 1 running: ann and bob entered on day 0 (now resting), cy on day 1 (still pausing)."""
    for name, body in (("v1", V1), ("v2", V2), ("v1b", V1.replace('"Tips"', '"Tips!"'))):
        write_files(tmp_path / name, {"journeys/nurture.yaml": body, "templates/t.txt": "Hello"})
    w = World(tmp_path, clock=SimClock(START), journeys=tmp_path / "v1" / "journeys")
    w.add_customers(*(customer(c) for c in ("ann", "bob", "cy")))
    w.add_events(
        event("ann", "signup", START - timedelta(hours=1)),
        event("bob", "signup", START - timedelta(hours=1)),
        event("cy", "signup", START + DAY - timedelta(hours=1)),
    )
    w.run_until(START + 2 * DAY + timedelta(hours=12), timedelta(hours=12))
    return w


def test_plan_report_gives_each_step_its_fate_under_a_new_version(started: World, tmp_path: Path) -> None:
    workspace = load_workspace([tmp_path / "v2" / "journeys"])
    plan = workspace.plan("nurture")
    report = plan_report(started.store, workspace, plan, started.clock)
    assert isinstance(report, PlanReport)
    assert (report.journey, report.version, report.status) == ("nurture", 2, "new version")
    assert report.stored_versions == [1] and report.problems == []
    assert report.fates == [
        Fate(
            1,
            "pause",
            1,
            "stay",
            None,
            "finish on version 1 (no migrate entry for this step); version 2 also has a step 'pause'",
        ),
        Fate(1, "rest", 2, "migrate", "long_rest", "move to step long_rest of version 2 (migrate)"),
    ]
    assert report.to_dict()["fates"][1] == {
        "version": 1,
        "state": "rest",
        "customers": 2,
        "outcome": "migrate",
        "to": "long_rest",
        "note": "move to step long_rest of version 2 (migrate)",
    }


def test_plan_report_of_the_running_a_changed_and_a_new_journey(started: World, tmp_path: Path) -> None:
    running = load_workspace([tmp_path / "v1" / "journeys"])
    same = plan_report(started.store, running, running.plan("nurture"), started.clock)
    assert same.status == "unchanged" and {f.outcome for f in same.fates} == {"current"}
    changed = load_workspace([tmp_path / "v1b" / "journeys"])
    refused = plan_report(started.store, changed, changed.plan("nurture"), started.clock)
    assert refused.status == "refused"
    assert refused.problems[0].endswith(
        "version 1 has changed since it first ran; give the changed journey version 2"
    )
    fresh = plan_report(None, running, running.plan("nurture"), started.clock)
    assert (fresh.status, fresh.stored_versions, fresh.fates, fresh.problems) == ("new journey", [], [], [])


def test_status_report_counts_instances_due_waits_and_the_last_tick(started: World) -> None:
    clock_us = to_us(started.clock.now())
    report = status_report(started.store, clock_us)
    assert isinstance(report, StatusReport)
    last = started.clock.now() - timedelta(hours=12)  # run_until's last tick
    assert report.as_of == last.isoformat()  # without ``now_us``: the last tick's instant
    assert report.journeys == {
        "nurture": JourneyStatus(
            active={"1": {"pause": 1, "rest": 2}}, finished={}, due_now=0, due_next_hour=0
        )
    }
    assert report.outbox == [] and report.health.ok and not report.health.stale
    assert report.last_tick is not None and report.last_tick["at"] == last.isoformat()
    assert set(report.last_tick["timings"]) >= {"total"}
    # cy's pause ends at day 3: due within the hour at 23:30 on day 2, and due then.
    soon = status_report(started.store, clock_us, now_us=to_us(START + 3 * DAY - timedelta(minutes=30)))
    assert (soon.journeys["nurture"].due_now, soon.journeys["nurture"].due_next_hour) == (0, 1)
    due = status_report(started.store, clock_us, now_us=to_us(START + 3 * DAY))
    assert due.journeys["nurture"].due_now == 1
    assert due.to_dict()["journeys"]["nurture"] == {
        "active": {"1": {"pause": 1, "rest": 2}},
        "finished": {},
        "due_now": 1,
        "due_next_hour": 0,
    }


def test_status_report_judges_a_stale_tick_at_the_clock_given(started: World) -> None:
    later = to_us(started.clock.now() + 3 * DAY)
    report = status_report(started.store, later, stale_after_us=to_us(START + DAY) - to_us(START))
    assert report.health.stale and not report.health.ok
    assert report.to_dict()["health"]["last_tick_stale"] is True


def test_status_report_of_a_store_where_no_tick_ran(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "empty.db"))
    try:
        clock = SimulatedClock(START)
        report = status_report(store, to_us(clock.now()))
    finally:
        store.dispose()
    assert report.as_of == from_us(to_us(START)).isoformat()
    assert report.journeys == {} and report.last_tick is None and report.health.ok
    assert ChannelBacklog("email", 1, 0, 0, None).to_dict() == {
        "channel": "email",
        "queued": 1,
        "sending": 0,
        "uncertain": 0,
        "oldest": None,
    }
