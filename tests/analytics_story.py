"""Shared data of the engagement analytics tests: a story of five customers whose every figure is worked
out by hand in tests/measure/test_analytics.py, and a seeded shop of a few hundred customers over four
months for the command line and the HTML page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.ingest import ingest_events_records
from orchestrator.store import open_store, sqlite_url

FROM, TO = date(2024, 3, 4), date(2024, 4, 1)  # Mondays: four whole weeks, 1 April left out


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def story() -> list[dict[str, Any]]:
    """ann: active before the window, buys on 5 March, comes back every day of the last week;
    bob: seen once (10 March); cat: bought in January, quiet since; dan: first seen 6 March (answers NPS
    10), buys twice; eve: seen once, in November, long before."""
    rows: list[tuple[str, str, str, dict[str, Any]]] = [
        ("ann", "session_start", "2024-02-20T10:00", {}),
        ("ann", "purchase", "2024-03-05T12:00", {"amount": 50}),
        *(("ann", "session_start", f"2024-03-{d}T10:00", {}) for d in range(25, 32)),
        ("ann", "session_start", "2024-03-31T11:00", {}),
        ("ann", "session_start", "2024-03-31T12:00", {}),
        ("ann", "csat_response", "2024-03-31T13:00", {"score": 3}),
        ("ann", "ces_response", "2024-03-31T13:05", {"score": 5}),
        ("bob", "session_start", "2024-03-10T09:00", {}),
        ("cat", "purchase", "2024-01-10T09:00", {"amount": 20}),
        ("cat", "session_start", "2024-01-15T09:00", {}),
        ("dan", "session_start", "2024-03-06T08:00", {}),
        ("dan", "nps_response", "2024-03-06T08:30", {"score": 10}),
        ("dan", "purchase", "2024-03-20T10:00", {"amount": 30}),
        ("dan", "purchase", "2024-03-21T10:00", {"amount": 30}),
        ("eve", "session_start", "2023-11-01T09:00", {}),
    ]
    return [{"customer_id": c, "event": e, "ts": _at(t), "properties": p} for c, e, t, p in rows]


def build(path: Path, records: list[dict[str, Any]] | None = None) -> str:
    """A SQLite store at ``path`` holding ``records`` (default: the story); its URL."""
    url = sqlite_url(path)
    store = open_store(url)
    try:
        report = ingest_events_records(store, story() if records is None else records, now_us=0)
        assert report.rejected == 0
    finally:
        store.dispose()
    return url


SHOP_START = datetime(2024, 1, 1, tzinfo=UTC)
SHOP_DAYS = 120


def shop(seed: int = 7, customers: int = 300) -> list[dict[str, Any]]:
    """Customers who arrive over the first 80 days and come back at their own pace (some never), with
    purchases, NPS, CSAT and CES answers: every section of the analytics has something to show."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for i in range(customers):
        cid = f"s{i:04d}"
        first = int(rng.integers(0, 80))
        pace = float(rng.choice([0.0, 0.05, 0.15, 0.4]))  # visits per day after the first
        days = [first, *(d for d in range(first + 1, SHOP_DAYS) if rng.random() < pace)]
        for d in days:
            at = SHOP_START + timedelta(days=d, seconds=int(rng.integers(0, 86_400)))
            records.append({"customer_id": cid, "event": "session_start", "ts": at, "properties": {}})
            if rng.random() < 0.2:
                amount = round(float(rng.gamma(2.0, 25.0)), 2)
                records.append(
                    {
                        "customer_id": cid,
                        "event": "purchase",
                        "ts": at + timedelta(minutes=5),
                        "properties": {"amount": amount},
                    }
                )
            for survey, top in (("nps_response", 10), ("csat_response", 5), ("ces_response", 7)):
                if rng.random() < 0.05:
                    low = 0 if survey == "nps_response" else 1
                    score = int(rng.integers(low, top + 1))
                    records.append(
                        {
                            "customer_id": cid,
                            "event": survey,
                            "ts": at + timedelta(minutes=9),
                            "properties": {"score": score},
                        }
                    )
    return records
