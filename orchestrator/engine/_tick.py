"""One tick of the engine: evaluate, migrate, enter, convert, exit, advance; then dispatch.

For each journey, in one transaction: in-flight instances of older versions named by the journey's
``migrate:`` move onto the current version; customers (or events) the entry admits enter (re-entry policy
honoured, holdout arm decided once and stored); instances whose goal event arrived (or whose goal
condition holds) inside their goal window are converted;
instances whose ``exit_when`` became true leave; due instances step through their version's machine,
writing bare ledger rows for their sends (``engine._stepping``). Only after that transaction commits does
dispatch render the messages, apply the contact policy and hand them to the channel adapters, with the
ledger key as idempotency key (``engine._dispatch``), so a crash can repeat a delivery attempt (which the
key makes harmless) but never loses or doubles a step.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from orchestrator.channels import ChannelRouter, DeliveryMode, MessageLinks
from orchestrator.clock import Clock, from_us, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._customer_state import CustomerState
from orchestrator.engine._dispatch import DispatchContext, DispatchReport, dispatch_queued
from orchestrator.engine._entry import KeptCondition, enter
from orchestrator.engine._matching import first_matching_after, joined, normalise, values_at
from orchestrator.engine._signal_state import SignalState
from orchestrator.engine._snapshot import bare_customer_frame, needed_columns
from orchestrator.engine._state_snapshot import SnapshotSettings, StateFile
from orchestrator.engine._stepping import Stepped, WaitMarks, step_due
from orchestrator.engine._stepping import ledger_key as ledger_key
from orchestrator.engine._stopwatch import Stopwatch
from orchestrator.engine._workers import Sharing
from orchestrator.engine._workspace import Workspace, plan_from_source
from orchestrator.errors import EngineError
from orchestrator.language import JourneyPlan
from orchestrator.signals import AggregateCache, CustomerFrame, Evaluator, EventFrame, Node, to_python
from orchestrator.store import (
    Connection,
    OpenInstances,
    Ownership,
    Store,
    active_instances,
    active_versions,
    event_type_id,
    finish_instances,
    goal_event_customers,
    insert_conversions,
    is_database_error,
    latest_tick_us,
    lift_retirement,
    max_instance_id,
    migrate_instances,
    migration_applied,
    record_health,
    record_migration,
    record_tick,
    register_version,
    retirement,
    stored_version,
    unconverted_instances,
)
from orchestrator.store import _leases as leases

log = logging.getLogger("orchestrator.engine")

# Conversions are looked for until this long after a goal window closes, so events that arrive late
# (ingested after the window, stamped inside it) still count.
LATE_EVENT_GRACE_US = 7 * 86400 * US_PER_SECOND
#: Told as a tick goes (for a progress bar): what it is at ("journey winback", "dispatch: 800 messages"),
#: and how many of its steps (each journey, then dispatch) are done out of how many.
TickProgress = Callable[[str, int, int], object]


class ClockBehind(EngineError, RuntimeError):
    """The clock is before the last stored tick (an NTP step back, a restored VM): a tick now would judge
    entries, exits and waits at an instant already passed and repeat what was done since."""

    def __init__(self, now_us: int, last_us: int) -> None:
        super().__init__(
            f"the clock ({from_us(now_us).isoformat()}) is before the last tick "
            f"({from_us(last_us).isoformat()}); refusing to run"
        )
        self.now_us = now_us
        self.last_us = last_us


#: With several workers (PostgreSQL), how far one worker's clock may be behind another's stored tick: host
#: clocks kept by NTP differ by milliseconds, and a step back this small cannot repeat a step.
WORKER_CLOCK_SKEW_US = 5 * US_PER_SECOND


class VersionConflict(EngineError, RuntimeError):
    """A journey file changed meaning without a new version number, or migrates from steps that the
    older version does not have."""


@dataclass
class JourneyTick:
    journey_id: str
    entered: int = 0
    entered_holdout: int = 0
    migrated: int = 0
    converted: int = 0
    stepped: int = 0
    queued: int = 0  # ledger rows written; what became of them is in the tick's delivery report
    finished: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # the journey failed at this tick (its work undone): why, in one line

    def count_finished(self, status: str, n: int) -> None:
        if n:
            self.finished[status] = self.finished.get(status, 0) + n


@dataclass
class TickReport:
    now_us: int
    journeys: dict[str, JourneyTick] = field(default_factory=dict)
    new_events: int = 0
    delivery: DispatchReport = field(default_factory=DispatchReport)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> dict[str, str]:
        """The journeys that failed at this tick, with their error."""
        return {k: v.error for k, v in self.journeys.items() if v.error is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "now_us": self.now_us,
            "new_events": self.new_events,
            "journeys": {k: vars(v) for k, v in self.journeys.items()},
            "delivery": vars(self.delivery),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


_Delivery = tuple[ChannelRouter, MessageLinks | None, dict[str, DeliveryMode]]


@dataclass(frozen=True)
class ConvertMark:
    """When an engine alone on the store last looked for a journey's conversions: the version's digest,
    the tick's instant, the last event id in the signal state and the largest instance id then."""

    digest: str
    now_us: int
    log_id: int
    instance_id: int


class Engine:
    """Runs ticks of a workspace against a store, at the instants a clock gives."""

    def __init__(
        self,
        store: Store,
        workspace: Workspace,
        router: ChannelRouter,
        clock: Clock,
        *,
        global_holdout: float = 0.0,
        delivery: Mapping[str, DeliveryMode] | None = None,
        links: MessageLinks | None = None,
        snapshot: SnapshotSettings | None = None,
        partitions: int = 0,
        lease_seconds: float | None = None,
    ) -> None:
        """``global_holdout`` is the percent of all customers that no journey messages (0 to 100);
        ``delivery`` maps channels to their delivery mode (default ``at_least_once``); ``links`` are the
        unsubscribe and tracking links dispatch puts in messages (``channels._links.message_links``);
        ``snapshot``, where the signal state is snapshotted (``engine._state_snapshot``: loaded at the
        first tick, written in the background at intervals, and by ``save_signal_state`` at the end).
        ``partitions``, on PostgreSQL: split the customers into that many partitions shared out among the
        workers by leases of ``lease_seconds`` (``engine._workers``); 0 (the default): every worker holds
        every customer. A partitioned worker keeps no snapshot (its partitions move between workers)."""
        if not 0.0 <= global_holdout <= 100.0:
            raise ValueError(f"the global holdout is a percent between 0 and 100, not {global_holdout:g}")
        self.store = store
        self.workspace = workspace
        self.router = router
        self.clock = clock
        self.global_holdout = global_holdout
        self.delivery: dict[str, DeliveryMode] = dict(delivery or {})
        self.links = links
        # Set (by the daemon's second stop signal) to end a dispatch after the group in flight is recorded.
        self.hurry = threading.Event()
        # Messages dispatch hands over per commit, when set (first and largest group; see
        # ``DispatchContext.group``): the backtest, whose adapter drops every message at once, hands each
        # batch over in one group.
        self.dispatch_group: int | None = None
        # Set when nothing but this engine writes to the store (the backtest's scratch store): a workspace
        # whose versions were registered without a failure is not registered again at every tick.
        # Such an engine also keeps in memory the last tick's instant and whether a journey is marked failed.
        self.alone = False
        self._registered: Workspace | None = None
        self._last_tick_us: int | None = None
        self._healthy = False
        self._old_plans: dict[tuple[str, int], JourneyPlan] = {}
        # The last tick's evaluators, for the metrics that dispatch renders into messages.
        self._dispatch_evaluators: dict[tuple[str, int], Evaluator] = {}
        self._jitter = random.Random(0)  # retry backoff jitter: seeded, so simulations repeat
        # PostgreSQL: other engine processes may share the store (engine.workers); SQLite: this one alone.
        self.sharing = Sharing.for_store(store, partitions=partitions, lease_seconds=lease_seconds)
        if self.partitioned:
            snapshot = None
        self.signals = SignalState(workspace.plans, None if snapshot is None else StateFile(snapshot))
        self.customers = CustomerState()
        self._reported: dict[str, str] = {}  # journey id -> the failure this process last logged for it
        # How far before the last stored tick this engine's clock may be and still tick (see ``tick``).
        self.clock_skew_us = 0 if self.sharing is None else WORKER_CLOCK_SKEW_US
        self._staged: Workspace | None = None  # the workspace the next tick runs (``replace_workspace``)
        self._staged_delivery: _Delivery | None = None  # ``replace_delivery``
        self._staging = threading.Lock()
        # Alone on the store (SQLite): per journey, where its entry condition held at the last tick, as
        # stored in ``signal_members`` (read once, then kept; a journey whose tick fails reads it again).
        self._members: dict[str, np.ndarray] = {}
        # Alone on the store: per journey, what ``_convert`` looked at last (see ``ConvertMark``).
        self._convert_marks: dict[str, ConvertMark] = {}
        # Alone on the store: per journey version, the last look at the instances parked at a wait_for.
        self._wait_marks = WaitMarks()

    @property
    def partitioned(self) -> bool:
        """Whether this worker holds some partitions of the customers rather than all of them."""
        return self.sharing is not None and self.sharing.partitions > 0

    def join(self) -> None:
        """Count this worker among the live ones before its first tick (partitioned workers: see
        ``Sharing.join``); nothing otherwise."""
        if self.sharing is not None:
            self.sharing.join(self.store)

    def leave(self) -> None:
        """At a clean stop: hand this worker's partitions back at once (partitioned workers)."""
        if self.sharing is not None:
            try:
                self.sharing.leave(self.store)
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                log.warning(
                    "the partitions were not handed back (their leases will run out): %s", failure_text(exc)
                )

    def _balance(self) -> None:
        """Partitioned workers: balance the partitions before the tick's work; when what this worker holds
        changed, its signal state starts again from the store over the customers it holds now."""
        if self.sharing is None or not self.partitioned:
            return
        before = self.sharing.ownership
        own = self.sharing.balance(self.store)
        assert own is not None
        if before is None or (before.partitions, before.epochs) != (own.partitions, own.epochs):
            if before is not None:
                log.info(
                    "partitions held: %d of %d (was %d); the signal state is read again for them",
                    len(own.partitions),
                    own.count,
                    len(before.partitions),
                )
            self.signals = SignalState(self.workspace.plans, None, own)

    def save_signal_state(self, *, write: bool = True) -> bool:
        """At the end of the engine's life: wait for a snapshot write in progress, then (with ``write``)
        write the signal state's snapshot if it moved on since the last one, and let its path go. Whether
        one was written here; a failure is logged in one line (the next start reads the older snapshot,
        or the store)."""
        snapshot = self.signals.snapshot
        if snapshot is None:
            return False
        try:
            if not write:
                return False
            with self.store.connect() as conn:
                return self.signals.save(conn)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("the signal state snapshot was not written: %s", failure_text(exc))
            return False
        finally:
            snapshot.close()

    def replace_workspace(self, workspace: Workspace) -> None:
        """Run ``workspace`` from the next tick on. Safe from any thread, also while a tick runs: the tick
        takes the new workspace at its start, so no tick mixes two. Nothing else changes: the store and its
        holder (SQLite) or worker leases (PostgreSQL), the adapters, the signal state (new journey versions
        join it at the next tick, as a new version does at a restart). A journey whose version went up
        registers it and migrates at that tick, as ``run`` does; one left out is paused (see ``dispatch``).
        The caller validates ``workspace`` first (``engine._reload``)."""
        with self._staging:
            self._staged = workspace

    def replace_delivery(
        self, router: ChannelRouter, links: MessageLinks | None, delivery: Mapping[str, DeliveryMode]
    ) -> None:
        """Send through ``router`` (with ``links`` and these delivery modes) from the next tick on, as
        ``replace_workspace`` does for journeys (a changed workspace config); the router it replaces is
        closed then. Safe from any thread."""
        with self._staging:
            if self._staged_delivery is not None:
                self._staged_delivery[0].close()  # staged twice before a tick: the first never ran
            self._staged_delivery = (router, links, dict(delivery))

    def _take_staged_workspace(self) -> None:
        with self._staging:
            staged, self._staged = self._staged, None
            delivery, self._staged_delivery = self._staged_delivery, None
        if staged is not None:
            self.workspace = staged
        if delivery is not None:
            old, (self.router, self.links, self.delivery) = self.router, delivery
            old.close()

    # ------------------------------------------------------------------------------------------ tick

    def tick(self, progress: TickProgress | None = None) -> TickReport:
        """One tick at the clock's instant; its report (and timings) are also stored in ``ticks``.

        Raises ``ClockBehind``, before doing anything, when the instant is before the last stored tick (a
        tick at the same instant is allowed: it finds nothing new to do). ``progress``, when given, is told
        as each journey starts and after each dispatch batch (see ``TickProgress``)."""
        watch = Stopwatch()
        self._take_staged_workspace()
        now_us = to_us(self.clock.now())
        self._check_clock(now_us)
        report = TickReport(now_us)
        self._dispatch_evaluators = {}
        # A failure inside one journey (its version, a migration, entry, conversions, exits, stepping) rolls
        # back that journey's work and marks it failed; the other journeys and dispatch go on.
        failures: dict[str, str] = {}
        versions = self._versions(now_us, failures)
        self._balance()
        if progress is not None:
            progress("new events and signals", 0, len(self.workspace.plans))
        customers, cache = self._refresh_signals(now_us, [p for ps in versions.values() for p in ps], report)
        no_events = EventFrame.empty(customers.n)  # every aggregate is already in the cache
        journeys = Stopwatch("evaluate_and_enter", "convert_and_step")
        phases = Stopwatch()  # the stepping part of convert_and_step, by phase
        for done, plan in enumerate(self.workspace.plans):
            if progress is not None:
                progress(f"journey {plan.id}", done, len(self.workspace.plans))
            result = JourneyTick(plan.id)
            report.journeys[plan.id] = result
            if plan.id not in versions:
                continue
            plans = versions[plan.id]
            with self._journey(plan.id, failures):
                missing = [line for p in plans for line in self.signals.missing_fits(p)]
                if missing:
                    raise MissingFit("; ".join(dict.fromkeys(missing)))
                evaluators = self._evaluators(plans, customers, no_events, cache, now_us)
                journeys.add_all(
                    self._tick_journey(plan, plans, evaluators, customers, now_us, result, phases)
                )
        for journey_id, error in failures.items():  # what it did before failing was undone
            report.journeys[journey_id] = JourneyTick(journey_id, error=error)
            self._members.pop(journey_id, None)
            self._convert_marks.pop(journey_id, None)
            self._wait_marks.forget(journey_id)
        self._record_health(failures, now_us)
        report.timings.update(journeys.seconds)
        report.timings.update(phases.seconds)
        watch.restart()
        self._checkpoint()
        watch.lap("checkpoint")
        delivery = self._dispatch_once(progress)
        if delivery is not None:
            report.delivery = delivery
        watch.lap("dispatch")
        report.timings.update(watch.seconds)
        report.timings["total"] = watch.elapsed()
        self._record_tick(report)
        return report

    def _checkpoint(self) -> None:
        """SQLite: the journeys' commits left their pages in the write-ahead log (see ``Store.begin``); they
        go to the database file now, before dispatch's small commits would each start doing it. A failed
        checkpoint loses nothing (the log keeps the pages, the next one copies them): it is logged."""
        try:
            self.store.checkpoint()
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("a checkpoint of the store failed: %s", type(exc).__name__)

    def _check_clock(self, now_us: int) -> None:
        """Refuse (``ClockBehind``) an instant before the last stored tick, less the allowed skew."""
        last_us = self._last_tick_us
        if not (self.alone and last_us is not None):
            with self.store.connect() as conn:
                last_us = latest_tick_us(conn)
        if last_us is not None and now_us < last_us - self.clock_skew_us:
            raise ClockBehind(now_us, last_us)

    def _versions(self, now_us: int, failures: dict[str, str]) -> dict[str, list[JourneyPlan]]:
        """Register each journey's version (one worker at a time), then, per journey that did not fail, the
        plans of the versions it runs at this tick: the current one and those with active instances."""
        if not (self.alone and self._registered is self.workspace):
            with self.store.begin() as conn:
                leases.wait_singleton(conn, "versions")
                self._register_versions(conn, now_us, failures)
            self._registered = self.workspace if not failures else None
        versions: dict[str, list[JourneyPlan]] = {}
        with self.store.connect() as conn:
            for plan in self.workspace.plans:
                if plan.id not in failures:
                    with self._journey(plan.id, failures), conn.begin_nested():
                        versions[plan.id] = self._plans_with_active_instances(conn, plan)
        return versions

    def _refresh_signals(
        self, now_us: int, plans: list[JourneyPlan], report: TickReport
    ) -> tuple[CustomerFrame, AggregateCache]:
        """Read the new events and customer changes, advance the signals to ``now_us`` and fill a cache
        with every aggregate the plans read; the customers' frame and that cache."""
        self.signals.ensure(plans)
        with self.store.connect() as conn:
            refresh = self.signals.refresh(conn, now_us)
            self.signals.save_if_due(conn)  # the view only: the write runs in its own thread
            customers = self._customers(conn, plans)
        report.new_events = refresh.new_events
        report.timings["load_events"] = refresh.load_seconds
        report.timings["signals"] = refresh.advance_seconds
        cache = AggregateCache()
        self.signals.fill(cache)
        return customers, cache

    def _evaluators(
        self,
        plans: list[JourneyPlan],
        customers: CustomerFrame,
        no_events: EventFrame,
        cache: AggregateCache,
        now_us: int,
    ) -> dict[int, Evaluator]:
        """An evaluator per version of one journey, by version; kept for dispatch to render metrics."""
        evaluators = {p.version: Evaluator(no_events, customers, now_us, p.metrics, cache) for p in plans}
        self._dispatch_evaluators.update({(p.id, p.version): evaluators[p.version] for p in plans})
        return evaluators

    def _tick_journey(
        self,
        plan: JourneyPlan,
        plans: list[JourneyPlan],
        evaluators: dict[int, Evaluator],
        customers: CustomerFrame,
        now_us: int,
        result: JourneyTick,
        phases: Stopwatch,
    ) -> dict[str, float]:
        """One journey's part of a tick, in one transaction: the singleton part (migrations, entry,
        conversions, exits) if this worker leads the journey, and the stepping of every version it runs
        (in claimed batches of their own when workers share the store). ``plans`` are the journey's
        versions at this tick (migration only moves instances onto the current version, ``plan``). The
        seconds of ``evaluate_and_enter`` and ``convert_and_step``; the stepping phases go to ``phases``."""
        watch = Stopwatch()
        with self.store.begin(bulk=True) as conn:
            lead = self._leads(conn, plan)
            # Partitioned: every worker enters, converts and exits for the partitions it still holds;
            # the journey's lock keeps only its migrations to one worker.
            own = lead if not self.partitioned else self._holds(conn)
            watch.restart()
            if lead:
                result.migrated += self._migrate(conn, plan, now_us)
            if own:
                self._enter(conn, plan, evaluators[plan.version], customers, now_us, result)
            watch.lap("evaluate_and_enter")
            if own:
                self._convert(conn, plan, evaluators[plan.version], customers, now_us, result)
            for version_plan in plans:
                evaluator = evaluators[version_plan.version]
                if own:
                    self._exit_when(conn, version_plan, evaluator, now_us, result)
                if self.sharing is None:
                    stepped = self._advance(conn, version_plan, evaluator, customers, now_us, result)
                    phases.add_all(stepped.seconds, prefix="step_")
        if self.sharing is not None:
            for version_plan in plans:
                evaluator = evaluators[version_plan.version]
                self._step_shared(self.sharing, version_plan, evaluator, customers, now_us, result, phases)
        watch.lap("convert_and_step")
        return watch.seconds

    def _leads(self, conn: Connection, plan: JourneyPlan) -> bool:
        """Whether this engine does the journey's singleton part in this transaction: always alone on the
        store; with other workers on it, the one that wins the journey's lock."""
        return self.sharing is None or self.sharing.lead(conn, plan.id)

    def _holds(self, conn: Connection) -> bool:
        """Partitioned: whether this worker still holds the partitions it balanced to at this tick (their
        leases locked until ``conn``'s transaction ends); a worker that lost them logs it and leaves their
        entry, conversions and exits to their new owner."""
        assert self.sharing is not None
        if self.sharing.holds(conn):
            return True
        log.warning(
            "this worker's partition leases ran out during the tick: their work is left to their new owner"
        )
        return False

    @property
    def _ownership(self) -> Ownership | None:
        return None if self.sharing is None else self.sharing.ownership

    def _enter(
        self,
        conn: Connection,
        plan: JourneyPlan,
        evaluator: Evaluator,
        customers: CustomerFrame,
        now_us: int,
        result: JourneyTick,
    ) -> None:
        """Let in the customers (or events) the entry admits (of the partitions held, when partitioned)."""
        kept = self._kept_condition(plan, customers)
        members = self._members if self.sharing is None else None
        entered = enter(
            conn,
            plan,
            evaluator,
            now_us,
            self.global_holdout,
            kept=kept,
            members=members,
            ownership=self._ownership,
        )
        result.entered += entered.instances
        result.entered_holdout += entered.holdout

    def _record_health(self, failures: dict[str, str], now_us: int) -> None:
        """Store which journeys failed at this tick (workers one at a time) and log what changed."""
        if self.alone and self._healthy and not failures:
            return  # no journey is marked failed, and none failed now
        with self.store.begin() as conn:
            leases.wait_singleton(conn, "health")
            before = record_health(conn, failures, now_us)
        self._healthy = not failures
        self._report_health(failures, before)

    def _dispatch_once(self, progress: TickProgress | None) -> DispatchReport | None:
        """The tick's dispatch, when this worker gets the dispatch lock (with several workers, one
        dispatches at a time); None when another worker holds it."""
        # Partitioned, each worker dispatches the messages of its own partitions, side by side.
        with leases.session_singleton(self.store.engine, "dispatch", shared=self.partitioned) as dispatching:
            if not dispatching:
                return None
            if progress is None:
                return self.dispatch()
            steps = len(self.workspace.plans)
            progress("dispatch", steps, steps)

            def on_batch(handled: int) -> None:
                progress(f"dispatch: {handled} messages", steps, steps)

            return self.dispatch(on_batch=on_batch)

    def _record_tick(self, report: TickReport) -> None:
        """Store the tick's report in the tick log, in a transaction of its own."""
        with self.store.begin() as conn:
            record_tick(conn, report.now_us, report.timings["total"], json.dumps(report.to_dict()))
        self._last_tick_us = max(report.now_us, self._last_tick_us or report.now_us)

    def _step_shared(
        self,
        sharing: Sharing,
        plan: JourneyPlan,
        evaluator: Evaluator,
        customers: CustomerFrame,
        now_us: int,
        result: JourneyTick,
        phases: Stopwatch,
    ) -> None:
        """Shared stepping: claimed batches, each stepped and committed in its own transaction. A batch
        whose stepping fails is rolled back and its claims freed, so the next tick takes it again."""
        for ids in sharing.claims(self.store, plan, now_us):
            try:
                with self.store.begin() as conn, sharing.stepping(conn, ids) as claim:
                    stepped = self._advance(conn, plan, evaluator, customers, now_us, result, claim)
            except Exception:
                with self.store.begin() as conn:
                    leases.release(conn, sharing.worker, ids)
                raise
            phases.add_all(stepped.seconds, prefix="step_")

    def _kept_condition(self, plan: JourneyPlan, customers: CustomerFrame) -> KeptCondition:
        """The journey's entry conditions, kept between ticks by the signal state and re-evaluated only
        for the customers whose events or attributes changed, or whose result time alone may change."""

        def kept(name: str, node: Node) -> np.ndarray:
            key = (plan.id, plan.version, name)
            changed = self.customers.changed
            return self.signals.conditions.condition(key, node, customers, plan.metrics, changed=changed)

        return kept

    def _customers(self, conn: Connection, plans: list[JourneyPlan]) -> CustomerFrame:
        """The customer attributes the journeys read, sized to every customer the signals know of."""
        _, attributes = needed_columns(plans)
        attributes.discard("id")  # ids are read only for entrants, when their holdout arm is decided
        # Only the customers written since the last tick are read (see engine.customer_state).
        frame = self.customers.frame(conn, sorted(attributes)) if attributes else bare_customer_frame(conn)
        if frame.n != self.signals.n_customers:
            raise RuntimeError("customer and event state disagree on the number of customers")
        self.signals.use_customers(frame)
        return frame

    # ------------------------------------------------------------------------------------------ versions

    def _register_versions(self, conn: Connection, now_us: int, failures: dict[str, str]) -> None:
        """Register each journey's version (or check it is the one stored) and its migrations; a journey
        that fails here is marked in ``failures`` and its writes undone (a savepoint each)."""
        for plan in self.workspace.plans:
            with self._journey(plan.id, failures), conn.begin_nested():
                _check_integers(plan)
                self._check_retired(conn, plan)
                stored = stored_version(conn, plan.id, plan.version)
                if stored is None:
                    register_version(
                        conn,
                        plan.id,
                        plan.version,
                        plan.digest,
                        self.workspace.sources[plan.id],
                        now_us,
                        self.workspace.shared_sources.get(plan.id),
                    )
                elif stored.digest != plan.digest:
                    raise VersionConflict(
                        f"{plan.file}: journey {plan.id!r} version {plan.version} has changed since it first "
                        f"ran; give the changed journey version {plan.version + 1} (customers already inside "
                        f"finish on version {plan.version})"
                    )
                self._check_migrations(conn, plan)

    @contextmanager
    def _journey(self, journey_id: str, failures: dict[str, str]) -> Iterator[None]:
        """Where one journey's work runs: an exception inside (the journey's transaction or savepoint,
        opened inside this block, rolls back first) marks the journey failed instead of ending the tick."""
        try:
            yield
        except Exception as exc:
            failures.setdefault(journey_id, failure_text(exc))
            log.debug("journey %s failed", journey_id, exc_info=True)

    def _report_health(self, failures: dict[str, str], before: dict[str, str]) -> None:
        """Log each journey that failed, once per error (not at every tick), and each that works again."""
        for journey_id, error in failures.items():
            if self._reported.get(journey_id) != error:
                log.error("journey %s failed (its work at this tick was undone): %s", journey_id, error)
                self._reported[journey_id] = error
        running = {plan.id for plan in self.workspace.plans}
        for journey_id in sorted((before.keys() | self._reported.keys()) - failures.keys()):
            self._reported.pop(journey_id, None)
            if journey_id in running:
                log.warning("journey %s works again", journey_id)
            else:
                log.warning("journey %s is no longer run here: its failed mark is cleared", journey_id)

    def _check_retired(self, conn: Connection, plan: JourneyPlan) -> None:
        """A retired journey runs again only from a higher version, which lifts the retirement."""
        retired = retirement(conn, plan.id)
        if retired is None:
            return
        if plan.version <= retired.version:
            raise VersionConflict(
                f"{plan.file}: journey {plan.id!r} was retired at version {retired.version}; remove it from "
                f"the workspace, or give it version {retired.version + 1} to run it again"
            )
        lift_retirement(conn, plan.id)

    def old_plan(self, conn: Connection, plan: JourneyPlan, version: int) -> JourneyPlan | None:
        """The plan of a stored older version of ``plan``'s journey (None if it never ran here)."""
        if version == plan.version:
            return plan
        key = (plan.id, version)
        if key not in self._old_plans:
            stored = stored_version(conn, plan.id, version)
            if stored is None:
                return None
            self._old_plans[key] = plan_from_source(
                stored.source,
                f"{plan.file} (version {version})",
                self.workspace.renderers.get(plan.id),
                shared_metrics=stored.shared_metrics,
            )
        return self._old_plans[key]

    def _plans_with_active_instances(self, conn: Connection, plan: JourneyPlan) -> list[JourneyPlan]:
        plans = [plan]
        for version in active_versions(conn, plan.id, other_than=plan.version):
            old = self.old_plan(conn, plan, version)
            if old is not None:
                plans.append(old)
        return plans

    def _migrate(self, conn: Connection, plan: JourneyPlan, now_us: int) -> int:
        """Apply the version's ``migrate:`` entries once (at its first tick); how many instances moved."""
        moved = 0
        for migration in plan.migrations:
            if migration_applied(conn, plan.id, plan.version, migration.from_version):
                continue
            count = 0
            for old, new in migration.states.items():
                dest = "exited" if new == "exit" else new
                count += migrate_instances(
                    conn, plan.id, migration.from_version, plan.version, old, dest, now_us
                )
            record_migration(conn, plan.id, plan.version, migration.from_version, now_us, count)
            moved += count
        return moved

    def _check_migrations(self, conn: Connection, plan: JourneyPlan) -> None:
        """Every old step a migration names exists in that version (when that version ran here)."""
        problems = migration_problems(self, conn, plan)
        if problems:
            raise VersionConflict("\n".join(problems))

    # ------------------------------------------------------------------------------------------ goals

    def _convert(
        self,
        conn: Connection,
        plan: JourneyPlan,
        evaluator: Evaluator,
        customers: CustomerFrame,
        now_us: int,
        result: JourneyTick,
    ) -> None:
        """Record the conversions of the journey's open instances (both arms, active or finished): the
        first goal event inside each goal window, or for a condition goal the tick at which the condition
        holds inside it. The window starts at entry, or with ``from: first_send`` at the instance's first
        send (an instance that never passed a send step has no window yet)."""
        goal = plan.journey.goal
        if goal is None:
            return
        window_us = round(goal.within.total_seconds() * US_PER_SECOND)
        first_send = goal.start == "first_send"
        if plan.goal_signal is not None:
            holds = self._kept_condition(plan, customers)("goal", plan.goal_signal)
            if not holds.any():
                return
            # Open windows only: anchor <= now < anchor + within (every anchor is at or before now).
            open_ = unconverted_instances(
                conn, plan.id, now_us - window_us + 1, from_first_send=first_send, ownership=self._ownership
            )
            idx = np.flatnonzero(holds[open_.keys])
            at = np.full(len(open_.ids), now_us, np.int64)
            self._record_conversions(conn, plan, open_, idx, at, np.zeros(len(idx)), now_us, result)
            return
        assert goal.event is not None
        matched = bool(plan.goal_match)
        other_entry_props = any(
            t.entry_prop is not None and t.entry_prop != plan.entry.key for t in plan.goal_match
        )
        since_us = now_us - window_us - LATE_EVENT_GRACE_US
        open_ = self._open_instances(conn, plan, since_us, now_us, other_entry_props)
        if not len(open_.ids):
            return
        anchor = open_.first_send_us if first_send else open_.entered_us
        events = self.signals.events(int(anchor.min()), now_us, types=[goal.event])
        mask = events.type == events.type_code(goal.event)
        rows = np.flatnonzero(mask)
        ev_values = q_values = None
        if matched:
            ev_values, q_values = _goal_values(plan, evaluator, events, rows, open_)
        found = first_matching_after(
            events.customer[rows], events.ts[rows], ev_values, open_.keys, anchor - 1, q_values
        )
        hit = found >= 0
        if not hit.any():
            return
        at = events.ts[rows[np.maximum(found, 0)]]
        hit &= at < anchor + window_us
        if not hit.any():
            return
        idx = np.flatnonzero(hit)
        revenue = np.zeros(len(idx))
        if goal.revenue:
            values = values_at(events, goal.revenue, rows[found[idx]])
            revenue = np.nan_to_num(
                np.array([v if isinstance(v, int | float) else np.nan for v in values], dtype=np.float64),
                nan=0.0,
            )
        self._record_conversions(conn, plan, open_, idx, at, revenue, now_us, result)

    @staticmethod
    def _record_conversions(
        conn: Connection,
        plan: JourneyPlan,
        open_: OpenInstances,
        idx: np.ndarray,
        at: np.ndarray,
        revenue: np.ndarray,
        now_us: int,
        result: JourneyTick,
    ) -> None:
        """Store the conversions of the open instances ``idx`` (at ``at[idx]``, with ``revenue``) and, when
        the goal ends the journey, finish those still active."""
        goal = plan.journey.goal
        assert goal is not None
        if not len(idx):
            return
        insert_conversions(
            conn,
            [
                {
                    "instance_id": int(open_.ids[i]),
                    "journey_id": plan.id,
                    "version": int(open_.versions[i]),
                    "customer_key": int(open_.keys[i]),
                    "holdout": bool(open_.holdout[i]),
                    "entered_us": int(open_.entered_us[i]),
                    "converted_us": int(at[i]),
                    "revenue": float(r),
                }
                for i, r in zip(idx, revenue, strict=True)
            ],
        )
        result.converted += len(idx)
        if goal.exit:
            finishing = open_.ids[idx][open_.active[idx]]
            finish_instances(conn, finishing, "converted", f"goal: {goal.what}", now_us, trigger="goal")
            result.count_finished("converted", len(finishing))

    def _open_instances(
        self, conn: Connection, plan: JourneyPlan, since_us: int, now_us: int, with_data: bool
    ) -> OpenInstances:
        """The open instances (entered since ``since_us``, not converted) whose conversion to look for.

        An engine alone on the store looks at all of them once, then only at those that can have
        converted since it last looked: the instances made since, and those of customers with a goal
        event that reached the signal state since (whatever its time: a late event) or that is stamped
        since (an event that came ahead of its time). A goal matched against a metric (whose value moves
        with time alone), a new version, a failed tick or workers sharing the store look at all of them."""
        goal = plan.journey.goal
        assert goal is not None and goal.event is not None
        log_id = self.signals.log.last_id
        newest = max_instance_id(conn)
        mark = self._convert_marks.get(plan.id)
        by_metric = any(t.metric is not None for t in plan.goal_match)
        # (A state rebuilt from the store, or a clock stepped back, also looks at all of them.)
        if (
            self.sharing is not None
            or by_metric
            or mark is None
            or mark.digest != plan.digest
            or mark.log_id > log_id
            or mark.now_us > now_us
        ):
            mark = None
        first_send = goal.start == "first_send"
        if mark is None:
            open_ = unconverted_instances(
                conn,
                plan.id,
                since_us,
                with_data=with_data,
                from_first_send=first_send,
                ownership=self._ownership,
            )
        else:
            type_id = event_type_id(conn, goal.event)
            arrived = np.zeros(0, np.int64)
            if type_id is not None:
                arrived = goal_event_customers(conn, type_id, mark.log_id, log_id)
            stamped = self.signals.events(mark.now_us, now_us, types=[goal.event]).customer
            keys = np.union1d(arrived, stamped)
            open_ = unconverted_instances(
                conn,
                plan.id,
                since_us,
                with_data=with_data,
                keys=keys,
                after_id=mark.instance_id,
                from_first_send=first_send,
            )
        if self.sharing is None:
            self._convert_marks[plan.id] = ConvertMark(plan.digest, now_us, log_id, newest)
        return open_

    # ------------------------------------------------------------------------------------------ exits

    def _exit_when(
        self, conn: Connection, plan: JourneyPlan, evaluator: Evaluator, now_us: int, result: JourneyTick
    ) -> None:
        """Active instances whose customer now meets the version's ``exit_when`` leave."""
        if plan.exit_when is None:
            return
        holds = evaluator.condition(plan.exit_when)
        if not holds.any():
            return
        ids, keys = active_instances(conn, plan.id, plan.version, self._ownership)
        leaving = ids[holds[keys]]
        finish_instances(conn, leaving, "exited", "exit_when", now_us, trigger="exit_when")
        result.count_finished("exited", len(leaving))

    # ------------------------------------------------------------------------------------------ stepping

    def _advance(
        self,
        conn: Connection,
        plan: JourneyPlan,
        evaluator: Evaluator,
        customers: CustomerFrame,
        now_us: int,
        result: JourneyTick,
        claimed: leases.Claim | None = None,
    ) -> Stepped:
        """Step the version's due instances (only ``claimed`` ones, for a worker sharing the store) and
        count what they did in ``result``."""
        stepped = step_due(
            conn,
            plan,
            evaluator,
            customers,
            self.signals,
            now_us,
            claimed=claimed,
            policy=getattr(self.workspace, "policy", None),
            marks=self._wait_marks if self.sharing is None else None,
        )
        result.stepped += stepped.stepped
        result.queued += stepped.queued
        for status, n in stepped.finished.items():
            result.count_finished(status, n)
        return stepped

    # ------------------------------------------------------------------------------------------ dispatch

    def dispatch(
        self, limit: int | None = None, on_batch: Callable[[int], object] | None = None
    ) -> DispatchReport:
        """Render queued messages that are due, apply the contact policy and hand them to their adapters
        (see ``engine._dispatch``). Metrics come from the last tick's evaluation (a fresh one without);
        ``on_batch`` is told after each batch how many messages were handled so far."""
        context = DispatchContext(
            plan_for=self._plan_for_dispatch,
            renderer_for=self.workspace.renderers.get,
            metrics_for=self.metrics_now,
            policy=getattr(self.workspace, "policy", None),
            random=self._jitter.random,
            delivery=self.delivery,
            # Messages of journeys not in this workspace stay queued until they return (or are retired).
            journeys=[plan.id for plan in self.workspace.plans],
            stop=self.hurry.is_set,
            on_batch=on_batch,
            links=self.links,
            ownership=self._ownership,
        )
        if self.dispatch_group is not None:
            context.group = context.max_group = self.dispatch_group
        return dispatch_queued(self.store, self.router, self.clock, context, limit=limit)

    def _plan_for_dispatch(self, journey_id: str, version: int) -> JourneyPlan | None:
        current = next((p for p in self.workspace.plans if p.id == journey_id), None)
        if current is None or version == current.version:
            return current
        with self.store.connect() as conn:
            return self.old_plan(conn, current, version)

    def metrics_now(self, plan: JourneyPlan) -> dict[str, np.ndarray]:
        """The plan's metric values, indexed by customer key: the last tick's evaluation in this process,
        else one made now at the clock's instant (what dispatch renders and ``preview`` shows)."""
        evaluator = self._dispatch_evaluators.get((plan.id, plan.version))
        if evaluator is None:
            # Dispatch without a tick in this process: evaluate the metrics now, as a tick would.
            now_us = to_us(self.clock.now())
            self.signals.ensure([*self.workspace.plans, plan])
            with self.store.connect() as conn:
                self.signals.refresh(conn, now_us)
                customers = self._customers(conn, [*self.workspace.plans, plan])
            cache = AggregateCache()
            self.signals.fill(cache)
            evaluator = Evaluator(EventFrame.empty(customers.n), customers, now_us, plan.metrics, cache)
            self._dispatch_evaluators[(plan.id, plan.version)] = evaluator
        return {name: evaluator.metric(name) for name in plan.metrics}


class MissingFit(EngineError):
    """A journey reads a prediction (``p_alive(purchase)``...) whose purchase models the store has no fit of.
    Its message names the prediction and the command that fits them, never a customer's data."""


#: The range of the integers a plan hands to the store and to numpy columns (priority, version).
INT64 = (-(2**63), 2**63 - 1)

#: Exceptions whose message is the engine's own or the interpreter's fixed text, never a stored value: their
#: message is kept in a failure's one line. Any other exception is named by its type and where it arose.
_MESSAGE_KEPT = (VersionConflict, MissingFit, OverflowError, RecursionError, MemoryError, ZeroDivisionError)


def _check_integers(plan: JourneyPlan) -> None:
    for name, value in (("priority", plan.priority), ("version", plan.version)):
        if not INT64[0] <= value <= INT64[1]:
            raise OverflowError(f"{plan.file}: {name} {value} is out of range (-2**63 to 2**63-1)")


def failure_text(exc: BaseException) -> str:
    """One line for a journey's failure: the exception's type, its message when it cannot hold customer
    data (see ``_MESSAGE_KEPT``), and the engine's line where it arose."""
    text = type(exc).__name__
    if isinstance(exc, _MESSAGE_KEPT):
        text += ": " + " ".join(str(exc).split())
    if not isinstance(exc, VersionConflict):  # a version conflict names its file already
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/orchestrator/" in f.filename]
        if frames:
            text += f" (at {frames[-1].filename.rsplit('/orchestrator/', 1)[1]}:{frames[-1].lineno})"
    return text if len(text) <= 500 else text[:497] + "..."


def migration_problems(engine: Engine, conn: Connection, plan: JourneyPlan) -> list[str]:
    """``file:line:column: message`` for each old step a migration names that its version lacks."""
    problems = []
    for migration in plan.migrations:
        old = engine.old_plan(conn, plan, migration.from_version)
        if old is None:
            continue
        steps = [s.id for s in old.steps]
        for state in migration.states:
            if state not in steps:
                line, column = migration.where.get(state, (migration.line, migration.column))
                problems.append(
                    f"{plan.file}:{line}:{column}: version {migration.from_version} of {plan.id!r} has no "
                    f"step {state!r} (its steps: {', '.join(steps)})"
                )
    return problems


def _goal_values(
    plan: JourneyPlan, evaluator: Evaluator, events: EventFrame, rows: np.ndarray, open_: OpenInstances
) -> tuple[np.ndarray, np.ndarray]:
    """Joined match values of the goal events and of each open instance (its correlation key, another
    property of its entry event, a metric of its customer, or a literal)."""
    ev_columns = []
    q_columns = []
    docs = [orjson.loads(d) if d else {} for d in open_.data]
    for term in plan.goal_match:
        if term.entry_prop is not None and term.entry_prop == plan.entry.key:
            q_columns.append(list(open_.entry_keys))
        elif term.metric is not None:
            q_columns.append([normalise(to_python(v)) for v in evaluator.metric(term.metric)[open_.keys]])
        elif term.entry_prop is None:
            q_columns.append([normalise(term.literal)] * len(open_.ids))
        else:
            q_columns.append([normalise(d.get("entry", {}).get(term.entry_prop)) for d in docs])
        if term.prop in events.properties:
            ev_columns.append([normalise(v) for v in values_at(events, term.prop, rows)])
        else:
            ev_columns.append([None] * len(rows))
    return joined(ev_columns, len(rows)), joined(q_columns, len(open_.ids))
