"""``orchestrator analytics`` as a user runs it: tables for people, JSON for programs, one self-contained
HTML page, Parquet and CSV exports, and one-line errors for bad calls (the figures themselves are checked
by hand in tests/measure/test_analytics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from analytics_story import build

from orchestrator.cli import main
from orchestrator.measure import AnalyticsSettings, engagement_analytics
from orchestrator.store import open_store, sqlite_url

WINDOW = ("--from", "2024-03-04", "--to", "2024-04-01")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> str:
    return build(tmp_path / "shop.db")


def test_tables_for_people(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, err = run(capsys, "analytics", *WINDOW, "--db", db)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Engagement analytics 2024-03-04 to 2024-04-01 (28 UTC days")
    for title in (
        "Active customers per week (means of the daily counts)",
        "Retention by first-seen week (birth)",
        "Retention of the customers active each week (compounded)",
        "Churn and conversion per week",
        "Surveys per week",
        "Lifecycle tiers from 2024-03-04 (rows) to 2024-04-01 (columns)",
        "RFM grid at 2024-04-01: customers (segment)",
    ):
        assert title in lines, title
    section = lines[lines.index("Churn and conversion per week") :]
    churn = next(line.split() for line in section if line.strip().startswith("2024-03-11"))
    # The empty week of 11 March: nobody active, all three of the week before churned (100%), and no
    # conversion rate.
    assert churn == ["2024-03-11", "0", "3", "3", "100.0%", "0", "-"]
    assert "not yet" in out  # four weeks of data: no cohort's 30-day window has ended
    tiers = next(line.split() for line in lines if line.strip().startswith("occasionally_active"))
    assert tiers == ["occasionally_active", "1", "0", "0", "0", "0", "1"]  # ann, on to highly_active
    assert "1 loyal" in out and "1 hibernating" in out and "1 lost" in out


def test_json_for_programs_matches_the_core(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, err = run(capsys, "analytics", *WINDOW, "--period", "month", "--format", "json", "--db", db)
    assert code == 0, err
    data = json.loads(out)
    store = open_store(db, create=False)
    try:
        from datetime import date

        core = engagement_analytics(
            store, date(2024, 3, 4), date(2024, 4, 1), AnalyticsSettings(period="month")
        )
    finally:
        store.dispose()
    assert data == json.loads(json.dumps(core.data))
    assert set(data) == {"window", "settings", "active", "retention", "periods", "tiers", "rfm"}
    assert [p["period"] for p in data["periods"]] == ["2024-03-01"]


def test_html_page_is_self_contained(capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path) -> None:
    page = tmp_path / "analytics.html"
    code, out, err = run(capsys, "analytics", *WINDOW, "--format", "html", "-o", str(page), "--db", db)
    assert code == 0, err
    assert out == "" and f"wrote {page}" in err
    html = page.read_text()
    assert "<script" not in html and " src=" not in html and " href=" not in html
    assert "@import" not in html and "url(" not in html
    assert html.count("<svg") == 6
    for title in (
        "Active customers per day",
        "Stickiness (DAU/MAU)",
        "NPS per week",
        "RFM grid at 2024-04-01",
    ):
        assert title in html
    code, out, _ = run(capsys, "analytics", *WINDOW, "--format", "html", "--db", db)
    assert code == 0 and out.startswith("<!DOCTYPE html>")


def test_export_tables(capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path) -> None:
    code, _, err = run(capsys, "analytics", *WINDOW, "--export", str(tmp_path / "tables"), "--db", db)
    assert code == 0, err
    rfm = pq.read_table(tmp_path / "tables" / "rfm.parquet").to_pylist()
    assert sum(row["customers"] for row in rfm) == 3 and len(rfm) == 25
    assert err.count("wrote ") == 5
    code, _, err = run(capsys, "analytics", *WINDOW, "--export", str(tmp_path / "a.csv"), "--db", db)
    assert code == 0, err
    assert (tmp_path / "a_tier_transitions.csv").read_text().splitlines()[0] == (
        '"from_tier","to_tier","customers"'
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (("--from", "2024-04-01", "--to", "2024-03-04"), "--from 2024-04-01 is not before --to 2024-03-04"),
        (("--from", "March"), "--from 'March' is not a day such as 2024-03-01"),
        (("--output", "x.html"), "--output is for --format html"),
        (("--export", "x.json"), "--export x.json: give a folder, or a file name ending in .csv or .parquet"),
        (("--tier", "count(purchase"), "--tier 'count(purchase': "),
        (("--to", "2023-01-01"), "the store holds no events before 2023-01-01"),
    ],
)
def test_bad_calls_say_why_in_one_line(
    capsys: pytest.CaptureFixture[str], db: str, argv: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "analytics", *argv, "--db", db)
    assert code in (1, 2)
    assert message in err and "Traceback" not in err and out == ""


def test_a_store_without_events(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "empty.db")
    open_store(url).dispose()
    code, _, err = run(capsys, "analytics", "--db", url)
    assert code == 2 and "the store holds no events: ingest events first" in err
    code, _, err = run(capsys, "analytics", "--db", sqlite_url(tmp_path / "none.db"))
    assert code == 2 and "no store at" in err and "Traceback" not in err
