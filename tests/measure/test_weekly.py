"""The weekly report of the demo shop: its journeys to date are the portfolio's, its last 7 days the
entries whose goal window closed in them (with Newcombe's interval recomputed by statsmodels), its
engagement figures counted by hand from the events table; the HTML is for mail clients (tables and inline
styles, nothing fetched, no link but the console's); ``orchestrator weekly-report`` prints it, writes its
HTML and sends it through the configured email provider (here the outbox)."""

from __future__ import annotations

import contextlib
import email
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from orchestrator.cli import main
from orchestrator.clock import from_us
from orchestrator.measure import portfolio, weekly_email, weekly_html, weekly_report
from orchestrator.store import max_tick_us, open_store

ROOT = Path(__file__).resolve().parents[2]
DAY_US = 86_400 * 10**6


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop") / "demo"
    data, journeys = str(ROOT / "examples" / "demo"), str(ROOT / "journeys")
    assert main(["demo", "--days", "14", "--ticks-per-day", "2", "--data", data, "--journeys", journeys,
                 "--dir", str(folder)]) == 0  # fmt: skip
    return folder / "orchestrator.db"


def last_tick(db: Path) -> int:
    store = open_store(f"sqlite:///{db}", create=False)
    try:
        with store.connect() as conn:
            last = max_tick_us(conn)
    finally:
        store.dispose()
    assert last is not None
    return last


def test_the_weekly_report_counts(shop: Path) -> None:
    as_of = last_tick(shop)
    store = open_store(f"sqlite:///{shop}", create=False)
    try:
        report = weekly_report(store, as_of)
        to_date = portfolio(store, as_of)
        week_ago = portfolio(store, as_of - 7 * DAY_US)
    finally:
        store.dispose()
    assert report.to_date.to_dict() == to_date.to_dict()
    earlier = {row.journey: row for row in week_ago.rows}
    compared = 0
    for row, now in zip(report.last_7_days, to_date.rows, strict=True):
        before = earlier[row.journey]
        assert row.journey == now.journey
        assert row.treated == now.treated - before.treated and row.held_out == now.held_out - before.held_out
        if row.lift is None:
            continue
        compared += 1
        low, high = confint_proportions_2indep(
            row.treated_conversions, row.treated, row.held_out_conversions, row.held_out,
            method="newcomb", compare="diff",
        )  # fmt: skip
        assert row.interval is not None and (row.interval.low, row.interval.high) == pytest.approx(
            (low, high)
        )
        assert row.lift == pytest.approx(
            row.treated_conversions / row.treated - row.held_out_conversions / row.held_out
        )
    assert compared >= 2
    # The engagement week: the Monday-to-Sunday week (UTC) before the report's, counted from the events.
    day = from_us(as_of).date()
    monday = day - timedelta(days=day.weekday() + 7)
    assert (report.week_from, report.week_to) == (monday, monday + timedelta(days=7))
    start = int(datetime(monday.year, monday.month, monday.day, tzinfo=UTC).timestamp()) * 10**6
    with contextlib.closing(sqlite3.connect(shop)) as conn:
        dau = [
            conn.execute("SELECT COUNT(DISTINCT customer_key) FROM events WHERE ts_us >= ? AND ts_us < ?",
                         (start + d * DAY_US, start + (d + 1) * DAY_US)).fetchone()[0]
            for d in range(-7, 7)
        ]  # fmt: skip
        active = {
            k
            for (k,) in conn.execute(
                "SELECT DISTINCT customer_key FROM events WHERE ts_us >= ? AND ts_us < ?",
                (start, start + 7 * DAY_US),
            )
        }
        active_before = {
            k
            for (k,) in conn.execute(
                "SELECT DISTINCT customer_key FROM events WHERE ts_us >= ? AND ts_us < ?",
                (start - 7 * DAY_US, start),
            )
        }
        bought = {
            k
            for (k,) in conn.execute(
                "SELECT DISTINCT customer_key FROM events JOIN event_types t ON t.id = events.type_id "
                "WHERE t.name = 'purchase' AND ts_us >= ? AND ts_us < ?",
                (start, start + 7 * DAY_US),
            )
        }
    figures = {f.name: f for f in report.figures}
    mean_dau = figures["daily active customers (mean)"]
    assert mean_dau.week == pytest.approx(sum(dau[7:]) / 7) and mean_dau.before == pytest.approx(
        sum(dau[:7]) / 7
    )
    wau = figures["weekly active customers (WAU)"]
    assert (wau.week, wau.before) == (len(active), len(active_before))
    conversion = figures["conversion rate (active customers who converted)"]
    assert conversion.week == pytest.approx(len(bought & active) / len(active))
    churn = figures["churn rate (active the week before, not this week)"]
    assert churn.week == pytest.approx(len(active_before - active) / len(active_before))


def test_the_html_is_for_mail_clients(shop: Path) -> None:
    as_of = last_tick(shop)
    store = open_store(f"sqlite:///{shop}", create=False)
    try:
        report = weekly_report(store, as_of)
        plain = weekly_html(report)
        linked = weekly_email(
            store, as_of, subject="Our week", console_url="https://ops.shop.example/console/"
        )
        euros = weekly_email(store, as_of, currency="EUR")
    finally:
        store.dispose()
    for journey in ("browse_intent", "cart_abandonment", "winback"):
        assert plain.count(f">{journey}<") == 2  # the last 7 days and to date
    for figure in report.figures:
        assert figure.name in plain
    for row in report.to_date.rows:
        assert f">{row.treated:,}<" in plain and f">{row.sent:,}<" in plain
    assert "Benjamini-Hochberg" in plain and "Every journey side by side" in plain
    assert "The whole program" in plain  # the program's lift, from the portfolio's own fragment
    lowered = plain.lower()
    for banned in ("<svg", "<img", "<script", "<style", "<link", "src=", "url(", "@import", "href="):
        assert banned not in lowered, banned
    assert all(line.count("<td") == line.count("</td>") for line in plain.splitlines())
    # Revenue in the workspace's currency when it has one.
    assert "€" not in plain and "€" in euros.html and "€" in euros.text
    assert linked.subject == "Our week"
    assert re.findall(r'href="([^"]*)"', linked.html) == ["https://ops.shop.example/console/"]
    assert "The console: https://ops.shop.example/console/" in linked.text
    assert "Journeys to date" in linked.text and "winback" in linked.text


def test_the_command(shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{shop}"
    capsys.readouterr()
    assert main(["weekly-report", "--db", db, "--now", "2024-03-11T08:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Journeys weekly report, as of 2024-03-11T08:00:00+00:00")
    assert "the week of 2024-03-04 to 2024-03-10 (UTC)" in out
    page = tmp_path / "week.html"
    assert main(["weekly-report", "--db", db, "-o", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().err
    assert "<h1" in page.read_text() and "winback" in page.read_text()
    # Without a declared list there is no one to send to; a page must be HTML.
    bare = tmp_path / "bare.yaml"
    bare.write_text("tick: 1m\n")
    assert main(["weekly-report", "--db", db, "--send", "--config", str(bare)]) == 2
    assert "declares no weekly report" in capsys.readouterr().err
    assert main(["weekly-report", "--db", db, "-o", str(tmp_path / "week.txt")]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "FILE.html" in err and "Traceback" not in err
    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        'sender:\n  from: "Shop <shop@shop.example>"\n'
        "reports:\n  weekly:\n    to: [ana@shop.example, ops@shop.example]\n"
    )
    outbox = tmp_path / "outbox"
    assert (
        main(["weekly-report", "--db", db, "--send", "--config", str(config), "--outbox", str(outbox)]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("sent the weekly report to ") == 2
    sent = sorted((outbox / "email").glob("*.eml"))
    assert len(sent) == 2
    mail = email.message_from_bytes(sent[0].read_bytes(), policy=policy.default)
    assert mail["Subject"].startswith("Journeys weekly report: ") and mail["To"] in (
        "ana@shop.example", "ops@shop.example",
    )  # fmt: skip
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
