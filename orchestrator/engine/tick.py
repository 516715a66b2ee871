"""One tick of the engine: evaluate, migrate, enter, convert, exit, advance; then dispatch.

For each journey, in one transaction: in-flight instances of older versions named by the journey's
``migrate:`` move onto the current version; customers (or events) the entry admits enter (re-entry policy
honoured, holdout arm decided once and stored); instances whose goal event arrived are converted;
instances whose ``exit_when`` became true leave; due instances step through their version's machine,
writing bare ledger rows for their sends (``engine.stepping``). Only after that transaction commits does
dispatch render the messages, apply the contact policy and hand them to the channel adapters, with the
ledger key as idempotency key (``engine.dispatch``), so a crash can repeat a delivery attempt (which the
key makes harmless) but never loses or doubles a step.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, text

from orchestrator.channels.base import ChannelRouter
from orchestrator.channels.delivery import DeliveryMode
from orchestrator.clock import Clock, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine.customer_state import CustomerState
from orchestrator.engine.dispatch import DispatchContext, DispatchReport, dispatch_queued
from orchestrator.engine.entry import KeptCondition, enter
from orchestrator.engine.frames import needed_columns
from orchestrator.engine.matching import first_matching_after, joined, normalise, values_at
from orchestrator.engine.signal_state import SignalState
from orchestrator.engine.stepping import Stepped, Stepper
from orchestrator.engine.stepping import ledger_key as ledger_key
from orchestrator.engine.workers import Sharing
from orchestrator.engine.workspace import Workspace, plan_from_source
from orchestrator.signals.evaluate import AggregateCache, Evaluator, to_python
from orchestrator.signals.frame import CustomerFrame, EventFrame
from orchestrator.signals.lang import Node
from orchestrator.spec.plan import JourneyPlan
from orchestrator.store import Store, leases
from orchestrator.store import journeys as sj
from orchestrator.store.customers import bare_customer_frame

# Conversions are looked for until this long after a goal window closes, so events that arrive late
# (ingested after the window, stamped inside it) still count.
LATE_EVENT_GRACE_US = 7 * 86400 * US_PER_SECOND


class VersionConflict(RuntimeError):
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "now_us": self.now_us,
            "new_events": self.new_events,
            "journeys": {k: vars(v) for k, v in self.journeys.items()},
            "delivery": vars(self.delivery),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


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
    ) -> None:
        """``global_holdout`` is the percent of all customers that no journey messages (0 to 100);
        ``delivery`` maps channels to their delivery mode (default ``at_least_once``)."""
        if not 0.0 <= global_holdout <= 100.0:
            raise ValueError(f"the global holdout is a percent between 0 and 100, not {global_holdout:g}")
        self.store = store
        self.workspace = workspace
        self.router = router
        self.clock = clock
        self.global_holdout = global_holdout
        self.delivery: dict[str, DeliveryMode] = dict(delivery or {})
        # Set (by the daemon's second stop signal) to end a dispatch after the group in flight is recorded.
        self.hurry = threading.Event()
        self._old_plans: dict[tuple[str, int], JourneyPlan] = {}
        # The last tick's evaluators, for the metrics that dispatch renders into messages.
        self._dispatch_evaluators: dict[tuple[str, int], Evaluator] = {}
        self._jitter = random.Random(0)  # retry backoff jitter: seeded, so simulations repeat
        self.signals = SignalState(workspace.plans)
        self.customers = CustomerState()
        # PostgreSQL: other engine processes may share the store (engine.workers); SQLite: this one alone.
        self.sharing = Sharing.for_store(store)

    # ------------------------------------------------------------------------------------------ tick

    def tick(self) -> TickReport:
        """One tick at the clock's instant; its report (and timings) are also stored in ``ticks``."""
        started = time.perf_counter()
        now_us = to_us(self.clock.now())
        report = TickReport(now_us)
        self._dispatch_evaluators = {}
        with self.store.begin() as conn:
            leases.wait_singleton(conn, "versions")
            self._register_versions(conn, now_us)
            for plan in self.workspace.plans:
                self._check_migrations(conn, plan)
        with self.store.connect() as conn:
            versions = {
                plan.id: self._plans_with_active_instances(conn, plan) for plan in self.workspace.plans
            }
        every_plan = [p for plans in versions.values() for p in plans]
        self.signals.ensure(every_plan)
        with self.store.connect() as conn:
            refresh = self.signals.refresh(conn, now_us)
            customers = self._customers(conn, every_plan)
        report.new_events = refresh.new_events
        report.timings["load_events"] = refresh.load_seconds
        report.timings["signals"] = refresh.advance_seconds
        cache = AggregateCache()
        self.signals.fill(cache)
        no_events = EventFrame.empty(customers.n)  # every aggregate is already in the cache
        t_enter = t_step = 0.0
        phases: dict[str, float] = {}
        for plan in self.workspace.plans:
            result = JourneyTick(plan.id)
            report.journeys[plan.id] = result
            plans = versions[plan.id]  # migration only moves instances onto the current version
            evaluators = {p.version: Evaluator(no_events, customers, now_us, p.metrics, cache) for p in plans}
            self._dispatch_evaluators.update({(p.id, p.version): evaluators[p.version] for p in plans})
            with self.store.begin() as conn:
                # With other workers on the store, one of them does the journey's singleton part.
                lead = self.sharing is None or self.sharing.lead(conn, plan.id)
                t1 = time.perf_counter()
                if lead:
                    result.migrated += self._migrate(conn, plan, now_us)
                    entered = enter(
                        conn,
                        plan,
                        evaluators[plan.version],
                        now_us,
                        self.global_holdout,
                        kept=self._kept_condition(plan, customers),
                    )
                    result.entered += entered.instances
                    result.entered_holdout += entered.holdout
                t2 = time.perf_counter()
                if lead:
                    self._convert(conn, plan, evaluators[plan.version], now_us, result)
                for version_plan in plans:
                    evaluator = evaluators[version_plan.version]
                    if lead:
                        self._exit_when(conn, version_plan, evaluator, now_us, result)
                    if self.sharing is None:
                        stepped = self._advance(conn, version_plan, evaluator, customers, now_us, result)
                        for phase, seconds in stepped.seconds.items():
                            phases[phase] = phases.get(phase, 0.0) + seconds
            if self.sharing is not None:
                # Shared stepping: claimed batches, each stepped and committed in its own transaction.
                for version_plan in plans:
                    evaluator = evaluators[version_plan.version]
                    for ids in self.sharing.claims(self.store, version_plan, now_us):
                        with self.store.begin() as conn, self.sharing.stepping(conn, ids):
                            stepped = self._advance(conn, version_plan, evaluator, customers, now_us, result)
                        for phase, seconds in stepped.seconds.items():
                            phases[phase] = phases.get(phase, 0.0) + seconds
            t_enter += t2 - t1
            t_step += time.perf_counter() - t2
        report.timings["evaluate_and_enter"] = t_enter
        report.timings["convert_and_step"] = t_step
        for phase, seconds in phases.items():  # the stepping part of convert_and_step, by phase
            report.timings[f"step_{phase}"] = seconds
        t3 = time.perf_counter()
        with leases.session_singleton(self.store.engine, "dispatch") as dispatching:
            if dispatching:  # with several workers, one dispatches at a time
                report.delivery = self.dispatch()
        report.timings["dispatch"] = time.perf_counter() - t3
        report.timings["total"] = time.perf_counter() - started
        with self.store.begin() as conn:
            conn.execute(
                text("INSERT INTO ticks (now_us, seconds, summary) VALUES (:n, :s, :j)"),
                {"n": now_us, "s": report.timings["total"], "j": json.dumps(report.to_dict())},
            )
        return report

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
        return frame

    # ------------------------------------------------------------------------------------------ versions

    def _register_versions(self, conn: Connection, now_us: int) -> None:
        for plan in self.workspace.plans:
            self._check_retired(conn, plan)
            stored = sj.stored_version(conn, plan.id, plan.version)
            if stored is None:
                sj.register_version(
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

    def _check_retired(self, conn: Connection, plan: JourneyPlan) -> None:
        """A retired journey runs again only from a higher version, which lifts the retirement."""
        retired = sj.retirement(conn, plan.id)
        if retired is None:
            return
        if plan.version <= retired.version:
            raise VersionConflict(
                f"{plan.file}: journey {plan.id!r} was retired at version {retired.version}; remove it from "
                f"the workspace, or give it version {retired.version + 1} to run it again"
            )
        sj.lift_retirement(conn, plan.id)

    def old_plan(self, conn: Connection, plan: JourneyPlan, version: int) -> JourneyPlan | None:
        """The plan of a stored older version of ``plan``'s journey (None if it never ran here)."""
        if version == plan.version:
            return plan
        key = (plan.id, version)
        if key not in self._old_plans:
            stored = sj.stored_version(conn, plan.id, version)
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
        for version in sj.active_versions(conn, plan.id):
            old = self.old_plan(conn, plan, version) if version != plan.version else None
            if old is not None:
                plans.append(old)
        return plans

    def _migrate(self, conn: Connection, plan: JourneyPlan, now_us: int) -> int:
        """Apply the version's ``migrate:`` entries once (at its first tick); how many instances moved."""
        moved = 0
        for migration in plan.migrations:
            if sj.migration_applied(conn, plan.id, plan.version, migration.from_version):
                continue
            count = 0
            for old, new in migration.states.items():
                dest = "exited" if new == "exit" else new
                count += sj.migrate_instances(
                    conn, plan.id, migration.from_version, plan.version, old, dest, now_us
                )
            sj.record_migration(conn, plan.id, plan.version, migration.from_version, now_us, count)
            moved += count
        return moved

    def _check_migrations(self, conn: Connection, plan: JourneyPlan) -> None:
        """Every old step a migration names exists in that version (when that version ran here)."""
        problems = migration_problems(self, conn, plan)
        if problems:
            raise VersionConflict("\n".join(problems))

    # ------------------------------------------------------------------------------------------ goals

    def _convert(
        self, conn: Connection, plan: JourneyPlan, evaluator: Evaluator, now_us: int, result: JourneyTick
    ) -> None:
        goal = plan.journey.goal
        if goal is None:
            return
        window_us = round(goal.within.total_seconds() * US_PER_SECOND)
        matched = bool(plan.goal_match)
        other_entry_props = any(
            t.entry_prop is not None and t.entry_prop != plan.entry.key for t in plan.goal_match
        )
        open_ = sj.unconverted_instances(
            conn, plan.id, now_us - window_us - LATE_EVENT_GRACE_US, with_data=other_entry_props
        )
        if not len(open_.ids):
            return
        events = self.signals.events(int(open_.entered_us.min()), now_us)
        mask = events.type == events.type_code(goal.event)
        rows = np.flatnonzero(mask)
        ev_values = q_values = None
        if matched:
            ev_values, q_values = _goal_values(plan, evaluator, events, rows, open_)
        found = first_matching_after(
            events.customer[rows], events.ts[rows], ev_values, open_.keys, open_.entered_us - 1, q_values
        )
        hit = found >= 0
        if not hit.any():
            return
        at = events.ts[rows[np.maximum(found, 0)]]
        hit &= at < open_.entered_us + window_us
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
        sj.insert_conversions(
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
            sj.finish_instances(conn, finishing, "converted", f"goal: {goal.event}", now_us)
            result.count_finished("converted", len(finishing))

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
        ids, keys = sj.active_instances(conn, plan.id, plan.version)
        leaving = ids[holds[keys]]
        sj.finish_instances(conn, leaving, "exited", "exit_when", now_us)
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
    ) -> Stepped:
        stepped = Stepper(conn, plan, evaluator, customers, self.signals, now_us).run()
        result.stepped += stepped.stepped
        result.queued += stepped.queued
        for status, n in stepped.finished.items():
            result.count_finished(status, n)
        return stepped

    # ------------------------------------------------------------------------------------------ dispatch

    def dispatch(self, limit: int | None = None) -> DispatchReport:
        """Render queued messages that are due, apply the contact policy and hand them to their adapters
        (see ``engine.dispatch``). Metrics come from the last tick's evaluation (a fresh one without)."""
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
        )
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
    plan: JourneyPlan, evaluator: Evaluator, events: EventFrame, rows: np.ndarray, open_: sj.OpenInstances
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
