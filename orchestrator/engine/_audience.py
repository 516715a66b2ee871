"""How many customers a journey would reach now: ``audience`` (behind ``orchestrator audience``).

Everything is computed over every customer of the store at once, from one snapshot, as columns:

1. **match now**: where the journey's entry condition (signal and segment) holds at the instant. For a
   journey entered by an event: the customers with an entry event in the last ``entry.within`` (default
   1 day), in the segment: the estimate is of the entries such a window brings;
2. **would enter**: of those, the ones the next tick would let in: not leaving at once (``exit_when``), not
   matched already at the last tick (entry is edge-triggered: only a condition that became true enters;
   for a journey that never ran, no one matched before), and allowed by the re-entry policy (not inside
   already, ``never`` re-entered, cooldown passed). For event entry, re-entry is judged against the
   entries made before the window;
3. **held out**: the stored arm of a customer assigned before, else the published hash (global holdout
   first, then the journey's: ``orchestrator.holdout``); the rest are **treated**;
4. for the treated, the first send step each would reach (``engine._first_send``), and what would stop that
   message if it went now (``engine._audience_policy``): no consent, no address (or one on the suppression
   list), the policy (exclusions, quiet hours that drop, caps); quiet hours that hold only delay it;
5. **would be messaged**: the rest.

Each customer is counted once, at the first thing that stops them. ``by`` breaks every count down by a
customer attribute (missing values as ``(none)``, the ``top`` most frequent values, the rest as ``other``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._audience_policy import (
    NO_ADDRESS,
    NO_CONSENT,
    POLICY_RULES,
    SUPPRESSED,
    SendsSoFar,
    first_message_stops,
    is_none,
)
from orchestrator.engine._contact_policy import WEEK_US
from orchestrator.engine._entry import lookup, reentry_allowed
from orchestrator.engine._explain import iso
from orchestrator.engine._first_send import NO_SEND, first_sends
from orchestrator.engine._signal_state import fits_from_store, missing_fits
from orchestrator.engine._snapshot import (
    entry_condition,
    load_customer_frame,
    load_event_frame,
    needed_columns,
)
from orchestrator.engine._workspace import Workspace
from orchestrator.errors import NotFoundError
from orchestrator.holdout import assign_arms, global_holdout
from orchestrator.language import ADDRESS_FIELD, CONSENT_CHANNELS, JourneyPlan
from orchestrator.signals import CustomerFrame, Evaluator, EventFrame, free_names
from orchestrator.store import (
    Store,
    entry_history,
    holdout_assignments,
    latest_prediction_fits,
    marketing_sends_since,
    signal_members,
    suppressed_customer_keys,
)

#: The counts of a breakdown row, in the order tables show them.
COUNTS = (
    "match_now",
    "would_enter",
    "held_out",
    "treated",
    "no_send_step",
    "no_consent",
    "no_address",
    "stopped_by_policy",
    "would_be_messaged",
)
OTHER, NONE = "other", "(none)"


@dataclass(frozen=True)
class FirstSend:
    """A send step some entrants would reach first: how many, and how many of them it would message."""

    step: str
    channel: str
    transactional: bool
    customers: int
    would_be_messaged: int


@dataclass(frozen=True)
class PolicyRule:
    """One rule of the policy that would stop first messages: its kind (excluded, quiet_hours, capped),
    the rule in words, and how many customers it stops."""

    kind: str
    rule: str
    customers: int


@dataclass(frozen=True)
class Group:
    """One value of the ``by`` attribute and its counts (``COUNTS``)."""

    value: str
    counts: dict[str, int]


@dataclass(frozen=True)
class Audience:
    """Who a journey would reach at one instant (see the module docstring). Every count is of customers;
    ``not_entering`` says why matching customers would not enter, ``policy`` which rules stop how many,
    ``notes`` what was estimated and how."""

    journey: str
    version: int
    now: str | None
    entry: str  # signal | segment | event | everyone
    window: str | None  # event entry: the window the entry events were read from
    customers: int
    match_now: int
    would_enter: int
    not_entering: dict[str, int]
    held_out: int
    held_out_global: int
    treated: int
    no_send_step: int
    no_consent: int
    no_address: int
    suppressed_address: int
    stopped_by_policy: int
    policy: dict[str, int]  # excluded, quiet_hours, capped
    policy_rules: list[PolicyRule]
    delayed_by_quiet_hours: int
    would_be_messaged: int
    first_sends: list[FirstSend]
    by: str | None
    breakdown: list[Group]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As plain data (what ``audience --format json`` prints)."""
        return asdict(self)


class UnknownJourney(NotFoundError, LookupError):
    """The workspace has no journey of that id (the message names the ones it has)."""


def audience(
    store: Store,
    workspace: Workspace,
    journey_id: str,
    now_us: int,
    *,
    by: str | None = None,
    top: int = 10,
    global_holdout_percent: float = 0.0,
) -> Audience:
    """Who ``journey_id`` of ``workspace`` would reach at ``now_us`` (see the module docstring), with the
    workspace's contact policy and ``global_holdout_percent``; broken down by the customer attribute
    ``by`` when given."""
    plan = next((p for p in workspace.plans if p.id == journey_id), None)
    if plan is None:
        known = ", ".join(p.id for p in workspace.plans) or "none"
        raise UnknownJourney(f"no journey {journey_id!r} among the journeys (loaded: {known})")
    policy = workspace.policy
    channels = {s.send.channel for s in plan.steps if s.send is not None}
    properties, attributes = needed_columns([plan])
    attributes |= {"id", "timezone"}
    attributes |= {f"consent_{c}" for c in channels if c in CONSENT_CHANNELS}
    attributes |= {ADDRESS_FIELD[c] for c in channels if c in ADDRESS_FIELD}
    if policy is not None:
        attributes |= {n.parts[0] for _, node in policy.exclusions for n in free_names(node)}
    if by is not None:
        attributes.add(by)
    window_us = plan.entry.within_us if plan.entry.kind == "event" else None
    with store.connect() as conn:
        customers = load_customer_frame(conn, sorted(attributes))
        events = load_event_frame(conn, now_us, sorted(properties), n_customers=customers.n)
        previous = signal_members(conn, plan.id)
        history = entry_history(
            conn, plan.id, entered_before_us=None if window_us is None else now_us - window_us
        )
        assigned = holdout_assignments(conn, plan.id)
        sent = SendsSoFar(*marketing_sends_since(conn, now_us - WEEK_US - 86400 * US_PER_SECOND))
        suppressed = {
            c: suppressed_customer_keys(conn, c, ADDRESS_FIELD[c]) for c in channels if c in ADDRESS_FIELD
        }
        fits = fits_from_store(latest_prediction_fits(conn))
    evaluator = Evaluator(events, customers, now_us, plan.metrics, fits=fits)
    notes: list[str] = missing_fits(plan, fits)  # such a prediction is null for everyone: none match

    # 1-2: who matches now, and who of them would enter at the next tick.
    match, kind = _matching(plan, evaluator, events, now_us, notes)
    not_entering: dict[str, int] = {}
    entering = match.copy()
    if plan.exit_when is not None:
        leaving = entering & evaluator.condition(plan.exit_when)
        not_entering["exit_when_holds"] = int(leaving.sum())
        entering &= ~leaving
    if plan.entry.kind != "event":
        before = np.zeros(customers.n, bool)
        before[previous[previous < customers.n]] = True
        not_entering["matched_at_last_tick"] = int((entering & before).sum())
        entering &= ~before
    candidates = np.flatnonzero(entering)
    seen, pos = lookup(history.keys, candidates)
    allowed = reentry_allowed(plan, seen, history, pos, now_us)
    active = history.active[pos] if len(history.keys) else np.zeros(len(candidates), bool)
    inside = seen & active
    not_entering["inside_already"] = int((~allowed & inside).sum())
    not_entering["reentry_not_allowed"] = int((~allowed & ~inside).sum())
    entrants = candidates[allowed]

    # 3: the holdout, from the stored arm or the hash.
    ids = customers.column("id")[entrants].astype(str)
    stored, where = lookup(assigned[0], entrants)
    held = np.zeros(len(entrants), bool)
    held[stored] = assigned[1][where[stored]]
    new = ~stored
    if new.any():
        arms = assign_arms(plan.id, ids[new], plan.journey.holdout, global_holdout_percent)
        held[new] = arms.held_out
    in_global = held & global_holdout(ids, global_holdout_percent)

    # 4: the first send each treated entrant would reach, and what would stop it now.
    treated = entrants[~held]
    step_code, route_notes = first_sends(plan, evaluator, treated, ids[~held], now_us)
    notes += route_notes
    outcome = np.full(len(treated), None, dtype=object)  # None: messaged
    detail = np.full(len(treated), None, dtype=object)
    delayed = np.zeros(len(treated), bool)
    outcome[step_code == NO_SEND] = "no_send_step"
    sends: list[FirstSend] = []
    for code in np.unique(step_code[step_code != NO_SEND]).tolist():
        step = plan.steps[code]
        assert step.send is not None
        sel = np.flatnonzero(step_code == code)
        stops = first_message_stops(
            policy,
            customers,
            treated[sel],
            step.send.channel,
            step.send.transactional,
            sent,
            suppressed.get(step.send.channel, np.zeros(0, np.int64)),
            now_us,
        )
        outcome[sel] = stops.kind
        detail[sel] = stops.detail
        delayed[sel] = stops.delayed
        sends.append(
            FirstSend(
                step.id,
                step.send.channel,
                step.send.transactional,
                len(sel),
                int(is_none(stops.kind).sum()),
            )
        )
    if policy is None:
        notes.append("no contact policy: consent (opt-in) and addresses only")
    else:
        notes.append(
            "policy as if each first message were sent now: exclusions, consent, quiet hours at this "
            "instant in each customer's time zone, caps from the marketing messages already sent this "
            "local day and week (not counting other journeys' messages due at the same time)"
        )

    # 5: the counts, in total and by group.
    full = _columns(customers.n, match, entrants, held, treated, outcome)
    counted = {name: int(column.sum()) for name, column in full.items()}
    policy_counts = {rule: int(np.equal(outcome, rule).sum()) for rule in POLICY_RULES}
    stopped = np.isin(outcome, list(POLICY_RULES))
    rules = [
        PolicyRule(str(kind), str(text), int((np.equal(detail, text) & stopped).sum()))
        for kind in POLICY_RULES
        for text in np.unique(detail[np.equal(outcome, kind)].astype(str)).tolist()
    ]
    return Audience(
        journey=plan.id,
        version=plan.version,
        now=iso(now_us),
        entry=kind,
        window=None if window_us is None else f"{window_us // (3600 * US_PER_SECOND)}h",
        customers=int(customers.exists.sum()),
        match_now=counted["match_now"],
        would_enter=counted["would_enter"],
        not_entering=not_entering,
        held_out=counted["held_out"],
        held_out_global=int(in_global.sum()),
        treated=counted["treated"],
        no_send_step=counted["no_send_step"],
        no_consent=counted["no_consent"],
        no_address=counted["no_address"],
        suppressed_address=int(np.equal(outcome, SUPPRESSED).sum()),
        stopped_by_policy=counted["stopped_by_policy"],
        policy=policy_counts,
        policy_rules=rules,
        delayed_by_quiet_hours=int(delayed.sum()),
        would_be_messaged=counted["would_be_messaged"],
        first_sends=sends,
        by=by,
        breakdown=[] if by is None else _breakdown(customers, by, match, full, top),
        notes=notes,
    )


def _matching(
    plan: JourneyPlan, evaluator: Evaluator, events: EventFrame, now_us: int, notes: list[str]
) -> tuple[np.ndarray, str]:
    """Where the entry matches now, and the kind of entry (see the module docstring)."""
    if plan.entry.kind == "event":
        assert plan.entry.event is not None
        since = now_us - plan.entry.within_us
        came = (events.type == events.type_code(plan.entry.event)) & (events.ts >= since)
        match = np.zeros(evaluator.n, bool)
        match[events.customer[came]] = True
        match &= entry_condition(evaluator, plan)
        notes.append(
            f"entered by an event: the customers with a {plan.entry.event} event in the "
            f"{plan.entry.within_us // (3600 * US_PER_SECOND)}h before now (the journey's entry.within), "
            "one entry each, re-entry judged against entries made before that window"
        )
        return match, "event"
    kind = "signal" if plan.signal is not None else "segment" if plan.segment is not None else "everyone"
    notes.append(
        "would enter = the entry condition holds now and did not at the last tick (entry is "
        "edge-triggered), exit_when does not hold and the re-entry policy allows it: who the next tick "
        "would let in"
    )
    return entry_condition(evaluator, plan), kind


def _columns(
    n: int,
    match: np.ndarray,
    entrants: np.ndarray,
    held: np.ndarray,
    treated: np.ndarray,
    outcome: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each count of ``COUNTS`` as a boolean column over every customer key."""
    out = {name: np.zeros(n, bool) for name in COUNTS}
    out["match_now"] = match.copy()
    out["would_enter"][entrants] = True
    out["held_out"][entrants[held]] = True
    out["treated"][treated] = True
    out["no_send_step"][treated[np.equal(outcome, "no_send_step")]] = True
    out["no_consent"][treated[np.equal(outcome, NO_CONSENT)]] = True
    out["no_address"][treated[np.isin(outcome, [NO_ADDRESS, SUPPRESSED])]] = True
    out["stopped_by_policy"][treated[np.isin(outcome, list(POLICY_RULES))]] = True
    out["would_be_messaged"][treated[is_none(outcome)]] = True
    return out


def _breakdown(
    customers: CustomerFrame, by: str, match: np.ndarray, full: dict[str, np.ndarray], top: int
) -> list[Group]:
    """The counts per value of ``by`` among the matching customers: the ``top`` values with the most
    entrants (then matches), the rest as ``other``; a missing value is ``(none)``."""
    keys = np.flatnonzero(match)
    labels = _labels(customers.column(by)[keys])
    values, inverse = np.unique(labels, return_inverse=True)
    sums = {
        name: np.bincount(inverse, weights=column[keys], minlength=len(values))
        for name, column in full.items()
    }
    order = np.lexsort((values, -sums["match_now"], -sums["would_enter"]))
    kept, rest = order[:top], order[top:]
    groups = [Group(str(values[i]), {name: int(sums[name][i]) for name in COUNTS}) for i in kept.tolist()]
    if len(rest):
        groups.append(Group(OTHER, {name: int(sums[name][rest].sum()) for name in COUNTS}))
    return groups


def _labels(column: np.ndarray) -> np.ndarray:
    """An attribute's values as text, vectorised: ``(none)`` for missing, whole numbers without ``.0``,
    booleans as true/false."""
    if column.dtype.kind == "f":
        whole = np.isfinite(column) & (column == np.round(column))
        text = np.where(
            whole, np.char.mod("%d", np.where(whole, column, 0).astype(np.int64)), np.char.mod("%g", column)
        )
        return np.where(np.isnan(column), NONE, text).astype(str)
    if column.dtype.kind == "b":
        return np.where(column, "true", "false").astype(str)
    return np.where(is_none(column), NONE, column.astype(str)).astype(str)
