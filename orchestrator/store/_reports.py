"""Scheduled reports the daemon sends (``report_sends``): one row per report and period (the weekly report
of one week), claimed before the report is sent and updated with its outcome, so that several processes
and restarts send it once.

A claim is one statement that only one writer can win: the first insert of the row (``ON CONFLICT DO
NOTHING``), or the update of a row still as its claimer read it (a ``failed`` one, or a ``sending`` one a
stopped process left), compared on its tries and last update."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, select, update

from orchestrator.store._customers import insert_ignoring_conflicts
from orchestrator.store._tables import ReportSend

SENDS = ReportSend.__table__  # type: ignore[attr-defined]
#: The statuses of a report's row.
REPORT_STATUSES = ("sending", "sent", "failed", "uncertain")


@dataclass(frozen=True)
class ReportSendRow:
    """A report's row: ``status`` ``sending`` (claimed), ``sent``, ``failed`` (tried again later) or
    ``uncertain`` (a process stopped while sending, on a channel that never sends twice); ``delivered``:
    the recipients it reached."""

    report: str
    period: str
    due_us: int
    status: str
    attempts: int
    delivered: tuple[str, ...]
    error: str | None
    updated_us: int
    sent_us: int | None


@dataclass(frozen=True)
class ReportClaim:
    """A won claim: the row as claimed, and its status before the claim (None: the first try)."""

    row: ReportSendRow
    previous: str | None


def _row(r: Sequence[object]) -> ReportSendRow:
    return ReportSendRow(
        report=str(r[0]),
        period=str(r[1]),
        due_us=int(r[2]),  # type: ignore[call-overload]
        status=str(r[3]),
        attempts=int(r[4]),  # type: ignore[call-overload]
        delivered=tuple(orjson.loads(str(r[5]))),
        error=None if r[6] is None else str(r[6]),
        updated_us=int(r[7]),  # type: ignore[call-overload]
        sent_us=None if r[8] is None else int(r[8]),  # type: ignore[call-overload]
    )


def report_send(conn: Connection, report: str, period: str) -> ReportSendRow | None:
    """The row of ``report`` for ``period``, if any."""
    c = SENDS.c
    found = conn.execute(
        select(c.report, c.period, c.due_us, c.status, c.attempts, c.delivered, c.error, c.updated_us,
               c.sent_us).where(c.report == report, c.period == period)
    ).first()  # fmt: skip
    return None if found is None else _row(tuple(found))


def report_sends(conn: Connection, report: str) -> list[ReportSendRow]:
    """Every row of ``report``, oldest period first."""
    c = SENDS.c
    rows = conn.execute(
        select(c.report, c.period, c.due_us, c.status, c.attempts, c.delivered, c.error, c.updated_us,
               c.sent_us).where(c.report == report).order_by(c.period)
    ).all()  # fmt: skip
    return [_row(tuple(r)) for r in rows]


def claim_report_send(
    conn: Connection, report: str, period: str, due_us: int, now_us: int
) -> ReportClaim | None:
    """Claim ``report`` of ``period`` for sending: a new row ``sending``, or a ``failed`` row or one left
    ``sending`` taken back (one more try). None when it is ``sent`` or ``uncertain``, or when another
    writer claimed it first."""
    inserted = conn.execute(
        insert_ignoring_conflicts(conn, SENDS, ["report", "period"])
        .values(
            report=report, period=period, due_us=int(due_us), status="sending", attempts=1, delivered="[]",
            error=None, updated_us=int(now_us), sent_us=None,
        )
        .returning(SENDS.c.report)
    ).first()  # fmt: skip
    if inserted is not None:
        row = report_send(conn, report, period)
        assert row is not None
        return ReportClaim(row, None)
    seen = report_send(conn, report, period)
    if seen is None or seen.status not in ("failed", "sending"):
        return None
    c = SENDS.c
    taken = conn.execute(
        update(SENDS)
        .where(
            c.report == report,
            c.period == period,
            c.status == seen.status,
            c.attempts == seen.attempts,
            c.updated_us == seen.updated_us,
        )
        .values(
            status="sending", attempts=seen.attempts + 1, updated_us=max(int(now_us), seen.updated_us + 1)
        )
    ).rowcount
    if taken != 1:
        return None
    row = report_send(conn, report, period)
    assert row is not None
    return ReportClaim(row, seen.status)


def update_report_send(
    conn: Connection,
    report: str,
    period: str,
    *,
    status: str,
    delivered: Sequence[str],
    now_us: int,
    error: str | None = None,
) -> None:
    """Record what came of a claimed report: its status, the recipients reached so far, the cause of a
    failure; ``sent`` stamps when."""
    if status not in REPORT_STATUSES:
        raise ValueError(f"unknown report status {status!r}")
    conn.execute(
        update(SENDS)
        .where(SENDS.c.report == report, SENDS.c.period == period)
        .values(
            status=status,
            delivered=orjson.dumps(list(delivered)).decode(),
            error=error,
            updated_us=int(now_us),
            **({"sent_us": int(now_us)} if status == "sent" else {}),
        )
    )
