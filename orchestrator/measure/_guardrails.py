"""A journey report's guardrails: did the treated arm unsubscribe, complain or bounce more than the holdout?

Over the same entries the conversion comparison counts (those whose goal window has closed, treatment
against the journey's holdout, the global holdout left out), each guardrail is the share of entries whose
customer, inside the entry's goal window (from entry, or from the first send when the goal says so):

- **unsubscribed**: withdrew a consent the engine recorded (``consent_changes`` with consent false, on any
  channel: the unsubscribe link's page, a one-click POST), or has an ingested ``unsubscribe`` event;
- **complained**: has an ingested ``complaint`` event (a provider's spam-report feedback loop);
- **bounced**: a message of this entry failed and put its address on the suppression list (a hard bounce,
  an invalid number: ``suppressions.message_id``), or the customer has an ingested ``bounce`` event.

Per guardrail: the counts and rates per arm and the difference treated - held out with its 95% Newcombe
interval (``_rates.rate_lift``, the conversion rate's own method). **Alarm** when that interval lies above
zero: a one-sided reading, the treated arm worse at the 2.5% level; a treated arm that does better raises
none. The fixed interval, not the always-valid one the call reads: a guardrail should rather sound early.

Two figures the holdout cannot have (it gets no messages), for the treated entries alone, each with an
alarm above a fixed limit:

- **complaints per message sent** (ledger ``sent``): above ``COMPLAINT_LIMIT`` (0.3%, Gmail's limit for
  bulk senders' spam rate);
- **hard bounces per message handed to the provider** (ledger ``sent`` or ``failed``): the failures that
  suppressed an address plus ``bounce`` events, above ``BOUNCE_LIMIT`` (2%, the ceiling sending services
  advise for a clean list; above it a list needs cleaning before mailbox providers start to filter it).

The event names are fixed (``UNSUBSCRIBE_EVENT``, ``COMPLAINT_EVENT``, ``BOUNCE_EVENT``). Reads: one query
per guardrail and one of the messages (``store.journey_opt_outs`` and friends), then numpy: each entry's
window is matched to the moments by two ``searchsorted`` calls on a (customer, time) key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.holdout import TREATMENT
from orchestrator.measure._entry_rows import GLOBAL_HOLDOUT, EntryRows
from orchestrator.measure._numbers import interval_dict
from orchestrator.measure._rates import ArmSummary, RateLift, rate_lift
from orchestrator.store import (
    Connection,
    Moments,
    journey_bounces,
    journey_customer_events,
    journey_message_outcomes,
    journey_opt_outs,
)

UNSUBSCRIBED, COMPLAINED, BOUNCED = "unsubscribed", "complained", "bounced"
"""The guardrails, in the order the report shows them."""
UNSUBSCRIBE_EVENT, COMPLAINT_EVENT, BOUNCE_EVENT = "unsubscribe", "complaint", "bounce"
"""The ingested events each guardrail also reads."""
COMPLAINT_LIMIT = 0.003
"""Complaints per message sent above which the treated arm alarms: Gmail's bulk-sender spam-rate limit."""
BOUNCE_LIMIT = 0.02
"""Hard bounces per message handed to the provider above which the treated arm alarms."""

DEFINITIONS = {
    UNSUBSCRIBED: "withdrew a consent through the engine (unsubscribe link, one-click) or an "
    f"'{UNSUBSCRIBE_EVENT}' event, within the goal window",
    COMPLAINED: f"a '{COMPLAINT_EVENT}' event (spam report), within the goal window",
    BOUNCED: "a message of the entry failed and suppressed its address (hard bounce, invalid number) or "
    f"a '{BOUNCE_EVENT}' event, within the goal window",
}
RULE = (
    "alarm when the 95% interval of treated - held out lies above zero (one-sided: the treated arm worse "
    "at the 2.5% level); per message, when complaints exceed 0.3% of messages sent (Gmail's bulk-sender "
    "limit) or hard bounces 2% of messages handed to the provider"
)


@dataclass(frozen=True)
class GuardrailArm:
    """One arm's entries and how many of them the guardrail caught."""

    name: str
    entries: int
    count: int

    @property
    def rate(self) -> float | None:
        return self.count / self.entries if self.entries else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "entries": self.entries, "count": self.count, "rate": self.rate}


@dataclass(frozen=True)
class PerMessage:
    """A per-message rate of the treated entries (``what`` of ``messages``), read against ``limit``."""

    what: str
    count: int
    messages: int
    limit: float
    source: str

    @property
    def rate(self) -> float | None:
        return self.count / self.messages if self.messages else None

    @property
    def alarm(self) -> bool:
        rate = self.rate
        return rate is not None and rate > self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "count": self.count,
            "messages": self.messages,
            "rate": self.rate,
            "limit": self.limit,
            "limit_source": self.source,
            "alarm": self.alarm,
        }


@dataclass(frozen=True)
class Guardrail:
    """One guardrail: per arm, the difference with its interval, the per-message rate when there is one,
    and the alarms (``alarms``: each in words, ``labels``: each as a short name)."""

    name: str
    definition: str
    treated: GuardrailArm
    held_out: GuardrailArm
    difference: RateLift | None
    per_message: PerMessage | None = None
    alarms: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def alarm(self) -> bool:
        return bool(self.alarms)

    @property
    def worse(self) -> bool:
        """The difference's interval lies above zero: the treated arm is worse."""
        return self.difference is not None and self.difference.absolute_ci.low > 0.0

    def to_dict(self) -> dict[str, Any]:
        d = self.difference
        return {
            "name": self.name,
            "definition": self.definition,
            "arms": [self.treated.to_dict(), self.held_out.to_dict()],
            "difference": None
            if d is None
            else {
                "absolute": d.absolute,
                "ci": interval_dict(d.absolute_ci),
                "p_value": d.p_value,
                "method": "Newcombe hybrid-score interval, read one-sided",
                "alarm": self.worse,
            },
            "per_message": None if self.per_message is None else self.per_message.to_dict(),
            "alarm": self.alarm,
            "alarms": list(self.alarms),
            "rule": RULE,
        }


def journey_guardrails(
    conn: Connection,
    journey_id: str,
    rows: EntryRows,
    window_us: int,
    *,
    from_first_send: bool = False,
    alpha: float = 0.05,
) -> tuple[Guardrail, ...]:
    """The guardrails of the counted entries of ``rows`` (see the module docstring); none without any."""
    chosen = rows.counted & (rows.arm != GLOBAL_HOLDOUT)
    if not chosen.any():
        return ()
    start = (rows.first_send_us if from_first_send else rows.entered_us)[chosen]
    end = start + window_us
    keys, instances = rows.customer_key[chosen], rows.instance_id[chosen]
    treated = rows.arm[chosen] == TREATMENT
    lo, hi = int(start.min()), int(end.max())
    opt_outs = journey_opt_outs(conn, journey_id, UNSUBSCRIBE_EVENT, lo, hi)
    complaints = journey_customer_events(conn, journey_id, COMPLAINT_EVENT, lo, hi)
    bounces = journey_bounces(conn, journey_id, BOUNCE_EVENT, lo, hi)
    messages = journey_message_outcomes(conn, journey_id, lo, hi)

    def per_entry(moments: Moments) -> np.ndarray:
        own = moments.instance_id > 0
        return in_windows(keys, start, end, moments.customer_key[~own], moments.at_us[~own]) + in_windows(
            instances, start, end, moments.instance_id[own], moments.at_us[own]
        )

    handed = in_windows(instances, start, end, messages.instance_id, messages.created_us)
    sent = in_windows(
        instances, start, end, messages.instance_id[messages.sent], messages.created_us[messages.sent]
    )
    counts = {
        UNSUBSCRIBED: per_entry(opt_outs),
        COMPLAINED: per_entry(complaints),
        BOUNCED: per_entry(bounces),
    }
    rates = {
        COMPLAINED: PerMessage(
            "complaints per message sent",
            int(counts[COMPLAINED][treated].sum()),
            int(sent[treated].sum()),
            COMPLAINT_LIMIT,
            "Gmail's bulk-sender spam-rate limit",
        ),
        BOUNCED: PerMessage(
            "hard bounces per message handed to the provider",
            int(counts[BOUNCED][treated].sum()),
            int(handed[treated].sum()),
            BOUNCE_LIMIT,
            "the ceiling sending services advise for a clean list",
        ),
    }
    return tuple(
        _guardrail(name, counts[name] > 0, treated, rates.get(name), alpha)
        for name in (UNSUBSCRIBED, COMPLAINED, BOUNCED)
    )


def _guardrail(
    name: str, caught: np.ndarray, treated: np.ndarray, per_message: PerMessage | None, alpha: float
) -> Guardrail:
    t = GuardrailArm("treatment", int(treated.sum()), int(caught[treated].sum()))
    c = GuardrailArm("holdout", int((~treated).sum()), int(caught[~treated].sum()))
    difference = rate_lift(ArmSummary.from_counts(t.name, t.count, t.entries),
                           ArmSummary.from_counts(c.name, c.count, c.entries), alpha)  # fmt: skip
    alarms, labels = [], []
    if difference is not None and difference.absolute_ci.low > 0.0:
        ci = difference.absolute_ci
        level = f"{(1 - alpha) * 100:.0f}%"
        alarms.append(
            f"{name}: treated {_pct(t.rate)} against held out {_pct(c.rate)}, {_pts(difference.absolute)} "
            f"({level} CI {_pts(ci.low)} to {_pts(ci.high)}) lies above zero: the treated arm is worse"
        )
        labels.append(name)
    if per_message is not None and per_message.messages == 0:
        per_message = None
    if per_message is not None and per_message.alarm:
        alarms.append(
            f"{per_message.what}: {per_message.count} of {per_message.messages} "
            f"({_pct(per_message.rate)}), above the {_pct(per_message.limit)} limit ({per_message.source})"
        )
        labels.append(f"{name} per message")
    return Guardrail(name, DEFINITIONS[name], t, c, difference, per_message, tuple(alarms), tuple(labels))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _pts(x: float) -> str:
    return f"{x * 100:+.2f} pts"


def in_windows(
    keys: np.ndarray, start: np.ndarray, end: np.ndarray, at_keys: np.ndarray, at_us: np.ndarray
) -> np.ndarray:
    """For each window ``i`` (``keys[i]`` over ``[start[i], end[i])``), how many moments ``(at_keys, at_us)``
    fall in it: instants are ranked on a common axis so ``(key, rank)`` is one int64, then each window is
    two ``searchsorted`` calls on the sorted moments."""
    keys = np.asarray(keys, dtype=np.int64)
    if not len(at_keys) or not len(keys):
        return np.zeros(len(keys), dtype=np.int64)
    axis = np.unique(np.concatenate([at_us, start, end]))
    span = np.int64(len(axis) + 1)
    moments = np.sort(np.asarray(at_keys, dtype=np.int64) * span + np.searchsorted(axis, at_us))
    first = np.searchsorted(moments, keys * span + np.searchsorted(axis, start), side="left")
    last = np.searchsorted(moments, keys * span + np.searchsorted(axis, end), side="left")
    return (last - first).astype(np.int64)
