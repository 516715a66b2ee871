"""A simulated shop for judging sends at each customer's best time, and on their best channel, by the
engine's own lift report.

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

For channels, each customer also has a preferred channel (email, push or SMS). ``simulate_send_channel``
first lets the engine send four newsletters to everyone over four weeks, on channels its own random split
picks, and each message is answered (a session within hours) with chance ``answer_preferred`` on the
customer's preferred channel and ``answer_other`` on the others; then a journey whose one send is on
``channel: best(email, push, sms)`` with ``best_channel: {compare: P}`` runs, and a message converts with
chance ``on_preferred`` on the preferred channel, ``off_preferred`` on another. Without structure, every
channel is answered with chance ``answer_flat`` and converts with ``flat``.
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

CHANNELS = ("email", "push", "sms")
CHANNEL_SHARES = (0.4, 0.35, 0.25)

NEWSLETTER = """\
id: newsletter
version: 1
entry: {event: newsletter_due}
reentry: always
holdout: 0
steps:
  - split: {by_email: 34, by_push: 33, by_sms: 33}
  - id: by_email
    send: {channel: email, subject: News, template: news.txt}
  - exit: sent
  - id: by_push
    send: {channel: push, title: News, template: news.txt}
  - exit: sent
  - id: by_sms
    send: {channel: sms, template: news.txt}
  - exit: sent
"""

CHANNEL_JOURNEY = """\
id: send_channel
version: 1
entry: {{event: browse}}
holdout: {holdout}
goal: {{event: purchase, within: 3d}}
steps:
  - id: offer
    send:
      channel: best(email, push, sms)
      subject: "Picked for you"
      title: "Picked for you"
      template: offer.txt
      best_channel: {{compare: {compare}}}
  - exit: sent
"""

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
    answer_preferred: float = 0.5
    answer_other: float = 0.08
    answer_flat: float = 0.2
    on_preferred: float = 0.20
    off_preferred: float = 0.05

    def answer_chance(self, preferred: np.ndarray) -> np.ndarray:
        """The chance a message is answered (a session soon after), by whether it came on the preferred
        channel."""
        if not self.structured:
            return np.full(len(preferred), self.answer_flat)
        return np.where(preferred, self.answer_preferred, self.answer_other)

    def channel_conversion_chance(self, preferred: np.ndarray) -> np.ndarray:
        """The chance a message converts, by whether it came on the customer's preferred channel."""
        if not self.structured:
            return np.full(len(preferred), self.flat)
        return np.where(preferred, self.on_preferred, self.off_preferred)

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
    channel: np.ndarray  # object: the preferred channel


def make_shoppers(n: int, rng: np.random.Generator) -> Shoppers:
    starts = np.array([h for h, _ in READING_STARTS])
    weights = np.array([w for _, w in READING_STARTS])
    return Shoppers(
        ids=[f"S{i:05d}" for i in range(1, n + 1)],
        zone=np.array(ZONES, dtype=object)[rng.integers(0, len(ZONES), n)],
        reading_start=starts[rng.choice(len(starts), n, p=weights / weights.sum())],
        channel=np.array(CHANNELS, dtype=object)[rng.choice(len(CHANNELS), n, p=CHANNEL_SHARES)],
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


def simulate_send_channel(
    folder: Path,
    n: int,
    seed: int,
    model: ResponseModel,
    *,
    compare: float = 50,
    holdout: float = 10,
) -> SendTimeRun:
    """Run the simulated shop for channels in ``folder`` (see the module docstring); ``in_window`` counts
    the messages sent on the customer's preferred channel, by policy."""
    rng = np.random.default_rng(seed)
    shoppers = make_shoppers(n, rng)
    (folder / "journeys").mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "journeys" / "newsletter.yaml").write_text(NEWSLETTER)
    (folder / "journeys" / "send_channel.yaml").write_text(
        CHANNEL_JOURNEY.format(holdout=holdout, compare=compare)
    )
    (folder / "templates" / "offer.txt").write_text("Picked for you")
    (folder / "templates" / "news.txt").write_text("News")
    db = folder / "send_channel.db"
    db.unlink(missing_ok=True)
    store = open_store(sqlite_url(db))
    try:
        return _run_channels(store, folder, shoppers, model, rng)
    finally:
        store.dispose()


def _tick_through(
    store: Store,
    engine: Engine,
    clock: SimulatedClock,
    pending: list[dict[str, Any]],
    instants: list[datetime],
) -> None:
    """Tick at each instant, ingesting first the pending events whose time has come."""
    for now in instants:
        clock.set(now)
        due = [r for r in pending if r["ts"] <= now]
        del pending[: len(due)]
        if due:
            ingest_events_records(store, due, now_us=to_us(now), source=f"until {now.isoformat()}")
        engine.tick()


def _sent(store: Store, journey: str) -> list[Any]:
    with store.connect() as conn:
        return [
            m
            for m in ledger_rows(conn)
            if m.journey_id == journey and m.status == "sent" and m.sent_us is not None
        ]


def _at(instant_us: int) -> datetime:
    return START + timedelta(microseconds=instant_us - to_us(START))


def _run_channels(
    store: Store, folder: Path, shoppers: Shoppers, model: ResponseModel, rng: np.random.Generator
) -> SendTimeRun:
    begin = START - timedelta(days=model.history_days)
    with store.begin() as conn:
        rows = [
            {
                "id": cid,
                "email": f"{cid.lower()}@example.com",
                "phone": f"+44770{i:07d}",
                "push_token": f"tok-{cid}",
                "consent_email": True,
                "consent_sms": True,
                "consent_push": True,
                "timezone": str(shoppers.zone[i]),
            }
            for i, cid in enumerate(shoppers.ids)
        ]
        upsert_customers(conn, rows, now_us=to_us(begin))
    n = len(shoppers.ids)
    index = {cid: i for i, cid in enumerate(shoppers.ids)}
    # Four newsletters each over the history, on the channel the engine's split picks.
    span = model.history_days * 86400 - 86400
    pending = sorted(
        (
            _record(cid, "newsletter_due", begin + timedelta(seconds=float(rng.random() * span)))
            for cid in shoppers.ids
            for _ in range(4)
        ),
        key=lambda r: r["ts"],
    )
    clock = SimulatedClock(begin)
    engine = Engine(store, load_workspace([folder / "journeys"]), ChannelRouter([MemoryAdapter()]), clock)
    steps = model.history_days * 4
    _tick_through(store, engine, clock, pending, [begin + timedelta(hours=6 * k) for k in range(steps)])
    sent = _sent(store, "newsletter")
    who = np.array([index[m.customer_id] for m in sent], dtype=np.int64)
    on_preferred = np.array([m.channel for m in sent], dtype=object) == shoppers.channel[who]
    answered = rng.random(len(sent)) < model.answer_chance(on_preferred)
    answers = [
        _record(
            sent[j].customer_id,
            "session_start",
            _at(int(sent[j].sent_us or 0)) + timedelta(hours=0.25 + rng.random() * 5),
        )
        for j in np.flatnonzero(answered)
    ]
    ingest_events_records(store, answers, now_us=to_us(START), source="answers")
    entered = [START + timedelta(seconds=float(s)) for s in rng.random(n) * 86400]
    pending = sorted(
        (_record(cid, "browse", at) for cid, at in zip(shoppers.ids, entered, strict=True)),
        key=lambda r: r["ts"],
    )
    organic = np.flatnonzero(rng.random(n) < model.organic)
    purchases = [
        _record(shoppers.ids[i], "purchase", entered[i] + timedelta(seconds=float(rng.random() * 3 * 86400)))
        for i in organic
    ]
    _tick_through(store, engine, clock, pending, [START + timedelta(hours=h) for h in range(26)])
    sent = _sent(store, "send_channel")
    with store.connect() as conn:
        chosen = journey_send_choices(conn, "send_channel")
        key_of = customer_keys_by_id(conn)
    policy_of = dict(zip(chosen.customer_key.tolist(), chosen.policy.tolist(), strict=True))
    policy = np.array([policy_of.get(key_of.get(m.customer_id, -1), "") for m in sent], dtype=object)
    who = np.array([index[m.customer_id] for m in sent], dtype=np.int64)
    on_preferred = np.array([m.channel for m in sent], dtype=object) == shoppers.channel[who]
    converts = rng.random(len(sent)) < model.channel_conversion_chance(on_preferred)
    for j in np.flatnonzero(converts):
        later = _at(int(sent[j].sent_us or 0)) + timedelta(seconds=float(900 + rng.random() * 5 * 3600))
        purchases.append(_record(sent[j].customer_id, "purchase", later))
    end = START + timedelta(days=4, hours=2)
    clock.set(end)
    ingest_events_records(store, purchases, now_us=to_us(end), source="purchases")
    engine.tick()
    report = journey_report(store, "send_channel")
    labels = sorted({str(p) for p in policy})
    return SendTimeRun(
        report=report,
        sent={p: int((policy == p).sum()) for p in labels},
        in_window={p: int(on_preferred[policy == p].sum()) for p in labels},
    )
