"""The daemon's schedule loop: a tick that keeps failing outside any journey (the store down, the disk
full) is logged in one line when its error appears or changes, never a traceback per tick, and the
recovery is logged once."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from orchestrator.engine.daemon import run_daemon


def test_a_failing_tick_is_one_line_per_change_not_a_traceback_per_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[BaseException | None] = [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database is locked"),
        ValueError("customer ann@example.com has a bad value"),  # a message that may hold customer data
        None,
        None,
    ]
    ran = []

    def tick() -> None:
        ran.append(1)
        outcome = outcomes[len(ran) - 1]
        if outcome is not None:
            raise outcome

    caplog.set_level(logging.INFO, logger="orchestrator.daemon")
    assert run_daemon(tick, 0.01, max_ticks=len(outcomes)) == len(outcomes)
    records = [r for r in caplog.records if r.name == "orchestrator.daemon"]
    failed = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert len(failed) == 2, failed  # the locked store once (three ticks), then the new error once
    assert failed[0].startswith("tick failed; the next tick will try again: OperationalError")
    assert failed[1].startswith("tick failed; the next tick will try again: ValueError")
    assert "ann@example.com" not in failed[1]
    assert all(r.exc_info is None for r in records if r.levelno >= logging.INFO)
    assert [r.getMessage() for r in records if r.levelno == logging.WARNING] == ["ticks work again"]
