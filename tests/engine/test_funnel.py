"""The per-step funnel over a simulated month: a journey with every step kind, a holdout, a goal and
``exit_when``, a new version with ``migrate:`` halfway and a retirement at the end, ticked hourly. For
every version and arm the counts add up (entered + moved in = every exit + inside) and agree with what the
instances, the ledger and the conversions say; and a SQLite and a PostgreSQL store count the same."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.clock import to_us
from orchestrator.measure import JourneyFunnel, journey_funnel, journey_funnels
from orchestrator.store import retire_journey
from orchestrator.testing import SimClock, World, at, customer, event, write_files

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
START = at("2024-03-04T00:00:00Z")

V1 = """\
id: trial
version: 1
signal: count(signup, within=1d) > 0
exit_when: count(unsubscribe, within=30d) > 0
holdout: 20
reentry: after_exit
steps:
  - id: welcome
    send: {channel: email, subject: "Welcome", template: t.txt}
  - id: pause
    wait: 1d
  - id: coin
    split: {tip: 50, ask: 50}
  - id: tip
    send: {channel: sms, template: t.txt}
  - id: ask
    wait_for: {event: click, timeout: 2d, then: thanks, else: check}
  - id: check
    branch: {if: "count(visit, within=7d) > 0", then: nudge, else: exit}
  - id: nudge
    send: {channel: push, title: "Still there?", template: t.txt}
  - exit: nudged
  - id: thanks
    send: {channel: email, subject: "Thanks", template: t.txt}
goal: {event: purchase, within: 14d}
"""

# Version 2 waits longer before the split; instances of version 1 waiting at the pause or for a click move
# onto it, the others finish on version 1.
V2 = V1.replace("version: 1", "version: 2").replace("wait: 1d", "wait: 2d") + (
    "migrate:\n  from_version: 1\n  states: {pause: pause, ask: ask}\n"
)


def population(n: int = 90, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Customers (half with a push token, a fifth without SMS consent) and their month of events."""
    rng = np.random.default_rng(seed)
    people = []
    events = []
    for i in range(n):
        cid = f"c{i:03d}"
        extra: dict[str, Any] = {"push_token": f"tok-{i}"} if i % 2 else {}
        if i % 5 == 0:
            extra["consent_sms"] = False
        people.append(customer(cid, **extra))
        signups = [START + timedelta(hours=int(rng.integers(0, 24 * 29)))]
        if i % 9 == 0:
            signups.append(signups[0] + timedelta(days=int(rng.integers(6, 12))))
        for signed in signups:
            events.append(event(cid, "signup", signed))
            if rng.random() < 0.3:
                events.append(event(cid, "click", signed + timedelta(hours=int(rng.integers(20, 80)))))
            if rng.random() < 0.4:
                events.append(event(cid, "visit", signed + timedelta(hours=int(rng.integers(1, 70)))))
            if rng.random() < 0.25:
                when = signed + timedelta(hours=int(rng.integers(3, 240)))
                events.append(event(cid, "purchase", when, amount=20))
            if rng.random() < 0.1:
                events.append(event(cid, "unsubscribe", signed + timedelta(hours=int(rng.integers(2, 90)))))
    return people, events


def simulate(folder: Path, store_url: str) -> World:
    """The month: hourly ticks, each after ingesting the events of the hour before it; version 2 from day
    15; the journey retired after the last tick."""
    write_files(folder / "v1", {"journeys/trial.yaml": V1, "templates/t.txt": "Hello"})
    write_files(folder / "v2", {"journeys/trial.yaml": V2, "templates/t.txt": "Hello"})
    world = World(folder, store=store_url, clock=SimClock(START), journeys=folder / "v1" / "journeys")
    people, events = population()
    world.add_customers(*people)
    pending = sorted(events, key=lambda e: e["ts"])
    now: datetime = START
    end = START + 30 * DAY
    while now <= end:
        due = [e for e in pending if e["ts"] <= now]
        if due:
            world.add_events(*due)
            pending = pending[len(due) :]
        if now == START + 15 * DAY:
            world.restart(journeys=folder / "v2" / "journeys")
        world.clock.set(now)
        report = world.tick()
        assert not report.failed, report.failed
        now += HOUR
    with world.store.begin() as conn:
        retired = retire_journey(conn, "trial", to_us(now))
    assert retired is not None and retired.finished > 0
    return world


@pytest.fixture(scope="module")
def month() -> Iterator[dict[str, World]]:
    """One simulated month per backend, shared by the tests of the module (made by the first that asks)."""
    worlds: dict[str, World] = {}
    yield worlds
    for world in worlds.values():
        world.close()


def run_month(month: dict[str, World], backend: str, tmp_path: Path, store_url: str) -> World:
    if backend not in month:
        month[backend] = simulate(tmp_path, store_url)
    return month[backend]


def test_funnel_counts_add_up_and_agree_with_the_store_over_a_month(
    month: dict[str, World], backend: str, tmp_path: Path, store_url: str
) -> None:
    world = run_month(month, backend, tmp_path, store_url)
    funnels = journey_funnels(world.store, "trial")
    assert [f.version for f in funnels] == [1, 2]
    assert journey_funnel(world.store, "trial").version == 2  # the latest version by default
    instances = world.rows("SELECT version, holdout, status, state, exit_reason FROM journey_instances")
    ledger = world.rows(
        "SELECT m.version, m.step, m.status, m.reason, i.holdout FROM messages m "
        "JOIN journey_instances i ON i.id = m.instance_id"
    )
    conversions = Counter(
        (int(r[0]), bool(r[1])) for r in world.rows("SELECT version, holdout FROM conversions")
    )
    moved = sum(int(r[0]) for r in world.rows("SELECT moved FROM journey_migrations"))
    assert moved > 0
    seen_kinds: set[str] = set()
    for funnel in funnels:
        v = funnel.version
        for arm in funnel.arms:
            held = arm.arm == "holdout"
            mine = [r for r in instances if int(r[0]) == v and bool(r[1]) == held]
            assert arm.entered > 0
            # The equation, and each of its terms against the instances table.
            assert arm.adds_up, (v, arm.arm)
            assert arm.entered + arm.moved_in == arm.exited + arm.inside
            inside = Counter(r[3] for r in mine if r[2] == "active")
            assert {s.step: s.inside for s in arm.steps if s.inside} == dict(inside)
            assert arm.finished("completed") == sum(r[2] == "completed" for r in mine)
            assert arm.finished("goal") == sum(r[2] == "converted" for r in mine)
            reasons = Counter(r[4] for r in mine if r[2] == "exited")
            assert arm.finished("exit_when") == reasons["exit_when"]
            assert arm.finished("retired") == reasons["journey retired"]
            assert arm.finished("exit step") == reasons["nudged"]
            assert arm.finished("branch") == reasons["branch check: no"]
            exited = sum(
                arm.finished(k) for k in ("exit_when", "retired", "exit step", "branch", "migration")
            )
            assert exited == sum(reasons.values())
            # Instances now on this version: those that entered it and stayed, and those moved onto it.
            assert len(mine) == arm.entered + arm.moved_in - arm.finished("moved")
            assert arm.converted == conversions[(v, held)]
            # Reached: every send step's arrivals got one ledger row each in the treatment arm, none held out.
            steps = {s.step: s for s in arm.steps}
            for step_id in ("welcome", "tip", "nudge", "thanks"):
                rows = [r for r in ledger if int(r[0]) == v and r[1] == step_id and bool(r[4]) == held]
                assert len(rows) == (0 if held else steps[step_id].reached), (v, arm.arm, step_id)
                statuses = Counter(r[2] for r in rows)
                step = steps[step_id]
                assert (step.sent, step.failed, sum(step.suppressed.values())) == (
                    statuses["sent"],
                    statuses["failed"],
                    statuses["suppressed"],
                )
                assert step.suppressed == dict(Counter(r[3] for r in rows if r[2] == "suppressed"))
            # The split sends every instance it took down one of its arms.
            coin = steps["coin"]
            assert [a.target for a in coin.split] == ["tip", "ask"]
            assert sum(a.n for a in coin.split) == coin.reached - coin.inside
            assert steps["welcome"].reached == arm.entered
            # Every step: what reached it either left by a trigger or is inside.
            for s in arm.steps:
                assert s.reached == sum(s.taken.values()) + s.inside
            seen_kinds |= {e.kind for e in arm.exits}
    assert {"completed", "goal", "exit_when", "exit step", "branch", "retired", "moved"} <= seen_kinds
    v1, v2 = funnels
    assert sum(a.finished("moved") for a in v1.arms) == moved == sum(a.moved_in for a in v2.arms)
    treatment = v1.arm("treatment")
    assert any(s.suppressed for s in treatment.steps)  # SMS without consent, push without a token
    assert all(not s.messages for s in v1.arm("holdout").steps)


def test_diagram_counts_follow_the_machine(
    month: dict[str, World], backend: str, tmp_path: Path, store_url: str
) -> None:
    world = run_month(month, backend, tmp_path, store_url)
    funnel = journey_funnel(world.store, "trial", 1)
    nodes = funnel.diagram_nodes()
    edges = funnel.diagram_edges()
    arms = funnel.arms
    assert set(nodes) >= {"welcome", "coin", "completed", "exited", "converted"}
    assert nodes["welcome"] == sum(a.entered for a in arms)
    assert nodes["completed"] == sum(a.finished("completed") for a in arms)
    assert edges[("coin", "split-0")] + edges[("coin", "split-1")] == sum(
        a.step("coin").reached - a.step("coin").inside for a in arms
    )
    assert {t for _, t in edges} <= {"next", "yes", "no", "goal", "split-0", "split-1"}
    # Every machine edge out of a step adds up to what left the step by the machine's triggers.
    for step in funnel.step_ids:
        by_machine = sum(n for (source, _), n in edges.items() if source == step)
        left = sum(
            n
            for a in arms
            for t, n in a.step(step).taken.items()
            if t in ("next", "yes", "no", "goal") or t.startswith("split-")
        )
        assert by_machine == left


@pytest.mark.backends("postgres")  # compared once: both stores are built here
def test_sqlite_and_postgres_count_the_same(
    month: dict[str, World], backend: str, tmp_path: Path, postgres_url: str
) -> None:
    from orchestrator.store import sqlite_url

    lite = run_month(month, "sqlite", tmp_path / "lite", sqlite_url(tmp_path / "lite.db"))
    pg = run_month(month, "postgres", tmp_path / "pg", postgres_url)
    assert _numbers(journey_funnels(lite.store, "trial")) == _numbers(journey_funnels(pg.store, "trial"))


def _numbers(funnels: list[JourneyFunnel]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in funnels]
