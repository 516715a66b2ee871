"""Versions: instances stay on the version they entered; ``orchestrator plan`` shows what a new file would do
to them; ``migrate:`` moves them in bulk at the next tick; ``orchestrator status`` shows the runtime."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from tables import row, table

from orchestrator.channels._memory import MemoryAdapter
from orchestrator.cli import main
from orchestrator.testing import SimClock, World, at, customer, event, write_files

DAY = timedelta(days=1)
#: Day 0 of these tests, at midnight: the commands below are given instants counted from it.
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
  - id: offer
    send: {channel: email, subject: "Offer", template: t.txt}
"""

V2 = """\
id: nurture
version: 2
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - id: welcome
    send: {channel: email, subject: "Welcome!", template: t.txt}
  - id: pause
    wait: 1d
  - id: tips
    send: {channel: email, subject: "Tips", template: t.txt}
  - id: long_rest
    wait: 10d
  - id: offer
    send: {channel: email, subject: "A better offer", template: t.txt}
migrate:
  from_version: 1
  states:
    rest: long_rest     # waiting after the tips: wait longer, then get the new offer
"""


def customers(*ids: str) -> list[dict[str, str]]:
    return [customer(c) for c in ids]


@pytest.fixture
def started(tmp_path: Path) -> World:
    """Version 1 running: ann and bob entered on day 0 (now resting), cy on day 1 (still pausing)."""
    write_files(tmp_path / "v1", {"journeys/nurture.yaml": V1, "templates/t.txt": "Hello"})
    write_files(tmp_path / "v2", {"journeys/nurture.yaml": V2, "templates/t.txt": "Hello"})
    w = World(tmp_path, clock=SimClock(START), journeys=tmp_path / "v1" / "journeys")
    w.add_customers(*customers("ann", "bob", "cy", "dee"))
    w.add_events(
        event("ann", "signup", START - timedelta(hours=1)),
        event("bob", "signup", START - timedelta(hours=1)),
        event("cy", "signup", START + DAY - timedelta(hours=1)),
    )
    w.run_until(START + 2 * DAY + timedelta(hours=12), timedelta(hours=12))
    return w


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_shows_each_step_and_what_the_new_version_does(
    started: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'world.db'}"
    journeys = str(tmp_path / "v2" / "journeys")
    code, out, err = cli(capsys, "plan", "nurture", "--journeys", journeys, "--db", db, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "new version" and report["stored_versions"] == [1]
    fates = {(f["version"], f["state"]): (f["customers"], f["outcome"], f["to"]) for f in report["fates"]}
    assert fates == {(1, "pause"): (1, "stay", None), (1, "rest"): (2, "migrate", "long_rest")}
    code, out, _ = cli(capsys, "plan", "nurture", "--journeys", journeys, "--db", db)
    assert code == 0
    assert (
        "1  pause          1  finish on version 1 (no migrate entry for this step); version 2 also has" in out
    )
    assert "1  rest           2  move to step long_rest of version 2 (migrate)" in out
    # The same file without a new version number is refused, and says why.
    changed = tmp_path / "v1b"
    write_files(changed, {"journeys/nurture.yaml": V1.replace('"Offer"', '"Offer!"'), "templates/t.txt": "x"})
    code, out, _ = cli(capsys, "plan", "nurture", "--journeys", str(changed / "journeys"), "--db", db)
    assert code == 1 and "give the changed journey version 2" in out


def test_migrate_moves_instances_in_bulk_and_the_rest_finish_on_their_version(
    started: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = started
    w.restart(tmp_path / "v2" / "journeys")
    w.add_events(event("dee", "signup", w.clock.now() - timedelta(hours=1)))
    report = w.tick()
    assert report.journeys["nurture"].migrated == 2
    versions = {i.customer: (i.version, i.state) for i in w.instances()}
    assert versions == {
        "ann": (2, "long_rest"),
        "bob": (2, "long_rest"),
        "cy": (1, "rest"),
        "dee": (2, "pause"),
    }
    # Applied once: cy reaches "rest" later and stays on version 1, as the plan now says.
    db = f"sqlite:///{tmp_path / 'world.db'}"
    journeys = str(tmp_path / "v2" / "journeys")
    code, out, _ = cli(capsys, "plan", "nurture", "--journeys", journeys, "--db", db, "--format", "json")
    assert code == 0
    fates = {(f["version"], f["state"]): (f["outcome"], f["note"]) for f in json.loads(out)["fates"]}
    assert fates[(1, "rest")] == (
        "stay",
        "finish on version 1 (the migration from it was applied at its first tick)",
    )
    assert fates[(2, "long_rest")][0] == "current"
    w.run_until(START + 20 * DAY, timedelta(hours=12))
    got = {
        cid: [(v, s, subject, created) for v, s, subject, created in rows]
        for cid, rows in _messages(w).items()
    }
    day3 = START + 3 * DAY
    assert got["ann"] == [
        (1, "welcome", "Welcome", START),
        (1, "tips", "Tips", START + 2 * DAY),
        # The ten-day rest counts from when ann reached the old rest step, on day 2.
        (2, "offer", "A better offer", START + 12 * DAY),
    ]
    assert got["cy"] == [
        (1, "welcome", "Welcome", START + DAY),
        (1, "tips", "Tips", day3),
        (1, "offer", "Offer", day3 + 5 * DAY),
    ]
    dee_in = START + 3 * DAY
    assert got["dee"] == [
        (2, "welcome", "Welcome!", dee_in),
        (2, "tips", "Tips", dee_in + DAY),
        (2, "offer", "A better offer", dee_in + 11 * DAY),
    ]


def test_migration_from_a_step_the_old_version_lacks_is_refused(
    started: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "v2b"
    write_files(
        broken,
        {"journeys/nurture.yaml": V2.replace("rest: long_rest", "restt: long_rest"), "templates/t.txt": "x"},
    )
    db = f"sqlite:///{tmp_path / 'world.db'}"
    code, out, _ = cli(capsys, "plan", "nurture", "--journeys", str(broken / "journeys"), "--db", db)
    where = f"{broken / 'journeys' / 'nurture.yaml'}:19:5"
    assert code == 1
    assert (
        f"{where}: version 1 of 'nurture' has no step 'restt' (its steps: welcome, pause, tips, rest, offer)"
        in out
    )
    started.restart(broken / "journeys")
    report = started.tick()  # the journey is marked failed; the tick itself goes on
    assert f"{where}: version 1 of 'nurture' has no step 'restt'" in report.failed["nurture"]
    assert {i.version for i in started.instances()} == {1}  # nothing moved

    # status shows it (table and JSON) and exits 1, for monitoring
    code, out, _ = cli(capsys, "status", "--db", db, "--now", "2024-05-09T01:00:00Z")
    assert code == 1
    assert (
        "FAILED nurture since 2024-05-09T00:00:00+00:00 (again at the tick of 2024-05-09T00:00:00+00:00): "
        f"VersionConflict: {where}: version 1 of 'nurture' has no step 'restt'" in out
    )
    code, out, _ = cli(capsys, "status", "--db", db, "--format", "json", "--now", "2024-05-09T01:00:00Z")
    health = json.loads(out)["health"]
    assert code == 1 and health["ok"] is False and health["last_tick_stale"] is False
    assert [(f["journey"], f["since"]) for f in health["failed_journeys"]] == [
        ("nurture", "2024-05-09T00:00:00+00:00")
    ]
    started.restart(tmp_path / "v2" / "journeys")  # fixed: the mark clears at the next tick
    assert started.tick().failed == {}
    code, out, _ = cli(capsys, "status", "--db", db, "--format", "json", "--now", "2024-05-09T01:00:00Z")
    assert code == 0 and json.loads(out)["health"]["failed_journeys"] == []


def test_status_shows_instances_due_waits_backlog_and_the_last_tick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_files(tmp_path, {"journeys/nurture.yaml": V1, "templates/t.txt": "Hello"})
    adapter = MemoryAdapter()
    w = World(tmp_path, clock=SimClock(START), adapter=adapter)
    w.add_customers(*customers("ann", "bob", "cy"))
    w.add_events(*(event(c, "signup", START - timedelta(hours=1)) for c in ("ann", "bob", "cy")))
    adapter.fail_next(2, "retry", "provider busy")  # two welcomes stay queued for a later attempt
    w.tick()
    db = f"sqlite:///{tmp_path / 'world.db'}"
    code, out, err = cli(
        capsys,
        "status",
        "--db",
        db,
        "--format",
        "json",
        "--now",
        "2024-05-07T23:30:00Z",
        "--stale-after",
        "3d",
    )
    assert code == 0, err
    report = json.loads(out)
    nurture = report["journeys"]["nurture"]
    assert nurture["active"] == {"1": {"pause": 3}}
    assert (nurture["due_now"], nurture["due_next_hour"]) == (0, 3)  # the pause ends at midnight
    assert report["outbox"][0]["channel"] == "email" and report["outbox"][0]["queued"] == 2
    assert report["last_tick"]["at"] == "2024-05-06T00:00:00+00:00"
    assert set(report["last_tick"]["timings"]) >= {"total", "signals", "convert_and_step", "dispatch"}
    code, out, _ = cli(capsys, "status", "--db", db)  # as of the last tick: the pause ends two days later
    assert row(out, "journey", "nurture") == {
        "journey": "nurture",
        "due now": "0",
        "due in 1h": "0",
        "finished": "none",
    }
    active = table(out, "journey  version")
    assert active == [{"journey": "nurture", "version": "v1", "step": "pause", "active": "3"}]
    assert row(out, "channel", "email")["queued"] == "2"
    assert "last tick at 2024-05-06T00:00:00+00:00" in out
    # The wall clock is long past the simulated ticks: the last tick is stale, and status says so.
    assert code == 1 and "STALE: no tick for " in out and "is the engine running?" in out
    code, out, _ = cli(capsys, "status", "--db", db, "--format", "json", "--now", "2024-05-09T00:00:00Z")
    health = json.loads(out)["health"]
    assert code == 1 and health["last_tick_stale"] is True and health["failed_journeys"] == []
    assert health["stale_after_seconds"] == 3600  # after a single tick; else 3 times the usual interval
    assert health["last_tick_age_seconds"] == 3 * 86400 and health["ok"] is False
    code, out, _ = cli(capsys, "status", "--db", db, "--now", "2024-05-09T00:00:00Z", "--stale-after", "4d")
    assert code == 0 and "STALE" not in out
    assert cli(capsys, "status", "--db", f"sqlite:///{tmp_path / 'none.db'}")[0] == 1


def _messages(w: World) -> dict[str, list[tuple[int, str, str, object]]]:
    from orchestrator.clock import from_us

    out: dict[str, list[tuple[int, str, str, object]]] = {}
    for cid, version, step, subject, created in w.rows(
        "SELECT c.id, m.version, m.step, m.subject, m.created_us FROM messages m "
        "JOIN customers c ON c.key = m.customer_key ORDER BY m.created_us, m.id"
    ):
        out.setdefault(cid, []).append((version, step, subject, from_us(created)))
    return out
