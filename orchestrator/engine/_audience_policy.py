"""What would stop a first message if it were sent now, for a whole audience at once.

The rules and their order are dispatch's (``engine._contact_policy``), applied to one message per customer
(the first send step each would reach, ``engine._first_send``) over customer columns instead of a
dispatch batch: exclusions, consent, quiet hours at this instant in the customer's time zone (``hold``
delays: the message still goes, later; ``drop`` stops it), caps counted from the marketing messages sent
in the customer's current local day and week, then the address (missing, or on the channel's
suppression list). Each customer is stopped by the first rule that stops them. Caps are estimated as if
this were the customer's only message now: other journeys' messages at the same tick are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.engine._contact_policy import CAP_CHANNELS, local_calendar
from orchestrator.language import ADDRESS_FIELD, CONSENT_CHANNELS, Consent, ContactPolicy
from orchestrator.signals import CustomerFrame, Evaluator, EventFrame, Node

#: Why a customer's first message would not go, as ``audience`` counts them (in dispatch's order).
EXCLUDED, NO_CONSENT, QUIET_HOURS, CAPPED, NO_ADDRESS, SUPPRESSED = (
    "excluded",
    "no_consent",
    "quiet_hours",
    "capped",
    "no_address",
    "suppressed_address",
)
POLICY_RULES = (EXCLUDED, QUIET_HOURS, CAPPED)


def is_none(values: np.ndarray) -> np.ndarray:
    """Where an object column holds None (elementwise, in numpy)."""
    return np.asarray(values == None, dtype=bool)  # noqa: E711


@dataclass
class Stops:
    """Per customer of the audience: what stops the message (``kind``, None where it goes), the rule in
    words (``detail``), and whether quiet hours hold it for later (``delayed``)."""

    kind: np.ndarray  # object
    detail: np.ndarray  # object
    delayed: np.ndarray  # bool

    @classmethod
    def none(cls, n: int) -> Stops:
        return cls(np.full(n, None, object), np.full(n, None, object), np.zeros(n, bool))

    def settle(self, where: np.ndarray, kind: str, detail: str) -> None:
        """Stop the customers in ``where`` not stopped yet."""
        where = where & is_none(self.kind)
        self.kind[where] = kind
        self.detail[where] = detail


@dataclass(frozen=True)
class SendsSoFar:
    """Marketing messages already sent: (customer key, channel, sent_us) arrays."""

    keys: np.ndarray
    channels: np.ndarray
    sent_us: np.ndarray


def first_message_stops(
    policy: ContactPolicy | None,
    customers: CustomerFrame,
    keys: np.ndarray,
    channel: str,
    transactional: bool,
    sent: SendsSoFar,
    suppressed: np.ndarray,
    now_us: int,
) -> Stops:
    """What would stop a message on ``channel`` to each of ``keys`` now (see the module docstring);
    ``suppressed`` are the sorted keys whose address on ``channel`` is on the suppression list."""
    n = len(keys)
    stops = Stops.none(n)
    if not n:
        return stops
    marketing = not transactional and channel != "webhook"
    if policy is not None:
        for exclusion, node in policy.exclusions:
            if exclusion.applies_to == "all" or marketing:
                holds = _customer_condition(customers, node)[keys]
                stops.settle(holds, EXCLUDED, f"excluded by policy: {exclusion.name}")
    consent = policy.policy.consent if policy is not None else Consent()
    if channel in CONSENT_CHANNELS:
        state = customers.column(f"consent_{channel}")[keys]
        said_no = np.equal(state, False) if state.dtype.kind != "f" else np.zeros(n, bool)
        said_yes = np.equal(state, True) if state.dtype.kind != "f" else np.zeros(n, bool)
        passes = transactional and channel in set(consent.transactional_without_consent)
        if not passes:
            stops.settle(said_no, NO_CONSENT, f"no consent for {channel}")
        if marketing and consent.opt_in(channel):
            stops.settle(~said_no & ~said_yes, NO_CONSENT, f"no {channel} consent on record (policy: opt-in)")
    if policy is not None and marketing:
        calendar = _calendar(customers, keys, now_us, policy.policy.default_timezone)
        quiet = policy.quiet_hours.get(channel)
        if quiet is not None:
            s = calendar.seconds_of_day
            start, end = quiet.start_s, quiet.end_s
            inside = (s >= start) & (s < end) if start < end else (s >= start) | (s < end)
            window = f"quiet hours for {channel} ({quiet.start}-{quiet.end} local time)"
            if quiet.action == "drop":
                stops.settle(inside, QUIET_HOURS, f"{window}: dropped")
            else:
                stops.delayed = inside & is_none(stops.kind)
        _caps(policy, keys, channel, calendar, sent, stops)
    if channel in ADDRESS_FIELD:
        address = customers.column(ADDRESS_FIELD[channel])[keys]
        blank = address.dtype.kind == "f"  # no customer has one: a column of NaN
        missing = np.ones(n, bool) if blank else is_none(address) | np.equal(address, "")
        stops.settle(missing, NO_ADDRESS, f"no {ADDRESS_FIELD[channel]}")
        listed = np.isin(keys, suppressed)
        stops.settle(listed, SUPPRESSED, f"{ADDRESS_FIELD[channel]} on the {channel} suppression list")
    stops.delayed &= is_none(stops.kind)
    return stops


def _customer_condition(customers: CustomerFrame, node: Node) -> np.ndarray:
    """An exclusion's condition over the customer columns (it reads no events)."""
    return Evaluator(EventFrame.empty(customers.n), customers, 0).condition(node)


def _calendar(customers: CustomerFrame, keys: np.ndarray, now_us: int, default_zone: str) -> _Calendar:
    """Each customer's local day and week start and local time now, computed once per distinct zone."""
    zones = customers.column("timezone")[keys]
    if zones.dtype.kind == "f":
        names = np.full(len(keys), "", dtype=object)
    else:
        names = np.where(is_none(zones), "", zones).astype(str)
    unique, inverse = np.unique(names, return_inverse=True)
    calendar = local_calendar([z or None for z in unique.tolist()], now_us, default_zone)
    return _Calendar(
        calendar.day_start_us[inverse], calendar.week_start_us[inverse], calendar.seconds_of_day[inverse]
    )


@dataclass(frozen=True)
class _Calendar:
    day_start_us: np.ndarray
    week_start_us: np.ndarray
    seconds_of_day: np.ndarray


def _caps(
    policy: ContactPolicy,
    keys: np.ndarray,
    channel: str,
    calendar: _Calendar,
    sent: SendsSoFar,
    stops: Stops,
) -> None:
    """Stop the customers whose marketing messages this local day or week already reach a cap that a
    message on ``channel`` counts against."""
    if not policy.caps or channel not in CAP_CHANNELS:
        return
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.searchsorted(sorted_keys, sent.keys)
    known = (pos < len(keys)) & (sorted_keys[np.minimum(pos, len(keys) - 1)] == sent.keys)
    slot = order[pos[known]]  # the audience position of each known message's customer
    sent_us, on_channel = sent.sent_us[known], sent.channels[known] == channel
    counts: dict[tuple[str, str], np.ndarray] = {}
    for period, start in (("day", calendar.day_start_us), ("week", calendar.week_start_us)):
        within = sent_us >= start[slot]
        counts[(period, "all")] = np.bincount(slot[within], minlength=len(keys))
        counts[(period, channel)] = np.bincount(slot[within & on_channel], minlength=len(keys))
    for scope, cap in policy.caps.items():
        if scope not in ("all", channel):
            continue
        where = "across channels" if scope == "all" else f"on {scope}"
        for period, limit in (("day", cap.per_day), ("week", cap.per_week)):
            if limit is not None:
                over = counts[(period, scope)] >= limit
                stops.settle(over, CAPPED, f"capped: {limit} marketing message(s) per local {period} {where}")
