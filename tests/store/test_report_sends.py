"""The scheduled reports' rows (``report_sends``): a week is claimed by one writer only, a failed one is
taken back for another try, a sent one never again, and one left ``sending`` by a stopped process is taken
up once, with the recipients it reached."""

from __future__ import annotations

import pytest

from orchestrator.store import (
    Store,
    claim_report_send,
    report_send,
    report_sends,
    update_report_send,
)

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_a_week_is_claimed_once_and_sent_once(store: Store) -> None:
    with store.begin() as conn:
        first = claim_report_send(conn, "weekly", "2024-04-29", 100, 150)
        again = claim_report_send(conn, "weekly", "2024-04-29", 100, 160)
        other = claim_report_send(conn, "weekly", "2024-05-06", 200, 250)
    assert first is not None and first.previous is None and first.row.status == "sending"
    assert (first.row.attempts, first.row.delivered, first.row.due_us) == (1, (), 100)
    # A second claim of a row still "sending" is the take-up after a stop: it wins once, with one more try.
    assert again is not None and again.previous == "sending" and again.row.attempts == 2
    assert other is not None and other.previous is None
    with store.begin() as conn:
        update_report_send(conn, "weekly", "2024-04-29", status="sent", delivered=["a@x.example"], now_us=170)
        assert claim_report_send(conn, "weekly", "2024-04-29", 100, 300) is None  # sent: never again
    with store.connect() as conn:
        row = report_send(conn, "weekly", "2024-04-29")
        assert [r.period for r in report_sends(conn, "weekly")] == ["2024-04-29", "2024-05-06"]
        assert report_send(conn, "weekly", "2024-05-13") is None
    assert (
        row is not None and row.status == "sent" and row.sent_us == 170 and row.delivered == ("a@x.example",)
    )


def test_a_failed_week_is_taken_back_with_what_it_reached(store: Store) -> None:
    with store.begin() as conn:
        assert claim_report_send(conn, "weekly", "2024-04-29", 100, 150) is not None
        update_report_send(
            conn, "weekly", "2024-04-29", status="failed", delivered=["a@x.example"], now_us=160,
            error="1 of 2 recipient(s) not reached: 451 try later",
        )  # fmt: skip
    with store.connect() as conn:
        failed = report_send(conn, "weekly", "2024-04-29")
    assert failed is not None and failed.status == "failed" and failed.error is not None
    assert failed.sent_us is None
    with store.begin() as conn:
        retry = claim_report_send(conn, "weekly", "2024-04-29", 100, 400)
    assert retry is not None and retry.previous == "failed"
    assert (
        retry.row.status == "sending" and retry.row.attempts == 2 and retry.row.delivered == ("a@x.example",)
    )


def test_an_uncertain_week_is_left_alone_and_statuses_are_checked(store: Store) -> None:
    with store.begin() as conn:
        assert claim_report_send(conn, "weekly", "2024-04-29", 100, 150) is not None
        update_report_send(conn, "weekly", "2024-04-29", status="uncertain", delivered=[], now_us=160)
        assert claim_report_send(conn, "weekly", "2024-04-29", 100, 170) is None  # uncertain: left alone
    with pytest.raises(ValueError, match="unknown report status"), store.begin() as conn:
        update_report_send(conn, "weekly", "2024-04-29", status="done", delivered=[], now_us=1)
