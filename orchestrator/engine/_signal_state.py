"""The engine's memory of behaviour between ticks: the event log and the aggregates kept on it.

Events reach the log two ways. Events ingested in this process are handed over as they commit
(``accept``), so a tick does not read them back; events another process wrote are read at the next tick
by id (ids grow in commit order, so "every id above the last one seen" is exactly what is new). Each tick
then advances every aggregate to the tick's instant. After a restart the first tick reads everything
again and rebuilds the same state: the store stays the only source of truth. With a snapshot
(``engine._state_snapshot``), the first refresh loads the log from it instead, when it is usable, and reads
from the store only the events with ids above the snapshot's last one (the same rule as between ticks);
the aggregates start from the whole log then, as after a read from the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from orchestrator.engine._handover import CommittedEvents
from orchestrator.engine._state_snapshot import StateFile
from orchestrator.language import JourneyPlan
from orchestrator.signals import (
    AggregateCache,
    BetaGeo,
    Call,
    Categorical,
    CustomerFrame,
    EventFrame,
    EventLog,
    Fit,
    GammaGamma,
    IncrementalAggregates,
    IncrementalConditions,
    fit_for,
    property_uses,
)
from orchestrator.signals import _lang as lang
from orchestrator.store import (
    Connection,
    Ownership,
    StoredFit,
    latest_prediction_fits,
    load_new_events,
    max_key,
)


@dataclass
class Refresh:
    new_events: int
    load_seconds: float
    advance_seconds: float


class SignalState:
    """Every aggregate of a set of journeys, kept current over an in-memory event log."""

    def __init__(
        self,
        plans: Iterable[JourneyPlan] = (),
        snapshot: StateFile | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        """``ownership``, for a worker holding some partitions of the customers: the log holds the events
        of those customers only (the others' aggregates stay empty: their owners evaluate them)."""
        self.snapshot = snapshot
        self.ownership = ownership
        self._from_snapshot = snapshot is not None  # the first refresh tries the snapshot first
        self._plans: dict[tuple[str, int], JourneyPlan] = {}
        self._numeric: set[str] = set()
        self._categorical: set[str] = set()
        self.log = EventLog()
        self.aggregates = IncrementalAggregates([], self.log)
        self.conditions = IncrementalConditions(self.aggregates)
        self.accepted = 0  # events taken by ``accept`` since the last refresh
        self.fits: dict[tuple[str, str], Fit] = {}  # the newest fit of each purchase model, oldest first
        self.ensure(plans)

    def ensure(self, plans: Iterable[JourneyPlan]) -> None:
        """Cover these journeys too. A journey that reads a property the log does not hold yet means
        starting the log again (the next refresh reads all events). A plan of a journey version already
        covered, with another meaning (a version that never ran, edited and reloaded), replaces it."""
        new = [p for p in plans if getattr(self._plans.get((p.id, p.version)), "digest", None) != p.digest]
        if not new:
            return
        for plan in new:
            self._plans[(plan.id, plan.version)] = plan
        calls = self._calls()
        numeric, categorical = property_uses(calls)
        for plan in self._plans.values():
            goal = plan.journey.goal
            if goal is not None and goal.revenue:
                numeric.add(goal.revenue)
            categorical |= plan.event_properties()  # matched (cart_id) and captured by wait_for
        if numeric - self._numeric or categorical - self._categorical or not self.log.segments:
            self._numeric |= numeric
            self._categorical |= categorical
            self.log = EventLog(self._numeric, self._categorical)
            self.accepted = 0
        self.aggregates = IncrementalAggregates(calls, self.log)
        self.conditions = IncrementalConditions(self.aggregates)

    def _calls(self) -> list[Call]:
        return list(
            dict.fromkeys(
                call
                for plan in self._plans.values()
                for node in plan.expressions()
                for call in lang.aggregates(node)
            )
        )

    def accept(self, events: CommittedEvents) -> bool:
        """Take events this process has just committed, when they follow on from the log (their first id
        is one above the last the log holds); otherwise leave them to the next ``refresh``, which reads
        them from the store. Returns whether they were taken."""
        if (
            events.first_id != self.log.last_id + 1
            or not self._plans
            or self._from_snapshot
            or self.ownership is not None  # they hold other partitions' events too
        ):
            return False
        self.log.append_frame(_frame(events, self.log.numeric + self.log.categorical), events.last_id)
        self.accepted += events.last_id - events.first_id + 1
        return True

    def refresh(self, conn: Connection, now_us: int) -> Refresh:
        """Read the events that arrived since the last refresh (and were not handed over by ``accept``)
        and advance every aggregate to ``now_us``."""
        started = time.perf_counter()
        frame, last_id = self._new_events(conn)
        loaded = time.perf_counter()
        self.log.append_frame(frame, last_id)
        self.aggregates.advance(now_us)
        if any(call.func in lang.PREDICTIONS for call in self.aggregates.calls):
            self.fits = fits_from_store(latest_prediction_fits(conn))
            self.aggregates.set_fits(self.fits)
        accepted, self.accepted = self.accepted, 0
        return Refresh(len(frame) + accepted, loaded - started, time.perf_counter() - loaded)

    def start(self, conn: Connection) -> int:
        """Make the log current without advancing the aggregates (what a start-up pays before its first
        evaluation, which the next ``refresh`` does): from the snapshot at the first call, when there is a
        usable one, then the newer events from the store. How many events the store gave."""
        frame, last_id = self._new_events(conn)
        self.log.append_frame(frame, last_id)
        return len(frame)

    def _new_events(self, conn: Connection) -> tuple[EventFrame, int]:
        """The events above the log's last id (after loading the snapshot, at the first call) and the
        last id read."""
        if self._from_snapshot:
            self._from_snapshot = False
            self._load_snapshot(conn)
        columns, last_id = load_new_events(
            conn,
            self.log.last_id,
            self.log.numeric + self.log.categorical,
            self.ownership,
            narrow_keys=True,
        )
        frame = EventFrame.from_columns(*columns)
        frame.n_customers = max(frame.n_customers, max_key(conn) + 1)
        return frame, last_id

    def _load_snapshot(self, conn: Connection) -> None:
        """Start from the snapshot's log when it is usable for these journeys (it may keep more properties
        than they read: the state then keeps them too, as it would after an edit that dropped one)."""
        if self.snapshot is None or self.log.last_id or self.log.segments:
            return
        loaded = self.snapshot.load(conn, self._numeric, self._categorical)
        if loaded is None:
            return
        self._numeric |= set(loaded.numeric)
        self._categorical |= set(loaded.categorical)
        self.log = loaded
        self.accepted = 0
        self.aggregates = IncrementalAggregates(self._calls(), self.log)
        self.conditions = IncrementalConditions(self.aggregates)

    def save_if_due(self, conn: Connection) -> bool:
        """Start a background write of the snapshot when one is due (see ``StateFile.save_if_due``)."""
        return self.snapshot is not None and self.snapshot.save_if_due(self.log, conn)

    def save(self, conn: Connection) -> bool:
        """Write the snapshot now if the log moved on since the last one (at shutdown), after the write in
        progress; whether it was written."""
        return self.snapshot is not None and not self._from_snapshot and self.snapshot.save(self.log, conn)

    def missing_fits(self, plan: JourneyPlan) -> list[str]:
        """What the journey's predictions lack in the fits read at the last refresh (``missing_fits``)."""
        return missing_fits(plan, self.fits)

    def use_customers(self, customers: CustomerFrame) -> None:
        """Hand the aggregates the customers' time zones, which aggregates over calendar periods
        (``within=this_week``) read; call it at each tick with the frame the tick evaluates."""
        self.aggregates.set_time_zones(customers.column("timezone"))

    @property
    def n_customers(self) -> int:
        return self.log.n_customers

    def fill(self, cache: AggregateCache) -> None:
        """Make every aggregate's current value available to evaluators using ``cache``; each is read
        from the state only when an evaluator first asks for it."""
        cache.values = _LazyValues(self.aggregates, cache.values)
        cache.compute = self.aggregates.filtered  # aggregates whose where= reads the customer's values

    def events(self, start_us: int | None, end_us: int, types: Iterable[str] | None = None) -> EventFrame:
        """Events with ``start_us <= ts < end_us`` from the log (only of ``types``, when given)."""
        if types is None:
            return self.log.frame(self.log.range(start_us, end_us))
        codes = [code for code in map(self.log.type_code, types) if code >= 0]  # a type never seen: none
        return self.log.frame(self.log.range(start_us, end_us, types=codes))


def _frame(events: CommittedEvents, properties: Sequence[str]) -> EventFrame:
    """Committed events as a frame whose property values are what reading them back from the store
    gives (``store._events`` reads with SQLite's ``json_extract``): booleans as 1 and 0, objects and
    lists as their compact JSON text."""
    columns: dict[str, Any] = {}
    if properties:
        docs = [orjson.loads(text) if text != "{}" else {} for text in events.properties]
        for name in properties:
            values = np.empty(len(docs), dtype=object)
            values[:] = [_as_stored(doc.get(name)) for doc in docs]
            columns[name] = Categorical.encode(values)
    # Copies: the log takes a frame's arrays over and reorders them in place, and other handlers of the
    # same chunk read its arrays too.
    keys = np.array(events.customer_keys, dtype=np.int64)
    return EventFrame(
        customer=keys,
        ts=np.array(events.ts_us, dtype=np.int64),
        type=np.array(events.event_codes, dtype=np.int32),
        type_names=list(events.event_names),
        n_customers=int(keys.max(initial=-1)) + 1,
        properties=columns,
    )


def _as_stored(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _LazyValues(dict[Any, np.ndarray]):
    """An ``AggregateCache.values`` that reads an aggregate from the incremental state when first asked."""

    def __init__(self, aggregates: IncrementalAggregates, known: dict[Any, np.ndarray]) -> None:
        super().__init__(known)
        self._aggregates = aggregates
        self._calls = set(aggregates.calls)

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self and key in self._calls:
            self[key] = self._aggregates.value(key)
        return super().get(key, default)


def fits_from_store(stored: Mapping[tuple[str, str], StoredFit]) -> dict[tuple[str, str], Fit]:
    """The kept fits as the evaluator reads them, oldest first (``Evaluator.fits``)."""
    out: dict[tuple[str, str], Fit] = {}
    for key, fit in sorted(stored.items(), key=lambda item: item[1].id):
        values = fit.parameters
        gamma_gamma = None
        if values.get("p") is not None:
            gamma_gamma = GammaGamma(float(values["p"]), float(values["q"]), float(values["gamma"]))
        beta_geo = BetaGeo(float(values["r"]), float(values["alpha"]), float(values["a"]), float(values["b"]))
        out[key] = Fit(beta_geo, gamma_gamma)
    return out


def prediction_fits(
    conn: Connection, plans: Sequence[JourneyPlan]
) -> tuple[dict[tuple[str, str], Fit], list[str]]:
    """The store's newest fits as the evaluator reads them, and what the journeys' predictions lack in them
    (one line each, ``journey: ...``; see ``missing_fits``)."""
    fits = fits_from_store(latest_prediction_fits(conn))
    return fits, [f"{plan.id}: {line}" for plan in plans for line in missing_fits(plan, fits)]


def predictions_read(plan: JourneyPlan) -> list[tuple[str, str, str | None]]:
    """The predictions a journey reads, once each in the order written: (function, purchase event, value
    property or None); ``predicted_clv(purchase.amount, 365d)`` is ``("predicted_clv", "purchase",
    "amount")``."""
    found = []
    for call in dict.fromkeys(c for node in plan.expressions() for c in lang.aggregates(node)):
        if call.func not in lang.PREDICTIONS:
            continue
        name = call.args[0]
        assert isinstance(name, lang.Name)
        found.append((call.func, name.parts[0], name.parts[1] if len(name.parts) > 1 else None))
    return list(dict.fromkeys(found))


def missing_fits(plan: JourneyPlan, fits: Mapping[tuple[str, str], Fit]) -> list[str]:
    """What the journey's predictions (``p_alive(purchase)``...) lack in ``fits``: one line each for those
    whose purchase models have no fit."""
    missing = []
    for func, event, prop in predictions_read(plan):
        fit = fit_for(fits, event, prop)
        if fit is not None and (prop is None or fit.gamma_gamma is not None):
            continue
        how = f"--event {event}" + (f" --value {prop}" if prop else "")
        lacks = "none" if fit is None else "none with a Gamma-Gamma fit"
        read = f"{func}({event}{'.' + prop if prop else ''})"
        missing.append(
            f"{read} reads a fit of the {event} models and the store has {lacks}: "
            f"run orchestrator predict fit {how} --save"
        )
    return missing
