"""One tick of the engine: evaluate, enter, convert, advance; then dispatch.

For each journey, in one transaction: customers whose entry condition became true enter (re-entry
policy honoured, holdout arm decided once and stored); instances whose goal event arrived are converted;
due instances step through the journey's machine, writing ledger rows for their sends. Only after that
transaction commits are messages handed to the channel adapters, with the ledger key as idempotency key,
so a crash can repeat a delivery attempt (which the key makes harmless) but never loses or doubles a step.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from orchestrator.channels.base import ChannelRouter
from orchestrator.clock import Clock, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine.dispatch import DispatchReport, dispatch_queued
from orchestrator.engine.frames import entry_condition, needed_columns
from orchestrator.engine.matching import first_at_or_after
from orchestrator.engine.render import message_row
from orchestrator.engine.signal_state import SignalState
from orchestrator.engine.workspace import Workspace, plan_from_source
from orchestrator.measure.holdout import buckets, journey_seed
from orchestrator.signals.evaluate import AggregateCache, Evaluator, to_python
from orchestrator.signals.frame import CustomerFrame, EventFrame
from orchestrator.spec.models import Cooldown
from orchestrator.spec.plan import NO_STATE, JourneyPlan, trigger_code
from orchestrator.store import Store
from orchestrator.store import journeys as sj
from orchestrator.store.customers import (
    bare_customer_frame,
    customer_ids,
    customer_records,
    load_customer_frame,
)

# Conversions are looked for until this long after a goal window closes, so events that arrive late
# (ingested after the window, stamped inside it) still count.
LATE_EVENT_GRACE_US = 7 * 86400 * US_PER_SECOND


class VersionConflict(RuntimeError):
    """A journey file changed meaning without a new version number."""


@dataclass
class JourneyTick:
    journey_id: str
    entered: int = 0
    entered_holdout: int = 0
    converted: int = 0
    stepped: int = 0
    queued: int = 0
    suppressed: int = 0
    failed: int = 0
    finished: dict[str, int] = field(default_factory=dict)


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

    def __init__(self, store: Store, workspace: Workspace, router: ChannelRouter, clock: Clock) -> None:
        self.store = store
        self.workspace = workspace
        self.router = router
        self.clock = clock
        self._old_plans: dict[tuple[str, int], JourneyPlan] = {}
        self.signals = SignalState(workspace.plans)

    # ------------------------------------------------------------------------------------------ tick

    def tick(self) -> TickReport:
        started = time.perf_counter()
        now_us = to_us(self.clock.now())
        report = TickReport(now_us)
        with self.store.begin() as conn:
            self._register_versions(conn, now_us)
            versions = {
                plan.id: self._plans_with_active_instances(conn, plan) for plan in self.workspace.plans
            }
        self.signals.ensure(p for plans in versions.values() for p in plans)
        with self.store.connect() as conn:
            refresh = self.signals.refresh(conn, now_us)
            customers = self._customers(conn, [p for plans in versions.values() for p in plans])
        report.new_events = refresh.new_events
        report.timings["load_events"] = refresh.load_seconds
        report.timings["signals"] = refresh.advance_seconds
        cache = AggregateCache()
        self.signals.fill(cache)
        no_events = EventFrame.empty(customers.n)  # every aggregate is already in the cache
        t_eval = t_step = 0.0
        for plan in self.workspace.plans:
            result = JourneyTick(plan.id)
            report.journeys[plan.id] = result
            with self.store.begin() as conn:
                t1 = time.perf_counter()
                evaluator = Evaluator(no_events, customers, now_us, plan.metrics, cache)
                self._enter(conn, plan, evaluator, now_us, result)
                t2 = time.perf_counter()
                self._convert(conn, plan, now_us, result)
                for version_plan in versions[plan.id]:
                    version_eval = (
                        evaluator
                        if version_plan is plan
                        else Evaluator(no_events, customers, now_us, version_plan.metrics, cache)
                    )
                    self._advance(conn, version_plan, version_eval, now_us, result)
                t_eval += t2 - t1
                t_step += time.perf_counter() - t2
        report.timings["evaluate_and_enter"] = t_eval
        report.timings["convert_and_step"] = t_step
        t3 = time.perf_counter()
        report.delivery = self.dispatch()
        report.timings["dispatch"] = time.perf_counter() - t3
        report.timings["total"] = time.perf_counter() - started
        with self.store.begin() as conn:
            conn.execute(
                text("INSERT INTO ticks (now_us, seconds, summary) VALUES (:n, :s, :j)"),
                {"n": now_us, "s": report.timings["total"], "j": json.dumps(report.to_dict())},
            )
        return report

    def _customers(self, conn: Connection, plans: list[JourneyPlan]) -> CustomerFrame:
        """The customer attributes the journeys read, sized to every customer the signals know of."""
        _, attributes = needed_columns(plans)
        attributes.discard("id")  # ids are read only for entrants, when their holdout arm is decided
        frame = load_customer_frame(conn, sorted(attributes)) if attributes else bare_customer_frame(conn)
        if frame.n != self.signals.n_customers:
            raise RuntimeError("customer and event state disagree on the number of customers")
        return frame

    # ------------------------------------------------------------------------------------------ setup

    def _register_versions(self, conn: Connection, now_us: int) -> None:
        for plan in self.workspace.plans:
            stored = sj.stored_version(conn, plan.id, plan.version)
            if stored is None:
                sj.register_version(
                    conn, plan.id, plan.version, plan.digest, self.workspace.sources[plan.id], now_us
                )
            elif stored.digest != plan.digest:
                raise VersionConflict(
                    f"{plan.file}: journey {plan.id!r} version {plan.version} has changed since it first "
                    f"ran; give the changed journey version {plan.version + 1} (customers already inside "
                    f"finish on version {plan.version})"
                )

    def _plans_with_active_instances(self, conn: Connection, plan: JourneyPlan) -> list[JourneyPlan]:
        plans = [plan]
        for version in sj.active_versions(conn, plan.id):
            if version == plan.version:
                continue
            key = (plan.id, version)
            if key not in self._old_plans:
                stored = sj.stored_version(conn, plan.id, version)
                if stored is None:
                    continue
                self._old_plans[key] = plan_from_source(stored.source, f"{plan.file} (version {version})")
            plans.append(self._old_plans[key])
        return plans

    # ------------------------------------------------------------------------------------------ entry

    def _enter(
        self,
        conn: Connection,
        plan: JourneyPlan,
        evaluator: Evaluator,
        now_us: int,
        result: JourneyTick,
    ) -> None:
        condition = entry_condition(evaluator, plan)
        previous = np.zeros(len(condition), bool)
        prev_keys = sj.signal_members(conn, plan.id)
        previous[prev_keys[prev_keys < len(previous)]] = True
        became = condition & ~previous
        sj.update_signal_members(
            conn, plan.id, np.flatnonzero(became), np.flatnonzero(previous & ~condition), now_us
        )
        candidates = np.flatnonzero(became)
        if not len(candidates):
            return
        candidates = candidates[self._reentry_allowed(conn, plan, candidates, now_us)]
        if not len(candidates):
            return
        held = self._assign(conn, plan, candidates, now_us)
        sj.insert_instances(conn, plan.id, plan.version, candidates, held, plan.steps[0].id, now_us)
        result.entered += len(candidates)
        result.entered_holdout += int(held.sum())

    def _reentry_allowed(
        self, conn: Connection, plan: JourneyPlan, keys: np.ndarray, now_us: int
    ) -> np.ndarray:
        policy = plan.journey.reentry
        if policy == "always":
            return np.ones(len(keys), bool)
        history = sj.entry_history(conn, plan.id)
        seen, pos = _lookup(history.keys, keys)
        active = seen & history.active[pos] if len(history.keys) else seen
        if policy == "never":
            return ~seen
        if policy == "after_exit":
            return ~active
        assert isinstance(policy, Cooldown)
        cooldown_us = plan.reentry_cooldown_us() or 0
        last_exit = (
            np.where(seen, history.last_exit_us[pos], -1) if len(history.keys) else np.full(len(keys), -1)
        )
        return ~seen | (~active & (last_exit >= 0) & (now_us - last_exit >= cooldown_us))

    def _assign(self, conn: Connection, plan: JourneyPlan, keys: np.ndarray, now_us: int) -> np.ndarray:
        """The holdout flag of each entering key: the stored arm if any, else a new stored assignment."""
        known_keys, known_held = sj.holdout_assignments(conn, plan.id)
        known, pos = _lookup(known_keys, keys)
        held = np.zeros(len(keys), bool)
        held[known] = known_held[pos[known]]
        new = ~known
        if new.any():
            ids = customer_ids(conn, keys[new]).astype(str)
            new_buckets = buckets(journey_seed(plan.id), ids)
            percent = plan.journey.holdout
            new_held = new_buckets < percent / 100.0
            held[new] = new_held
            sj.insert_assignments(
                conn,
                plan.id,
                keys[new],
                new_buckets,
                new_held,
                percent,
                now_us,
                reason=f"hash of journey and customer id < {percent:g}%",
            )
        return held

    # ------------------------------------------------------------------------------------------ goals

    def _convert(self, conn: Connection, plan: JourneyPlan, now_us: int, result: JourneyTick) -> None:
        goal = plan.journey.goal
        if goal is None:
            return
        window_us = round(goal.within.total_seconds() * US_PER_SECOND)
        open_ = sj.unconverted_instances(conn, plan.id, now_us - window_us - LATE_EVENT_GRACE_US)
        if not len(open_.ids):
            return
        events = self.signals.events(int(open_.entered_us.min()), now_us)
        code = events.type_code(goal.event)
        mask = events.type == code
        ev_customer, ev_ts = events.customer[mask], events.ts[mask]
        found = first_at_or_after(ev_customer, ev_ts, open_.keys, open_.entered_us)
        hit = found >= 0
        hit[hit] = ev_ts[found[hit]] < open_.entered_us[hit] + window_us
        if not hit.any():
            return
        idx = np.flatnonzero(hit)
        revenue = np.zeros(len(idx))
        if goal.revenue:
            values = events.values(goal.revenue)[mask][found[idx]]
            revenue = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
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
                    "converted_us": int(ev_ts[found[i]]),
                    "revenue": float(r),
                }
                for i, r in zip(idx, revenue, strict=True)
            ],
        )
        result.converted += len(idx)
        if goal.exit:
            finishing = open_.ids[idx][open_.active[idx]]
            sj.finish_instances(conn, finishing, "converted", f"goal: {goal.event}", now_us)
            if len(finishing):
                result.finished["converted"] = result.finished.get("converted", 0) + len(finishing)

    # ------------------------------------------------------------------------------------------ stepping

    def _advance(
        self, conn: Connection, plan: JourneyPlan, evaluator: Evaluator, now_us: int, result: JourneyTick
    ) -> None:
        due = sj.due_instances(conn, plan.id, plan.version, now_us)
        n = len(due)
        if n == 0:
            return
        codes_by_name = {name: i for i, name in enumerate(plan.states)}
        state = np.array([codes_by_name.get(s, NO_STATE) for s in due.states], dtype=np.int64)
        if (state == NO_STATE).any():
            bad = sorted({s for s, c in zip(due.states, state, strict=True) if c == NO_STATE})
            raise RuntimeError(f"journey {plan.id} v{plan.version}: instances in unknown states {bad}")
        # A wait runs when an instance reaches it: it schedules the wake-up and moves the instance on to
        # the following step, where it sleeps until then. So every due instance simply runs its state.
        # Waits count from when the previous step was due, not from the tick, so schedules do not drift.
        step_time = due.wake_at_us.copy()
        wake = due.wake_at_us.copy()
        parked = np.zeros(n, bool)
        n_steps = len(plan.steps)
        messages: list[dict[str, Any]] = []
        metric_values: dict[str, np.ndarray] | None = None
        reasons = np.empty(n, dtype=object)

        def move(sel: np.ndarray, trigger: str) -> None:
            state[sel] = plan.table[state[sel], trigger_code(trigger)]

        for _ in range(n_steps * 2 + 2):
            todo = ~parked & (state < n_steps)
            if not todo.any():
                break
            for code in np.unique(state[todo]):
                sel = todo & (state == code)
                step = plan.steps[int(code)]
                if step.kind == "wait":
                    assert step.wait_us is not None
                    wake[sel] = step_time[sel] + step.wait_us
                    step_time[sel] = wake[sel]
                    parked |= sel & (wake > now_us)
                    move(sel, "next")
                elif step.kind == "send":
                    assert step.send is not None
                    send_to = np.flatnonzero(sel & ~due.holdout)
                    if len(send_to):
                        if metric_values is None:
                            metric_values = {name: evaluator.metric(name) for name in plan.metrics}
                        messages.extend(
                            self._render(conn, plan, step.id, step.send, due, send_to, metric_values, now_us)
                        )
                    move(sel, "next")
                elif step.kind == "branch":
                    assert step.condition is not None
                    holds = evaluator.condition(step.condition)[due.keys]
                    move(sel & holds, "yes")
                    move(sel & ~holds, "no")
                else:  # exit
                    reasons[sel] = step.exit_reason
                    move(sel, "next")
        stuck = ~parked & (state < n_steps)
        if stuck.any():
            raise RuntimeError(f"journey {plan.id}: instances did not settle within one tick")

        finished = state >= n_steps
        rows = []
        for i in range(n):
            if finished[i]:
                status = plan.states[state[i]]
                rows.append(
                    {
                        "id": int(due.ids[i]),
                        "state": status,
                        "status": status,
                        "wake_at_us": None,
                        "exited_us": now_us,
                        "exit_reason": reasons[i] or status,
                    }
                )
                result.finished[status] = result.finished.get(status, 0) + 1
            else:
                rows.append(
                    {
                        "id": int(due.ids[i]),
                        "state": plan.states[state[i]],
                        "status": "active",
                        "wake_at_us": int(wake[i]),
                        "exited_us": None,
                        "exit_reason": None,
                    }
                )
        sj.update_instances(conn, rows)
        sj.insert_messages(conn, messages)
        result.stepped += n
        for m in messages:
            if m["status"] == "queued":
                result.queued += 1
            elif m["status"] == "suppressed":
                result.suppressed += 1
            else:
                result.failed += 1

    def _render(
        self,
        conn: Connection,
        plan: JourneyPlan,
        step_id: str,
        send: Any,
        due: sj.DueInstances,
        positions: np.ndarray,
        metric_values: dict[str, np.ndarray],
        now_us: int,
    ) -> list[dict[str, Any]]:
        keys = due.keys[positions]
        records = customer_records(conn, [int(k) for k in keys])
        renderer = self.workspace.renderer(plan.id)
        journey = {"id": plan.id, "version": plan.version, "step": step_id}
        rows = []
        for pos, key in zip(positions, keys, strict=True):
            customer = records[int(key)]
            instance_id = int(due.ids[pos])
            rows.append(
                message_row(
                    renderer=renderer,
                    send=send,
                    customer=customer,
                    metrics={name: to_python(values[key]) for name, values in metric_values.items()},
                    journey=journey,
                    base={
                        "idempotency_key": ledger_key(plan, customer["id"], instance_id, step_id),
                        "journey_id": plan.id,
                        "version": plan.version,
                        "instance_id": instance_id,
                        "customer_key": int(key),
                        "step": step_id,
                        "created_us": now_us,
                    },
                )
            )
        return rows

    # ------------------------------------------------------------------------------------------ dispatch

    def dispatch(self, limit: int | None = None) -> DispatchReport:
        """Hand queued messages to their adapters (see ``engine.dispatch``)."""
        return dispatch_queued(self.store, self.router, self.clock, limit=limit)


def ledger_key(plan: JourneyPlan, customer_id: str, instance_id: int, step_id: str) -> str:
    """The send ledger's key for one step of one entry: also the provider's idempotency key."""
    return f"{plan.id}/v{plan.version}/{customer_id}/{instance_id}/{step_id}"


def _lookup(table_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``keys`` stands in ``table_keys``, which must be sorted ascending.

    Returns (found, position); ``position`` is meaningful only where ``found``, and is always a valid
    index into a non-empty table, so columns aligned with the table can be indexed with it directly.
    """
    if not len(table_keys):
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    pos = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return table_keys[pos] == keys, pos
