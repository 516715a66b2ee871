"""``journeys_overview`` and ``journey_detail`` (what the console shows): each journey's version and state
(running, failed, retired, paused), its counts, and a journey's steps and latest ledger rows, read from a
store a ``World`` ran."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.clock import to_us
from orchestrator.engine import JourneyNotRun, journey_detail, journeys_overview, status_report
from orchestrator.store import record_health, retire_journey
from orchestrator.testing import T0, World, at, customer, event


def journey(journey_id: str) -> str:
    return f"""\
id: {journey_id}
version: 1
name: Journey {journey_id}
signal: count(visit, within=1d) > 0
holdout: 0
steps:
  - id: hello
    send: {{channel: email, subject: Hi, template: hello.txt}}
  - wait: 3d
  - id: again
    send: {{channel: email, subject: Again, template: hello.txt}}
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    files = {f"journeys/{j}.yaml": journey(j) for j in ("alpha", "beta", "gamma", "delta")}
    w = World(tmp_path)
    w.write_files({**files, "templates/hello.txt": "Hello"})
    people = [f"c{i}" for i in range(30)]
    w.add_customers(*(customer(c) for c in people))
    w.add_events(*(event(c, "visit", T0 + timedelta(hours=i)) for i, c in enumerate(people)))
    return w


def test_states_and_counts_of_every_journey(world: World, tmp_path: Path) -> None:
    world.run_for("36h")
    now = to_us(world.clock.now())
    with world.store.begin() as conn:
        retire_journey(conn, "beta", now)
    # delta leaves the workspace: the engine no longer runs it (paused, not failed).
    parked = tmp_path / "parked"
    parked.mkdir()
    shutil.move(tmp_path / "journeys" / "delta.yaml", parked / "delta.yaml")
    world.restart()
    world.run_for("2h")
    world.clock.set(world.clock.now() + timedelta(minutes=30))  # the report instant is the last tick's
    now = to_us(world.clock.now())
    with world.store.begin() as conn:
        record_health(conn, {"gamma": "the template hello.txt cannot be read"}, now)

    overview = journeys_overview(world.store, now)
    states = {j.journey_id: j.state for j in overview.journeys}
    assert states == {"alpha": "running", "beta": "retired", "gamma": "failed", "delta": "paused"}
    gamma = next(j for j in overview.journeys if j.journey_id == "gamma")
    assert gamma.error == "the template hello.txt cannot be read" and gamma.failed_since is not None
    assert overview.last_tick is not None and not overview.stale

    status = status_report(world.store, now)
    instances = world.instances()
    for j in overview.journeys:
        assert j.version == 1
        held = status.journeys[j.journey_id]
        assert j.active == sum(sum(steps.values()) for steps in held.active.values())
        assert j.finished == held.finished
        day_ago = at(overview.as_of) - timedelta(days=1)  # the day before the last tick
        assert j.entered_last_day == sum(
            1 for i in instances if i.journey == j.journey_id and i.entered >= day_ago
        )
        assert (j.last_tick is not None) == (j.journey_id != "delta")
    alpha = next(j for j in overview.journeys if j.journey_id == "alpha")
    assert alpha.active == 30 and alpha.entered_last_day > 0
    beta = next(j for j in overview.journeys if j.journey_id == "beta")
    assert beta.active == 0 and beta.finished == {"exited": 30}


def test_a_journey_in_detail(world: World) -> None:
    world.run_for("36h")
    now = to_us(world.clock.now())
    detail = journey_detail(world.store, "alpha", now, sends=10)
    assert detail.name == "Journey alpha" and detail.plan is not None
    assert [(s.id, s.kind, s.channel) for s in detail.steps] == [
        ("hello", "send", "email"),
        ("step-2", "wait", None),
        ("again", "send", "email"),
    ]
    assert detail.active_by_step == {"1": {"step-2": 30}}
    ledger = [m for m in world.messages() if m.journey_id == "alpha"]
    assert len(ledger) == 30
    newest = ledger[::-1][:10]  # written order, newest first
    assert [(s.customer, s.step, s.status) for s in detail.recent_sends] == [
        (m.customer_id, m.step, m.status) for m in newest
    ]
    assert detail.to_dict()["steps"][0] == {"id": "hello", "kind": "send", "channel": "email"}
    with pytest.raises(JourneyNotRun, match="journey 'nope' has not run in this store"):
        journey_detail(world.store, "nope", now)
