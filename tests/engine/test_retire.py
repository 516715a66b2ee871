"""A journey left out of the workspace is paused, not failed; ``orchestrator retire`` ends it for good.

Leaving a journey out of ``--journeys`` once failed its queued messages for good. Now they stay queued
(not attempted, not failed) until the journey returns; retiring it cancels them, finishes its active
instances, and keeps it from running again unless a higher version arrives."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine._dispatch import DispatchReport
from orchestrator.testing import World, at

WAITS = """\
id: waits
version: {version}
segment: tier == "gold"
holdout: 0
steps:
  - id: hello
    send: {{channel: sms, template: t.txt}}
  - wait: 1d
  - id: later
    send: {{channel: sms, template: t.txt}}
"""
OTHER = """\
id: other
version: 1
segment: tier == "gold"
holdout: 0
steps:
  - id: hi
    send: {channel: sms, template: t.txt}
"""
#: The first tick; the commands below are given instants after it.
START = at("2024-05-06T10:00:00Z")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture
def world(world: World) -> World:
    """The plugin's world with two journeys, 30 queued messages each at ``START``, none dispatched."""
    world.clock.set(START)
    world.write_files(
        {
            "journeys/waits.yaml": WAITS.format(version=1),
            "journeys/other.yaml": OTHER,
            "templates/t.txt": "Hi",
        },
    )
    people = [
        {"id": f"c{i}", "tier": "gold", "phone": f"+1415555{i:04d}", "consent_sms": True} for i in range(30)
    ]
    world.add_customers(*people)
    world.engine.dispatch = lambda limit=None: DispatchReport()  # type: ignore[method-assign]
    world.tick()  # 30 queued messages per journey, nothing dispatched yet
    return world


def statuses(w: World) -> dict[str, int]:
    return dict(w.rows("SELECT journey_id || ':' || status, COUNT(*) FROM messages GROUP BY 1"))


def test_a_run_without_a_journey_leaves_its_messages_queued(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(world.store.engine.url)
    only_other = str(tmp_path / "journeys" / "other.yaml")
    code, out = run(capsys, "run", "--once", "--now", "2024-05-06T11:00:00Z", "--journeys", only_other,
                    "--db", db, "--outbox", str(tmp_path / "outbox"))  # fmt: skip
    assert code == 0, out
    assert statuses(world) == {"other:sent": 30, "waits:queued": 30}
    assert world.rows("SELECT COUNT(*) FROM messages WHERE journey_id = 'waits' AND attempts > 0") == [(0,)]
    # It returns: its messages go out, and its instances carry on.
    code, out = run(capsys, "run", "--once", "--now", "2024-05-06T12:00:00Z", "--journeys",
                    str(tmp_path / "journeys"), "--db", db, "--outbox", str(tmp_path / "outbox"))  # fmt: skip
    assert code == 0, out
    assert statuses(world) == {"other:sent": 30, "waits:sent": 30}


def test_retire_cancels_queued_messages_finishes_instances_and_refuses_the_old_version(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(world.store.engine.url)
    code, out = run(capsys, "retire", "waits", "--db", db)
    assert code == 0, out
    assert "30 queued message(s) cancelled, 30 active instance(s) finished" in out
    assert statuses(world) == {"other:queued": 30, "waits:cancelled": 30}
    assert world.rows("SELECT DISTINCT reason FROM messages WHERE journey_id = 'waits'") == [
        ("journey retired",)
    ]
    assert world.rows(
        "SELECT status, exit_reason, COUNT(*) FROM journey_instances WHERE journey_id = 'waits' GROUP BY 1, 2"
    ) == [("exited", "journey retired", 30)]
    assert "already retired" in run(capsys, "retire", "waits", "--db", db)[1]
    code, out = run(capsys, "retire", "nosuch", "--db", db)
    assert code == 1 and "no journey 'nosuch' has run on this store" in out

    # The retired version in a workspace is refused with a one-line reason; the other journey runs on.
    everything = ["--journeys", str(tmp_path / "journeys"), "--db", db, "--outbox", str(tmp_path / "outbox")]
    code, out = run(capsys, "run", "--once", "--now", "2024-05-06T11:00:00Z", *everything)
    assert code == 1 and "journey 'waits' was retired at version 1" in out and "version 2" in out
    assert "Traceback" not in out
    # A higher version brings it back, as a new version.
    (tmp_path / "journeys" / "waits.yaml").write_text(WAITS.format(version=2))
    code, out = run(capsys, "run", "--once", "--now", "2024-05-06T12:00:00Z", *everything)
    assert code == 0, out
    assert world.rows("SELECT COUNT(*) FROM retired_journeys") == [(0,)]
    assert world.rows("SELECT MAX(version) FROM journey_versions WHERE journey_id = 'waits'") == [(2,)]
    assert statuses(world) == {"other:sent": 30, "waits:cancelled": 30}
