"""What happened to one customer, and why: ``explain`` (behind ``orchestrator why``).

It reads only the store: the customer's consents, their entries (with the holdout arm and the reason it was
given), the step each instance is at or how it finished, every ledger row (status, reason, attempts, when
it was queued and sent, a pending retry), the conversions and the suppression list entries of the
customer's addresses. The store keeps no row per step moved through: the steps shown are the sends (each a
ledger row with its time), the current step (since when) and the exit. Instants are ISO-8601 text in UTC
ending in ``Z``.

Each entry also says why it happened and how it ended, in words (``engine._reasons``): the entry condition
with the values of the metrics and attributes it reads as they were at entry (recorded with the instance;
entries made before they were recorded say so: the events may have changed since, so they are not
recomputed), and the exit read against the journey version the instance ran (its source, stored when the
version first ran). Conversions are listed once more, one per line, across the customer's journeys.
A send ``at: best_time`` adds what it chose for the entry (``send_choices``): the policy, the local hour
and the counts behind it, or the comparison share that sent at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from orchestrator.durations import US_PER_SECOND
from orchestrator.engine._reasons import entry_reason, finish_reason
from orchestrator.errors import NotFoundError
from orchestrator.language import (
    ADDRESS_FIELD,
    CONSENT_CHANNELS,
    Journey,
    SpecError,
    load_journey_text,
    step_words,
)
from orchestrator.store import (
    Connection,
    Store,
    address_suppressions,
    customer_contact,
    customer_conversions,
    customer_instances,
    customer_messages,
    customer_send_choices,
    stored_version,
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
class ChoiceStory:
    """What a send step that chooses per customer chose for the entry: the policy (``best_time`` or
    ``immediate``), when to send, the local hour chosen and the counts behind it, and all that in words."""

    step: str
    policy: str
    channel: str
    reached: str | None
    send_at: str | None
    hour: str | None
    detail: dict[str, Any]
    words: str


def choice_words(policy: str, detail: dict[str, Any], channel: str = "") -> str:
    """A recorded choice in words."""
    if policy.startswith("fixed:"):
        return (
            f"sent on {channel}: in the {detail.get('compare', 0):g}% comparison share "
            f"(hash {detail.get('bucket', 0):.4f})"
        )
    if policy == "best_channel":
        counts = detail.get("counts", {})
        reachable = detail.get("reachable", [])
        parts = [
            f"{name} {c['answered']} answered of {c['sends']} sends (everyone's rate "
            f"{c['population_rate']:.1%}, posterior {c['posterior']:.4f})"
            + ("" if name in reachable else ", not reachable")
            for name, c in counts.items()
        ]
        lead = f"best channel {channel}" if reachable else f"no listed channel reachable: {channel}"
        return f"{lead}: " + "; ".join(parts)
    if policy != "best_time":
        return (
            f"sent at once: in the {detail.get('compare', 0):g}% comparison share "
            f"(hash {detail.get('bucket', 0):.4f})"
        )
    if detail.get("all_quiet"):
        return f"every hour within {detail.get('within')} is in quiet hours: sent at once, the policy decides"
    quiet = "; a better hour fell in quiet hours" if detail.get("quiet_skipped") else ""
    share = detail.get("population_share") or 0.0
    return (
        f"best time {detail.get('hour')} ({detail.get('zone')}): {detail.get('events_in_hour')} of the "
        f"customer's {detail.get('events')} engagement events in that hour, {share:.1%} of everyone's, "
        f"shrunk with {detail.get('prior'):g} pseudo-events to a score of {detail.get('score')}{quiet}"
    )


@dataclass(frozen=True)
class ConversionStory:
    """The goal an entry reached: when, and the revenue it brought (``event``: the goal's event;
    ``condition``: a condition goal's condition; ``window``: ``within 14d of the first send`` for a goal
    window that starts at the first send, None for one that starts at entry)."""

    at: str | None
    revenue: float
    event: str | None = None
    condition: str | None = None
    window: str | None = None


@dataclass(frozen=True)
class ConversionLine:
    """One conversion of the customer, on its own line: the journey and arm it counts for, when, the goal's
    event (or condition, and its window when it starts at the first send) and the revenue."""

    journey: str
    version: int
    arm: str
    at: str | None
    event: str | None
    revenue: float
    condition: str | None = None
    window: str | None = None


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
    entered_because: str  # the entry condition and the recorded values, in words
    entry_values: dict[str, Any] | None  # metric and attribute values at entry (None: not recorded)
    finish_code: str | None  # the finish reason's class (``engine._reasons.EXIT_CODES``), once finished
    finish_words: str | None  # the finish reason in words, once finished
    step_words: str | None = None  # what the current step does, in words (``wait until 09:00 on ...``)
    choices: list[ChoiceStory] = field(default_factory=list)  # what best-time sends chose


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
    conversions: list[ConversionLine]

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
        chosen = customer_send_choices(conn, contact.key, journey)
        addresses = [(channel, getattr(contact, field)) for channel, field in ADDRESS_FIELD.items()]
        suppressions = address_suppressions(conn, [(c, a) for c, a in addresses if a])
        journeys = {(e.journey_id, e.version): _journey(conn, e.journey_id, e.version) for e in instances}
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
    choices: dict[int, list[ChoiceStory]] = {}
    for c in chosen:
        hour = c.detail.get("hour") if c.policy == "best_time" else None
        choices.setdefault(c.instance_id, []).append(
            ChoiceStory(
                c.step,
                c.policy,
                c.channel,
                iso(c.visit_us),
                iso(c.send_at_us),
                hour,
                c.detail,
                choice_words(c.policy, c.detail, c.channel),
            )
        )
    goal_of = {key: _goal_words(j) for key, j in journeys.items()}
    version_of = {e.id: (e.journey_id, e.version) for e in instances}
    converted = {
        c.instance_id: ConversionStory(
            iso(c.converted_us),
            c.revenue,
            *goal_of.get(version_of.get(c.instance_id, ("", 0)), (None, None, None)),
        )
        for c in conversions
    }
    entries = []
    for e in instances:
        active = e.status == "active"
        journey_model = journeys.get((e.journey_id, e.version))
        values = _values(e.entry_values)
        conversion = converted.get(e.id)
        finished = None
        if not active:
            finished = finish_reason(
                journey_model,
                e.status,
                e.exit_reason,
                None if conversion is None else (conversion.at, conversion.revenue),
            )
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
                conversion=conversion,
                entered_because=entry_reason(journey_model, values, e.entry_values is not None),
                entry_values=values,
                finish_code=None if finished is None else finished.code,
                finish_words=None if finished is None else finished.words,
                step_words=_step_words(journey_model, e.state) if active else None,
                choices=choices.get(e.id, []),
            )
        )
    arms = {e.id: e.arm or ("holdout" if e.holdout else "treatment") for e in instances}
    lines = [
        ConversionLine(
            journey=c.journey_id,
            version=version_of.get(c.instance_id, (c.journey_id, 0))[1],
            arm=arms.get(c.instance_id, "holdout" if c.holdout else "treatment"),
            at=iso(c.converted_us),
            event=converted[c.instance_id].event,
            revenue=c.revenue,
            condition=converted[c.instance_id].condition,
            window=converted[c.instance_id].window,
        )
        for c in conversions
    ]
    return Explanation(
        customer=customer_id,
        consent=dict(zip(CONSENT_CHANNELS, contact.consents, strict=True)),
        entries=entries,
        suppressions=[
            SuppressionStory(s.channel, s.address, s.reason, iso(s.created_us)) for s in suppressions
        ],
        conversions=lines,
    )


def _goal_words(journey: Journey | None) -> tuple[str | None, str | None, str | None]:
    """A journey's goal as (event, condition, window), the window only when it starts at the first send."""
    goal = journey.goal if journey is not None else None
    if goal is None:
        return None, None, None
    return goal.event, goal.signal, goal.window_words if goal.start == "first_send" else None


def _journey(conn: Connection, journey_id: str, version: int) -> Journey | None:
    """The journey version as it ran (from its stored source), None when not stored or not readable."""
    stored = stored_version(conn, journey_id, version)
    if stored is None:
        return None
    try:
        return load_journey_text(stored.source, f"{journey_id} version {version}").journey
    except SpecError:
        return None


def _step_words(journey: Journey | None, step_id: str) -> str | None:
    """What the step ``step_id`` of the journey version does, in words (None when unknown)."""
    if journey is None:
        return None
    steps = dict(zip(journey.step_ids(), journey.steps, strict=True))
    return step_words(steps[step_id]) if step_id in steps else None


def _values(text: str | None) -> dict[str, Any] | None:
    """The recorded entry values (None when none were recorded)."""
    if not text:
        return None
    loaded = orjson.loads(text)
    return loaded if isinstance(loaded, dict) else None
