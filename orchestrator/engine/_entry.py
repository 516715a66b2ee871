"""Entering journeys, for all customers at once.

Two kinds of entry:

- **condition** (a signal and/or a segment): the customer enters when the condition becomes true, that is
  when it holds now and did not at the previous tick (``signal_members`` remembers who it held for);
- **event**: each new event of the entry type starts one instance per distinct value of its correlation
  key (the whole event's properties are kept on the instance). Events are read from the store past a
  durable cursor, so a restart neither loses nor repeats one; events stamped after the tick are kept
  pending until their time; events older than ``entry.within`` when they arrive start nothing.

Either way the re-entry policy is applied (per customer, or per customer and key value), customers for
whom the journey's ``exit_when`` holds stay out, and each entrant's holdout arm is decided once per
customer and journey, and stored. Each instance also keeps the values, at entry, of the metrics and
customer attributes its entry condition names (``entry_values``: what ``why`` shows as the reason it
entered), written with the instances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from orchestrator.engine._matching import normalise
from orchestrator.engine._snapshot import entry_condition, entry_node
from orchestrator.holdout import HOLDOUT, assign_arms
from orchestrator.language import Cooldown, JourneyPlan
from orchestrator.signals import Evaluator, Node, free_names, to_python
from orchestrator.store import (
    Connection,
    EntryEvents,
    EntryHistory,
    Ownership,
    customer_ids,
    entry_cursor,
    entry_cursors,
    entry_events,
    entry_history,
    event_type_id,
    holdout_assignments,
    insert_assignments,
    insert_instances,
    max_event_id,
    set_entry_cursor,
    signal_members,
    update_signal_members,
)


@dataclass
class Entered:
    instances: int = 0
    holdout: int = 0


#: Entrants written at a time (see ``_enter_by_condition``).
ENTRY_BLOCK = 50_000

# A condition kept between ticks (``signals._horizon``): (name within the journey, expression) -> where it
# holds, re-evaluated only for the customers whose inputs changed since the previous tick.
KeptCondition = Callable[[str, Node], np.ndarray]


def enter(
    conn: Connection,
    plan: JourneyPlan,
    evaluator: Evaluator,
    now_us: int,
    global_holdout: float = 0.0,
    kept: KeptCondition | None = None,
    members: dict[str, np.ndarray] | None = None,
    ownership: Ownership | None = None,
) -> Entered:
    """Enter every customer (or event) the journey's entry admits at ``now_us``. ``global_holdout`` is the
    percent of all customers no journey messages (decided before the journey's own holdout). With
    ``kept``, the entry conditions come from it (the same values, computed where they may have changed).
    ``members``, kept by an engine that alone writes the store, holds per journey id where the condition
    held at the previous tick (what ``signal_members`` stores), so that it is not read back at every tick;
    it is filled here, and the caller drops a journey's entry when its transaction rolls back.

    With ``ownership`` (a worker holding some partitions of the customers), only the customers of those
    partitions are entered: where the condition held is compared and stored for them alone, and event
    entry reads their events past a cursor per partition (``journey#partition`` in ``entry_cursors``), so
    a partition taken over by another worker goes on where its last owner stopped."""
    admitted = _admitted(plan, evaluator, kept)
    owned = None
    if ownership is not None:
        owned = ownership.customers(np.arange(len(admitted)))
        admitted &= owned
    if plan.entry.kind == "event":
        return _enter_by_event(conn, plan, evaluator, now_us, global_holdout, admitted, ownership)
    return _enter_by_condition(conn, plan, evaluator, now_us, global_holdout, admitted, members, owned)


def _admitted(plan: JourneyPlan, evaluator: Evaluator, kept: KeptCondition | None) -> np.ndarray:
    """Per customer: the entry condition holds (segment only, for event entry) and exit_when does not."""
    if kept is None:
        condition = entry_condition(evaluator, plan)
    else:
        node = entry_node(plan)
        condition = evaluator.customers.exists.copy() if node is None else kept("entry", node)
    if plan.exit_when is not None:
        leaving = evaluator.condition(plan.exit_when) if kept is None else kept("exit_when", plan.exit_when)
        condition &= ~leaving
    return condition


def _enter_by_condition(
    conn: Connection,
    plan: JourneyPlan,
    evaluator: Evaluator,
    now_us: int,
    global_holdout: float,
    condition: np.ndarray,
    members: dict[str, np.ndarray] | None = None,
    owned: np.ndarray | None = None,
) -> Entered:
    previous = np.zeros(len(condition), bool)
    known = None if members is None else members.get(plan.id)
    if known is None:
        prev_keys = signal_members(conn, plan.id)
        previous[prev_keys[prev_keys < len(previous)]] = True
    else:
        size = min(len(known), len(previous))
        previous[:size] = known[:size]
    if owned is not None:
        previous &= owned  # the other partitions' members are their owners' to compare and store
    became = condition & ~previous
    update_signal_members(
        conn, plan.id, np.flatnonzero(became), np.flatnonzero(previous & ~condition), now_us
    )
    if members is not None:
        members[plan.id] = condition.copy()
    candidates = np.flatnonzero(became)
    if not len(candidates):
        return Entered()
    history = entry_history(conn, plan.id, candidates)
    seen, pos = lookup(history.keys, candidates)
    allowed = reentry_allowed(plan, seen, history, pos, now_us)
    candidates = candidates[allowed]
    if not len(candidates):
        return Entered()
    # A block of entrants at a time: each one's id, arm, assignment row and instance row are Python
    # objects until written, so a million entrants at once would hold a million of each. The blocks go in
    # key order, one after the other in this transaction: the same rows, in the same order, as one write.
    held_out = 0
    for start in range(0, len(candidates), ENTRY_BLOCK):
        block = candidates[start : start + ENTRY_BLOCK]
        held = assign(conn, plan, block, now_us, global_holdout)
        insert_instances(
            conn,
            plan.id,
            plan.version,
            block,
            held,
            plan.steps[0].id,
            now_us,
            entry_values=entry_values(plan, evaluator, block),
        )
        held_out += int(held.sum())
    return Entered(len(candidates), held_out)


def _enter_by_event(
    conn: Connection,
    plan: JourneyPlan,
    evaluator: Evaluator,
    now_us: int,
    global_holdout: float,
    admitted: np.ndarray,
    ownership: Ownership | None = None,
) -> Entered:
    entry = plan.entry
    assert entry.event is not None
    type_id = event_type_id(conn, entry.event)
    if ownership is not None:
        events = _partition_entry_events(conn, plan, type_id, now_us, ownership)
    else:
        cursor = entry_cursor(conn, plan.id)
        if type_id is None:
            # No such event yet: later ones will have higher ids, so nothing older needs reading.
            if cursor is None:
                set_entry_cursor(conn, plan.id, max_event_id(conn), [])
            return Entered()
        last_id, pending = cursor if cursor is not None else (0, [])
        events = entry_events(conn, type_id, last_id, pending)
        if len(events.ids):
            ready = events.ts_us < now_us
            set_entry_cursor(conn, plan.id, max(last_id, int(events.ids.max())), events.ids[~ready].tolist())
    if not len(events.ids):
        return Entered()
    ready = events.ts_us < now_us
    # Too old when it reached the engine, or from a customer outside the segment: no entry.
    take = ready & (events.ts_us >= now_us - entry.within_us)
    known = events.keys < len(admitted)
    take &= known & admitted[np.where(known, events.keys, 0)]
    idx = np.flatnonzero(take)
    if not len(idx):
        return Entered()
    # Only the events that can enter are parsed (once each); keys are compared as integer codes.
    properties = [orjson.loads(events.properties[i]) for i in idx]
    properties = [p if isinstance(p, dict) else {} for p in properties]
    if entry.key is not None:
        key_values = np.empty(len(idx), dtype=object)
        key_values[:] = [normalise(p.get(entry.key)) for p in properties]
        keep = np.flatnonzero([v is not None for v in key_values])
        idx, key_values = idx[keep], key_values[keep]
        properties = [properties[i] for i in keep]
    else:
        key_values = np.full(len(idx), None, dtype=object)
    customers = events.keys[idx]
    entered_us = events.ts_us[idx]

    # Within one batch, events of the same customer and key: the earliest one enters, unless every event
    # may ("always").
    order = np.lexsort((events.ids[idx], entered_us))
    if plan.journey.reentry != "always":
        pairs = _pair_codes(customers, key_values)
        _, first = np.unique(pairs[order], return_index=True)
        order = order[np.sort(first)]
    customers, entered_us, key_values = customers[order], entered_us[order], key_values[order]
    event_ids = events.ids[idx][order]
    properties = [properties[i] for i in order]

    # Each candidate's entry history (per customer, or per customer and key), found by sorting.
    history = entry_history(conn, plan.id, customers, keyed=entry.key is not None)
    pairs = _pair_codes(
        np.concatenate([customers, history.keys]), np.concatenate([key_values, history.entry_keys])
    )
    wanted, known = pairs[: len(customers)], pairs[len(customers) :]
    by_pair = np.argsort(known, kind="stable")
    seen, at = lookup(known[by_pair], wanted)
    pos = np.where(seen, by_pair[at] if len(by_pair) else 0, -1)
    allowed = reentry_allowed(plan, pos >= 0, history, np.maximum(pos, 0), now_us)
    if not allowed.any():
        return Entered()
    chosen = np.flatnonzero(allowed)
    customers = customers[chosen]
    held = assign(conn, plan, customers, now_us, global_holdout)
    insert_instances(
        conn,
        plan.id,
        plan.version,
        customers,
        held,
        plan.steps[0].id,
        entered_us[chosen],
        entry_keys=[key_values[i] for i in chosen],
        event_ids=event_ids[chosen],
        data=[orjson.dumps({"entry": properties[i]}).decode() for i in chosen],
        entry_values=entry_values(plan, evaluator, customers),
    )
    return Entered(len(chosen), int(held.sum()))


def partition_cursor(journey_id: str, partition: int) -> str:
    """The name of a journey's event-entry cursor over one partition's events (journey ids hold no ``#``)."""
    return f"{journey_id}#{partition}"


def _partition_entry_events(
    conn: Connection, plan: JourneyPlan, type_id: int | None, now_us: int, ownership: Ownership
) -> EntryEvents:
    """The entry events of the owned partitions not yet taken, each partition past its own cursor, and
    those cursors moved on (a partition without one starts where the journey's single cursor stands, as
    when the store was run without partitions, else where a new journey starts)."""
    owned = list(ownership.partitions)
    if not owned:
        return EntryEvents(*(np.zeros(0, np.int64),) * 3, [])
    stored = entry_cursors(conn, [plan.id, *(partition_cursor(plan.id, p) for p in owned)])
    shared = stored.get(plan.id)
    cursors = {p: stored.get(partition_cursor(plan.id, p)) or shared for p in owned}
    if type_id is None:
        # No such event yet: later ones will have higher ids, so nothing older needs reading.
        newest = max_event_id(conn)
        for p, cursor in cursors.items():
            if cursor is None:
                set_entry_cursor(conn, partition_cursor(plan.id, p), newest, [])
        return EntryEvents(*(np.zeros(0, np.int64),) * 3, [])
    last_of = np.zeros(ownership.count, np.int64)
    pending: list[int] = []
    for p, cursor in cursors.items():
        if cursor is not None:
            last_of[p] = cursor[0]
            pending.extend(cursor[1])
    low = int(last_of[owned].min())
    events = entry_events(conn, type_id, low, pending, ownership)
    part = events.keys % ownership.count
    fresh = np.flatnonzero((events.ids > last_of[part]) | np.isin(events.ids, pending))
    events = EntryEvents(
        events.ids[fresh], events.keys[fresh], events.ts_us[fresh], [events.properties[i] for i in fresh]
    )
    part = part[fresh]
    waiting = events.ts_us >= now_us
    for p in owned:
        mine = part == p
        if not mine.any() and cursors[p] is not None:
            continue
        last = max(int(last_of[p]), int(events.ids[mine].max(initial=0)))
        set_entry_cursor(conn, partition_cursor(plan.id, p), last, events.ids[mine & waiting].tolist())
    return events


def _pair_codes(customers: np.ndarray, key_values: np.ndarray) -> np.ndarray:
    """One integer per (customer, key value) pair, equal exactly where both are (a missing value counts as
    the empty text, as it is stored)."""
    texts = np.array(["" if v is None else v for v in key_values], dtype=str)
    _, codes = np.unique(texts, return_inverse=True)
    width = int(codes.max(initial=0)) + 1
    return np.asarray(customers, dtype=np.int64) * width + codes.ravel()


#: At most this many names' values are kept per instance (the entry condition's first ones).
MAX_ENTRY_VALUES = 12


def entry_names(plan: JourneyPlan) -> list[str]:
    """The metrics and customer attributes the journey's entry condition (signal and segment) names, in the
    order they first appear, at most ``MAX_ENTRY_VALUES``."""
    names = [
        n.parts[0]
        for node in (plan.signal, plan.segment)
        if node is not None
        for n in sorted(free_names(node), key=lambda n: n.pos)
        if len(n.parts) == 1
    ]
    return list(dict.fromkeys(names))[:MAX_ENTRY_VALUES]


def entry_values(plan: JourneyPlan, evaluator: Evaluator, keys: np.ndarray) -> list[str | None] | None:
    """Per entering key, the values of ``entry_names`` at this instant as compact JSON (numbers rounded to
    4 decimals, a missing value as null); None when the condition names none. One column per name, read
    from the evaluator (which holds them for every customer already), then one JSON text per entrant."""
    names = entry_names(plan)
    if not names or not len(keys):
        return None
    columns: list[list[object]] = []
    for name in names:
        values = evaluator.metric(name) if name in plan.metrics else evaluator.customers.column(name)
        picked = values[keys]
        if picked.dtype.kind == "f":
            rounded = np.where(np.isfinite(picked), np.round(picked, 4), np.nan)
            columns.append([None if v != v else v for v in rounded.tolist()])
        else:
            columns.append([_plain(to_python(v)) for v in picked])
    return [orjson.dumps(dict(zip(names, row, strict=True))).decode() for row in zip(*columns, strict=True)]


def _plain(value: object) -> object:
    """A value JSON can hold: NaN as None, anything unusual as its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return str(value)


def reentry_allowed(
    plan: JourneyPlan, seen: np.ndarray, history: EntryHistory, pos: np.ndarray, now_us: int
) -> np.ndarray:
    """Whether each candidate may enter under the journey's re-entry policy; ``seen`` marks candidates with
    an entry history, found at ``pos`` in ``history``."""
    policy = plan.journey.reentry
    if policy == "always":
        return np.ones(len(seen), bool)
    if policy == "never":
        return ~seen
    if not len(history.keys):
        return np.ones(len(seen), bool)
    active = seen & history.active[pos]
    if policy == "after_exit":
        return ~active
    assert isinstance(policy, Cooldown)
    cooldown_us = plan.reentry_cooldown_us() or 0
    last_exit = np.where(seen, history.last_exit_us[pos], -1)
    return ~seen | (~active & (last_exit >= 0) & (now_us - last_exit >= cooldown_us))


def assign(
    conn: Connection, plan: JourneyPlan, keys: np.ndarray, now_us: int, global_holdout: float = 0.0
) -> np.ndarray:
    """The holdout flag of each entering key: the stored arm if any, else a new stored assignment (one per
    customer, however many instances the customer enters with), from the global layer first and then the
    journey's own holdout, each row stored with its layer, bucket, percent and reason."""
    unique = np.unique(keys)
    known_keys, known_held = holdout_assignments(conn, plan.id, unique)
    known, pos = lookup(known_keys, unique)
    held_unique = np.zeros(len(unique), bool)
    held_unique[known] = known_held[pos[known]]
    new = ~known
    if new.any():
        ids = customer_ids(conn, unique[new]).astype(str)
        arms = assign_arms(plan.id, ids, plan.journey.holdout, global_holdout)
        held_unique[new] = arms.arm == HOLDOUT
        insert_assignments(
            conn, plan.id, unique[new], arms.arm, arms.bucket, arms.percent, arms.reason, arms.layer, now_us
        )
    return held_unique[np.searchsorted(unique, keys)]


def lookup(table_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``keys`` stands in ``table_keys``, which must be sorted ascending.

    Returns (found, position); ``position`` is meaningful only where ``found``, and is always a valid
    index into a non-empty table, so columns aligned with the table can be indexed with it directly.
    """
    if not len(table_keys):
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    pos = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return table_keys[pos] == keys, pos
