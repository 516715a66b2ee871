"""The seven example journeys run together for a simulated month under ``examples/journeys/policy.yaml``,
on the bundled shop: the global rules hold for every message that went out."""

from __future__ import annotations

import zoneinfo
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.demo._population import HISTORY_DAYS, HISTORY_END, make_population, simulate_day
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.ingest import ingest_events_records, ingest_file
from orchestrator.store import open_store, sqlite_url
from orchestrator.store._customers import upsert_customers

ROOT = Path(__file__).resolve().parents[2]
DAYS = 30
TICKS_PER_DAY = 6


def test_seven_journeys_for_a_month_under_the_example_policy(tmp_path: Path) -> None:
    workspace = load_workspace([ROOT / "examples" / "journeys"])
    assert workspace.policy is not None and workspace.policy.caps["all"].per_week == 3
    store = open_store(sqlite_url(tmp_path / "month.db"))
    start_us = to_us(HISTORY_END)
    ingest_file(store, ROOT / "examples" / "demo" / "customers.csv", kind="customers", now_us=start_us)
    ingest_file(store, ROOT / "examples" / "demo" / "events.jsonl", kind="events", now_us=start_us)
    with store.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM customers ORDER BY key")).all()]
    vulnerable = set(ids[::7])
    with store.begin() as conn:
        upsert_customers(conn, [{"id": cid, "vulnerable": True} for cid in vulnerable], now_us=start_us)
    clock = SimulatedClock(HISTORY_END)
    engine = Engine(store, workspace, ChannelRouter([MemoryAdapter()]), clock)
    pop = make_population(len(ids))
    rng = np.random.default_rng(5)
    # A fifth of the shop is very busy: their abandoned carts alone would exceed the weekly cap.
    busy = np.where(np.arange(len(ids)) % 5 == 0, 6.0, 1.0)
    for day in range(DAYS):
        day_start = HISTORY_END + timedelta(days=day)
        events = simulate_day(pop, day_start, HISTORY_DAYS + day, rng, busy)
        ingest_events_records(store, events, now_us=to_us(day_start))
        for t in range(TICKS_PER_DAY):
            clock.set(day_start + timedelta(hours=24 * t / TICKS_PER_DAY))
            engine.tick()

    with store.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.id, c.timezone, c.consent_email, c.consent_sms, c.consent_push, m.channel, "
                "m.status, m.reason, m.sent_us, m.transactional, i.holdout FROM messages m "
                "JOIN customers c ON c.key = m.customer_key JOIN journey_instances i ON i.id = m.instance_id"
            )
        ).all()
    store.dispose()
    sent = [r for r in rows if r.status == "sent"]
    reasons = Counter((r.reason or "").split(":")[0] for r in rows if r.status != "sent")
    assert len(sent) > 100, Counter(r.status for r in rows)
    # Each rule had something to do, so its holding below means something.
    assert reasons["capped by policy"] > 0 and reasons["excluded by policy"] > 0, reasons
    assert any("quiet hours" in (r.reason or "") for r in rows), reasons

    per_week: Counter[tuple[str, tuple[int, int]]] = Counter()
    for r in sent:
        local = datetime.fromtimestamp(r.sent_us / 1e6, UTC).astimezone(zoneinfo.ZoneInfo(r.timezone))
        consent = {"email": r.consent_email, "sms": r.consent_sms, "push": r.consent_push}
        assert consent.get(r.channel, True), f"{r.id} got {r.channel} without consent"
        assert not r.holdout, f"{r.id} is held out and got a message"
        if r.transactional or r.channel == "webhook":
            continue
        assert r.id not in vulnerable, f"{r.id} is flagged vulnerable and got a {r.channel} offer"
        if r.channel in ("sms", "push"):
            assert 9 <= local.hour < 21, f"{r.id} got {r.channel} at {local} local time"
        per_week[(r.id, local.isocalendar()[:2])] += 1
    assert max(per_week.values()) <= 3, per_week.most_common(3)
