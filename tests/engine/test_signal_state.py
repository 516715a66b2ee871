"""The engine's incremental signal state against a from-scratch evaluation of the same store, across
ticks with ingests in between, and after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from orchestrator.clock import to_us
from orchestrator.demo._population import HISTORY_END, make_population, simulate_day
from orchestrator.engine._signal_state import SignalState
from orchestrator.engine._snapshot import load_frames, signal_matches
from orchestrator.engine._workspace import load_workspace
from orchestrator.ingest import IngestedEvents, ingest_events_records
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import EventFrame
from orchestrator.store import Store

ROOT = Path(__file__).resolve().parents[2]


def incremental_matches(state: SignalState, store: Store, plans: list, now_us: int) -> dict[str, np.ndarray]:
    with store.connect() as conn:
        state.refresh(conn, now_us)
        _, customers = load_frames(conn, plans, now_us)
    cache = AggregateCache()
    state.fill(cache)
    out = {}
    for plan in plans:
        evaluator = Evaluator(EventFrame.empty(customers.n), customers, now_us, plan.metrics, cache)
        condition = evaluator.condition(plan.signal)
        if plan.segment is not None:
            condition &= evaluator.condition(plan.segment)
        out[plan.id] = condition
    return out


def scratch_matches(store: Store, plans: list, now_us: int) -> dict[str, np.ndarray]:
    with store.connect() as conn:
        events, customers = load_frames(conn, plans, now_us)
    return signal_matches(plans, events, customers, now_us)


def test_state_follows_ingests_and_survives_restart(store: Store) -> None:
    plans = load_workspace([ROOT / "journeys", ROOT / "examples" / "reference"]).plans
    pop = make_population(150, seed=3)
    rng = np.random.default_rng(5)
    start = HISTORY_END - timedelta(days=30)
    state = SignalState(plans)
    checked = 0
    for day in range(30):
        day_start = start + timedelta(days=day)
        events = simulate_day(pop, day_start, day, rng)
        # Some events arrive late, stamped days earlier.
        for event in events[::25]:
            event["ts"] = (
                datetime.fromisoformat(event["ts"].replace("Z", "+00:00")) - timedelta(days=3)
            ).isoformat()
        ingest_events_records(store, events, now_us=to_us(day_start))
        if day % 3 == 2:
            for hour in (6, 18):
                now_us = to_us(day_start + timedelta(hours=hour))
                got = incremental_matches(state, store, plans, now_us)
                expected = scratch_matches(store, plans, now_us)
                for journey, mask in expected.items():
                    assert np.array_equal(got[journey], mask), (journey, day, hour)
                checked += 1
    assert checked == 20
    assert sum(int(m.sum()) for m in expected.values()) > 0  # the journeys do match someone

    # A restart starts from nothing and rebuilds the same state from the store.
    now_us = to_us(start + timedelta(days=30, hours=3))
    restarted = incremental_matches(SignalState(plans), store, plans, now_us)
    continued = incremental_matches(state, store, plans, now_us)
    for journey in restarted:
        assert np.array_equal(restarted[journey], continued[journey])


def test_every_aggregate_value_matches_after_each_refresh(store: Store) -> None:
    plans = load_workspace([ROOT / "journeys", ROOT / "examples" / "reference"]).plans
    calls = list(dict.fromkeys(c for p in plans for node in p.expressions() for c in lang.aggregates(node)))
    pop = make_population(80, seed=9)
    rng = np.random.default_rng(1)
    state = SignalState(plans)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for day in range(12):
        ingest_events_records(
            store, simulate_day(pop, start + timedelta(days=day), day, rng), now_us=to_us(start)
        )
        now_us = to_us(start + timedelta(days=day, hours=20))
        with store.connect() as conn:
            state.refresh(conn, now_us)
            events, customers = load_frames(conn, plans, now_us)
        scratch = Evaluator(events, customers, now_us)
        for call in calls:
            expected = scratch.values(call)
            got = state.aggregates.values[call]
            if expected.dtype == object:
                assert got.tolist() == expected.tolist(), call
            else:
                assert np.array_equal(got, expected, equal_nan=True), call


def test_events_handed_over_at_ingest_equal_events_read_back(store: Store) -> None:
    """The state takes what this process ingests as it commits (no read back), reads what another
    process wrote, and ends equal to a restarted state and to a from-scratch evaluation; odd property
    values (booleans, objects, whole floats, text where numbers are expected) read the same both ways."""
    plans = load_workspace([ROOT / "journeys", ROOT / "examples" / "reference"]).plans
    calls = list(dict.fromkeys(c for p in plans for node in p.expressions() for c in lang.aggregates(node)))
    pop = make_population(120, seed=4)
    rng = np.random.default_rng(8)
    start = datetime(2024, 2, 1, tzinfo=UTC)
    state = SignalState(plans)
    odd = [True, {"a": [1, 2]}, 3.0, "", "7", None, 2, "shoes"]
    handed, taken = 0, []

    def hand_over(events: IngestedEvents) -> None:
        if state.accept(events):
            taken.append(len(events.ts_us))

    for day in range(10):
        events = simulate_day(pop, start + timedelta(days=day), day, rng)
        for i, event in enumerate(events[::7]):
            event.setdefault("properties", {})
            event["properties"]["category"] = odd[i % len(odd)]
            event["properties"]["score"] = odd[(i + 3) % len(odd)]
        half = len(events) // 2
        # This process ingests the first half and hands it over; "another process" writes the rest.
        report = ingest_events_records(store, events[:half], now_us=to_us(start), on_events=hand_over)
        handed += report.accepted
        ingest_events_records(store, events[half:], now_us=to_us(start))
        now_us = to_us(start + timedelta(days=day, hours=21))
        with store.connect() as conn:
            refresh = state.refresh(conn, now_us)
        assert refresh.new_events == len(events)
    assert sum(taken) == handed > 0  # every chunk this process committed followed on from the log

    now_us = to_us(start + timedelta(days=10, hours=2))
    restarted = SignalState(plans)
    with store.connect() as conn:
        state.refresh(conn, now_us)
        restarted.refresh(conn, now_us)
        events_frame, customers = load_frames(conn, plans, now_us)
    scratch = Evaluator(events_frame, customers, now_us)
    for call in calls:
        got, again, expected = (
            state.aggregates.values[call],
            restarted.aggregates.values[call],
            scratch.values(call),
        )
        if expected.dtype == object:
            assert got.tolist() == again.tolist() == expected.tolist(), call
        else:
            assert np.array_equal(got, again, equal_nan=True), call
            assert np.array_equal(got, expected, equal_nan=True), call


def test_kept_entry_conditions_follow_events_attributes_and_time(store: Store) -> None:
    """The engine's entry conditions, kept between ticks (re-evaluated only where events, attributes or
    time may have changed them), equal a from-scratch evaluation at every tick of a fortnight."""
    from orchestrator.engine._customer_state import CustomerState
    from orchestrator.engine._snapshot import entry_node, needed_columns
    from orchestrator.store._customers import upsert_customers

    plans = load_workspace([ROOT / "journeys", ROOT / "examples" / "reference"]).plans
    pop = make_population(200, seed=6)
    rng = np.random.default_rng(2)
    start = HISTORY_END - timedelta(days=14)
    state, customer_state = SignalState(plans), CustomerState()
    _, attributes = needed_columns(plans)
    partial = 0
    for day in range(14):
        day_start = start + timedelta(days=day)
        ingest_events_records(store, simulate_day(pop, day_start, day, rng), now_us=to_us(day_start))
        if day % 4 == 1:  # some customers withdraw consent, others give it back
            rows = [{"id": cid, "consent_email": bool(rng.random() < 0.5)} for cid in pop.ids[day::9]]
            with store.begin() as conn:
                upsert_customers(conn, rows, to_us(day_start))
        for hour in (3, 9, 15, 21):
            now_us = to_us(day_start + timedelta(hours=hour))
            with store.connect() as conn:
                state.refresh(conn, now_us)
                customers = customer_state.frame(conn, sorted(attributes))
            expected = scratch_matches(store, plans, now_us)
            before = state.conditions.rows_evaluated
            for plan in plans:
                node = entry_node(plan)
                assert node is not None
                got = state.conditions.condition(
                    plan.id, node, customers, plan.metrics, changed=customer_state.changed
                )
                assert np.array_equal(got, expected[plan.id]), (plan.id, day, hour)
            partial += state.conditions.rows_evaluated - before < len(plans) * customers.n
    assert partial > 20  # most ticks re-evaluated only some customers
