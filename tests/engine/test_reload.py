"""Reloading a running engine's workspace (``engine._reload``), in process: a changed file is taken once it
stands still and the next tick runs it; a broken edit is reported once, at file:line:column, and the
running version keeps sending; the store refuses a version that changed meaning; the running templates
stand still on disk until a reload."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from orchestrator.engine._reload import Reloader, WorkspaceFiles, pin_templates
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import World, customer

JOURNEY = """\
id: welcome
version: 1
entry:
  segment: cohort == "x"
holdout: 0
steps:
  - id: greet
    send:
      channel: email
      subject: "Hello"
      template: welcome.txt
"""

V2 = JOURNEY.replace("version: 1", "version: 2").replace('"Hello"', '"Hello again, from version two"')


@pytest.fixture
def world(world: World) -> World:
    """The plugin's world (clock at T0) with the welcome journey and three customers."""
    world.write_files({"journeys/welcome.yaml": JOURNEY, "templates/welcome.txt": "Hi {{ customer.id }}\n"})
    world.add_customers(*customers(0, 3))
    pin_templates(world.engine.workspace)
    return world


def customers(start: int, end: int) -> list[dict[str, Any]]:
    return [customer(f"c{i}", cohort="x") for i in range(start, end)]


def join(world: World, start: int, end: int) -> None:
    with world.store.begin() as conn:
        upsert_customers(conn, customers(start, end), now_us=0)


def sent_versions(world: World) -> dict[str, tuple[int, str]]:
    rows = world.rows(
        "SELECT c.id, m.version, m.subject FROM messages m JOIN customers c ON c.key = m.customer_key "
        "WHERE m.status = 'sent'"
    )
    return {cid: (version, subject) for cid, version, subject in rows}


def reloader(world: World) -> Reloader:
    return Reloader(WorkspaceFiles.of([world.folder / "journeys"]), world.engine)


def reload_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "orchestrator.reload"]


def test_a_changed_file_is_taken_once_it_stands_still_and_the_next_tick_runs_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.reload")
    world.tick()
    watcher = reloader(world)
    assert watcher.check() is False  # nothing changed
    (world.folder / "journeys" / "welcome.yaml").write_text(V2)
    assert watcher.check() is False  # seen once: taken if it stands still until the next look
    assert watcher.check() is True
    assert world.engine.workspace.plans[0].version == 1  # handed over; the next tick takes it
    [record] = reload_records(caplog)
    assert record.getMessage() == "workspace reloaded; the next tick runs it"
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["trigger"] == "files"
    assert fields["versions"] == {"welcome": 2}
    assert fields["changes"] == ["welcome v1 -> v2"]
    assert fields["files"] == [str(world.folder / "journeys" / "welcome.yaml")]
    join(world, 3, 5)
    world.tick()
    assert world.engine.workspace.plans[0].version == 2
    versions = sent_versions(world)
    assert versions == {
        **{f"c{i}": (1, "Hello") for i in range(3)},
        **{f"c{i}": (2, "Hello again, from version two") for i in range(3, 5)},
    }
    assert watcher.check() is False and watcher.check(forced=True) is True  # SIGHUP reloads anyway
    assert reload_records(caplog)[-1].fields["changes"] == ["no journey version changed"]  # type: ignore[attr-defined]


def test_a_broken_edit_is_reported_once_and_the_running_version_keeps_sending(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.reload")
    world.tick()
    watcher = reloader(world)
    path = world.folder / "journeys" / "welcome.yaml"
    path.write_text(V2.replace("holdout: 0", "holdout: [0"))  # a YAML error
    for _ in range(5):
        assert watcher.check() is False
    [record] = reload_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage() == "workspace not reloaded: 1 problem(s); the running journeys keep running"
    [problem] = record.fields["problems"]  # type: ignore[attr-defined]
    assert problem == f"{path}:6:6: YAML syntax: expected ',' or ']', but got ':'"
    assert record.fields["versions"] == {"welcome": 1}  # type: ignore[attr-defined]
    join(world, 3, 4)
    world.tick()
    assert sent_versions(world)["c3"] == (1, "Hello")  # still sending, with the running version

    assert watcher.check(forced=True) is False  # SIGHUP is answered, even with the same problems
    assert len(reload_records(caplog)) == 2
    path.write_text(V2.replace("  - id: greet", "  - id: greet\n    sned: x"))  # an unknown key
    assert watcher.check() is False and watcher.check() is False
    assert len(reload_records(caplog)) == 3
    [problem] = reload_records(caplog)[-1].fields["problems"]  # type: ignore[attr-defined]
    assert problem == f"{path}:8:5: unknown key 'sned'; did you mean 'send'?"

    path.write_text(V2)  # fixed
    assert watcher.check() is False and watcher.check() is True
    record = reload_records(caplog)[-1]
    assert record.getMessage() == "workspace reloaded (the earlier problems are fixed); the next tick runs it"
    join(world, 4, 5)
    world.tick()
    assert sent_versions(world)["c4"] == (2, "Hello again, from version two")


def test_the_store_refuses_a_version_that_changed_meaning_and_an_emptied_folder(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.reload")
    world.tick()  # version 1 ran: its meaning is stored
    watcher = reloader(world)
    path = world.folder / "journeys" / "welcome.yaml"
    path.write_text(JOURNEY.replace('"Hello"', '"Hello there"'))  # changed, still version 1
    assert watcher.check(forced=True) is False
    [problem] = reload_records(caplog)[-1].fields["problems"]  # type: ignore[attr-defined]
    assert problem == (
        f"{path}:2:10: journey 'welcome' version 1 has changed since it first ran; give the changed journey "
        "version 2"
    )
    path.unlink()
    assert watcher.check(forced=True) is False
    [problem] = reload_records(caplog)[-1].fields["problems"]  # type: ignore[attr-defined]
    assert problem == f"no journey files found in {world.folder / 'journeys'}"
    assert world.engine.workspace.plans[0].version == 1
    world.tick()  # nothing was handed over
    assert world.engine.workspace.plans[0].version == 1


def test_the_running_templates_stand_still_until_a_reload(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.reload")
    watcher = reloader(world)
    renderer = world.engine.workspace.renderer("welcome")
    template = world.folder / "templates" / "welcome.txt"
    assert renderer.render("welcome.txt", {"customer": {"id": "c0"}}) == "Hi c0"
    template.unlink()
    assert renderer.render("welcome.txt", {"customer": {"id": "c0"}}) == "Hi c0"  # as validated
    template.write_text("Hi {{ customer.id \n")  # a syntax error, on disk
    assert renderer.render("welcome.txt", {"customer": {"id": "c0"}}) == "Hi c0"
    assert renderer.render("./welcome.txt", {"customer": {"id": "c1"}}) == "Hi c1"  # the name as on disk
    assert watcher.check() is False and watcher.check() is False
    [problem] = reload_records(caplog)[-1].fields["problems"]  # type: ignore[attr-defined]
    assert "welcome.txt" in problem and "syntax error" in problem, problem
    world.tick()
    assert sent_versions(world)["c0"] == (1, "Hello")
    assert world.rows("SELECT body FROM messages WHERE status = 'sent'")[0][0] == "Hi c0"
    template.write_text("Welcome aboard, {{ customer.id }}\n")
    assert watcher.check() is False and watcher.check() is True
    assert reload_records(caplog)[-1].fields["files"] == [str(template)]  # type: ignore[attr-defined]
    join(world, 3, 4)
    world.tick()
    body = world.rows(
        "SELECT m.body FROM messages m JOIN customers c ON c.key = m.customer_key WHERE c.id = 'c3'"
    )
    assert body[0][0] == "Welcome aboard, c3"


def test_scratch_files_and_untouched_files_are_not_a_change(world: World) -> None:
    watcher = reloader(world)
    (world.folder / "journeys" / ".welcome.yaml.swp").write_text("editor state")
    (world.folder / "journeys" / "welcome.yaml~").write_text("backup")
    (world.folder / "templates" / ".#welcome.txt").write_text("lock")
    before = watcher.files.fingerprint()
    assert watcher.check() is False and watcher.check() is False
    (world.folder / "policy.yaml").write_text("caps: {}\n")  # a policy beside the journeys folder appears
    assert watcher.files.fingerprint() != before


def test_the_signal_state_follows_a_version_whose_meaning_changed_before_it_ran() -> None:
    from orchestrator.engine._signal_state import SignalState
    from orchestrator.engine._workspace import plan_from_source

    source = "id: j\nversion: 1\nholdout: 0\nsignal: count(signup, within=1d) > 0\nsteps:\n  - exit\n"
    first = plan_from_source(source, "j.yaml")
    edited = plan_from_source(source.replace("signup", "purchase"), "j.yaml")

    def events_counted() -> list[object]:
        return [call.args[0].parts for call in state.aggregates.calls]  # type: ignore[attr-defined]

    state = SignalState([first])
    assert events_counted() == [("signup",)]
    state.ensure([edited])  # the same journey version, another meaning: it replaces the first
    assert events_counted() == [("purchase",)]
    state.ensure([edited])
    assert events_counted() == [("purchase",)]
