"""Backtests: a window of past events replayed through the journeys on a simulated clock.

``backtest`` builds a scratch store (a temporary SQLite file) holding the customers and nothing else, then
lives through the window as a live engine would have: before each tick it stores the events stamped
before the tick's instant that it has not stored yet, hands them to the engine's signal state as the
daemon hands over its inbox (so the tick reads nothing back), and ticks. So no tick ever sees an event
from its future, and what the engine did is exactly what it would have done had it run then, ticking at
these instants. Events before the window's start are history the signals read (windows, ``since``):
they are stored before the first tick, which reads them from the store as an engine does at start.
Journeys that read predictions (``p_alive(purchase)``...) read fits made on the history before the window
(``_fit_purchase_models``), never on the window's own purchases. Messages go through the contact policy
to an adapter that drops them (nothing leaves the process), so suppressions and caps are those
production would have applied. The report
is read from the scratch store afterwards by the reader the caller gives (the engine does not import
measurement: the command line hands it ``orchestrator.measure.backtest_report``), and the store is
deleted.

The cost of a backtest follows the events and the ticks: each tick stores and folds in only its own new
events, the engine re-evaluates only the customers those events (or time) can change
(``signals._kept_conditions``), steps only the instances that are due and looks for conversions only
where a goal event came; the scratch store syncs nothing to disk (``store.open_scratch_store``). Alone on
that store, the engine registers the journeys' versions once rather than at every tick, dispatch hands
each batch to the adapter in one commit, and the templates are read once at the start, as the daemon pins
them (``engine._reload.pin_templates``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

from orchestrator.channels import CHANNELS, ChannelRouter, DeliveryResult, OutgoingMessage
from orchestrator.clock import SimulatedClock, from_us, to_us
from orchestrator.engine._dispatch import BATCH as DISPATCH_BATCH
from orchestrator.engine._refit import fit_and_keep, models_to_fit
from orchestrator.engine._reload import pin_templates
from orchestrator.engine._tick import Engine, MissingFit
from orchestrator.engine._workspace import Workspace
from orchestrator.errors import UsageError
from orchestrator.store import (
    Store,
    ensure_customer_keys,
    event_type_ids,
    insert_new_events,
    open_scratch_store,
)

#: History (events before the window) is stored and handed over in chunks of this many events.
HISTORY_CHUNK = 200_000


class PastEvents(Protocol):
    """Past events as columns (``orchestrator.ingest.EventChunk`` is one): customer ids and event names
    factorised (``customer_ids[customer_codes[i]]`` is the customer of event ``i``), instants in
    microseconds, and each event's properties as JSON object text."""

    @property
    def customer_ids(self) -> Sequence[str]: ...

    @property
    def customer_codes(self) -> np.ndarray: ...

    @property
    def event_names(self) -> Sequence[str]: ...

    @property
    def event_codes(self) -> np.ndarray: ...

    @property
    def ts_us(self) -> np.ndarray: ...

    @property
    def properties(self) -> Sequence[str]: ...


R = TypeVar("R")


class ReportReader(Protocol[R]):  # type: ignore[misc]
    """Reads the report from the scratch store once the window is done
    (``orchestrator.measure.backtest_report`` is one), given the window, the tick and how many events were
    replayed (and how many of them before the window)."""

    def __call__(
        self,
        store: Store,
        journeys: Sequence[str],
        *,
        start_us: int,
        end_us: int,
        tick_us: int,
        events: int,
        history_events: int,
        label: str = "",
    ) -> R: ...


@dataclass(frozen=True)
class BacktestRun(Generic[R]):
    """A backtest done: the report read from its store, the seconds of each phase (loading, ticks,
    report), and how many messages the backtest's adapter took (and dropped)."""

    report: R
    seconds: dict[str, float]
    delivered: int


#: Writes the customers into the scratch store, stamped at the given instant (the window's start).
CustomersLoader = Callable[[Store, int], object]
#: Told after each tick how many of the window's ticks ran, and how many there are.
BacktestProgress = Callable[[int, int], object]


class Discard:
    """The backtest's adapter: takes every message on every channel and sends nothing, counting them.

    One call wide (``concurrency``), so dispatch calls it in line rather than through thread pools; the
    rendered message is built and checked by dispatch as for any adapter, then dropped here."""

    concurrency = 1

    def __init__(self) -> None:
        self.channels: frozenset[str] = frozenset(CHANNELS)
        self.received = 0

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        self.received += 1
        return DeliveryResult.sent(f"backtest-{self.received}")


@dataclass(frozen=True)
class _Handed:
    """Events just stored, as the signal state takes them (``engine._handover.CommittedEvents``)."""

    first_id: int
    last_id: int
    customer_keys: np.ndarray
    event_names: Sequence[str]
    event_codes: np.ndarray
    ts_us: np.ndarray
    properties: Sequence[str]


class _Feed:
    """The past events in time order, stored and handed to the engine up to an instant, a slice at a time."""

    def __init__(self, events: PastEvents, end_us: int) -> None:
        ts = np.asarray(events.ts_us, dtype=np.int64)
        order = np.argsort(ts, kind="stable")  # ties keep the file's order, as ingest would store them
        keep = order[ts[order] < end_us]
        self.ts = ts[keep]
        self.codes = np.asarray(events.event_codes, dtype=np.int64)[keep]
        self.customers = np.asarray(events.customer_codes, dtype=np.int64)[keep]
        props = events.properties
        self.properties = [props[i] for i in keep.tolist()]
        self.names = list(events.event_names)
        self.ids = list(events.customer_ids)
        self.keys = np.full(len(self.ids), -1, dtype=np.int64)  # customer code -> key, once known
        self.type_ids = np.zeros(0, dtype=np.int64)
        self.done = 0  # events stored so far (a prefix of the sorted events)

    def __len__(self) -> int:
        return len(self.ts)

    def feed(
        self, store: Store, engine: Engine, until_us: int, now_us: int, chunk: int = 0, hand: bool = True
    ) -> int:
        """Store the events stamped before ``until_us`` not stored yet (customers first seen are created
        at ``now_us``, as ingest creates them) and hand them to the engine (unless ``hand`` is false: the
        engine then reads them from the store at its next tick, which for a large history is quicker than
        parsing their properties here); how many."""
        stop = int(np.searchsorted(self.ts, until_us, side="left"))
        start = self.done
        step = chunk or max(stop - start, 1)
        for lo in range(start, stop, step):
            hi = min(lo + step, stop)
            codes = self.customers[lo:hi]
            with store.begin() as conn:
                if not len(self.type_ids):
                    found = event_type_ids(conn, self.names)
                    self.type_ids = np.array([found[n] for n in self.names], dtype=np.int64)
                unknown = np.unique(codes[self.keys[codes] < 0])
                if len(unknown):
                    ids = [self.ids[c] for c in unknown.tolist()]
                    self.keys[unknown] = ensure_customer_keys(conn, ids, now_us)
                keys = self.keys[codes]
                props = self.properties[lo:hi]
                first, last, _ = insert_new_events(
                    conn, keys, self.type_ids[self.codes[lo:hi]], self.ts[lo:hi], props
                )
            if hand:
                engine.signals.accept(
                    _Handed(first, last, keys, self.names, self.codes[lo:hi], self.ts[lo:hi], props)
                )
        self.done = stop
        return stop - start


def _fit_purchase_models(store: Store, workspace: Workspace, start: datetime) -> None:
    """The purchase models the journeys read (``p_alive(purchase)``...), fitted on the history before the
    window, as a daemon refitting daily would have kept them at its start: no fit sees the window's own
    purchases. Raises ``MissingFit`` with the reason when one cannot be fitted."""
    models = models_to_fit(workspace.plans, {})
    if not models:
        return
    calibration_end = (start - timedelta(days=1)).date()
    failed = [o for o in fit_and_keep(store, models, calibration_end, to_us(start)) if o.status != "kept"]
    if failed:
        raise MissingFit(
            "the backtest fits the purchase models the journeys read on the history before --from, "
            f"up to {calibration_end.isoformat()}: "
            + "; ".join(f"{o.event}.{o.value}: {o.detail}" for o in failed)
        )


def tick_instants(start: datetime, end: datetime, tick: timedelta) -> list[datetime]:
    """The ticks of a window: ``start``, ``start + tick``, ... while before ``end``."""
    if tick <= timedelta(0):
        raise UsageError("the tick must be a positive duration")
    if end <= start:
        raise UsageError(
            f"the window is empty: --to ({end.isoformat()}) is not after --from ({start.isoformat()})"
        )
    count = -(-(end - start) // tick)
    return [start + i * tick for i in range(count)]


def backtest(
    workspace: Workspace,
    events: PastEvents,
    read: ReportReader[R],
    *,
    start: datetime,
    end: datetime,
    tick: timedelta = timedelta(hours=1),
    customers: CustomersLoader | None = None,
    global_holdout: float = 0.0,
    progress: BacktestProgress | None = None,
    folder: Path | None = None,
    label: str = "",
) -> BacktestRun[R]:
    """Replay ``events`` through ``workspace``'s journeys from ``start`` to ``end`` (exclusive), ticking
    every ``tick``, in a scratch store, and ``read`` the report of what the journeys did from that store
    (see the module docstring).

    ``customers`` writes the customers into the scratch store (without it, customers exist only as their
    events create them, with no attributes and no consent on record). ``folder`` is where the scratch
    store goes (default: a temporary folder, deleted at the end). ``label`` names this run in the report
    (the journeys' folder, for ``--compare``). Nothing is sent: dispatch renders the messages and hands them
    to an adapter that drops them (``Discard``)."""
    instants = tick_instants(start, end, tick)
    start_us, end_us = to_us(start), to_us(end)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        store = open_scratch_store(Path(scratch) / "backtest.db")
        try:
            if customers is not None:
                customers(store, start_us)
            clock = SimulatedClock(start)
            adapter = Discard()
            engine = Engine(store, workspace, ChannelRouter([adapter]), clock, global_holdout=global_holdout)
            engine.dispatch_group = DISPATCH_BATCH  # nothing can fail in flight: one commit per batch
            engine.alone = True  # the scratch store is this engine's alone
            pin_templates(workspace)  # rendered as loaded, without a look at the files per message
            feed = _Feed(events, end_us)
            history = feed.feed(store, engine, start_us, start_us, HISTORY_CHUNK, hand=False)
            _fit_purchase_models(store, workspace, start)
            seconds["loading"] = time.perf_counter() - began
            lap = time.perf_counter()
            for done, instant in enumerate(instants, 1):
                now_us = to_us(instant)
                feed.feed(store, engine, now_us, now_us)
                clock.set(instant)
                engine.tick()
                if progress is not None:
                    progress(done, len(instants))
            seconds["ticks"] = time.perf_counter() - lap
            lap = time.perf_counter()
            report = read(
                store,
                [plan.id for plan in workspace.plans],
                start_us=start_us,
                end_us=end_us,
                tick_us=to_us(from_us(0) + tick),
                events=len(feed),
                history_events=history,
                label=label,
            )
            seconds["report"] = time.perf_counter() - lap
        finally:
            store.dispose()
    return BacktestRun(report, seconds, adapter.received)
