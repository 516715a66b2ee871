"""Expected failures are one line naming the cause and what to do, with a non-zero exit and no customer
values: a reader that went away (a broken pipe), a full disk (a file size limit), a store that cannot be
opened or is locked, input nested too deeply, numbers too large, memory running out, a bad ``report --by``;
only an error nobody expected points to ``-v`` for its traceback."""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from orchestrator.cli import _commands as commands
from orchestrator.cli import main
from orchestrator.cli._errors import describe
from orchestrator.cli._settings import Args

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ann.secret@example.com"  # a customer value that must never appear in an error message

JOURNEY = """\
id: welcome
version: 1
signal: count(signup, within=1d) > 0
holdout: 20
steps:
  - send: {channel: email, subject: "Welcome", template: welcome.txt}
goal: {event: purchase, within: 2d}
"""


def cli(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *argv],
        capture_output=True, text=True, timeout=120, check=False, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def one_line(err: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A store with customers, events and two ticks of the welcome journey."""
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "journeys" / "welcome.yaml").write_text(JOURNEY)
    (tmp_path / "templates" / "welcome.txt").write_text("Hello\n")
    (tmp_path / "customers.csv").write_text(
        "customer_id,email,tier\n"
        + "".join(f"u{i},u{i}@example.com,{'gold' if i % 2 else 'silver'}\n" for i in range(30))
    )
    (tmp_path / "events.jsonl").write_text(
        "".join(
            json.dumps({"customer_id": f"u{i}", "event": "signup", "ts": "2024-01-01T10:00:00Z"}) + "\n"
            for i in range(30)
        )
    )
    db = f"sqlite:///{tmp_path / 'o.db'}"
    common = ["--db", db, "--journeys", str(tmp_path / "journeys"), "--outbox", str(tmp_path / "outbox")]
    assert main(["ingest", str(tmp_path / "customers.csv"), str(tmp_path / "events.jsonl"), "--db", db]) == 0
    assert main(["run", "--once", "--now", "2024-01-01T12:00:00Z", *common]) == 0
    assert main(["run", "--once", "--now", "2024-01-04T12:00:00Z", *common]) == 0
    capsys.readouterr()
    return db


def test_a_reader_that_goes_away_ends_the_command_quietly(store: str, tmp_path: Path) -> None:
    # The reader closes its end before a line is written: every write fails with EPIPE.
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "status", "--db", store, "--stale-after", "30000d"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141  # as a command killed by SIGPIPE
    assert proc.stderr.read() == ""
    # | head -1 on a long report
    rows = "".join(f"{'t' if i % 2 else 'c'},{i % 7},s{i // 4}\n" for i in range(800))
    (tmp_path / "exp.csv").write_text("arm,m,seg\n" + rows)
    piped = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m orchestrator.cli lift exp.csv --arm arm "
         "--control c --metric m --by seg | head -1; echo status ${PIPESTATUS[0]} >&2"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert piped.stdout.startswith("Lift: exp.csv (800 rows")
    assert piped.stderr.strip() in ("status 0", "status 141"), piped.stderr  # 0: it was all in the pipe


def test_a_full_disk_is_one_line(store: str, tmp_path: Path) -> None:
    # A file size limit makes writes fail as a full disk does, for the store and for any other file.
    events = tmp_path / "many.jsonl"
    row = {"event": "signup", "ts": "2024-01-02T10:00:00Z", "properties": {"note": "x" * 40}}
    events.write_text(
        "".join(json.dumps({"customer_id": f"{SECRET}{i}", **row}) + "\n" for i in range(20000))
    )

    def limit(size: int) -> Callable[[], None]:
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = cli("ingest", str(events), "--db", fresh, preexec_fn=limit(200_000))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(
        "orchestrator ingest: disk I/O error in the store (SQLITE_IOERR_WRITE): the disk may "
    )
    assert "free some space" in line and SECRET not in line

    bad = tmp_path / "bad.jsonl"  # rejected rows only: the store hardly grows, the rejects file does
    bad.write_text(f'{{"customer_id": "{SECRET}", "ts": "2024-01-02T10:00:00Z"}}\n' * 5000)
    rejects = tmp_path / "big.rejects.jsonl"
    rejects.write_bytes(b"x" * 1_990_000)
    done = cli("ingest", str(bad), "--kind", "events", "--db", store, "--rejects", str(rejects),
               preexec_fn=limit(2_000_000))  # fmt: skip
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("orchestrator ingest: file too large: a write went past the file system's or the ")
    assert SECRET not in line


def test_store_errors_are_one_line_without_the_statement_or_its_values(tmp_path: Path) -> None:
    done = cli("ingest", str(ROOT / "examples" / "demo" / "customers.csv"), "--db",
               f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'o.db'}")  # fmt: skip
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        "orchestrator ingest: cannot open the store's file: check that its folder exists and is writable"
    )
    # A store another connection keeps locked (with no patience, so the error comes at once).
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (v TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with pytest.raises(OperationalError) as caught, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": SECRET})
    assert SECRET in str(caught.value)  # SQLAlchemy's message carries the parameters...
    message = describe(caught.value)
    assert message is not None and message.startswith("the store is locked: ")
    assert SECRET not in message and "INSERT" not in message  # ...the one line does not
    holder.close()
    engine.dispose()


def test_too_deep_too_large_and_out_of_memory_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "journeys" / "deep.yaml"
    deep.parent.mkdir()
    deep.write_text(JOURNEY.replace("count(signup, within=1d) > 0", "(" * 5000 + "1" + ")" * 5000 + " > 0"))
    done = cli("validate", str(deep))  # a real RecursionError in the expression parser today
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3, done.stderr

    for exc, expected in [
        (RecursionError("maximum recursion depth exceeded"), "the input is nested too deeply to process"),
        (OverflowError("Python int too large to convert to C long"), "a number is too large: Python int too"),
        (MemoryError(), "out of memory; give the process more memory or work on smaller files"),
        (OSError(28, "No space left on device", "/data/o.db-wal"), "disk full writing /data/o.db-wal: free"),
        (OSError(28, "No space left on device"), "disk full: free some space"),
    ]:

        def fail(_args: Args, exc: BaseException = exc) -> int:
            raise exc

        monkeypatch.setattr(commands, "cmd_status", fail)
        assert main(["status"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and one_line(err).startswith(f"orchestrator status: {expected}")


def test_an_unexpected_error_names_its_type_and_place_but_not_its_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_args: Args) -> int:
        raise KeyError(SECRET)

    monkeypatch.setattr(commands, "cmd_status", fail)
    assert main(["status"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("orchestrator status: unexpected error (KeyError")
    assert line.endswith("; run with -v for the traceback") and SECRET not in line
    with pytest.raises(KeyError):  # -v: the traceback, for a bug report
        main(["-v", "status"])


def test_report_by_an_unknown_attribute_is_a_usage_error(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "welcome", "--db", store, "--by", "tir"]) == 2
    assert capsys.readouterr().err == (
        "orchestrator report: --by 'tir': no customer in the store has this attribute; did you mean 'tier'?\n"
    )
    assert main(["report", "welcome", "--db", store, "--by", 'x"y']) == 2
    assert "--by 'x\"y': no customer in the store has this attribute (known: " in capsys.readouterr().err
    assert main(["report", "welcome", "--db", store, "--by", "tier"]) == 0
    assert "by tier" in capsys.readouterr().out
    assert main(["report", "welcome", "--db", store, "--pre-period", "99999999999d"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "orchestrator report: --pre-period '99999999999d': not a duration this engine can hold"
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("usage", 2),
        ("failure", 1),
        ("schema", 1),
        ("held", 1),
    ],
)
def test_usage_failures_and_store_errors_are_told_as_they_are_with_their_exit_code(
    error: str, code: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.errors import Failure, UsageError
    from orchestrator.store import SchemaError
    from orchestrator.store._holder import StoreHeld

    raised = {
        "usage": UsageError("--by must name an attribute"),
        "failure": Failure("the journeys are not valid"),
        "schema": SchemaError("the store was made by a newer version: upgrade"),
        "held": StoreHeld("another engine holds this store"),
    }[error]

    def fail(_args: Args) -> int:
        raise raised

    monkeypatch.setattr(commands, "cmd_status", fail)
    assert main(["status"]) == code == raised.exit_code
    assert capsys.readouterr().err == f"orchestrator status: {raised}\n"


def test_a_core_error_no_command_put_in_context_is_told_as_unexpected(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.signals._lang import ExpressionError

    def fail(_args: Args) -> int:
        raise ExpressionError(f"unknown event {SECRET}")

    monkeypatch.setattr(commands, "cmd_status", fail)
    assert main(["status"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("orchestrator status: unexpected error (ExpressionError at ")
    assert SECRET not in line
