"""``orchestrator backtest`` on the demo shop: the table, stable JSON keys, a self-contained HTML page,
``--compare`` side by side, ``--save`` into the store, the store's own events with ``--db``, bad usage."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.measure import backtest_html
from orchestrator.store import open_store, saved_backtest, saved_backtests

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
WINDOW = ("--from", "2024-02-20", "--to", "2024-02-23")
INPUT = ("--events", str(DEMO / "events.jsonl"), "--customers", str(DEMO / "customers.csv"))
KEYS = {
    "kind", "label", "window", "input", "journeys", "days", "messages", "messages_by_day", "suppressions",
    "overlap", "messages_per_customer_week", "conversions", "outcomes", "totals", "timings",
}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_reads_as_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "backtest", *WINDOW, *INPUT, "--journeys", str(ROOT / "journeys"))
    assert code == 0, err
    for heading in (
        "Per day",
        "Messages by journey, step and channel",
        "Customers in more than one journey",
        "Messages sent per customer per week",
        "Conversions seen after entry (observed, not caused)",
    ):
        assert heading in out
    assert "2024-02-20" in out and "2024-02-22" in out and "2024-02-23  " not in out
    assert "72 ticks" in out
    assert not (tmp_path / "outbox").exists() and list(tmp_path.iterdir()) == []  # nothing written


def test_json_has_stable_keys_and_totals_that_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "backtest", *WINDOW, *INPUT, "--journeys", str(ROOT / "journeys"), "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == KEYS
    assert report["kind"] == "backtest" and report["window"]["ticks"] == 72 and len(report["days"]) == 3
    assert report["totals"]["sent"] == sum(m["sent"] for m in report["messages"])
    assert report["totals"]["sent"] == sum(sum(d["sent"].values()) for d in report["days"])
    assert report["totals"]["sent"] == sum(m["sent"] for m in report["messages_by_day"])
    assert report["totals"]["sent"] > 0 and report["input"]["history_events"] > 0
    weekly = report["messages_per_customer_week"]
    assert sum(weekly["distribution"].values()) == weekly["customer_weeks"] == report["input"]["customers"]
    assert "observed, not caused" in report["conversions"]["note"]


def test_html_is_one_self_contained_page(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    page = tmp_path / "backtest.html"
    code, _, err = run(
        capsys,
        "backtest",
        *WINDOW,
        *INPUT,
        "--journeys",
        str(ROOT / "journeys"),
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert code == 0, err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "Messages sent per day" in html
    assert "<script" not in html.lower() and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html.lower()


def test_compare_puts_two_versions_side_by_side(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = tmp_path / "quieter"
    shutil.copytree(ROOT / "journeys", other / "journeys")
    shutil.copytree(ROOT / "templates", other / "templates")
    (other / "journeys" / "winback.yaml").unlink()  # the quieter version: no win-back
    code, out, err = run(
        capsys, "backtest", *WINDOW, *INPUT, "--journeys", str(ROOT / "journeys"),
        "--compare", str(other / "journeys"), "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    both = json.loads(out)
    assert both["kind"] == "backtest_comparison" and set(both["a"]) == KEYS and set(both["b"]) == KEYS
    sent = both["differences"]["totals"]["sent"]
    assert sent["a"] > sent["b"] and "->" in sent["change"] and "%" in sent["change"]
    code, out, err = run(
        capsys,
        "backtest",
        *WINDOW,
        *INPUT,
        "--journeys",
        str(ROOT / "journeys"),
        "--compare",
        str(other / "journeys"),
    )
    assert code == 0, err
    assert "Side by side" in out and "messages sent" in out and f"{sent['a']:,} -> {sent['b']:,}" in out


def test_save_keeps_the_report_and_db_replays_the_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    for path, kind in ((DEMO / "customers.csv", "customers"), (DEMO / "events.jsonl", "events")):
        code, _, err = run(capsys, "ingest", str(path), "--kind", kind, "--db", db)
        assert code == 0, err
    code, out, err = run(
        capsys,
        "backtest",
        *WINDOW,
        "--db",
        db,
        "--journeys",
        str(ROOT / "journeys"),
        "--format",
        "json",
        "--save",
    )
    assert code == 0, err
    from_store = json.loads(out)
    assert "saved as backtest 1" in err
    code, out, err = run(
        capsys, "backtest", *WINDOW, *INPUT, "--journeys", str(ROOT / "journeys"), "--format", "json"
    )
    from_files = json.loads(out)
    for key in ("days", "messages", "overlap", "conversions", "totals"):
        assert from_store[key] == from_files[key], key  # the same past, from the store or from the files
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        rows = conn.execute("SELECT id, parameters, report FROM backtest_reports").fetchall()
    assert len(rows) == 1 and json.loads(rows[0][2])["totals"] == from_store["totals"]
    assert json.loads(rows[0][1])["from"] == "2024-02-20"
    # What a browser console reads: the list, one report, and its page drawn from the saved JSON.
    store = open_store(db)
    try:
        with store.connect() as conn:
            listed = saved_backtests(conn)
            saved = saved_backtest(conn, listed[0].id)
            assert saved_backtest(conn, listed[0].id + 1) is None
    finally:
        store.dispose()
    assert [s.id for s in listed] == [1] and saved is not None
    page = backtest_html(json.loads(saved.report))
    assert "2024-02-20" in page and "<svg" in page and "<script" not in page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--from", "2024-02-23", "--to", "2024-02-20"), "is not after --from"),
        (("--from", "yesterday", "--to", "2024-02-20"), "--from 'yesterday' is not a date"),
        ((*WINDOW, "--tick", "0h"), "--tick"),
        ((*WINDOW, "--customers", str(DEMO / "customers.csv")), "--customers goes with --events"),
    ],
)
def test_bad_usage_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, "backtest", *argv)
    assert code == 2 and message in err and "Traceback" not in err
