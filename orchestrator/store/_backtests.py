"""What a backtest report reads from its scratch store, and the reports kept in a workspace's store.

The reads are grouped counts (one statement each, never a query per customer): entries per journey and
day, ledger rows per journey, step, channel, status, reason and day, the customers of each pair of
journeys, and sent messages per customer and week. Saved reports are rows of ``backtest_reports``: when,
the parameters and the report, both as JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from sqlalchemy import Connection, insert, select, text

from orchestrator.store._tables import SavedBacktest

SAVED = SavedBacktest.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class EntryCount:
    journey_id: str
    day: int  # days since the window's start (entries before it, by an event shortly before: 0)
    holdout: bool
    count: int


@dataclass(frozen=True)
class LedgerCount:
    journey_id: str
    step: str
    channel: str
    status: str
    reason: str | None  # for suppressed, failed and refused rows; None otherwise
    day: int  # days since the window's start of when it was sent, else of when the step queued it
    count: int


@dataclass(frozen=True)
class OutcomeCount:
    journey_id: str
    holdout: bool
    status: str  # active | completed | exited | converted
    count: int


@dataclass(frozen=True)
class ConversionCount:
    journey_id: str
    holdout: bool
    count: int
    revenue: float


def entries_by_day(conn: Connection, start_us: int, day_us: int) -> list[EntryCount]:
    """Instances entered, per journey, day of the window and arm."""
    rows = conn.execute(
        text(
            "SELECT journey_id, (entered_us - :start) / :day AS d, holdout, COUNT(*) FROM journey_instances "
            "GROUP BY journey_id, d, holdout"
        ),
        {"start": start_us, "day": day_us},
    ).all()
    return [EntryCount(r[0], max(int(r[1]), 0), bool(r[2]), int(r[3])) for r in rows]


def ledger_by_day(conn: Connection, start_us: int, day_us: int) -> list[LedgerCount]:
    """Ledger rows (test sends apart) per journey, step, channel, status, reason (for the rows that were
    not sent nor queued) and day: of sending for sent rows, of queueing for the others."""
    rows = conn.execute(
        text(
            "SELECT journey_id, step, channel, status, "
            "CASE WHEN status IN ('suppressed', 'failed', 'refused') THEN reason END AS why, "
            "(COALESCE(sent_us, created_us) - :start) / :day AS d, COUNT(*) FROM messages "
            "WHERE test = :no GROUP BY journey_id, step, channel, status, why, d"
        ),
        {"start": start_us, "day": day_us, "no": False},
    ).all()
    return [LedgerCount(r[0], r[1], r[2], r[3], r[4], max(int(r[5]), 0), int(r[6])) for r in rows]


def instance_outcomes(conn: Connection) -> list[OutcomeCount]:
    """Instances per journey, arm and status (still active, or how they finished)."""
    rows = conn.execute(
        text(
            "SELECT journey_id, holdout, status, COUNT(*) FROM journey_instances "
            "GROUP BY journey_id, holdout, status"
        )
    ).all()
    return [OutcomeCount(r[0], bool(r[1]), r[2], int(r[3])) for r in rows]


def conversions_per_arm(conn: Connection) -> list[ConversionCount]:
    """Conversions per journey and arm, with their revenue."""
    rows = conn.execute(
        text(
            "SELECT journey_id, holdout, COUNT(*), COALESCE(SUM(revenue), 0) FROM conversions "
            "GROUP BY journey_id, holdout"
        )
    ).all()
    return [ConversionCount(r[0], bool(r[1]), int(r[2]), float(r[3])) for r in rows]


def journey_overlap(conn: Connection) -> dict[tuple[str, str], int]:
    """For each pair of journeys (a journey with itself included), how many customers entered both."""
    rows = conn.execute(
        text(
            "WITH j AS (SELECT DISTINCT journey_id, customer_key FROM journey_instances) "
            "SELECT a.journey_id, b.journey_id, COUNT(*) FROM j a "
            "JOIN j b ON a.customer_key = b.customer_key "
            "GROUP BY a.journey_id, b.journey_id"
        )
    ).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}


def customers_in_journeys(conn: Connection) -> np.ndarray:
    """Per customer who entered any journey, how many distinct journeys they entered."""
    rows = conn.execute(
        text("SELECT COUNT(DISTINCT journey_id) FROM journey_instances GROUP BY customer_key")
    ).all()
    return np.array([int(r[0]) for r in rows], dtype=np.int64)


def sent_per_customer_week(conn: Connection, start_us: int, week_us: int) -> np.ndarray:
    """Rows of (customer key, week of the window, messages sent), for every customer and week with one or
    more messages sent (test sends apart); weeks count from the window's start."""
    rows = conn.execute(
        text(
            "SELECT customer_key, (sent_us - :start) / :week AS w, COUNT(*) FROM messages "
            "WHERE status = 'sent' AND test = :no AND sent_us IS NOT NULL GROUP BY customer_key, w"
        ),
        {"start": start_us, "week": week_us, "no": False},
    ).all()
    return np.array([(int(r[0]), int(r[1]), int(r[2])) for r in rows], dtype=np.int64).reshape(-1, 3)


def customer_count(conn: Connection) -> int:
    """How many customers the store holds."""
    return int(conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one())


# ------------------------------------------------------------------------------------------ saved reports


@dataclass(frozen=True)
class SavedReport:
    id: int
    created_us: int
    parameters: str  # JSON text
    report: str  # JSON text


def save_backtest(conn: Connection, created_us: int, parameters: str, report: str) -> int:
    """Keep a backtest's report (JSON text) with its parameters (JSON text); its id."""
    result = conn.execute(
        insert(SAVED)
        .values(created_us=created_us, parameters=parameters, report=report)
        .returning(SAVED.c.id)
    )
    return int(result.scalar_one())


def saved_backtests(conn: Connection) -> list[SavedReport]:
    """The saved backtests, newest first, without their reports (``report`` is empty)."""
    col = SAVED.c
    rows = conn.execute(select(col.id, col.created_us, col.parameters).order_by(col.id.desc())).all()
    return [SavedReport(int(r[0]), int(r[1]), r[2], "") for r in rows]


def saved_backtest(conn: Connection, report_id: int) -> SavedReport | None:
    """One saved backtest with its report, or None."""
    col = SAVED.c
    row = conn.execute(
        select(col.id, col.created_us, col.parameters, col.report).where(col.id == report_id)
    ).first()
    return None if row is None else SavedReport(int(row[0]), int(row[1]), row[2], row[3])


# ------------------------------------------------------------------------------------------ a store's past


@dataclass(frozen=True)
class StoredHistory:
    """A store's events before an instant, as columns (``orchestrator.engine.PastEvents``)."""

    customer_ids: list[str]
    customer_codes: np.ndarray
    event_names: list[str]
    event_codes: np.ndarray
    ts_us: np.ndarray
    properties: list[str]


def stored_history(conn: Connection, until_us: int) -> StoredHistory:
    """Every event stamped before ``until_us`` with its customer's id, type name and properties (JSON
    text), in id order: what a backtest replays from a workspace's store."""
    rows = conn.execute(
        text(
            "SELECT e.customer_key, c.id, e.type_id, t.name, e.ts_us, e.properties FROM events e "
            "JOIN customers c ON c.key = e.customer_key JOIN event_types t ON t.id = e.type_id "
            "WHERE e.ts_us < :until ORDER BY e.id"
        ),
        {"until": until_us},
    ).all()
    ids: dict[str, int] = {}
    names: dict[str, int] = {}
    customer_codes = np.fromiter((ids.setdefault(r[1], len(ids)) for r in rows), np.int64, len(rows))
    event_codes = np.fromiter((names.setdefault(r[3], len(names)) for r in rows), np.int64, len(rows))
    ts = np.fromiter((int(r[4]) for r in rows), np.int64, len(rows))
    return StoredHistory(
        list(ids), customer_codes, list(names), event_codes, ts, [r[5] or "{}" for r in rows]
    )


def customer_rows(conn: Connection) -> list[dict[str, object]]:
    """Every customer as a row ``upsert_customers`` takes (id, standard columns, attributes)."""
    rows = conn.execute(
        text(
            "SELECT id, email, phone, push_token, timezone, consent_email, consent_sms, consent_push, "
            "attributes FROM customers ORDER BY key"
        )
    ).all()
    out: list[dict[str, object]] = []
    for r in rows:
        attrs = orjson.loads(r[8] or "{}")
        row: dict[str, object] = dict(attrs) if isinstance(attrs, dict) else {}
        row.update({"id": r[0], "email": r[1], "phone": r[2], "push_token": r[3], "timezone": r[4]})
        for name, value in zip(("consent_email", "consent_sms", "consent_push"), r[5:8], strict=True):
            if value is not None:
                row[name] = bool(value)
        out.append({k: v for k, v in row.items() if v is not None})
    return out
