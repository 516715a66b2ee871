"""Advancing due instances of one journey version through its steps, as sets.

Every instance is at a step (``state``) since an instant (``since_us``). A due instance runs its step;
each step kind is applied to all instances at that step at once, and moves them through the version's
transition table (``plan.table[state, trigger]``). The loop repeats until every instance is parked at a
wait or has finished:

- ``wait`` / ``wait_until``: the wake-up instant is computed from when the instance reached the step (so a
  schedule never drifts with the tick interval); an instance whose wake-up has come moves on, as if it
  had woken exactly then, the others park;
- ``wait_for``: the first matching event after the instance reached the step ends the wait (its properties
  are kept under the step's id); otherwise the timeout does, or the instance parks;
- ``send``: writes a queued ledger row (never for held-out instances), without content: dispatch renders
  it after the transaction commits (``engine._dispatch``); what follows a send counts from the tick's
  instant, when the message was queued. A send ``at: best_time`` first chooses each instance's instant
  (``engine._best_time``) and records the choice (``store._send_choices``, both arms); an instance whose
  instant is ahead parks at the step until then, and is sent to when it wakes there. A send on
  ``channel: best(...)`` chooses each instance's channel (``engine._best_channel``), records it the same
  way, and queues each channel's messages on that channel. The first send step
  an instance passes records that instant as its first send, in both arms (a held-out instance reaches
  it at the same tick a treated one would queue its message): a goal ``from: first_send`` starts its
  window there;
- ``branch``, ``split``, ``exit``: move at once.

Nothing is written per instance: the state changes of the whole batch are written at the end with one
UPDATE per group of instances that moved alike (else one executemany), the first send recorded by the
same write, each send step's ledger rows with one INSERT ... SELECT, and the transitions taken (per
step, trigger and arm: the per-step funnel, ``store._funnel``) with one upsert, all inside the caller's
transaction (state, ledger and funnel commit together).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import orjson

from orchestrator.durations import US_PER_SECOND, format_duration
from orchestrator.engine._best_channel import (
    BEST_CHANNEL,
    ChannelCounts,
    channel_counts,
    choose_channels,
    fixed_policy,
)
from orchestrator.engine._best_time import (
    BEST_TIME,
    IMMEDIATE,
    Engagement,
    choose_times,
    engagement,
    hour_name,
)
from orchestrator.engine._conditions import instance_condition
from orchestrator.engine._localtime import MISSING, date_wakes, next_local_times
from orchestrator.engine._matching import first_matching_after, joined, normalise, values_at
from orchestrator.engine._signal_state import SignalState
from orchestrator.holdout import HOLDOUT, TREATMENT, buckets, split_arms
from orchestrator.language import (
    ADDRESS_FIELD,
    ENTRY,
    NO_STATE,
    Consent,
    ContactPolicy,
    JourneyPlan,
    MatchTerm,
    StepKind,
    StepPlan,
    split_trigger,
)
from orchestrator.signals import CustomerFrame, Evaluator, EventFrame, to_python
from orchestrator.store import (
    Connection,
    DueInstances,
    FunnelCount,
    add_funnel_counts,
    chosen_visits,
    customer_ids,
    due_instances,
    event_type_id,
    finish_steps,
    goal_event_customers,
    instance_data,
    mark_first_sends,
    marketing_sends_since,
    move_instances,
    queue_messages,
    record_send_choices,
    set_instance_data,
)
from orchestrator.store import _leases as leases

ARMS = (TREATMENT, HOLDOUT)
# Elementwise tests of object columns (consents and addresses: True/False/None, text/None).
_IS_TRUE = np.frompyfunc(lambda v: v is True or v == 1, 1, 1)
_IS_NONE = np.frompyfunc(lambda v: v is None, 1, 1)
_IS_TEXT = np.frompyfunc(lambda v: isinstance(v, str) and v != "", 1, 1)


@dataclass
class Stepped:
    """What one version's stepping did in a tick."""

    stepped: int = 0  # instances that moved or finished (not those still waiting for an event)
    read: int = 0  # instances read (due, or waiting for an event that may have come)
    queued: int = 0  # ledger rows written (messages for dispatch to render and send)
    finished: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # read, step, write
    # (step id, trigger) -> instances that took that transition: which edges of the machine were used
    funnel_seconds: float = 0.0  # of ``write``: adding the transitions taken to the funnel's counts
    # ``write`` by part: instances (state changes, finished instances, data, first sends, choices), ledger
    # (the queued rows) and funnel (its counts)
    writes: dict[str, float] = field(default_factory=dict)


def ledger_key(plan: JourneyPlan, customer_id: str, instance_id: int, step: StepPlan, at_us: int) -> str:
    """The send ledger's key for one step of one entry: also the provider's idempotency key. A step that a
    loop can bring an instance back to also carries the instant of the visit."""
    return f"{plan.id}/v{plan.version}/{customer_id}/{instance_id}{ledger_key_suffix(step, at_us)}"


def ledger_key_suffix(step: StepPlan, at_us: int) -> str:
    """The part of ``ledger_key`` after the instance id."""
    return f"/{step.id}/{at_us}" if step.in_cycle else f"/{step.id}"


def step_due(
    conn: Connection,
    plan: JourneyPlan,
    evaluator: Evaluator,
    customers: CustomerFrame,
    signals: SignalState,
    now_us: int,
    *,
    claimed: leases.Claim | None = None,
    count_funnel: bool = True,
    policy: ContactPolicy | None = None,
    marks: WaitMarks | None = None,
) -> Stepped:
    """Step the due instances of ``plan``'s version at ``now_us`` (with ``claimed``, a worker sharing the
    store steps only the instances of its claim): read them, run them through their steps and write what
    changed, in the caller's transaction. ``count_funnel=False`` leaves the funnel's counts out (only for
    measuring what they cost). ``policy`` (the contact policy) keeps best times out of its quiet hours.
    ``marks`` (kept by an engine alone on its store) lets it read, of the instances parked at a
    ``wait_for``, only those an event may have come for since it last looked (see ``WaitMarks``)."""
    started = time.perf_counter()
    log_id = signals.log.last_id  # what the walk sees at least (events handed over later: next tick)
    keys = None
    if marks is not None and claimed is None:
        keys = marks.candidates(conn, plan, signals, now_us, log_id)
    due = due_instances(
        conn,
        plan.id,
        plan.version,
        now_us,
        plan.wait_for_states(),
        claimed=claimed,
        states=plan.states,
        waiting_keys=keys,
    )
    if marks is not None and claimed is None:
        marks.looked(plan, now_us, log_id)
    out = Stepped(read=len(due))
    read = time.perf_counter()
    out.seconds["read"] = read - started
    if not len(due):
        return out
    stepper = Stepper(conn, plan, evaluator, customers, signals, now_us, due, policy)
    stepper.count_funnel = count_funnel
    stepper.walk()
    stepped = time.perf_counter()
    stepper.write(out)
    out.seconds["step"] = stepped - read
    out.seconds["write"] = time.perf_counter() - stepped
    return out


@dataclass(frozen=True)
class _WaitMark:
    digest: str  # the plan it was made for
    now_us: int  # the tick that looked at every parked instance's events before this instant...
    log_id: int  # ...with every event up to this id in the signal state's log


class WaitMarks:
    """What an engine alone on its store remembers, per journey version, of its last look at the instances
    parked at ``wait_for`` steps, so that a tick reads only those that can have moved since.

    A parked instance moves when its timeout comes (it is then due: ``wake_at_us`` is its deadline, read
    through its index) or when an event of its step's type comes after it reached the step. The last tick
    (at ``now_us``, its signal state holding every event up to ``log_id``) looked for those among every
    event of the log before ``now_us``; what can be new since are the events stored with a higher id
    (whatever their time: a late event, or one another process ingested) and those stamped from
    ``now_us`` on (they were in the future then). Only the instances of those events' customers are read,
    with every due one. An instance reaches a ``wait_for`` only in a walk, which looks at it at once, or
    by a migration, which comes with a new version (and so no mark). With no mark (the first tick after a
    start, a new or edited version, a failed tick), a state rebuilt from the store, a clock stepped back
    or a wait matched against a metric (whose value moves with time alone), every parked instance is read.
    The caller drops a journey's marks when its transaction rolls back (``forget``).
    """

    def __init__(self) -> None:
        self._marks: dict[tuple[str, int], _WaitMark] = {}

    def candidates(
        self, conn: Connection, plan: JourneyPlan, signals: SignalState, now_us: int, log_id: int
    ) -> np.ndarray | None:
        """The customer keys whose parked instances to read, or None to read all of them."""
        mark = self._marks.get((plan.id, plan.version))
        if mark is None or mark.digest != plan.digest or mark.log_id > log_id or mark.now_us > now_us:
            return None
        steps = [s for s in plan.steps if s.kind == StepKind.WAIT_FOR]
        if any(term.metric is not None for s in steps for term in s.match):
            return None
        types = sorted({s.event for s in steps if s.event is not None})
        found = [signals.events(mark.now_us, now_us, types=types).customer]
        for name in types:
            type_id = event_type_id(conn, name)
            if type_id is not None and log_id > mark.log_id:
                found.append(goal_event_customers(conn, type_id, mark.log_id, log_id))
        return np.unique(np.concatenate(found).astype(np.int64))

    def looked(self, plan: JourneyPlan, now_us: int, log_id: int) -> None:
        """The version's parked instances have been looked at, at ``now_us`` with events up to ``log_id``."""
        self._marks[(plan.id, plan.version)] = _WaitMark(plan.digest, now_us, log_id)

    def forget(self, journey_id: str) -> None:
        """Drop the marks of every version of a journey (its tick rolled back)."""
        for key in [k for k in self._marks if k[0] == journey_id]:
            del self._marks[key]


class Stepper:
    """Runs the due instances of one journey version at one instant (see the module docstring).

    ``walk`` moves the instances, ``write`` stores the result. Per instance (aligned with ``due``):
    ``state`` (the code of its step; ``start_state`` where it was), ``t`` (when it reached it),
    ``wake`` (when to look at it again), ``parked`` (it stays at its step until a later tick),
    ``reasons`` (why it exited), ``data`` (its entry properties and captured events, read when needed)
    and ``data_changed`` (they are to be written back)."""

    def __init__(
        self,
        conn: Connection,
        plan: JourneyPlan,
        evaluator: Evaluator,
        customers: CustomerFrame,
        signals: SignalState,
        now_us: int,
        due: DueInstances,
        policy: ContactPolicy | None = None,
    ) -> None:
        self.conn = conn
        self.policy = policy
        self.plan = plan
        self.evaluator = evaluator
        self.customers = customers
        self.signals = signals
        self.now_us = now_us
        self.due = due
        n = len(due)
        if due.state_codes is not None:
            self.state = due.state_codes.astype(np.int64, copy=True)
        else:
            codes = {name: i for i, name in enumerate(plan.states)}
            self.state = np.fromiter((codes.get(s, NO_STATE) for s in due.states), np.int64, n)
        if (self.state == NO_STATE).any():
            bad = sorted({s for s, c in zip(due.states, self.state, strict=True) if c == NO_STATE})
            raise RuntimeError(f"journey {plan.id} v{plan.version}: instances in unknown states {bad}")
        self.start_state = self.state.copy()
        self.t = due.since_us.copy()
        self.wake = due.wake_at_us.copy()
        self.parked = np.zeros(n, bool)
        self.reasons = np.full(n, None, dtype=object)
        self.data: list[dict[str, Any] | None] = [None] * n
        self.data_changed = np.zeros(n, bool)
        self._events: tuple[int, EventFrame] | None = None
        self._conditions: dict[int, np.ndarray] = {}
        self._sends: list[tuple[StepPlan, np.ndarray, str]] = []  # step, positions, channel
        self._passed_send = np.zeros(n, bool)  # passed a send step in this walk (either arm)
        self._choices: list[dict[str, Any]] = []  # send_choices rows of sends at: best_time
        self._engagements: dict[tuple[Any, ...], Engagement] = {}
        self._channel_counts: dict[tuple[Any, ...], ChannelCounts] = {}
        # The transitions taken: (step code, trigger, destination code) -> [treatment, holdout] instances.
        self.transitions: dict[tuple[int, str, int], list[int]] = {}
        self.count_funnel = True

    # ------------------------------------------------------------------------------------------ run

    def walk(self) -> None:
        """Run each step kind for all the instances at it, until every instance is parked at a wait or
        has finished."""
        n_steps = len(self.plan.steps)
        for _ in range(4 * n_steps + 8):
            todo = ~self.parked & (self.state < n_steps)
            if not todo.any():
                break
            for code in np.unique(self.state[todo]):
                sel = np.flatnonzero(todo & (self.state == code))
                if len(sel):
                    self._run_step(self.plan.steps[int(code)], sel)
        # An instance still moving after that many steps is far behind a loop's schedule: it goes on at
        # the next tick rather than holding this one up.
        behind = ~self.parked & (self.state < n_steps)
        self.wake[behind] = self.now_us

    def write(self, out: Stepped) -> None:
        """Write what the walk changed (state changes, finished instances, instance data, ledger rows) and
        count it in ``out``."""
        plan, now, due = self.plan, self.now_us, self.due
        started = time.perf_counter()
        finished = self.state >= len(plan.steps)
        changed = ~finished & (
            (self.state != self.start_state) | (self.wake != due.wake_at_us) | (self.t != due.since_us)
        )
        if changed.any():
            idx = np.flatnonzero(changed)
            move_instances(
                self.conn,
                due.ids[idx],
                self.state[idx],
                self.t[idx],
                self.wake[idx],
                names=plan.states,
                sent=self._passed_send[idx],
                first_send_us=now,
            )
        if finished.any():
            idx = np.flatnonzero(finished)
            statuses = [plan.states[s] for s in self.state[idx]]
            reasons = [self.reasons[i] or status for i, status in zip(idx, statuses, strict=True)]
            finish_steps(self.conn, due.ids[idx], statuses, reasons, now)
            out.finished = dict(Counter(statuses))
        if self.data_changed.any():
            idx = np.flatnonzero(self.data_changed)
            set_instance_data(self.conn, due.ids[idx], [orjson.dumps(self.data[i]).decode() for i in idx])
        unmarked = self._passed_send & ~changed  # those that moved had it written with their move
        if unmarked.any():
            mark_first_sends(self.conn, due.ids[unmarked], now)
        record_send_choices(self.conn, self._choices)
        ledger = time.perf_counter()
        out.writes["instances"] = ledger - started
        for step, positions, channel in self._sends:
            assert step.send is not None
            out.queued += queue_messages(
                self.conn,
                journey_id=plan.id,
                version=plan.version,
                step=step.id,
                channel=channel,
                transactional=step.send.transactional,
                instance_ids=due.ids[positions],
                key_suffix=ledger_key_suffix(step, now),
                created_us=now,
            )
        counting = time.perf_counter()
        out.writes["ledger"] = counting - ledger
        if self.count_funnel and self.transitions:
            add_funnel_counts(self.conn, self.funnel_counts())
            out.funnel_seconds = time.perf_counter() - counting
        out.writes["funnel"] = out.funnel_seconds
        out.stepped = int((changed | finished).sum())

    def funnel_counts(self) -> list[FunnelCount]:
        """The transitions the walk made, per step, trigger, destination and arm (``store._funnel``)."""
        plan, states = self.plan, self.plan.states
        return [
            FunnelCount(plan.id, plan.version, arm, states[source], trigger, states[dest], n)
            for (source, trigger, dest), by_arm in self.transitions.items()
            for arm, n in zip(ARMS, by_arm, strict=True)
            if n
        ]

    def _run_step(self, step: StepPlan, sel: np.ndarray) -> None:
        kind = step.kind
        if kind == StepKind.WAIT:
            assert step.wait_us is not None
            self._wake_at(step, sel, self.t[sel] + step.wait_us)
        elif kind == StepKind.WAIT_UNTIL:
            self._wait_until(step, sel)
        elif kind == StepKind.WAIT_FOR:
            self._wait_for(step, sel)
        elif kind == StepKind.SEND:
            self._send(step, sel)
        elif kind == StepKind.BRANCH:
            holds = self._branch(step, sel)
            self._move(step, sel[holds], "yes")
            self._move(step, sel[~holds], "no")
        elif kind == StepKind.SPLIT:
            self._split(step, sel)
        else:  # exit
            self.reasons[sel] = step.exit_reason
            self._move(step, sel, "next")

    # ------------------------------------------------------------------------------------------ moves

    def _move(self, step: StepPlan, sel: np.ndarray, trigger: str) -> None:
        if not len(sel):
            return
        dest = self.plan.table[step.code, self.plan.trigger(trigger)]
        assert dest != NO_STATE, f"{self.plan.id}: step {step.id} has no {trigger} transition"
        self.state[sel] = dest
        held = int(np.count_nonzero(self.due.holdout[sel]))
        counts = self.transitions.setdefault((step.code, trigger, int(dest)), [0, 0])
        counts[0] += len(sel) - held
        counts[1] += held
        if self.plan.states[dest] == "exited" and step.kind != StepKind.EXIT:
            self.reasons[sel] = f"{step.kind} {step.id}: {trigger}"

    def _wake_at(self, step: StepPlan, sel: np.ndarray, wake: np.ndarray) -> None:
        """Park where ``wake`` is still ahead, move on (from ``wake``) where it has come."""
        ahead = wake > self.now_us
        self.parked[sel[ahead]] = True
        self.wake[sel[ahead]] = wake[ahead]
        come = sel[~ahead]
        self.t[come] = wake[~ahead]
        self._move(step, come, "next")

    # ------------------------------------------------------------------------------------------ waits

    def _wait_until(self, step: StepPlan, sel: np.ndarray) -> None:
        keys = self.due.keys[sel]
        if step.attribute is None:
            assert step.time_of_day_s is not None
            zones = self.customers.column("timezone")[keys]
            wake = next_local_times(
                self.t[sel], zones, step.time_of_day_s, step.weekdays, step.default_timezone
            )
            self._wake_at(step, sel, wake)
            return
        values = self.customers.column(step.attribute)[keys]
        zones = self.customers.column("timezone")[keys]

        def wakes(after: np.ndarray, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
            return date_wakes(
                values[rows],
                zones[rows],
                after,
                offset_us=step.offset_us,
                seconds_of_day=step.time_of_day_s,
                every=step.every,
                default_zone=step.default_timezone,
            )

        wake = wakes(self.t[sel])
        if step.every is not None:
            # Parked here at an earlier tick, and the date moved earlier while it waited: that occurrence
            # has passed, so the wait starts again from the instant it was due at, for the next one (never
            # a message on a day that is not the date).
            old = self.wake[sel]
            moved = (
                (self.state[sel] == self.start_state[sel])
                & (self.t[sel] == self.due.since_us[sel])
                & (wake != MISSING)
                & (wake < old)
                & (wake <= self.now_us)
            )
            if moved.any():
                self.t[sel[moved]] = old[moved]
                wake[moved] = wakes(old[moved], moved)
        missing = wake == MISSING
        gone = sel[missing]
        self._move(step, gone, "no")
        if len(gone) and self.plan.states[self.state[gone[0]]] == "exited":
            self.reasons[gone] = f"no {step.attribute} to wait for"
        here = ~missing
        # A date already past lets the instance through at once; time never runs backwards. (The next
        # anniversary, with every:, is always ahead of when the instance reached the step.)
        self._wake_at(step, sel[here], np.maximum(wake[here], self.t[sel[here]]))

    def _wait_for(self, step: StepPlan, sel: np.ndarray) -> None:
        assert step.event is not None and step.timeout_us is not None
        found, events = self._first_events(step, sel, self.t[sel])
        deadline = self.t[sel] + step.timeout_us
        hit = found >= 0
        hit[hit] = events.ts[found[hit]] < deadline[hit]
        came = sel[hit]
        if len(came):
            self.t[came] = events.ts[found[hit]]
            self._capture(step, came, events, found[hit])
            self._move(step, came, "yes")
        late = ~hit & (deadline <= self.now_us)
        self.t[sel[late]] = deadline[late]
        self._move(step, sel[late], "no")
        waiting = sel[~hit & ~late]
        self.parked[waiting] = True
        self.wake[waiting] = deadline[~hit & ~late]

    def _capture(self, step: StepPlan, sel: np.ndarray, events: EventFrame, rows: np.ndarray) -> None:
        """Keep the properties of the events that ended a wait, under the step's id."""
        props = sorted(self.plan.captures.get(step.id, ()))
        columns = {p: values_at(events, p, rows) if p in events.properties else None for p in props}
        self._load_data(sel)
        for j, i in enumerate(sel):
            data = self._data(int(i))
            data[step.id] = {
                p: to_python(col[j]) for p, col in columns.items() if col is not None and col[j] is not None
            }
            self.data_changed[i] = True

    # ------------------------------------------------------------------------------------------ events

    def _frame(self, start_us: int) -> EventFrame:
        """Events from ``start_us`` to now, read from the signal state's log once per run."""
        if self._events is None or self._events[0] > start_us:
            self._events = (start_us, self.signals.events(start_us, self.now_us))
        return self._events[1]

    def _first_events(
        self, step: StepPlan, sel: np.ndarray, after_us: np.ndarray
    ) -> tuple[np.ndarray, EventFrame]:
        """For each instance, the index (in the returned frame) of its first ``step.event`` event after
        ``after_us`` whose properties match, or -1."""
        assert step.event is not None
        frame = self._frame(int(after_us.min()) + 1 if len(after_us) else self.now_us)
        code = frame.type_code(step.event)
        mask = frame.type == code
        rows = np.flatnonzero(mask)
        ev_values = q_values = None
        if step.match:
            ev_values = self._event_values(frame, rows, step.match)
            q_values = self._query_values(sel, step.match)
        found = first_matching_after(
            frame.customer[rows], frame.ts[rows], ev_values, self.due.keys[sel], after_us, q_values
        )
        out = np.full(len(found), -1, np.int64)
        out[found >= 0] = rows[found[found >= 0]]
        return out, frame

    @staticmethod
    def _event_values(frame: EventFrame, rows: np.ndarray, match: tuple[MatchTerm, ...]) -> np.ndarray:
        columns = []
        for term in match:
            if term.prop in frame.properties:
                columns.append([normalise(v) for v in values_at(frame, term.prop, rows)])
            else:
                columns.append([None] * len(rows))
        return joined(columns, len(rows))

    def _query_values(self, sel: np.ndarray, match: tuple[MatchTerm, ...]) -> np.ndarray:
        columns = []
        for term in match:
            if term.metric is not None:
                values = self.evaluator.metric(term.metric)[self.due.keys[sel]]
                columns.append([normalise(to_python(v)) for v in values])
            elif term.entry_prop is None:
                columns.append([normalise(term.literal)] * len(sel))
            elif term.entry_prop == self.plan.entry.key:
                columns.append(list(self.due.entry_keys[sel]))  # kept in its own column, normalised
            else:
                prop = term.entry_prop
                self._load_data(sel)
                columns.append([normalise(self._data(int(i)).get(ENTRY, {}).get(prop)) for i in sel])
        return joined(columns, len(sel))

    def _load_data(self, sel: np.ndarray) -> None:
        """Read the ``data`` of these instances (entry properties, events that ended waits), if not yet."""
        missing = [int(i) for i in sel if self.data[int(i)] is None]
        if not missing:
            return
        raw = instance_data(self.conn, self.due.ids[missing].tolist())
        for i in missing:
            text_ = raw.get(int(self.due.ids[i]))
            loaded = orjson.loads(text_) if text_ else {}
            self.data[i] = loaded if isinstance(loaded, dict) else {}

    def _data(self, i: int) -> dict[str, Any]:
        data = self.data[i]
        if data is None:
            self._load_data(np.array([i]))
            data = self.data[i]
            assert data is not None
        return data

    # ------------------------------------------------------------------------------------------ branches

    def _branch(self, step: StepPlan, sel: np.ndarray) -> np.ndarray:
        keys = self.due.keys[sel]
        if step.condition is None:
            lower = (
                self.due.entered_us[sel]
                if step.within_us is None
                else np.full(len(sel), self.now_us - step.within_us, np.int64)
            )
            found, _ = self._first_events(step, sel, lower - 1)
            return found >= 0
        if not step.instance_names:
            holds = self._conditions.get(step.code)
            if holds is None:
                holds = self._conditions[step.code] = self.evaluator.condition(step.condition)
            return holds[keys]
        values = {}
        self._load_data(sel)
        for name in step.instance_names:
            root, prop = name.split(".", 1)
            column = np.empty(len(sel), dtype=object)
            column[:] = [self._data(int(i)).get(root, {}).get(prop) for i in sel]
            values[name] = _typed(column)
        return instance_condition(
            step.condition, step.instance_names, self.evaluator, keys, values, self.now_us
        )

    def _split(self, step: StepPlan, sel: np.ndarray) -> None:
        ids = customer_ids(self.conn, self.due.keys[sel])
        percents = [percent for _, percent in step.split]
        arm = split_arms(self.plan.id, step.id, ids, self.due.entered_us[sel], percents)
        for i in range(len(step.split)):
            self._move(step, sel[arm == i], split_trigger(i))

    # ------------------------------------------------------------------------------------------ sends

    def _send(self, step: StepPlan, sel: np.ndarray) -> None:
        assert step.send is not None
        if step.send.at is not None:
            sel = self._at_best_time(step, sel)
            if not len(sel):
                return
        self.t[sel] = np.maximum(self.t[sel], self.now_us)
        self._passed_send[sel] = True
        treated = ~self.due.holdout[sel]  # the holdout's first guard: no ledger row at all
        if step.send.best_of:
            chosen = self._best_channel(step, sel)
            for channel in step.send.channels:
                send_to = sel[treated & (chosen == channel)]
                if len(send_to):
                    self._sends.append((step, send_to, channel))
        elif treated.any():
            self._sends.append((step, sel[treated], step.send.channel))
        self._move(step, sel, "next")

    def _at_best_time(self, step: StepPlan, sel: np.ndarray) -> np.ndarray:
        """A send ``at: best_time``: of ``sel``, the instances to send to now. Instances waking at the step
        after waiting for their chosen instant are sent to; the others get their choice recorded (both
        arms) and either go now (their instant has come, or the comparison share) or park until it."""
        send = step.send
        assert send is not None
        # Woken here: still at the step they started the walk at, since the instant they were parked.
        stayed = sel[(self.state[sel] == self.start_state[sel]) & (self.t[sel] == self.due.since_us[sel])]
        back = np.zeros(len(sel), bool)
        if len(stayed):
            known_ids, known_visits = chosen_visits(self.conn, step.id, self.due.ids[stayed].tolist())
            woken = _rows_of(self.due.ids[stayed], self.t[stayed], known_ids, known_visits)
            back[np.isin(sel, stayed[woken])] = True
        fresh = sel[~back]
        if not len(fresh):
            return sel
        now = self.now_us
        self.t[fresh] = np.maximum(self.t[fresh], now)
        options = send.best_time_options
        keys = self.due.keys[fresh]
        ids = customer_ids(self.conn, keys).astype(str)
        salt = f"{self.plan.id}:best_time:{step.id}"
        bucket = buckets(salt, np.char.add(np.char.add(ids, ":"), self.due.entered_us[fresh].astype(str)))
        immediate = bucket < options.compare / 100.0
        default_zone = self.policy.policy.default_timezone if self.policy is not None else "UTC"
        quiet = None
        if self.policy is not None and not send.transactional:
            window = self.policy.quiet_hours.get(send.channel)
            quiet = None if window is None else (window.start_s, window.end_s)
        zones = self.customers.column("timezone")
        zone_column = zones if zones.dtype == object else np.full(len(zones), None, dtype=object)
        found = self._engagement(options.events, options.lookback, zone_column, default_zone)
        window_us = round(send.best_time_window.total_seconds() * US_PER_SECOND)
        choice = choose_times(
            keys, zone_column[keys], now, window_us, found, options.prior, default_zone, quiet
        )
        send_at = np.where(immediate, now, choice.send_at_us)
        later = send_at > now
        self.parked[fresh[later]] = True
        self.wake[fresh[later]] = send_at[later]
        within = format_duration(send.best_time_window)
        for j, i in enumerate(fresh):
            timed = not immediate[j]
            hour = int(choice.hour[j]) if timed and choice.hour[j] >= 0 else None
            detail: dict[str, Any] = {"bucket": float(bucket[j]), "compare": options.compare}
            if timed:
                detail.update(
                    hour=None if hour is None else hour_name(hour),
                    zone=str(choice.zone[j]),
                    events=int(choice.events[j]),
                    events_in_hour=int(choice.count[j]),
                    population_share=None if hour is None else round(float(choice.population_share[j]), 6),
                    score=None if hour is None else round(float(choice.score[j]), 6),
                    prior=options.prior,
                    within=within,
                    quiet_skipped=bool(choice.quiet_skipped[j]),
                    all_quiet=hour is None,
                )
            self._record_choice(step, int(i), BEST_TIME if timed else IMMEDIATE, send.channel,
                                int(send_at[j]), hour, detail)  # fmt: skip
        return np.concatenate([sel[back], fresh[~later]])

    def _best_channel(self, step: StepPlan, sel: np.ndarray) -> np.ndarray:
        """A send on ``channel: best(...)``: the channel of each instance of ``sel`` (both arms), its choice
        recorded."""
        send = step.send
        assert send is not None and send.best_of
        options = send.best_channel_options
        channels = send.channels
        keys = self.due.keys[sel]
        ids = customer_ids(self.conn, keys).astype(str)
        salt = f"{self.plan.id}:best_channel:{step.id}"
        bucket = buckets(salt, np.char.add(np.char.add(ids, ":"), self.due.entered_us[sel].astype(str)))
        fixed = bucket < options.compare / 100.0
        reachable = self._reachable(keys, channels, send.transactional)
        counts = self._channel_counts_for(channels, options.responses, options.within, options.lookback)
        choice = choose_channels(counts, keys, reachable, options.prior)
        pick = np.where(fixed, 0, choice.pick)
        chosen = np.array(channels, dtype=object)[pick]
        for j, i in enumerate(sel):
            detail: dict[str, Any] = {"bucket": float(bucket[j]), "compare": options.compare}
            if not fixed[j]:
                detail.update(
                    prior=options.prior,
                    responses=list(options.responses),
                    within=format_duration(options.within),
                    reachable=[c for c, ok in zip(channels, choice.reachable[j], strict=True) if ok],
                    counts={
                        c: {
                            "sends": int(choice.sends[j, k]),
                            "answered": int(choice.answered[j, k]),
                            "population_rate": round(float(counts.population[k]), 6),
                            "posterior": round(float(choice.posterior[j, k]), 6),
                        }
                        for k, c in enumerate(channels)
                    },
                )
            policy = fixed_policy(channels[0]) if fixed[j] else BEST_CHANNEL
            self._record_choice(step, int(i), policy, str(chosen[j]), int(self.t[i]), None, detail)
        return chosen

    def _record_choice(
        self,
        step: StepPlan,
        i: int,
        policy: str,
        channel: str,
        send_at_us: int,
        hour: int | None,
        detail: dict[str, Any],
    ) -> None:
        """Keep what a choosing send step chose for instance row ``i`` (written with the tick's steps)."""
        self._choices.append(
            {
                "instance_id": int(self.due.ids[i]),
                "step": step.id,
                "visit_us": int(self.t[i]),
                "journey_id": self.plan.id,
                "version": self.plan.version,
                "customer_key": int(self.due.keys[i]),
                "policy": policy,
                "channel": channel,
                "send_at_us": send_at_us,
                "hour_of_week": hour,
                "detail": detail,
            }
        )

    def _reachable(self, keys: np.ndarray, channels: tuple[str, ...], transactional: bool) -> np.ndarray:
        """Per key and channel: an address on file, and consent (or none on record where the policy, or a
        transactional send, lets that pass)."""
        consent = self.policy.policy.consent if self.policy is not None else Consent()
        out = np.zeros((len(keys), len(channels)), bool)
        for k, channel in enumerate(channels):
            given = self.customers.column(f"consent_{channel}")[keys]
            if given.dtype == object:
                yes, unknown = _IS_TRUE(given).astype(bool), _IS_NONE(given).astype(bool)
            elif given.dtype == bool:
                yes, unknown = given, np.zeros(len(keys), bool)
            else:
                yes, unknown = given == 1, np.isnan(given)
            if transactional or not consent.opt_in(channel):
                yes = yes | unknown
            address = self.customers.column(ADDRESS_FIELD[channel])[keys]
            # A column of NaN where no customer has the address.
            has = _IS_TEXT(address).astype(bool) if address.dtype == object else np.zeros(len(keys), bool)
            out[:, k] = yes.astype(bool) & has.astype(bool)
        return out

    def _channel_counts_for(
        self, channels: tuple[str, ...], responses: list[str], within: timedelta, lookback: timedelta
    ) -> ChannelCounts:
        """Sends per customer and channel in the lookback and those answered (once per walk and setting).
        Sends of the last ``within`` have not had their chance to be answered yet: they are left out."""
        key = (channels, tuple(sorted(responses)), within, lookback)
        found = self._channel_counts.get(key)
        if found is None:
            start = self.now_us - round(lookback.total_seconds() * US_PER_SECOND)
            window_us = round(within.total_seconds() * US_PER_SECOND)
            sent_keys, sent_channels, sent_us = marketing_sends_since(self.conn, start)
            old = sent_us <= self.now_us - window_us
            frame = self.signals.events(start, self.now_us, types=responses)
            found = self._channel_counts[key] = channel_counts(
                channels,
                sent_keys[old],
                sent_channels[old],
                sent_us[old],
                frame.customer,
                frame.ts,
                window_us,
                self.customers.n,
            )
        return found

    def _engagement(
        self, events: list[str], lookback: timedelta, zones: np.ndarray, default_zone: str
    ) -> Engagement:
        """Engagement per customer and local hour of the week over ``lookback`` before now (once per walk
        for each set of event types and lookback)."""
        key = (tuple(sorted(events)), lookback, default_zone)
        found = self._engagements.get(key)
        if found is None:
            start = self.now_us - round(lookback.total_seconds() * US_PER_SECOND)
            frame = self.signals.events(start, self.now_us, types=events)
            n = max(len(zones), int(frame.customer.max(initial=-1)) + 1)
            if len(zones) < n:
                zones = np.concatenate([zones, np.full(n - len(zones), None, dtype=object)])
            found = self._engagements[key] = engagement(frame.customer, frame.ts, zones, default_zone, n)
        return found


def _typed(column: np.ndarray) -> np.ndarray:
    """Instance values as an evaluator column: numbers as float64 (NaN for missing), else objects."""
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in column):
        return np.array([np.nan if v is None else float(v) for v in column], dtype=np.float64)
    return column


def _rows_of(
    instance_ids: np.ndarray, visits: np.ndarray, known_ids: np.ndarray, known: np.ndarray
) -> np.ndarray:
    """Where the pair (``instance_ids[i]``, ``visits[i]``) is one of the known pairs."""
    if not len(known_ids) or not len(instance_ids):
        return np.zeros(len(instance_ids), bool)
    pairs = np.concatenate(
        [np.stack([instance_ids, visits], axis=1), np.stack([known_ids, known], axis=1)]
    ).astype(np.int64)
    _, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    return np.isin(inverse[: len(instance_ids)], inverse[len(instance_ids) :])
