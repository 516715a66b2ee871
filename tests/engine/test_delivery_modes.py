"""Delivery modes are declared per channel: ``--delivery CHANNEL=MODE`` (repeatable) or
``$ORCHESTRATOR_DELIVERY``; a channel not named is at_least_once; a typo is a one-line usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.channels._delivery import parse_delivery_modes
from orchestrator.cli import main


def test_modes_parse_from_repeated_and_comma_separated_items() -> None:
    assert parse_delivery_modes(["email=at_most_once,sms=at_least_once", " push = at_most_once "]) == {
        "email": "at_most_once",
        "sms": "at_least_once",
        "push": "at_most_once",
    }
    assert parse_delivery_modes([""]) == {}
    for bad, why in [("email", "is not CHANNEL=MODE"), ("fax=at_most_once", "unknown channel 'fax'"),
                     ("email=exactly_once", "unknown delivery mode 'exactly_once'")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_delivery_modes([bad])


def test_a_bad_mode_is_a_one_line_usage_error_before_the_store_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "never.db"
    argv = ["run", "--once", "--db", f"sqlite:///{db}", "--journeys", "journeys"]
    assert main([*argv, "--delivery", "email=exactly_once"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--delivery: 'email=exactly_once': unknown delivery mode" in err
    monkeypatch.setenv("ORCHESTRATOR_DELIVERY", "sms=at_most_once,fax=at_least_once")
    assert main(argv) == 2
    assert "ORCHESTRATOR_DELIVERY: 'fax=at_least_once': unknown channel 'fax'" in capsys.readouterr().err
    assert not db.exists()
