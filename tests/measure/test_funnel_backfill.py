"""A store that ran before the funnel's counts existed: the upgrade back-fills what the instances tell
exactly (entered, where each is, how each finished), the funnel adds up and says that earlier per-step history
is not known; the counts go on from there as steps happen. Also the faces: ``status JOURNEY`` (table and
JSON), and the lift report's funnel section and export."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.cli import main
from orchestrator.measure import journey_funnel
from orchestrator.store import open_store
from orchestrator.testing import World, at, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

START = at("2024-05-06T00:00:00Z")
JOURNEY = """\
id: nurture
version: 1
signal: count(signup, within=1d) > 0
holdout: 25
steps:
  - id: hello
    send: {channel: email, subject: "Hi", template: t.txt}
  - id: pause
    wait: 2d
  - id: seen
    branch: {event: visit, then: next, else: exit}
  - id: offer
    send: {channel: email, subject: "Offer", template: t.txt}
goal: {event: purchase, within: 7d}
"""


def _world(world: World) -> World:
    world.write_files({"journeys/nurture.yaml": JOURNEY, "templates/t.txt": "Hello"})
    world.clock.set(START)
    ids = [f"c{i:02d}" for i in range(24)]
    world.add_customers(*(customer(c) for c in ids))
    world.add_events(*(event(c, "signup", START + timedelta(hours=i * 3)) for i, c in enumerate(ids)))
    world.add_events(*(event(c, "visit", START + timedelta(days=1, hours=i)) for i, c in enumerate(ids[::2])))
    world.add_events(event("c03", "purchase", START + timedelta(hours=20)))
    return world


def test_a_store_upgraded_from_before_the_counts_is_back_filled(world: World, store_url: str) -> None:
    w = _world(world)
    w.run_until(START + timedelta(days=2, hours=12))
    active_before = w.rows("SELECT COUNT(*) FROM journey_instances WHERE status = 'active'")[0][0]
    assert active_before > 0
    # Make it a store from before the counts: no table, stamped at an earlier revision; opening upgrades it.
    with w.store.begin() as conn:
        conn.execute(text("DROP TABLE journey_funnel"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    w.store.dispose()
    w.store = open_store(store_url)
    w.restart()
    upgraded = journey_funnel(w.store, "nurture")
    treatment = upgraded.arm("treatment")
    assert upgraded.adds_up and treatment.before_counting == treatment.entered > 0
    assert any("before per-step counting began" in note for note in upgraded.notes)
    assert sum(a.inside for a in upgraded.arms) == active_before
    assert upgraded.arm("treatment").step("hello").reached == 0  # passed before counting: not known
    w.run_until(START + timedelta(days=6))
    later = journey_funnel(w.store, "nurture")
    assert later.adds_up and later.arm("treatment").step("seen").reached > 0
    assert (
        sum(a.inside for a in later.arms)
        == w.rows("SELECT COUNT(*) FROM journey_instances WHERE status = 'active'")[0][0]
    )


def test_status_journey_and_the_report_show_the_funnel(
    world: World, store_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    w = _world(world)
    w.run_until(START + timedelta(days=4))
    funnel = journey_funnel(w.store, "nurture")
    assert main(["status", "nurture", "--db", store_url]) == 0
    out = capsys.readouterr().out
    assert "funnel of nurture version 1" in out and "treatment arm:" in out and "holdout arm:" in out
    assert "adds up" in out and "DOES NOT" not in out
    hello = funnel.arm("treatment").step("hello")
    assert any(
        line.split()[:3] == ["hello", "send", "email"] and str(hello.reached) in line
        for line in out.splitlines()
    )
    assert main(["status", "nurture", "--db", store_url, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["versions"][0] == json.loads(json.dumps(funnel.to_dict()))
    assert main(["status", "nope", "--db", store_url]) == 1
    assert "journey 'nope' has not run" in capsys.readouterr().err
    # Without a journey, status is what it was.
    assert main(["status", "--db", store_url]) in (0, 1)
    assert "funnel" not in capsys.readouterr().out

    export = tmp_path / "entries.csv"
    assert main(["report", "nurture", "--db", store_url, "--format", "json", "--export", str(export)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["funnel"][0]["arms"] == json.loads(json.dumps(funnel.to_dict()))["arms"]
    with (tmp_path / "entries.funnel.csv").open() as f:
        rows = list(csv.DictReader(f))
    transitions = [r for r in rows if r["record"] == "transition"]
    assert sum(int(r["n"]) for r in transitions if r["trigger"] == "entry") == sum(
        a.entered for a in funnel.arms
    )
    sent = sum(int(r["n"]) for r in rows if r["record"] == "message" and r["status"] == "sent")
    assert sent == sum(s.sent for a in funnel.arms for s in a.steps) > 0
    assert main(["report", "nurture", "--db", store_url]) == 0
    assert "funnel of nurture version 1" in capsys.readouterr().out
    page = tmp_path / "r.html"
    assert main(["report", "nurture", "--db", store_url, "--format", "html", "-o", str(page)]) == 0
    assert "Per-step funnel" in page.read_text() and "hello" in page.read_text()
