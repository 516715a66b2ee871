"""A simulated shop for judging sends at each customer's best time by the engine's own lift report.

The customers' response model is declared first, in one place (``ResponseModel``), before any policy is
written: each customer reads in a window of ``reading_hours`` local hours starting at their own hour (an
evening, morning or lunchtime reader, in London, New York or Tokyo), their past opens and sessions fall in
that window ``on_habit`` of the time, and a message converts with chance ``in_hours`` when it arrives in
their window, ``out_of_hours`` when not. Everyone also buys on their own with chance ``organic``. The
same simulation ``structured=False`` has no such structure: opens and sessions at any hour, and one
conversion chance ``flat`` whatever the hour a message arrives.

``simulate_send_time`` writes a journey whose one send is ``at: best_time`` with ``best_time: {compare:
P}``, lets the engine run it on a simulated clock (entries spread over a day, a tick an hour), turns each
message the engine sent into a purchase or not by the model, and returns the engine's own journey report,
whose send-policy comparison (best time against the share sent at once) is the figure to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.channels import ChannelRouter, MemoryAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine import Engine, load_workspace
from orchestrator.ingest import ingest_events_records
from orchestrator.measure import journey_report
from orchestrator.measure._journey import JourneyReport
from orchestrator.store import (
    Store,
    customer_keys_by_id,
    journey_send_choices,
    ledger_rows,
    open_store,
    sqlite_url,
    upsert_customers,
)
from orchestrator.zones import zone_or_none

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday; the history is the four weeks before it
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo")
#: Where readers' windows start (local hour) and how many readers start there.
READING_STARTS = ((19, 0.3), (20, 0.2), (7, 0.2), (8, 0.1), (12, 0.2))

JOURNEY = """\
id: send_time
version: 1
entry: {{event: browse}}
holdout: {holdout}
goal: {{event: purchase, within: 3d}}
steps:
  - id: offer
    send:
      channel: email
      subject: "Picked for you"
      template: offer.txt
      at: best_time
      within: 24h
      best_time: {{compare: {compare}}}
  - exit: sent
"""


@dataclass(frozen=True)
class ResponseModel:
    """How the simulated customers read and respond, declared before any policy (see the module docstring)."""

    structured: bool = True
    reading_hours: int = 2
    on_habit: float = 0.85
    engagement_per_day: float = 0.6
    history_days: int = 28
    in_hours: float = 0.20
    out_of_hours: float = 0.04
    flat: float = 0.08
    organic: float = 0.02

    def conversion_chance(self, in_window: np.ndarray) -> np.ndarray:
        """The chance a message converts, by whether it arrived in the customer's reading window."""
        if not self.structured:
            return np.full(len(in_window), self.flat)
        return np.where(in_window, self.in_hours, self.out_of_hours)


@dataclass(frozen=True)
class Shoppers:
    """The simulated customers: ids, zones and the local hour their reading window starts."""

    ids: list[str]
    zone: np.ndarray  # object
    reading_start: np.ndarray  # int: local hour


def make_shoppers(n: int, rng: np.random.Generator) -> Shoppers:
    starts = np.array([h for h, _ in READING_STARTS])
    weights = np.array([w for _, w in READING_STARTS])
    return Shoppers(
        ids=[f"S{i:05d}" for i in range(1, n + 1)],
        zone=np.array(ZONES, dtype=object)[rng.integers(0, len(ZONES), n)],
        reading_start=starts[rng.choice(len(starts), n, p=weights / weights.sum())],
    )


def _local_to_utc(zone: str, day: datetime, seconds: float) -> datetime:
    tz = zone_or_none(zone)
    local = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
    return local.replace(tzinfo=tz).astimezone(UTC)


def _local_hour(zone: str, instant: datetime) -> int:
    return instant.astimezone(zone_or_none(zone)).hour


def history(shoppers: Shoppers, model: ResponseModel, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Opens and sessions over the ``history_days`` before the start, by the model."""
    events = []
    for i, cid in enumerate(shoppers.ids):
        zone = str(shoppers.zone[i])
        for d in range(1, model.history_days + 1):
            if rng.random() >= model.engagement_per_day:
                continue
            day = START - timedelta(days=d)
            if model.structured and rng.random() < model.on_habit:
                seconds = (shoppers.reading_start[i] + rng.random() * model.reading_hours) * 3600
            else:
                seconds = rng.random() * 24 * 3600
            kind = "email_open" if rng.random() < 0.6 else "session_start"
            events.append(_record(cid, kind, _local_to_utc(zone, day, float(seconds))))
    return events


def _record(cid: str, event: str, ts: datetime) -> dict[str, Any]:
    return {"customer_id": cid, "event": event, "ts": ts, "properties": {}}


@dataclass(frozen=True)
class SendTimeRun:
    """What one simulation did: the engine's journey report (with its send-policy comparison), the number of
    messages sent and how many arrived in the customers' reading windows, by policy."""

    report: JourneyReport
    sent: dict[str, int]
    in_window: dict[str, int]


def simulate_send_time(
    folder: Path,
    n: int,
    seed: int,
    model: ResponseModel,
    *,
    compare: float = 50,
    holdout: float = 10,
) -> SendTimeRun:
    """Run the simulated shop in ``folder`` (a store file and the journey are written there)."""
    rng = np.random.default_rng(seed)
    shoppers = make_shoppers(n, rng)
    (folder / "journeys").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "journeys" / "send_time.yaml").write_text(JOURNEY.format(holdout=holdout, compare=compare))
    (folder / "templates" / "offer.txt").write_text("Picked for you")
    db = folder / "send_time.db"
    db.unlink(missing_ok=True)
    store = open_store(sqlite_url(db))
    try:
        return _run(store, folder, shoppers, model, rng)
    finally:
        store.dispose()


def _run(
    store: Store, folder: Path, shoppers: Shoppers, model: ResponseModel, rng: np.random.Generator
) -> SendTimeRun:
    start_us = to_us(START)
    with store.begin() as conn:
        rows = [
            {"id": cid, "email": f"{cid.lower()}@example.com", "consent_email": True, "timezone": str(zone)}
            for cid, zone in zip(shoppers.ids, shoppers.zone, strict=True)
        ]
        upsert_customers(conn, rows, now_us=start_us)
    ingest_events_records(store, history(shoppers, model, rng), now_us=start_us, source="history")
    n = len(shoppers.ids)
    entered = [START + timedelta(seconds=float(s)) for s in rng.random(n) * 86400]
    pending = sorted(
        (_record(cid, "browse", at) for cid, at in zip(shoppers.ids, entered, strict=True)),
        key=lambda r: r["ts"],
    )
    # Purchases customers make on their own, whatever the journey does.
    organic = np.flatnonzero(rng.random(n) < model.organic)
    purchases = [
        _record(shoppers.ids[i], "purchase", entered[i] + timedelta(seconds=float(rng.random() * 3 * 86400)))
        for i in organic
    ]
    clock = SimulatedClock(START)
    engine = Engine(store, load_workspace([folder / "journeys"]), ChannelRouter([MemoryAdapter()]), clock)
    for hour in range(50):  # entries over the first day, sends at most a day later
        now = START + timedelta(hours=hour)
        clock.set(now)
        due = [r for r in pending if r["ts"] <= now]
        pending = pending[len(due) :]
        if due:
            ingest_events_records(store, due, now_us=to_us(now), source=f"hour {hour}")
        engine.tick()
    # Each message the engine sent converts or not by the model, a little after it arrived.
    index = {cid: i for i, cid in enumerate(shoppers.ids)}
    with store.connect() as conn:
        sent = [m for m in ledger_rows(conn) if m.status == "sent" and m.sent_us is not None]
        chosen = journey_send_choices(conn, "send_time")
        key_of = customer_keys_by_id(conn)
    policy_of = dict(zip(chosen.customer_key.tolist(), chosen.policy.tolist(), strict=True))
    choices = {m.customer_id: policy_of.get(key_of.get(m.customer_id, -1), "") for m in sent}
    policy = np.array([choices.get(m.customer_id, "") for m in sent], dtype=object)
    who = np.array([index[m.customer_id] for m in sent], dtype=np.int64)
    when = [START + timedelta(microseconds=int(m.sent_us or 0) - to_us(START)) for m in sent]
    local = np.array([_local_hour(str(shoppers.zone[i]), t) for i, t in zip(who, when, strict=True)])
    in_window = ((local - shoppers.reading_start[who]) % 24) < model.reading_hours
    converts = rng.random(len(sent)) < model.conversion_chance(in_window)
    for j in np.flatnonzero(converts):
        later = when[j] + timedelta(seconds=float(900 + rng.random() * 5 * 3600))
        purchases.append(_record(sent[j].customer_id, "purchase", later))
    end = START + timedelta(days=4, hours=2)
    clock.set(end)
    ingest_events_records(store, purchases, now_us=to_us(end), source="purchases")
    engine.tick()
    report = journey_report(store, "send_time")
    labels = sorted({str(p) for p in policy})
    return SendTimeRun(
        report=report,
        sent={p: int((policy == p).sum()) for p in labels},
        in_window={p: int(in_window[policy == p].sum()) for p in labels},
    )
