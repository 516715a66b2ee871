"""The journeys at a glance and one journey in detail, for the console: what each journey runs (its
highest version), its state (running, failed with the error, retired, or paused: left out of the last
tick), its active and finished instances, its entries in the day before the report instant, the active
instances per step and the journey's latest ledger rows. It only reads the store (through
``status_report`` and the store's summaries); the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._explain import iso
from orchestrator.engine._status import StatusReport, status_report
from orchestrator.errors import NotFoundError
from orchestrator.language import JourneyPlan, SpecError, compile_loaded, load_journey_text
from orchestrator.store import (
    Store,
    entries_since,
    latest_ledger_rows,
    latest_version_source,
    latest_versions,
    retired_versions,
)

DAY_US = 86_400 * US_PER_SECOND
#: How many of a journey's latest ledger rows ``journey_detail`` reads.
RECENT_SENDS = 50


class JourneyNotRun(NotFoundError, KeyError):
    """The store knows no journey of that id (the message names it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class JourneyOverview:
    """One journey: ``state`` is ``running`` (it ran in the last tick), ``failed`` (``error`` since
    ``failed_since``), ``retired`` or ``paused`` (registered, but the last tick did not run it: left out of
    the workspace). ``last_tick`` is the last tick's instant when the journey ran in it."""

    journey_id: str
    version: int
    state: str
    error: str | None
    failed_since: str | None
    active: int
    finished: dict[str, int]
    entered_last_day: int
    last_tick: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "version": self.version,
            "state": self.state,
            "error": self.error,
            "failed_since": self.failed_since,
            "active": self.active,
            "finished": self.finished,
            "entered_last_day": self.entered_last_day,
            "last_tick": self.last_tick,
        }


@dataclass(frozen=True)
class JourneysOverview:
    """Every journey the store knows, by id. ``as_of`` is the report instant (the last tick's, else the
    clock's); ``stale`` is the ``status`` rule's verdict on the last tick's age."""

    as_of: str
    last_tick: str | None
    stale: bool
    journeys: list[JourneyOverview]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "last_tick": self.last_tick,
            "stale": self.stale,
            "journeys": [j.to_dict() for j in self.journeys],
        }


def journeys_overview(store: Store, clock_us: int, *, stale_after_us: int | None = None) -> JourneysOverview:
    """Every journey registered in the store, as of the last tick's instant (``clock_us`` when no tick
    ran); the last tick's age is judged at ``clock_us`` against ``stale_after_us`` (None: the default)."""
    return _overview(store, status_report(store, clock_us, stale_after_us=stale_after_us))


def _overview(store: Store, status: StatusReport, journey_id: str | None = None) -> JourneysOverview:
    tick = status.last_tick or {}
    now_us = int(tick["now_us"]) if "now_us" in tick else status.health.last_tick_us
    with store.connect() as conn:
        versions = latest_versions(conn)
        retired = retired_versions(conn)
        if now_us is None:
            now_us = 0
            entered: dict[str, int] = {}
        else:
            entered = entries_since(conn, now_us - DAY_US)
    failed = {f.journey_id: f for f in status.health.failed}
    ran = set((tick.get("journeys") or {}).keys())
    journeys = []
    for jid in sorted(versions if journey_id is None else [j for j in versions if j == journey_id]):
        held = status.journeys.get(jid)
        failure = failed.get(jid)
        if failure is not None:
            state = "failed"
        elif jid in retired and retired[jid] >= versions[jid]:
            state = "retired"
        elif jid in ran:
            state = "running"
        else:
            state = "paused"
        journeys.append(
            JourneyOverview(
                journey_id=jid,
                version=versions[jid],
                state=state,
                error=None if failure is None else failure.error,
                failed_since=None if failure is None else iso(failure.since_us),
                active=sum(sum(steps.values()) for steps in held.active.values()) if held else 0,
                finished=dict(held.finished) if held else {},
                entered_last_day=entered.get(jid, 0),
                last_tick=iso(status.health.last_tick_us) if jid in ran else None,
            )
        )
    return JourneysOverview(
        as_of=status.as_of,
        last_tick=iso(status.health.last_tick_us),
        stale=status.health.stale,
        journeys=journeys,
    )


@dataclass(frozen=True)
class StepInfo:
    """A step of the journey's plan: its id and kind (``send`` steps with their channel)."""

    id: str
    kind: str
    channel: str | None


@dataclass(frozen=True)
class RecentSend:
    """One of the journey's latest ledger rows: when it was queued (and sent), to whom, what became of it."""

    queued: str | None
    sent: str | None
    customer: str
    version: int
    step: str
    channel: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class JourneyDetail:
    """One journey: its overview, its name and description and the steps of its highest version's plan
    (``plan`` None when the stored source no longer compiles), the active instances per version and step,
    and its latest ledger rows."""

    overview: JourneyOverview
    name: str | None
    description: str | None
    steps: list[StepInfo]
    active_by_step: dict[str, dict[str, int]]
    recent_sends: list[RecentSend]
    plan: JourneyPlan | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.overview.to_dict(),
            "name": self.name,
            "description": self.description,
            "steps": [{"id": s.id, "kind": s.kind, "channel": s.channel} for s in self.steps],
            "active_by_step": self.active_by_step,
            "recent_sends": [vars(s) for s in self.recent_sends],
        }


def journey_plan(store: Store, journey_id: str) -> JourneyPlan | None:
    """The plan of the journey's highest registered version, compiled from the source stored with it
    (None when the journey never ran, or when that source does not compile with this engine)."""
    with store.connect() as conn:
        latest = latest_version_source(conn, journey_id)
    if latest is None:
        return None
    try:
        return compile_loaded(load_journey_text(latest.source, f"<stored {journey_id} v{latest.version}>"))
    except SpecError:
        return None


def journey_detail(
    store: Store, journey_id: str, clock_us: int, *, sends: int = RECENT_SENDS
) -> JourneyDetail:
    """``journey_id`` in detail (``JourneyNotRun`` when the store never ran it)."""
    status = status_report(store, clock_us)
    overview = _overview(store, status, journey_id)
    if not overview.journeys:
        raise JourneyNotRun(f"journey {journey_id!r} has not run in this store")
    held = status.journeys.get(journey_id)
    with store.connect() as conn:
        rows = latest_ledger_rows(conn, journey_id, sends)
    plan = journey_plan(store, journey_id)
    steps = (
        [StepInfo(s.id, s.kind.value, s.send.channel if s.send is not None else None) for s in plan.steps]
        if plan is not None
        else []
    )
    return JourneyDetail(
        overview=overview.journeys[0],
        name=None if plan is None else plan.journey.name,
        description=None if plan is None else plan.journey.description,
        steps=steps,
        active_by_step=dict(held.active) if held else {},
        recent_sends=[
            RecentSend(
                queued=iso(r.created_us),
                sent=iso(r.sent_us),
                customer=r.customer_id,
                version=r.version,
                step=r.step,
                channel=r.channel,
                status=r.status,
                reason=r.reason,
            )
            for r in rows
        ],
        plan=plan,
    )
