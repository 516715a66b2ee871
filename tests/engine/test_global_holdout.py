"""The global holdout across the whole engine: over a simulated month of the bundled shop, no held-out
customer (global layer or a journey's own) is ever sent a message, the global layer holds the same
customers in every journey, and each journey's report counts exactly the stored assignments."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.demo._population import HISTORY_DAYS, HISTORY_END, make_population, simulate_day
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.holdout import global_holdout
from orchestrator.ingest import ingest_events_records, ingest_file
from orchestrator.measure._report import journey_report
from orchestrator.store import Store

ROOT = Path(__file__).resolve().parents[2]
GLOBAL = 15.0


def test_no_held_out_customer_is_ever_messaged_over_a_month(store: Store) -> None:
    data = ROOT / "examples" / "demo"
    start_us = to_us(HISTORY_END)
    ingest_file(store, data / "customers.csv", kind="customers", now_us=start_us)
    ingest_file(store, data / "events.jsonl", kind="events", now_us=start_us)
    workspace = load_workspace([ROOT / "journeys"])
    clock = SimulatedClock(HISTORY_END)
    adapter = MemoryAdapter()
    engine = Engine(store, workspace, ChannelRouter([adapter]), clock, global_holdout=GLOBAL)
    with store.connect() as conn:
        n_customers = conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()
    pop = make_population(n_customers)
    rng = np.random.default_rng(3)
    for day in range(30):
        day_start = HISTORY_END + timedelta(days=day)
        events = simulate_day(pop, day_start, HISTORY_DAYS + day, rng)
        ingest_events_records(store, events, now_us=to_us(day_start))
        for hour in (0, 8, 16):
            clock.set(day_start + timedelta(hours=hour))
            engine.tick()
    engine.dispatch()

    with store.connect() as conn:
        assignments = conn.execute(
            text(
                "SELECT a.journey_id, c.id, a.arm, a.layer FROM holdout_assignments a "
                "JOIN customers c ON c.key = a.customer_key"
            )
        ).all()
        instances = conn.execute(
            text(
                "SELECT i.journey_id, i.entered_us, a.arm, a.layer FROM journey_instances i "
                "JOIN holdout_assignments a "
                "ON a.journey_id = i.journey_id AND a.customer_key = i.customer_key"
            )
        ).all()
    arm_of = {(j, cid): (arm, layer) for j, cid, arm, layer in assignments}
    layers = Counter(layer for *_, layer in assignments)
    assert layers["global"] > 0 and layers["journey"] > 0  # both layers held customers out

    # 1. Every message that reached the provider went to a customer in the treatment arm of its journey.
    assert adapter.sent, "the journeys sent nothing: the test would prove nothing"
    for message in adapter.sent:
        assert arm_of[(message.journey_id, message.customer_id)] == ("treatment", "journey"), message

    # 2. The global layer is one set of customers, whatever the journey: exactly the hash's choice.
    ids = sorted({cid for _, cid, _, _ in assignments})
    chosen = dict(zip(ids, global_holdout(np.array(ids), GLOBAL).tolist(), strict=True))
    for (_, cid), (arm, layer) in arm_of.items():
        assert (layer == "global") == chosen[cid]
        if layer == "global":
            assert arm == "holdout"

    # 3. Each report's arms count the stored assignments of its matured entries.
    for plan in workspace.plans:
        report = journey_report(store, plan.id)
        assert report.lift is not None and report.goal_window is not None
        window_us = report.goal_window.total_seconds() * 1_000_000
        matured = Counter(
            (arm, layer)
            for j, entered_us, arm, layer in instances
            if j == plan.id and entered_us + window_us <= report.as_of_us
        )
        arms = {arm.name: arm.n for arm in report.lift.arms}
        assert arms["treatment"] == matured[("treatment", "journey")]
        assert arms["holdout"] == matured[("holdout", "journey")]
        held_globally = report.lift.global_holdout.n if report.lift.global_holdout is not None else 0
        assert held_globally == matured[("holdout", "global")]
        assert report.matured == sum(matured.values())
