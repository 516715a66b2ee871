"""The columns a set of journeys needs at one instant, read from the store in one snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from orchestrator.language import ADDRESS_FIELD, JourneyPlan, StepKind
from orchestrator.signals import AggregateCache, CustomerFrame, Evaluator, EventFrame, Fit
from orchestrator.signals import _lang as lang
from orchestrator.store import Connection, load_customer_values, load_events, max_key


def needed_columns(plans: Iterable[JourneyPlan]) -> tuple[set[str], set[str]]:
    """(event properties, customer attributes) read by the journeys' expressions and goals."""
    properties: set[str] = set()
    attributes: set[str] = {"id"}
    for plan in plans:
        for node in plan.expressions():
            properties |= lang.event_properties(node)
            attributes |= {
                n.parts[0]
                for n in lang.free_names(node)
                if len(n.parts) == 1 and n.parts[0] not in plan.metrics and "." not in n.parts[0]
            }
        goal = plan.journey.goal
        if goal is not None and goal.revenue:
            properties.add(goal.revenue)
        properties |= plan.event_properties()
        for step in plan.steps:
            if step.kind == StepKind.WAIT_UNTIL or (step.send is not None and step.send.at is not None):
                # A time of day, a date and the best hour of the week are the customer's local ones.
                attributes.add("timezone")
            if step.attribute is not None:
                attributes.add(step.attribute)
            if step.send is not None and step.send.best_of:
                # The best channel is one the customer can be reached on: an address and consent.
                for channel in step.send.best_of:
                    attributes |= {f"consent_{channel}", ADDRESS_FIELD[channel]}
    return properties, attributes


def load_customer_frame(conn: Connection, attributes: Iterable[str]) -> CustomerFrame:
    """Every customer as columns indexed by key (length ``max_key + 1``; ``exists`` marks real rows).

    Each requested name becomes a column: ``id`` and the standard columns are read directly, any other name
    from the JSON attributes. A column's type follows ``column_from_values`` over the existing customers'
    values (float64 when all are numbers or null, bool when all are booleans, object otherwise); slots of
    keys with no customer hold NaN, False or None respectively, and customers without the attribute hold
    NaN (numbers) or None.
    """
    return CustomerFrame.from_values(*load_customer_values(conn, attributes))


def bare_customer_frame(conn: Connection) -> CustomerFrame:
    """A frame with no attribute columns: keys are dense from 1, so only the largest is read."""
    n = max_key(conn) + 1
    exists = np.ones(n, bool)
    exists[0] = False
    return CustomerFrame(n=n, exists=exists)


def load_event_frame(
    conn: Connection,
    until_us: int | None,
    properties: Iterable[str],
    since_us: int | None = None,
    n_customers: int | None = None,
) -> EventFrame:
    """Events with ``since_us <= ts_us < until_us`` as the evaluator's frame (``store._events.load_events``
    says what each column holds)."""
    return EventFrame.from_columns(*load_events(conn, until_us, properties, since_us, n_customers))


def load_frames(
    conn: Connection, plans: Iterable[JourneyPlan], now_us: int
) -> tuple[EventFrame, CustomerFrame]:
    """Events before ``now_us`` and customer attributes, with every column the plans need.

    ``conn`` should come from ``Store.connect()`` so both frames are read from one snapshot.
    """
    properties, attributes = needed_columns(plans)
    customers = load_customer_frame(conn, sorted(attributes))
    events = load_event_frame(conn, until_us=now_us, properties=sorted(properties), n_customers=customers.n)
    if events.n_customers != customers.n:
        raise RuntimeError("events name customers missing from the customer frame; read both in one snapshot")
    return events, customers


def signal_matches(
    plans: Iterable[JourneyPlan],
    events: EventFrame,
    customers: CustomerFrame,
    now_us: int,
    fits: Mapping[tuple[str, str], Fit] | None = None,
) -> dict[str, np.ndarray]:
    """For each journey, where its entry condition (signal and segment) holds, by customer key; the
    predictions (``p_alive(purchase)``...) read ``fits`` (``engine._signal_state.fits_from_store``)."""
    cache = AggregateCache()
    out: dict[str, np.ndarray] = {}
    for plan in plans:
        evaluator = Evaluator(events, customers, now_us, plan.metrics, cache, fits=fits)
        out[plan.id] = entry_condition(evaluator, plan)
    return out


def entry_node(plan: JourneyPlan) -> lang.Node | None:
    """The journey's signal and segment as one condition (None: every customer)."""
    parts = [node for node in (plan.signal, plan.segment) if node is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return lang.Binary(0, "and", parts[0], parts[1])


def entry_condition(evaluator: Evaluator, plan: JourneyPlan) -> np.ndarray:
    """Where the journey's signal and segment both hold, by customer key (a journey entered by an event
    or a segment alone has no signal: there, the segment, or every customer)."""
    node = entry_node(plan)
    return evaluator.customers.exists.copy() if node is None else evaluator.condition(node)
