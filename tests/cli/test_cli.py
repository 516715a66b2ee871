"""The command line as a user runs it: exit codes, messages that name file, line and column, the daemon's
clean stop on SIGTERM, the demo, and the reference signals against the benchmark's own kernel."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from refbench_data import load_refbench
from tables import row

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]

JOURNEY = """\
id: welcome
version: 1
signal: count(signup, within=1d) > 0
holdout: 20
steps:
  - send:
      channel: email
      subject: "Welcome {{ customer.first_name }}"
      template: welcome.txt
goal: {event: purchase, within: 2d}
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "journeys" / "welcome.yaml").write_text(JOURNEY)
    (tmp_path / "templates" / "welcome.txt").write_text("Hello {{ customer.first_name }}!\n")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_bundled_journeys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(ROOT / "journeys"), str(ROOT / "examples"))
    assert code == 0, err
    assert "19 of 19 journey files valid" in out  # journeys/, examples/reference and examples/journeys


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("- send:", "- sned:"), "welcome.yaml:6:5: unknown key 'sned'; did you mean 'send'?"),
        (
            ("holdout: 20", "holdout: twenty"),
            "welcome.yaml:4:10: holdout: expected a number, got str 'twenty'",
        ),
        (("within: 2d}", "within: 2}"), "welcome.yaml:10:33: goal.within: 2 is not a duration"),
        (("signal: count(signup", "signal: cont(signup"), "welcome.yaml:3:9: unknown function cont()"),
    ],
)
def test_validate_reports_file_line_column(
    capsys: pytest.CaptureFixture[str], workspace: Path, change: tuple[str, str], expected: str
) -> None:
    path = workspace / "journeys" / "welcome.yaml"
    path.write_text(JOURNEY.replace(*change))
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    assert expected in err
    assert err.startswith(str(path))


def test_validate_reports_undefined_template_variable(
    capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    (workspace / "templates" / "welcome.txt").write_text("Hello\n{{ cusomer.first_name }}!\n")
    path = workspace / "journeys" / "welcome.yaml"
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    assert f"{path}:9:17: template 'welcome.txt' line 2: undefined variable 'cusomer'" in err


def test_validate_reports_missing_template_and_unknown_metric(
    capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    path = workspace / "journeys" / "welcome.yaml"
    path.write_text(
        JOURNEY.replace("template: welcome.txt", "template: nope.txt").replace(
            'subject: "Welcome {{ customer.first_name }}"', 'subject: "{{ metrics.score }}"'
        )
    )
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    assert f"{path}:9:17: template 'nope.txt' not found\n" in err  # nothing close to suggest
    assert f"{path}:8:16: the inline template line 1: metrics.score is not a metric of this journey" in err


def test_validate_suggests_the_template_meant(capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    path = workspace / "journeys" / "welcome.yaml"
    path.write_text(JOURNEY.replace("template: welcome.txt", "template: welcome"))
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    assert f"{path}:9:17: template 'welcome' not found; did you mean 'welcome.txt'?" in err


def write_events(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_ingest_run_report_round_trip(capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    db = f"sqlite:///{workspace / 'o.db'}"
    customers = workspace / "customers.csv"
    customers.write_text(
        "customer_id,first_name,email,consent_email\n"
        + "".join(f"u{i},Name{i},u{i}@example.com,true\n" for i in range(40))
    )
    events = workspace / "events.jsonl"
    write_events(
        events,
        [
            *(
                json.dumps({"customer_id": f"u{i}", "event": "signup", "ts": "2024-01-01T10:00:00Z"})
                for i in range(40)
            ),
            '{"customer_id": "u1", "event": "signup", "ts": "2024-01-01T10:00:00"}',  # no time zone
            "not json at all",
            '{"customer_id": "u2", "ts": "2024-01-01T10:00:00Z"}',  # no event
            json.dumps({"customer_id": "u3", "event": "purchase", "ts": "2024-01-02T09:00:00Z"}),
        ],
    )
    code, out, _ = run(capsys, "ingest", str(customers), "--db", db)
    assert code == 0
    counted = row(out, "file", str(customers))
    assert (counted["kind"], counted["accepted"], counted["rejected"]) == ("customers", "40", "0")
    code, out, err = run(capsys, "ingest", str(events), "--db", db)
    assert code == 0
    counted = row(out, "file", str(events))
    assert (counted["kind"], counted["accepted"], counted["rejected"]) == ("events", "41", "3")
    for line in (41, 42, 43):
        assert f"{events}:{line}:" in err
    rejects = workspace / "rejects.jsonl"
    assert run(capsys, "ingest", str(events), "--db", db, "--strict", "--rejects", str(rejects))[0] == 1
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in written] == [
        (41, str(events)),
        (42, str(events)),
        (43, str(events)),
    ]
    assert "time zone" in written[0]["detail"] + written[0]["reason"]

    common = ["--db", db, "--journeys", str(workspace / "journeys"), "--outbox", str(workspace / "outbox")]
    code, out, err = run(capsys, "run", "--once", "--now", "2024-01-01T12:00:00Z", *common)
    assert code == 0, err
    assert "welcome: entered 40" in out
    emails = list((workspace / "outbox" / "email").glob("*.eml"))
    with sqlite3.connect(workspace / "o.db") as conn:
        held = conn.execute("SELECT COUNT(*) FROM holdout_assignments WHERE arm = 'holdout'").fetchone()[0]
        sent = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'sent'").fetchone()[0]
    assert 0 < held < 40
    assert len(emails) == sent == 40 - held

    code, _, _ = run(capsys, "run", "--once", "--now", "2024-01-04T12:00:00Z", *common)
    code, out, _ = run(capsys, "report", "welcome", "--db", db, "--format", "json")
    assert code == 0
    report = json.loads(out)
    arms = {a["name"]: a for a in report["lift"]["arms"]}
    assert arms["holdout"]["n"] == held and arms["treatment"]["n"] == 40 - held
    assert sum(a["conversions"] for a in arms.values()) == 1  # u3 bought on the next day
    code, out, _ = run(capsys, "report", "welcome", "--db", db)
    assert "conversion rate lift" in out and "treatment" in out


def test_run_rejects_bad_instant(capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    code, _, err = run(
        capsys,
        "run",
        "--once",
        "--now",
        "2024-01-01T12:00:00",
        "--db",
        f"sqlite:///{workspace / 'o.db'}",
        "--journeys",
        str(workspace / "journeys"),
    )
    assert code == 2 and "has no time zone" in err


def _twenty_signups(capsys: pytest.CaptureFixture[str], workspace: Path) -> str:
    """A store in the workspace holding 20 customers' signups at 2024-01-01 10:00; its URL."""
    db = f"sqlite:///{workspace / 'o.db'}"
    events = workspace / "events.jsonl"
    write_events(
        events,
        [
            json.dumps({"customer_id": f"u{i}", "event": "signup", "ts": "2024-01-01T10:00:00Z"})
            for i in range(20)
        ],
    )
    assert run(capsys, "ingest", str(events), "--db", db)[0] == 0
    return db


def test_run_once_refuses_a_clock_before_the_last_tick(
    capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    db = _twenty_signups(capsys, workspace)
    common = ["--db", db, "--journeys", str(workspace / "journeys"), "--outbox", str(workspace / "outbox")]
    assert run(capsys, "run", "--once", "--now", "2024-01-01T12:00:00Z", *common)[0] == 0
    with sqlite3.connect(workspace / "o.db") as conn:
        before = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    code, out, err = run(capsys, "run", "--once", "--now", "2024-01-01T11:00:00Z", *common)
    assert code == 1 and out == ""
    assert err == (
        "orchestrator run: the clock (2024-01-01T11:00:00+00:00) is before the last tick "
        "(2024-01-01T12:00:00+00:00); refusing to run\n"
    )
    with sqlite3.connect(workspace / "o.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == before
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 1
    assert run(capsys, "run", "--once", "--now", "2024-01-01T12:00:00Z", *common)[0] == 0  # the same instant


def test_daemon_waits_while_its_clock_is_before_the_last_tick(
    capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    db = f"sqlite:///{workspace / 'o.db'}"
    common = ["--db", db, "--journeys", str(workspace / "journeys"), "--outbox", str(workspace / "outbox")]
    ahead = (datetime.now(UTC) + timedelta(days=1)).isoformat()  # a tick run by a clock a day ahead
    assert run(capsys, "run", "--once", "--now", ahead, *common)[0] == 0
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "daemon", "--interval", "0.2", "--max-ticks", "4",
         *common],
        capture_output=True, text=True, timeout=120, cwd=workspace, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "stopped cleanly after 4 tick(s)" in proc.stderr  # the daemon's lines are its log, on stderr
    assert proc.stderr.count("is before the last tick") == 1, proc.stderr  # said once, not per tick
    assert proc.stderr.count("tick skipped") == 4, proc.stderr  # a short line per tick, as a heartbeat
    assert "skipping ticks until the clock passes the last tick" in proc.stderr
    assert "Traceback" not in proc.stderr
    with sqlite3.connect(workspace / "o.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 1  # no tick ran


def test_a_waiting_daemon_says_so_once_and_once_when_it_ticks_again(caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.engine._daemon import waiting_for_clock
    from orchestrator.engine._tick import ClockBehind

    outcomes: list[object] = [ClockBehind(1, 2), ClockBehind(1, 2), ClockBehind(1, 2), "tick", "tick"]

    def tick() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    waiting = waiting_for_clock(tick)
    with caplog.at_level("WARNING", logger="orchestrator.daemon"):
        assert [waiting() for _ in range(5)] == [None, None, None, "tick", "tick"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert said[0].endswith("is before the last tick (1970-01-01T00:00:00.000002+00:00); refusing to run; "
                            "skipping ticks until the clock passes the last tick")  # fmt: skip
    assert said[1] == "the clock has passed the last tick; ticking again"


def test_run_once_with_a_failed_journey_runs_the_others_and_exits_1(
    capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    db = _twenty_signups(capsys, workspace)
    customers = workspace / "customers.csv"
    customers.write_text(
        "customer_id,first_name,email,consent_email\n"
        + "".join(f"u{i},N{i},u{i}@example.com,true\n" for i in range(20))
    )
    assert run(capsys, "ingest", str(customers), "--db", db)[0] == 0
    common = ["--db", db, "--journeys", str(workspace / "journeys"), "--outbox", str(workspace / "outbox")]
    assert run(capsys, "run", "--once", "--now", "2024-01-01T11:00:00Z", *common)[0] == 0
    path = workspace / "journeys" / "welcome.yaml"
    path.write_text(JOURNEY.replace("holdout: 20", "holdout: 30"))  # changed, still version 1
    (workspace / "journeys" / "hello.yaml").write_text(
        JOURNEY.replace("id: welcome", "id: hello").replace("holdout: 20", "holdout: 0")
    )
    code, out, err = run(capsys, "run", "--once", "--now", "2024-01-01T12:00:00Z", *common)
    assert code == 1
    assert "hello: entered 20 (holdout 0)" in out and "delivered 20" in out
    assert f"welcome: FAILED, its work at this tick undone: VersionConflict: {path}: journey 'welcome'" in out
    assert err.startswith(f"orchestrator run: journey welcome failed: VersionConflict: {path}: journey ")
    assert "Traceback" not in err


def test_report_unknown_journey(capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    db = f"sqlite:///{workspace / 'o.db'}"
    code, _, err = run(capsys, "report", "nope", "--db", db)
    assert code == 1 and "no store at" in err
    assert not (workspace / "o.db").exists()  # a report never creates a store
    assert (
        run(
            capsys,
            "run",
            "--once",
            "--db",
            db,
            "--journeys",
            str(workspace / "journeys"),
            "--outbox",
            str(workspace / "outbox"),
        )[0]
        == 0
    )
    code, _, err = run(capsys, "report", "nope", "--db", db)
    assert code == 1 and "journey 'nope' has not run in this store (known: welcome)" in err


def test_daemon_ticks_until_sigterm_then_stops_cleanly(workspace: Path) -> None:
    db = workspace / "o.db"
    env = {**os.environ, "ORCHESTRATOR_DB": f"sqlite:///{db}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "daemon",
            "--interval",
            "0.3",
            "--journeys",
            str(workspace / "journeys"),
            "--outbox",
            str(workspace / "outbox"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=workspace,
    )
    try:
        deadline = time.monotonic() + 60
        ticks = 0
        while time.monotonic() < deadline and ticks < 3:
            time.sleep(0.2)
            if db.exists():
                try:
                    with sqlite3.connect(db) as conn:
                        ticks = conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # the daemon has not created its tables yet
        assert ticks >= 3, "the daemon did not tick"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped cleanly after" in err and out == ""  # the daemon's lines are its log, on stderr


def test_ingest_reports_stale_customer_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    header = "customer_id,consent_email,updated_at\n"
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    new.write_text(header + "u1,false,2024-01-02T00:00:00Z\nu2,true,2024-01-02T00:00:00Z\n")
    old.write_text(header + "u1,true,2024-01-01T00:00:00Z\nu3,true,2024-01-01T00:00:00Z\n")
    assert run(capsys, "ingest", str(new), "--db", db)[0] == 0
    code, out, err = run(capsys, "ingest", str(old), "--db", db)
    assert code == 0, err
    counted = row(out, "file", str(old))  # u1's row is older than the stored record: stale, not applied
    assert (counted["accepted"], counted["rejected"], counted["stale"], counted["duplicates"]) == (
        "1",
        "0",
        "1",
        "-",
    )


def test_demo_runs_and_reports(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        capsys,
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--days",
        "5",
        "--ticks-per-day",
        "4",
        "--data",
        str(ROOT / "examples" / "demo"),
        "--journeys",
        str(ROOT / "journeys"),
    )
    assert code == 0, err
    assert "Ingested 1000 customers" in out
    assert out.count("Lift report:") == 3
    files = [p for p in (tmp_path / "demo" / "outbox").rglob("*") if p.is_file()]
    with sqlite3.connect(tmp_path / "demo" / "orchestrator.db") as conn:
        sent = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'sent'").fetchone()[0]
        leaked = conn.execute(
            "SELECT COUNT(*) FROM messages m JOIN journey_instances i ON i.id = m.instance_id WHERE i.holdout"
        ).fetchone()[0]
    assert sent > 100 and len(files) == sent
    assert leaked == 0


def demo_args(*extra: str) -> list[str]:
    data, journeys = str(ROOT / "examples" / "demo"), str(ROOT / "journeys")
    return ["demo", "--days", "1", "--ticks-per-day", "2", "--data", data, "--journeys", journeys, *extra]


def test_demo_writes_only_into_a_folder_of_its_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A folder holding a store and an outbox the demo did not make is left exactly as it was.
    production = tmp_path / "shop"
    (production / "outbox" / "email").mkdir(parents=True)
    (production / "outbox" / "email" / "m.eml").write_text("a real message")
    (production / "orchestrator.db").write_bytes(b"the real store")
    before = {p: p.read_bytes() for p in production.rglob("*") if p.is_file()}
    monkeypatch.chdir(production)
    code, out, err = run(capsys, *demo_args("--dir", "."))
    assert code != 0 and out == ""
    assert err.strip() == (
        f"demo: will not write into {production}: it is not empty and was not made by the demo"
        " (no .orchestrator-demo in it); choose a new or empty folder with --dir"
    )
    assert {p: p.read_bytes() for p in production.rglob("*") if p.is_file()} == before
    # The default folder, demo/, is created and marked; a second run replaces what the first wrote.
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, out, err = run(capsys, *demo_args())
        assert code == 0, err
        assert "The demo wrote only into demo/" in out
    assert (tmp_path / "demo" / ".orchestrator-demo").is_file()
    with sqlite3.connect(tmp_path / "demo" / "orchestrator.db") as conn:
        customers = conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    assert customers == 1000  # a fresh store, not the first run's plus the second's


@pytest.mark.parametrize("seed", [42, 7])
def test_reference_signals_match_the_reference_kernel(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, seed: int
) -> None:
    refbench = load_refbench()
    data = refbench.generate(3000, seed=seed)
    refbench.write(data, str(tmp_path / "data"))
    n = int(data["customer_id"].max()) + 1
    expected = refbench.evaluate(data, n)
    ids = np.arange(n)
    code, out, err = run(
        capsys,
        "evaluate",
        "--journeys",
        str(ROOT / "examples" / "reference"),
        "--events",
        str(tmp_path / "data" / "events.parquet"),
        "--now",
        "2023-11-15T00:00:00Z",
        "--format",
        "json",
    )
    assert code == 0, err
    got = json.loads(out)["journeys"]
    names = {
        "r1": "r1_recency",
        "r2": "r2_frequency_drop",
        "r3": "r3_cart_abandonment",
        "r4": "r4_browse_intent",
        "r5": "r5_engagement_score",
    }
    for rule, journey in names.items():
        mask = expected[rule]
        assert got[journey] == {"count": int(mask.sum()), "id_sum": int(ids[mask].sum())}, rule
