"""The daemon refits the purchase models its journeys read, in a child process, on schedule: which fits the
journeys need and which are stale, worked out by hand; and a real daemon process whose journey reads
``p_alive(purchase)`` with no fit kept: the journey fails with the reason while ticks go on, the child
keeps a fit, and the next tick enters the customer the fit picks, without the fit holding any tick."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_daemon import Daemon

from orchestrator.engine._refit import models_to_fit, stale_models
from orchestrator.language import JourneyPlan, compile_journey, load_journey_text
from orchestrator.store import StoredFit

HOUR_US = 3600 * 1_000_000


def plan(signal: str) -> JourneyPlan:
    send = "{channel: email, subject: s, template: t.txt}"
    text = f"id: j\nversion: 1\nholdout: 0\nsignal: {signal}\nsteps:\n  - send: {send}\n"
    return compile_journey(load_journey_text(text, "j.yaml").journey)


def fit(id: int, event: str, value: str, fitted_us: int = 0) -> StoredFit:
    return StoredFit(id, fitted_us, event, value, 0, {})


def test_the_fits_the_journeys_read() -> None:
    plans = [
        plan("p_alive(purchase) < 0.3"),
        plan("predicted_clv(order.total, 365d) > 100 and expected_purchases(order, 30d) > 1"),
        plan("p_alive(visit) > 0.5"),
        plan("count(purchase, within=7d) > 0"),
    ]
    # purchase read without a value, never fitted: amount; order takes the value another reading gives;
    # visit takes the value of its newest kept fit.
    stored = {("visit", "minutes"): fit(1, "visit", "minutes"), ("visit", "spend"): fit(2, "visit", "spend")}
    assert models_to_fit(plans, stored) == [("purchase", "amount"), ("order", "total"), ("visit", "spend")]
    assert models_to_fit([plan("count(purchase, within=7d) > 0")], stored) == []


def test_stale_fits_are_missing_or_as_old_as_the_interval() -> None:
    now = 100 * 24 * HOUR_US
    stored = {
        ("purchase", "amount"): fit(1, "purchase", "amount", now - 24 * HOUR_US),  # exactly a day old
        ("order", "total"): fit(2, "order", "total", now - 23 * HOUR_US),
    }
    models = [("purchase", "amount"), ("order", "total"), ("visit", "spend")]
    assert stale_models(models, stored, now, timedelta(days=1)) == [
        ("purchase", "amount"),
        ("visit", "spend"),
    ]
    assert stale_models(models, stored, now, timedelta(days=2)) == [("visit", "spend")]


# ------------------------------------------------------------------------------------------ a real daemon

JOURNEY = """\
id: at_risk
version: 1
holdout: 0
signal: p_alive(purchase) < 0.5
steps:
  - send: {channel: email, subject: "We miss you", template: mail.txt}
"""
START = datetime(2024, 5, 1, 9, tzinfo=UTC)  # the simulated clock of test_daemon.Daemon


def purchase_history(folder: Path) -> tuple[Path, Path]:
    """Forty customers who buy every week or two for months and go on; eight who bought weekly for two
    months, then stopped half a year ago (p_alive near zero under any fit of this history)."""
    customers = ["customer_id,email,consent_email"]
    events = ["customer_id,event,ts,amount"]
    for i in range(48):
        customers.append(f"c{i:02d},p{i}@example.com,true")
        gone = i >= 40
        first = START - timedelta(days=300 if gone else 200 + i)
        days = range(0, 63, 7) if gone else range(0, 200 + i - 3, 7 + i % 8)
        events += [f"c{i:02d},purchase,{(first + timedelta(days=d)).isoformat()},{10 + i % 5}" for d in days]
    (folder / "customers.csv").write_text("\n".join(customers) + "\n")
    (folder / "events.csv").write_text("\n".join(events) + "\n")
    return folder / "customers.csv", folder / "events.csv"


def kept_fits(folder: Path) -> list[tuple[int, str, str]]:
    with contextlib.closing(sqlite3.connect(folder / "o.db")) as conn:
        return conn.execute("SELECT fitted_us, event, value FROM prediction_fits ORDER BY id").fetchall()


def test_the_daemon_refits_in_a_child_while_ticks_go_on(tmp_path: Path) -> None:
    pytest.importorskip("pymc_marketing")
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "journeys" / "at_risk.yaml").write_text(JOURNEY)
    (tmp_path / "templates" / "mail.txt").write_text("Come back\n")
    (tmp_path / "orchestrator.yaml").write_text("predict:\n  refit_every: 90d\n")  # one refit in this test
    db = f"sqlite:///{tmp_path / 'o.db'}"
    for path, kind in zip(purchase_history(tmp_path), ("customers", "events"), strict=True):
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "ingest", str(path), "--kind", kind, "--db", db],
            check=True, capture_output=True, cwd=tmp_path,
        )  # fmt: skip

    daemon = Daemon(tmp_path)
    daemon.wait_for("a kept fit", lambda: bool(daemon.lines("refit kept")))
    daemon.wait_for("a send", lambda: len(list((tmp_path / "outbox" / "email").glob("*.eml"))) == 8)
    log = daemon.stop()
    lines = log.splitlines()

    started = [i for i, line in enumerate(lines) if "refit started: purchase.amount" in line]
    kept = [
        i for i, line in enumerate(lines) if "refit kept: fit 1 of purchase.amount on 48 customers" in line
    ]
    assert len(started) == 1 and len(kept) == 1, log
    assert "purchases to 2024-04-30 included" in lines[started[0]]  # yesterday, by the simulated clock
    # Ticks went on while the child fitted: the journey failed for want of the fit, the others ran.
    ticks_meanwhile = [line for line in lines[started[0] : kept[0]] if "orchestrator.daemon: tick " in line]
    assert len(ticks_meanwhile) >= 2, log
    assert "MissingFit: p_alive(purchase) reads a fit of the purchase models" in log
    # The fit is kept with the simulated instant it was started at (the first tick's).
    [(fitted_us, event, value)] = kept_fits(tmp_path)
    assert (event, value) == ("purchase", "amount")
    assert fitted_us == int(START.timestamp()) * 1_000_000
    # After the fit, the eight who stopped buying entered and were sent to; no one else.
    recipients = set()
    for path in (tmp_path / "outbox" / "email").glob("*.eml"):
        recipients |= set(re.findall(r"^To: (p\d+@example\.com)$", path.read_text(), re.MULTILINE))
    assert recipients == {f"p{i}@example.com" for i in range(40, 48)}
    assert "refit stopped" not in log
