"""``orchestrator audience JOURNEY``: the estimate as a summary and a breakdown table, or as JSON with stable
keys; a journey that does not exist, a bad instant or a missing store is one line and exit 2."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.store import sqlite_url
from orchestrator.testing import SimClock, World, at, customer, event, write_files

JOURNEY = """\
id: nudge
version: 1
signal: count(add_to_cart, within=1d) >= 1
holdout: 0
steps:
  - id: mail
    send: {channel: email, subject: "Hi", template: mail.txt}
"""
NOW = at("2024-05-08T12:00:00Z")


@pytest.fixture
def store(tmp_path: Path) -> str:
    write_files(tmp_path, {"journeys/nudge.yaml": JOURNEY, "templates/mail.txt": "Hello"})
    world = World(tmp_path, clock=SimClock(NOW))
    world.add_customers(
        customer("a", country="FR"),
        customer("b", country="FR"),
        customer("c", country="JP", consent_email=False),
        customer("d"),
    )
    world.add_events(*[event(c, "add_to_cart", NOW - timedelta(hours=1)) for c in "abcd"])
    world.close()
    return sqlite_url(tmp_path / "world.db")


def _args(tmp_path: Path, store: str) -> list[str]:
    return ["--journeys", str(tmp_path / "journeys"), "--db", store, "--now", "2024-05-08T12:00:00Z"]


def test_audience_prints_the_summary_and_the_breakdown(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audience", "nudge", *_args(tmp_path, store), "--by", "country"]) == 0
    out = capsys.readouterr().out
    assert "nudge v1 at 2024-05-08T12:00:00Z: 4 customers in the store" in out
    assert "would enter at the next tick: 4 customers" in out
    assert "held out 0 (0.0%); treated 4" in out
    assert "of them: no email consent 1; no address 0; stopped by policy 0" in out
    assert "would be messaged: 3" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("FR", "JP", "(none)"))]
    assert rows == [
        ["FR", "2", "2", "0", "2", "0", "0", "0", "2"],
        ["(none)", "1", "1", "0", "1", "0", "0", "0", "1"],
        ["JP", "1", "1", "0", "1", "1", "0", "0", "0"],
    ]


def test_audience_json_has_stable_keys(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audience", "nudge", *_args(tmp_path, store), "--format", "json", "--by", "country"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data)[:8] == [
        "journey", "version", "now", "entry", "window", "customers", "match_now", "would_enter",
    ]  # fmt: skip
    assert (data["would_enter"], data["no_consent"], data["would_be_messaged"]) == (4, 1, 3)
    assert data["first_sends"] == [
        {"step": "mail", "channel": "email", "transactional": False, "customers": 4, "would_be_messaged": 3}
    ]
    assert sum(g["counts"]["would_enter"] for g in data["breakdown"]) == 4


def test_audience_mistakes_are_one_line(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audience", "nope", *_args(tmp_path, store)]) == 2
    assert "no journey 'nope'" in capsys.readouterr().err
    args = ["audience", "nudge", "--journeys", str(tmp_path / "journeys"), "--db", store]
    assert main([*args, "--now", "yesterday"]) == 2
    assert "--now 'yesterday'" in capsys.readouterr().err
    missing = sqlite_url(tmp_path / "none.db")
    assert main(["audience", "nudge", "--journeys", str(tmp_path / "journeys"), "--db", missing]) == 2
    assert "Traceback" not in capsys.readouterr().err
