"""What happened to one customer, and why: ``explain`` (behind ``orchestrator why``).

It reads only the store: the customer's consents, their entries (with the holdout arm and the reason it was
given), the step each instance is at or how it finished, every ledger row (status, reason, attempts, when
it was queued and sent, a pending retry), the conversions and the suppression list entries of the
customer's addresses. The store keeps no row per step moved through: the steps shown are the sends (each a
ledger row with its time), the current step (since when) and the exit. Instants are ISO-8601 text in UTC
ending in ``Z``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.durations import US_PER_SECOND
from orchestrator.errors import NotFoundError
from orchestrator.language import ADDRESS_FIELD, CONSENT_CHANNELS
from orchestrator.store import (
    Store,
    address_suppressions,
    customer_contact,
    customer_conversions,
    customer_instances,
    customer_messages,
)


class UnknownCustomer(NotFoundError, LookupError):
    """The store knows no customer of that id (the message names it)."""


@dataclass(frozen=True)
class MessageStory:
    """One ledger row of an entry: a send step's message and what became of it."""

    step: str
    channel: str
    status: str
    reason: str | None
    attempts: int
    queued: str | None
    sent: str | None
    next_attempt: str | None  # only while the message is queued (a retry or a held send)
    recipient: str | None
    transactional: bool


@dataclass(frozen=True)
class ConversionStory:
    """The goal an entry reached: when, and the revenue it brought."""

    at: str | None
    revenue: float


@dataclass(frozen=True)
class EntryStory:
    """One entry of the customer into a journey: the arm, the messages, where it is or how it ended."""

    journey: str
    version: int
    entered: str | None
    arm: str
    arm_reason: str | None
    holdout_layer: str | None
    correlation_key: str | None
    status: str
    step: str | None  # the current step, while active
    at_step_since: str | None
    next_look: str | None
    finished: str | None
    finish_reason: str | None
    messages: list[MessageStory]
    conversion: ConversionStory | None


@dataclass(frozen=True)
class SuppressionStory:
    """An address of the customer on the suppression list."""

    channel: str
    address: str
    reason: str
    since: str | None


@dataclass(frozen=True)
class Explanation:
    """Everything the store says about one customer's journeys. ``consent`` per channel is None when no
    consent is on record (the policy's ``consent.missing`` decides)."""

    customer: str
    consent: dict[str, bool | None]
    entries: list[EntryStory]
    suppressions: list[SuppressionStory]

    def to_dict(self) -> dict[str, Any]:
        """As plain data (what ``why --format json`` prints)."""
        return asdict(self)


def iso(us: int | None) -> str | None:
    """An instant in microseconds as ISO-8601 text in UTC ending in ``Z`` (None stays None)."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / US_PER_SECOND, UTC).isoformat().replace("+00:00", "Z")


def explain(store: Store, customer_id: str, journey: str | None = None) -> Explanation:
    """What the store says about ``customer_id`` (in ``journey`` only, when given); ``UnknownCustomer`` when
    the store does not know the customer."""
    with store.connect() as conn:
        contact = customer_contact(conn, customer_id)
        if contact is None:
            raise UnknownCustomer(f"no customer {customer_id!r} in the store")
        instances = customer_instances(conn, contact.key, journey)
        messages = customer_messages(conn, contact.key, journey)
        conversions = customer_conversions(conn, contact.key, journey)
        addresses = [(channel, getattr(contact, field)) for channel, field in ADDRESS_FIELD.items()]
        suppressions = address_suppressions(conn, [(c, a) for c, a in addresses if a])
    by_instance: dict[int, list[MessageStory]] = {}
    for m in messages:
        by_instance.setdefault(m.instance_id, []).append(
            MessageStory(
                step=m.step,
                channel=m.channel,
                status=m.status,
                reason=m.reason,
                attempts=m.attempts,
                queued=iso(m.created_us),
                sent=iso(m.sent_us),
                next_attempt=iso(m.next_attempt_us) if m.status == "queued" else None,
                recipient=m.recipient,
                transactional=m.transactional,
            )
        )
    converted = {c.instance_id: ConversionStory(iso(c.converted_us), c.revenue) for c in conversions}
    entries = []
    for e in instances:
        active = e.status == "active"
        entries.append(
            EntryStory(
                journey=e.journey_id,
                version=e.version,
                entered=iso(e.entered_us),
                arm=e.arm or ("holdout" if e.holdout else "treatment"),
                arm_reason=e.arm_reason or ("held out: no messages" if e.holdout else None),
                holdout_layer=e.holdout_layer,
                correlation_key=e.entry_key,
                status=e.status,
                step=e.state if active else None,
                at_step_since=iso(e.since_us) if active else None,
                next_look=iso(e.wake_at_us) if active else None,
                finished=iso(e.exited_us),
                finish_reason=e.exit_reason,
                messages=by_instance.get(e.id, []),
                conversion=converted.get(e.id),
            )
        )
    return Explanation(
        customer=customer_id,
        consent=dict(zip(CONSENT_CHANNELS, contact.consents, strict=True)),
        entries=entries,
        suppressions=[
            SuppressionStory(s.channel, s.address, s.reason, iso(s.created_us)) for s in suppressions
        ],
    )
