"""What the engine holds, for ``orchestrator status`` and every face that asks: instances per journey,
version and step, waits due now and within the hour, the outbox backlog, the last tick's timings, and the
engine's health (``engine._health``). It only reads the store; the clock is passed in.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from orchestrator.clock import from_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._health import EngineHealth, judge_health
from orchestrator.store import (
    Store,
    due_counts,
    failed_journeys,
    last_tick,
    outbox_backlog,
    partition_owners,
    recent_tick_instants,
    state_counts,
)

HOUR_US = 3600 * US_PER_SECOND


@dataclass
class JourneyStatus:
    """One journey's instances: active ones by version (as text) and step, finished ones by how they
    finished, and the active ones due now and within the next hour."""

    active: dict[str, dict[str, int]] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)
    due_now: int = 0
    due_next_hour: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "finished": self.finished,
            "due_now": self.due_now,
            "due_next_hour": self.due_next_hour,
        }


@dataclass(frozen=True)
class ChannelBacklog:
    """One channel's outbox: messages queued, in flight, left uncertain, and the oldest queued or in
    flight (ISO-8601; None when none is)."""

    channel: str
    queued: int
    sending: int
    uncertain: int
    oldest: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "queued": self.queued,
            "sending": self.sending,
            "uncertain": self.uncertain,
            "oldest": self.oldest,
        }


@dataclass(frozen=True)
class StatusReport:
    """What ``status_report`` found. ``last_tick`` is the latest tick's instant (``at``), duration
    (``seconds``) and stored summary (its ``timings`` among others), or None when no tick ran."""

    as_of: str
    journeys: dict[str, JourneyStatus]
    outbox: list[ChannelBacklog]
    last_tick: dict[str, Any] | None
    health: EngineHealth
    partitions: dict[str, int] | None = None  # partitioned workers: partitions per worker ("" for free)

    def to_dict(self) -> dict[str, Any]:
        """As plain data (what ``status --format json`` prints)."""
        return {
            "as_of": self.as_of,
            "journeys": {journey_id: j.to_dict() for journey_id, j in self.journeys.items()},
            "outbox": [b.to_dict() for b in self.outbox],
            "last_tick": self.last_tick,
            "health": self.health.to_dict(),
            "partitions": self.partitions,
        }


def status_report(
    store: Store, clock_us: int, *, now_us: int | None = None, stale_after_us: int | None = None
) -> StatusReport:
    """Instances, due waits, backlog, the last tick's timings and the engine's health, as of ``now_us``
    (None: the last tick's instant, or ``clock_us`` when no tick ran). Health judges the last tick's age at
    ``clock_us`` against ``stale_after_us`` (None: the default rule of ``engine._health``)."""
    with store.connect() as conn:
        failed = failed_journeys(conn)
        instants = recent_tick_instants(conn)
        tick = last_tick(conn)
        if now_us is None:
            now_us = tick[0] if tick is not None else clock_us
        counts = state_counts(conn)
        due = due_counts(conn, now_us, HOUR_US)
        backlog = outbox_backlog(conn)
        owners = partition_owners(conn)
    journeys: dict[str, JourneyStatus] = {}
    for c in counts:
        j = journeys.setdefault(c.journey_id, JourneyStatus())
        if c.status == "active":
            j.active.setdefault(str(c.version), {})[c.state] = c.count
        else:
            j.finished[c.status] = j.finished.get(c.status, 0) + c.count
    for journey_id, (now_count, soon) in due.items():
        journeys[journey_id].due_now = now_count
        journeys[journey_id].due_next_hour = soon
    last: dict[str, Any] | None = None
    if tick is not None:
        summary = json.loads(tick[2])
        last = {"at": from_us(tick[0]).isoformat(), "seconds": round(tick[1], 4), **summary}
    return StatusReport(
        as_of=from_us(now_us).isoformat(),
        journeys=journeys,
        outbox=[
            ChannelBacklog(
                b.channel,
                b.queued,
                b.sending,
                b.uncertain,
                from_us(b.oldest_us).isoformat() if b.queued or b.sending else None,
            )
            for b in backlog
        ],
        last_tick=last,
        health=judge_health(failed, instants, clock_us, stale_after_us),
        partitions=dict(Counter(owner or "" for owner in owners.values())) if owners else None,
    )
