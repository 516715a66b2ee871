"""Applying the contact policy to one dispatch batch, as whole arrays.

``decide`` takes the batch's messages (channel, customer, priority, transactional) and their customers, and
answers per message: send, suppress (with the reason) or delay (until an instant, with the reason). The
rules, in order, each deciding only what the previous ones left open:

1. exclusions (conditions over customer attributes, evaluated with the signals ``Evaluator`` over the
   batch's customers);
2. consent: ``consent_<channel>`` false suppresses (a declared transactional send passes on the channels
   the policy lists under ``transactional_without_consent``); no consent on record suppresses a marketing
   message on a channel the policy leaves ``opt_in`` (the default, also without a policy file);
3. quiet hours (marketing only), in the customer's local time: ``hold`` delays to the end of the window,
   ``drop`` suppresses;
4. caps (marketing only): per channel and across channels, per local calendar day and week. Messages sent
   earlier count; inside the batch, each customer's messages are taken by journey priority (higher first,
   then oldest first), so lower-priority journeys are the ones capped out.

Local days and weeks are computed once per time zone in the batch (its midnight today and its Monday
midnight), never once per message; caps are applied in rounds, round k taking every customer's k-th
message at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._localtime import next_local_times
from orchestrator.language import CHANNELS, CONSENT_CHANNELS, Consent, ContactPolicy
from orchestrator.signals import CustomerFrame, Evaluator, EventFrame, column_from_values, free_names
from orchestrator.zones import wall_to_us, zone_or_none

SEND, SUPPRESS, DELAY = 0, 1, 2
CAP_CHANNELS = CHANNELS
WEEK_US = 7 * 86400 * US_PER_SECOND
#: A customer's consent on a channel, as ``consent_states`` codes it.
NO, YES, UNKNOWN = 0, 1, -1


@dataclass
class Batch:
    """The messages of one dispatch batch, aligned arrays of length n."""

    channel: np.ndarray  # object: email | sms | push | webhook
    customer_key: np.ndarray  # int64
    priority: np.ndarray  # int64: the journey's priority
    transactional: np.ndarray  # bool
    order: np.ndarray  # int64: oldest first (the ledger id)

    def __len__(self) -> int:
        return len(self.channel)


@dataclass
class Decisions:
    action: np.ndarray  # int8: SEND | SUPPRESS | DELAY
    reason: np.ndarray  # object: why (None for a plain send)
    until_us: np.ndarray  # int64: for DELAY, when to try again

    @classmethod
    def all_send(cls, n: int) -> Decisions:
        return cls(np.zeros(n, np.int8), np.full(n, None, dtype=object), np.zeros(n, np.int64))

    def settle(self, where: np.ndarray, action: int, reason: str, until_us: np.ndarray | int = 0) -> None:
        """Decide the still-open messages in ``where`` (a boolean mask)."""
        where = where & (self.action == SEND)
        self.action[where] = action
        self.reason[where] = reason
        if isinstance(until_us, np.ndarray):
            self.until_us[where] = until_us[where]
        else:
            self.until_us[where] = until_us


@dataclass(frozen=True)
class LocalCalendar:
    """Per message: the customer's zone, the start of their local day and week, and the local time now."""

    zone: np.ndarray  # object: IANA names (the policy's default where missing or unknown)
    day_start_us: np.ndarray
    week_start_us: np.ndarray
    seconds_of_day: np.ndarray


def local_calendar(zones: Sequence[Any], now_us: int, default_zone: str) -> LocalCalendar:
    """The local calendar of ``now_us`` in each zone; zoneinfo is asked once per distinct zone."""
    names = np.array(
        [z if isinstance(z, str) and zone_or_none(z) is not None else default_zone for z in zones],
        dtype=object,
    )
    n = len(names)
    day = np.zeros(n, np.int64)
    week = np.zeros(n, np.int64)
    seconds = np.zeros(n, np.int64)
    for name in np.unique(names.astype(str)) if n else []:
        zone = zone_or_none(str(name))
        assert zone is not None
        local = datetime.fromtimestamp(now_us / US_PER_SECOND, UTC).astimezone(zone)
        sel = names == name
        day[sel] = wall_to_us(str(name), local.date(), 0)
        week[sel] = wall_to_us(str(name), local.date() - timedelta(days=local.weekday()), 0)
        seconds[sel] = local.hour * 3600 + local.minute * 60 + local.second
    return LocalCalendar(names, day, week, seconds)


def exclusion_masks(
    policy: ContactPolicy, records: Mapping[int, Mapping[str, Any]], keys: np.ndarray, now_us: int
) -> list[tuple[str, str, np.ndarray]]:
    """Per exclusion: (name, applies_to, mask over ``keys``) — where its condition holds."""
    out: list[tuple[str, str, np.ndarray]] = []
    if not policy.exclusions or not len(keys):
        return out
    unique, inverse = np.unique(keys, return_inverse=True)
    names = {n.parts[0] for _, node in policy.exclusions for n in free_names(node)}
    columns = {
        name: column_from_values([records.get(int(k), {}).get(name) for k in unique]) for name in names
    }
    frame = CustomerFrame(len(unique), np.ones(len(unique), bool), columns)
    evaluator = Evaluator(EventFrame.empty(len(unique)), frame, now_us)
    for exclusion, node in policy.exclusions:
        out.append((exclusion.name, exclusion.applies_to, evaluator.condition(node)[inverse]))
    return out


def consent_states(records: Mapping[int, Mapping[str, Any]], keys: np.ndarray, channel: str) -> np.ndarray:
    """Per key: YES, NO or UNKNOWN (no consent on record, or no customer record) for ``channel``.
    Each distinct customer is looked up once."""
    unique, inverse = np.unique(keys, return_inverse=True)
    name = f"consent_{channel}"
    code: dict[Any, int] = {True: YES, False: NO}
    found = np.fromiter((code.get(records.get(int(k), {}).get(name), UNKNOWN) for k in unique), np.int8)
    return found[inverse]


def decide(
    policy: ContactPolicy | None,
    batch: Batch,
    records: Mapping[int, Mapping[str, Any]],
    recent: tuple[np.ndarray, np.ndarray, np.ndarray],
    now_us: int,
) -> Decisions:
    """What to do with each message of ``batch`` (see the module docstring).

    ``records``: the customers by key (``timezone``, ``consent_<channel>`` and attributes); ``recent``:
    marketing messages already sent to them, as (customer key, channel, sent_us) arrays, from at least the
    start of the current local week."""
    n = len(batch)
    decisions = Decisions.all_send(n)
    if n == 0:
        return decisions
    keys = batch.customer_key
    # A webhook calls the business (customer success), not the customer: never a marketing message.
    marketing = ~batch.transactional & (batch.channel != "webhook")
    if policy is not None:
        for name, applies_to, holds in exclusion_masks(policy, records, keys, now_us):
            scope = np.ones(n, bool) if applies_to == "all" else marketing
            decisions.settle(holds & scope, SUPPRESS, f"excluded by policy: {name}")
    # Consent holds with or without a policy file: an opted-out channel is never used, and without a
    # policy (or without its consent section) no record means no marketing message (opt-in).
    consent = policy.policy.consent if policy is not None else Consent()
    exempt = set(consent.transactional_without_consent)
    for channel in CONSENT_CHANNELS:
        on_channel = batch.channel == channel
        if not on_channel.any():
            continue
        state = consent_states(records, keys, channel)
        passes = batch.transactional & (channel in exempt)
        decisions.settle(on_channel & (state == NO) & ~passes, SUPPRESS, f"no consent for {channel}")
        if consent.opt_in(channel):
            reason = f"no {channel} consent on record (policy: opt-in)"
            decisions.settle(on_channel & (state == UNKNOWN) & marketing, SUPPRESS, reason)
    if policy is None:
        return decisions
    calendar = local_calendar(
        [records.get(int(k), {}).get("timezone") for k in keys], now_us, policy.policy.default_timezone
    )
    _quiet_hours(policy, batch, calendar, marketing, now_us, decisions)
    if policy.caps:
        _caps(policy, batch, calendar, marketing, recent, decisions)
    return decisions


def _quiet_hours(
    policy: ContactPolicy,
    batch: Batch,
    calendar: LocalCalendar,
    marketing: np.ndarray,
    now_us: int,
    decisions: Decisions,
) -> None:
    for channel, quiet in policy.quiet_hours.items():
        start, end = quiet.start_s, quiet.end_s
        s = calendar.seconds_of_day
        inside = (s >= start) & (s < end) if start < end else (s >= start) | (s < end)
        hit = inside & marketing & (batch.channel == channel)
        if not hit.any():
            continue
        window = f"quiet hours for {channel} ({quiet.start}-{quiet.end} local time)"
        if quiet.action == "drop":
            decisions.settle(hit, SUPPRESS, f"{window}: dropped")
            continue
        until = np.zeros(len(batch), np.int64)
        idx = np.flatnonzero(hit)
        until[idx] = next_local_times(
            np.full(len(idx), now_us, np.int64),
            calendar.zone[idx],
            end,
            range(7),
            policy.policy.default_timezone,
        )
        decisions.settle(hit, DELAY, f"{window}: held", until)


def _caps(
    policy: ContactPolicy,
    batch: Batch,
    calendar: LocalCalendar,
    marketing: np.ndarray,
    recent: tuple[np.ndarray, np.ndarray, np.ndarray],
    decisions: Decisions,
) -> None:
    open_ = marketing & (decisions.action == SEND)
    if not open_.any():
        return
    customers, slot = np.unique(batch.customer_key, return_inverse=True)
    n_customers = len(customers)
    channel_code = {c: i for i, c in enumerate(CAP_CHANNELS)}
    chan = np.array([channel_code[c] for c in batch.channel], np.int64)
    # Counters: [customer slot, channel] per day and per week; column len(CAP_CHANNELS) is "all".
    day = np.zeros((n_customers, len(CAP_CHANNELS) + 1), np.int64)
    week = np.zeros_like(day)
    r_keys, r_channels, r_sent = recent
    if len(r_keys):
        # Each customer's local day and week start, from any of their messages in the batch.
        day_start = np.zeros(n_customers, np.int64)
        week_start = np.zeros(n_customers, np.int64)
        day_start[slot] = calendar.day_start_us
        week_start[slot] = calendar.week_start_us
        pos = np.searchsorted(customers, r_keys)
        known = (pos < n_customers) & (customers[np.minimum(pos, n_customers - 1)] == r_keys)
        pos, r_sent = pos[known], r_sent[known]
        r_chan = np.array([channel_code.get(c, 0) for c in r_channels[known]], np.int64)
        in_week = r_sent >= week_start[pos]
        in_day = r_sent >= day_start[pos]
        for counter, within in ((day, in_day), (week, in_week)):
            np.add.at(counter, (pos[within], r_chan[within]), 1)
            np.add.at(counter, (pos[within], np.full(int(within.sum()), len(CAP_CHANNELS))), 1)
    limits = []
    for scope, cap in policy.caps.items():
        column = len(CAP_CHANNELS) if scope == "all" else channel_code[scope]
        where = "across channels" if scope == "all" else f"on {scope}"
        for counter, limit, period in ((day, cap.per_day, "day"), (week, cap.per_week, "week")):
            if limit is not None:
                reason = f"capped by policy: {limit} marketing message(s) per local {period} {where}"
                limits.append((counter, column, limit, reason))
    # Round k decides every customer's k-th open message (by priority, then age) at once.
    idx = np.flatnonzero(open_)
    idx = idx[np.lexsort((batch.order[idx], -batch.priority[idx], slot[idx]))]
    group_start = np.r_[0, np.flatnonzero(np.diff(slot[idx])) + 1]
    rank = np.arange(len(idx)) - np.repeat(group_start, np.diff(np.r_[group_start, len(idx)]))
    for k in range(int(rank.max()) + 1 if len(rank) else 0):
        rows = idx[rank == k]
        s, c = slot[rows], chan[rows]
        blocked = np.zeros(len(rows), bool)
        for counter, column, limit, reason in limits:
            cols = c if column != len(CAP_CHANNELS) else np.full(len(rows), column)
            over = ~blocked & (counter[s, cols] >= limit)
            if column != len(CAP_CHANNELS):
                over &= c == column
            if over.any():
                mask = np.zeros(len(batch), bool)
                mask[rows[over]] = True
                decisions.settle(mask, SUPPRESS, reason)
                blocked |= over
        sent = ~blocked
        for counter in (day, week):
            counter[s[sent], c[sent]] += 1
            counter[s[sent], len(CAP_CHANNELS)] += 1
