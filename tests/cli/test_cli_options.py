"""The command line's parser and faces: a quick start (no heavy import for ``--help`` and ``--version``),
usage errors as one line with exit 2, ``--config``, settings taken from flag, config, environment and
default in that order, greedy options, plain tables in pipes and progress only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import _settings as settings
from orchestrator.cli import main
from orchestrator.cli._app import app, spread
from orchestrator.cli._errors import UsageError
from orchestrator.cli._settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "sqlalchemy", "pyarrow", "jinja2", "pydantic", "scipy", "rich")

JOURNEY = """\
id: welcome
version: 1
signal: count(signup, within=1d) > 0
holdout: 0
steps:
  - send: {channel: email, subject: "Welcome", template: welcome.txt}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_version_import_nothing_heavy() -> None:
    # A fact, not a timing: the parts that take seconds to import are not imported to answer these.
    script = (
        "import sys, io, contextlib\n"
        "import orchestrator.cli\n"
        "from orchestrator.cli._app import build_app\n"
        "build_app()\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    codes = [orchestrator.cli.main(['--help']), orchestrator.cli.main(['--version'])]\n"
        "after = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(loaded & set(sys.argv[1:])), sorted(after & set(sys.argv[1:])), codes)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *HEAVY], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[] [] [0, 0]", done.stdout + done.stderr


def test_version_help_and_every_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"orchestrator {__version__}\n"
    code, out, _ = run(capsys, "-h")
    names = [info.name for info in app.registered_commands]
    assert code == 0 and all(f"  {name} " in out for name in names)
    assert {
        "validate",
        "ingest",
        "run",
        "daemon",
        "retire",
        "report",
        "lift",
        "evaluate",
        "plan",
        "status",
        "init",
        "config",
        "send-test",
    } <= set(names)
    for name in names:
        assert name is not None
        code, out, err = run(capsys, name, "--help")
        assert code == 0 and out.startswith(f"Usage: orchestrator {name} "), err
        # Every command that reads a workspace takes --config; init makes one.
        assert ("--config FILE" in out) == (name != "init")
    code, out, _ = run(capsys, "daemon", "--help")
    for hidden in ("--max-ticks", "--simulated-clock", "--simulated-step", "--attempt-log", "--provider"):
        assert hidden not in out  # crash-test flags: accepted, not shown
    assert "--interval SECONDS" in out and "--inbox DIR" in out
    code, out, _ = run(capsys, "report", "--help")
    from orchestrator.measure._sequential import DEFAULT_SEQUENTIAL_TAU

    assert f"(default {DEFAULT_SEQUENTIAL_TAU:g})" in " ".join(out.split())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--bogus"], "orchestrator run: No such option: --bogus (see 'orchestrator run --help')"),
        (["nope"], "orchestrator: No such command 'nope'."),
        (
            ["status", "--format", "xml"],
            "orchestrator status: Invalid value for '--format': 'xml' is not one of",
        ),
        (["ingest"], "orchestrator ingest: Missing argument 'FILE'."),
        (["lift", "x.csv", "--arm", "a", "--control", "c"], "orchestrator lift: Missing option '--metric'."),
        (["daemon", "--interval", "x"], "orchestrator daemon: Invalid value for '--interval': "),
        (["run", "--journeys"], "orchestrator run: Option '--journeys' requires an argument."),
        (["run"], "orchestrator run: --once is required: it runs exactly one tick"),
        (["daemon", "--interval", "0"], "orchestrator daemon: --interval must be positive"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(expected), err
    assert "Value error" not in err
    assert not list(tmp_path.iterdir())  # nothing was created: no store, no outbox


def test_no_arguments_print_the_help_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and "Usage: orchestrator [OPTIONS] COMMAND" in out + err


def test_config_must_name_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for argv in (["--config", str(missing), "status"], ["status", "--config", str(missing)]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "")
        assert err == f"orchestrator status: --config {missing}: no such file\n"
    code, _, err = run(capsys, "status", "--config", str(tmp_path))
    assert code == 2 and err == f"orchestrator status: --config {tmp_path}: not a file\n"
    config = tmp_path / "orchestrator.yaml"
    config.write_text("# the workspace config\n")
    db = f"sqlite:///{tmp_path / 'none.db'}"
    code, _, err = run(capsys, "--config", str(config), "status", "--db", db)
    assert code == 1 and err == (  # accepted: the command ran (and found no store)
        "orchestrator status: no store with engine tables here; ingest data and run the engine first\n"
    )


def test_settings_come_from_flag_then_config_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environ = {
        "ORCHESTRATOR_DB": "sqlite:///env.db",
        "ORCHESTRATOR_GLOBAL_HOLDOUT": "5",
        "ORCHESTRATOR_DELIVERY": "email=at_most_once",
    }
    bare = Settings(environ={})
    assert bare.db(None) == "sqlite:///orchestrator.db"
    assert (bare.global_holdout(None), bare.delivery(None), bare.interval(None)) == (0.0, {}, 60.0)
    assert (bare.watch(None), bare.log_format(None), bare.log_level(None)) == (1.0, "text", "info")
    with pytest.raises(UsageError, match=r"^--watch must be 0 \(only on SIGHUP\) or positive$"):
        bare.watch(-1.0)
    assert (bare.journeys(None), bare.outbox(None), bare.templates(None), bare.inbox(None)) == (
        ["journeys"],
        Path("outbox"),
        None,
        None,
    )
    from_env = Settings(environ=environ)
    assert from_env.db(None) == "sqlite:///env.db"
    assert from_env.global_holdout(None) == 5.0
    assert from_env.delivery(None) == {"email": "at_most_once"}
    with pytest.raises(UsageError, match=r"^ORCHESTRATOR_GLOBAL_HOLDOUT='x' is not a percent$"):
        Settings(environ={"ORCHESTRATOR_GLOBAL_HOLDOUT": "x"}).global_holdout(None)
    with pytest.raises(UsageError, match=r"^--delivery: 'email=never': unknown delivery mode 'never'"):
        Settings(environ={}).delivery(["email=never"])
    with pytest.raises(UsageError, match=r"^the global holdout is a percent between 0 and 100, not 120$"):
        Settings(environ={}).global_holdout(120.0)
    config: dict[str, Any] = {
        "db": "sqlite:///config.db",
        "global_holdout": 7,
        "delivery": {"sms": "at_most_once"},
        "journeys": ["flows"],
        "outbox": "out",
        "interval": 5,
        "log_format": "json",
        "log_level": "WARNING",
    }
    seen: list[Path | None] = []

    def load(path: Path | None) -> Mapping[str, Any]:
        seen.append(path)
        return config

    monkeypatch.setattr(settings, "load_workspace_config", load)
    configured = Settings(tmp_path / "o.yaml", environ=environ)
    assert configured.db(None) == "sqlite:///config.db"
    assert configured.global_holdout(None) == 7.0
    assert configured.delivery(None) == {"sms": "at_most_once"}
    assert (configured.journeys(None), configured.outbox(None), configured.interval(None)) == (
        ["flows"],
        Path("out"),
        5.0,
    )
    assert (configured.log_format(None), configured.log_level(None)) == ("json", "warning")
    assert (configured.log_format("text"), configured.watch(0.0)) == ("text", 0.0)
    assert seen == [tmp_path / "o.yaml"]  # read once, from the --config path
    assert configured.db("sqlite:///flag.db") == "sqlite:///flag.db"
    assert configured.global_holdout(0.0) == 0.0  # a flag equal to the default still wins
    assert configured.delivery(["push=at_most_once"]) == {"push": "at_most_once"}
    assert configured.journeys(["a.yaml", "b.yaml"]) == ["a.yaml", "b.yaml"]


def test_greedy_options_take_every_value_up_to_the_next_option() -> None:
    greedy = {"--journeys", "--events"}
    assert spread(["--journeys", "a", "b", "--db", "x", "c"], greedy) == [
        "--journeys", "a", "--journeys", "b", "--db", "x", "c",
    ]  # fmt: skip
    assert spread(["--events", "e1", "e2", "--now", "-1", "--journeys", "j"], greedy) == [
        "--events", "e1", "--events", "e2", "--now", "-1", "--journeys", "j",
    ]  # fmt: skip
    optional = frozenset({"--events"})  # may be given alone: no files
    assert spread(["--events", "--now", "x", "--events"], greedy, optional) == ["--now", "x"]
    assert spread(["--events", "e", "--journeys", "--db"], greedy, optional) == [
        "--events",
        "e",
        "--journeys",
        "--db",
    ]
    assert spread(["--journeys=a", "b", "--", "--journeys", "c"], greedy) == [
        "--journeys=a", "b", "--", "--journeys", "c",
    ]  # fmt: skip


def test_journeys_given_once_or_repeated_are_the_same(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(JOURNEY.replace("id: welcome", f"id: {name}"))
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "welcome.txt").write_text("Hello\n")
    outputs = []
    for journeys in (["--journeys", "a.yaml", "b.yaml"], ["--journeys", "a.yaml", "--journeys", "b.yaml"]):
        argv = ["evaluate", *[str(tmp_path / j) if j.endswith(".yaml") else j for j in journeys]]
        code, out, err = run(capsys, *argv, "--now", "2024-01-01T00:00:00Z", "--format", "json")
        assert code == 0, err
        outputs.append(sorted(json.loads(out)["journeys"]))
    assert outputs == [["a", "b"], ["a", "b"]]


def test_environment_settings_reach_the_engine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "journeys" / "welcome.yaml").write_text(JOURNEY)
    (tmp_path / "templates" / "welcome.txt").write_text("Hello\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_DB", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("ORCHESTRATOR_DELIVERY", "email=sometimes")
    code, _, err = run(capsys, "run", "--once")
    assert code == 2 and err.startswith(
        "orchestrator run: ORCHESTRATOR_DELIVERY: 'email=sometimes': unknown "
    )
    code, _, err = run(capsys, "run", "--once", "--delivery", "email=at_most_once")  # the flag wins
    assert code == 0, err
    assert (tmp_path / "env.db").is_file() and not (tmp_path / "orchestrator.db").exists()
    with sqlite3.connect(tmp_path / "env.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 1


def test_piped_tables_are_plain_text(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(
        "".join(
            json.dumps({"customer_id": f"u{i}", "event": "signup", "ts": "2024-01-01T10:00:00Z"}) + "\n"
            for i in range(5)
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "ingest", str(events), str(events), "--db",
         f"sqlite:///{tmp_path / 'o.db'}"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "FORCE_COLOR": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar in a pipe
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout and all(line == line.rstrip() for line in lines)
    assert lines[0].split() == ["file", "kind", "accepted", "rejected", "duplicates", "stale", "time"]
    assert lines[1].split()[:6] == [str(events), "events", "5", "0", "0", "0"]
    assert lines[2].split()[:6] == [str(events), "events", "0", "0", "5", "0"]
    assert lines[3].split()[:6] == ["total", "events", "5", "0", "5", "0"]


def _read_all(fd: int, until: float) -> bytes:
    chunks = []
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_a_progress_bar_is_drawn_on_a_terminal_only() -> None:
    script = (
        "import sys\n"
        "from orchestrator.cli._output import Progress\n"
        "bar = Progress('ingest big.jsonl', delay=0.0).__enter__()\n"
        "bar.update(5_000_000, 10_000_000)\n"
        "if bar._timer: bar._timer.join()\n"  # the timer has drawn the bar
        "bar.update(7_500_000, 10_000_000)\n"
        "sys.stderr.write('drawn ' + str(bar._bar is not None) + '\\n')\n"
        "bar.close()\n"
    )
    # stderr a pipe: nothing is drawn, nothing is written.
    piped = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert piped.stderr == "drawn False\n"
    # stderr a terminal: the bar, with the bytes read so far.
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    shown = _read_all(leader, time.monotonic() + 60).decode(errors="replace")
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    assert "drawn True" in shown
    assert "ingest big.jsonl" in shown and "/10.0 MB" in shown


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_ingest_tells_progress_per_chunk_in_bytes_of_the_file(tmp_path: Path, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orchestrator.ingest import ingest_file
    from orchestrator.store import open_store, sqlite_url

    rows = [{"customer_id": f"u{i}", "event": "view", "ts": "2024-01-01T10:00:00Z"} for i in range(20_000)]
    path = tmp_path / f"e.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        path.write_text(
            "customer_id,event,ts\n" + "".join(f"{r['customer_id']},view,{r['ts']}\n" for r in rows)
        )
    else:
        table = pa.Table.from_pylist(rows)
        ts = pa.array([1704103200000000] * len(rows), pa.timestamp("us", tz="UTC"))
        pq.write_table(table.set_column(2, "ts", ts), path, row_group_size=2000)
    store = open_store(sqlite_url(tmp_path / "o.db"))
    told: list[tuple[int, int]] = []
    report = ingest_file(
        store, path, now_us=1704200000000000, chunk_rows=2000, progress=lambda *a: told.append(a)
    )
    store.dispose()
    size = path.stat().st_size
    assert report.accepted == 20_000
    assert len(told) == 11  # after each of the 10 chunks, and once at the end (JSONL is read by the MiB)
    assert all(total == size for _, total in told)
    done = [d for d, _ in told]
    assert done == sorted(done) and done[-1] == size and 0 < done[0] < size


def test_a_tick_tells_progress_per_journey_and_dispatch_batch(tmp_path: Path) -> None:
    from orchestrator.channels._base import ChannelRouter
    from orchestrator.channels._memory import MemoryAdapter
    from orchestrator.clock import SimulatedClock, parse_instant
    from orchestrator.engine._tick import Engine
    from orchestrator.engine._workspace import load_workspace
    from orchestrator.ingest import ingest_events_records
    from orchestrator.store import open_store, sqlite_url

    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    for name in ("a", "b"):
        (tmp_path / "journeys" / f"{name}.yaml").write_text(JOURNEY.replace("id: welcome", f"id: {name}"))
    (tmp_path / "templates" / "welcome.txt").write_text("Hello\n")
    (tmp_path / "c.csv").write_text(
        "customer_id,email,consent_email\n" + "".join(f"u{i},u{i}@example.com,true\n" for i in range(1500))
    )
    store = open_store(sqlite_url(tmp_path / "o.db"))
    from orchestrator.ingest import ingest_file

    now = parse_instant("2024-01-01T12:00:00Z")
    ingest_file(store, tmp_path / "c.csv", now_us=1704110400000000)
    signups = [{"customer_id": f"u{i}", "event": "signup", "ts": "2024-01-01T10:00:00Z"} for i in range(1500)]
    ingest_events_records(store, signups, now_us=1704110400000000)
    workspace = load_workspace([str(tmp_path / "journeys")])
    engine = Engine(store, workspace, ChannelRouter([MemoryAdapter(["email"])]), SimulatedClock(now))
    told: list[tuple[str, int, int]] = []
    report = engine.tick(progress=lambda *a: told.append(a))
    store.dispose()
    assert report.delivery.delivered == 3000
    assert told == [
        ("new events and signals", 0, 2),
        ("journey a", 0, 2),
        ("journey b", 1, 2),
        ("dispatch", 2, 2),
        ("dispatch: 1000 messages", 2, 2),  # a call per batch of 1000
        ("dispatch: 2000 messages", 2, 2),
        ("dispatch: 3000 messages", 2, 2),
    ]


def test_a_store_given_as_a_bare_path_is_bad_usage_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "shop.db"
    code, out, err = run(capsys, "status", "--db", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "sqlite:///PATH" in err and "Traceback" not in err
    assert str(path) not in err and not path.exists()
