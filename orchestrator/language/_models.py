"""The journey language as typed models.

A journey file is validated into these frozen pydantic models. Unknown keys are errors, types are strict
(``template: 12`` is not quietly turned into ``"12"``), and durations must carry a unit.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from orchestrator.durations import format_duration, parse_duration
from orchestrator.language._channels import CONSENT_CHANNELS, Channel, ConsentChannel

#: Whole numbers stored in a database column (``version``) or compared in one (``priority``): a signed
#: 32-bit integer, PostgreSQL's ``integer``.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 30m, 4h or 3d")
    return parse_duration(value)


def _signed_duration(value: Any) -> Any:
    if isinstance(value, str) and value.strip().startswith("-"):
        return -_duration(value.strip()[1:])
    return _duration(value)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a wait must be longer than zero")
    return value


def _one_or_many(value: Any) -> Any:
    # "migrate: {from_version: 1, ...}" for one old version, a list of those for several.
    return [value] if isinstance(value, dict) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
SignedDuration = Annotated[timedelta, BeforeValidator(_signed_duration)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)]
Expression = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(min_length=1)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A value to match an event property against: ``entry.<property>`` (the entry event's value),
# ``metrics.<name>`` (the customer's value of a journey metric), or a literal.
MatchValue = str | int | float
_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows, else ``ValueError``."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name such as Europe/London") from None
    return name


def _time_text(text: str) -> str:
    parse_time_of_day(text)
    return text


def _split_percents(split: dict[str, float]) -> dict[str, float]:
    if len(split) < 2:
        raise ValueError("a split needs at least two targets, e.g. {offer_a: 50, offer_b: 50}")
    if not all(0 < p <= 100 for p in split.values()):  # also refuses .nan
        raise ValueError("every split percent must be above zero and at most 100")
    total = sum(split.values())
    if abs(total - 100) > 1e-9:
        raise ValueError(f"split percents must add up to 100 (they add up to {total:g})")
    return split


def _period(value: Any) -> Any:
    if value not in PERIODS:
        raise ValueError(
            f"{value!r} is not a period for every: write every: year (each anniversary of the date) "
            "or every: month (the same day each month)"
        )
    return value


TimeOfDay = Annotated[str, AfterValidator(_time_text)]
#: How often ``wait_until: {attribute, every}`` recurs.
PERIODS: tuple[str, ...] = ("year", "month")
Period = Annotated[Literal["year", "month"], BeforeValidator(_period)]
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
Split = Annotated[dict[str, float], AfterValidator(_split_percents)]


def parse_time_of_day(text: str) -> int:
    """Seconds after midnight of ``HH:MM`` or ``HH:MM:SS``; ``ValueError`` otherwise."""
    match = _TIME_OF_DAY.match(text)
    if not match:
        raise ValueError(f'{text!r} is not a time of day: write HH:MM on a 24-hour clock, e.g. "10:00"')
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)


#: The events whose local hour of the week shows when a customer engages (``best_time: {events: ...}``).
BEST_TIME_EVENTS: tuple[str, ...] = ("email_open", "email_click", "session_start")
#: The longest ``within:`` of a send at the best time: a week holds every hour of the week.
BEST_TIME_LONGEST = timedelta(days=7)


class BestTime(_Model):
    """How a send ``at: best_time`` picks each customer's hour (see docs/send-time-and-channel.md)."""

    compare: float = Field(
        0, ge=0, le=100, description="percent of instances sent at once instead, for the lift report"
    )
    events: list[Name] = Field(
        default_factory=lambda: list(BEST_TIME_EVENTS), min_length=1, description="engagement events"
    )
    lookback: PositiveDuration = Field(timedelta(days=90), description="how far back engagement is read")
    prior: float = Field(
        24, gt=0, description="pseudo-events spread as the population's pattern (shrinkage strength)"
    )


#: What answers a message on any channel (``best_channel: {responses: ...}``): the same for every channel.
BEST_CHANNEL_RESPONSES: tuple[str, ...] = ("session_start", "purchase")
_BEST = re.compile(r"^best\((.*)\)$")


class BestChannel(_Model):
    """How a send on ``channel: best(...)`` picks each customer's channel (see
    docs/send-time-and-channel.md)."""

    compare: float = Field(
        0, ge=0, le=100, description="percent of instances sent on the first listed channel instead"
    )
    responses: list[Name] = Field(
        default_factory=lambda: list(BEST_CHANNEL_RESPONSES), min_length=1, description="response events"
    )
    within: PositiveDuration = Field(timedelta(hours=24), description="a response counts this long after")
    lookback: PositiveDuration = Field(timedelta(days=180), description="how far back sends are read")
    prior: float = Field(10, gt=0, description="pseudo-sends at the population's rate (shrinkage strength)")


def parse_best_channels(text: str) -> list[str] | None:
    """The channels of ``best(email, push, sms)`` (None when ``text`` is not of that form); ``ValueError``
    for a list that cannot be used."""
    match = _BEST.match(text.strip())
    if match is None:
        return None
    names = [n.strip() for n in match.group(1).split(",") if n.strip()]
    unknown = [n for n in names if n not in CONSENT_CHANNELS]
    if unknown:
        raise ValueError(
            f"best() chooses among {', '.join(CONSENT_CHANNELS)}; {', '.join(map(repr, unknown))} is not one"
        )
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError("best() needs at least two different channels, e.g. channel: best(email, push, sms)")
    return names


class Send(_Model):
    """Render templates and send them on one channel (or on each customer's best channel, ``channel:
    best(email, push, sms)``), at once or at each customer's best time."""

    channel: Channel
    template: str = Field(description="text body template, a path under templates/")
    subject: str | None = Field(None, description="email subject, an inline template")
    html: str | None = Field(None, description="email HTML body template, a path under templates/")
    title: str | None = Field(None, description="push title, an inline template")
    link: str | None = Field(None, description="push deep link, an inline template")
    endpoint: Identifier | None = Field(None, description="webhook only: the endpoint's name")
    transactional: bool = Field(
        False, description="not marketing: the contact policy's caps and quiet hours do not apply"
    )
    at: Literal["best_time"] | None = Field(
        None, description="best_time: wait until the hour of the week the customer engages most"
    )
    within: PositiveDuration | None = Field(None, description="at: best_time: the longest wait (24h)")
    best_time: BestTime | None = Field(None, description="at: best_time: comparison share and model")
    best_of: list[ConsentChannel] | None = Field(
        None, description="channel: best(...): the channels to choose among, in the order written"
    )
    best_channel: BestChannel | None = Field(None, description="channel: best(...): comparison and model")

    @model_validator(mode="before")
    @classmethod
    def _best_channel_list(cls, value: Any) -> Any:
        # channel: best(email, push, sms) is kept as the first channel (the comparison share's) and the list.
        if not isinstance(value, dict):
            return value
        if "best_of" in value:
            raise ValueError("write the channels to choose among as channel: best(email, push, sms)")
        channel = value.get("channel")
        names = parse_best_channels(channel) if isinstance(channel, str) else None
        if names is None:
            return value
        return {**value, "channel": names[0], "best_of": names}

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel the step may send on: the ``best(...)`` list, or its one channel."""
        return tuple(self.best_of) if self.best_of else (self.channel,)

    @property
    def best_channel_options(self) -> BestChannel:
        return self.best_channel if self.best_channel is not None else BestChannel.model_validate({})

    def on_channel(self, channel: str) -> Send:
        """This send as sent on one of its channels: the fields of the other channels left out."""
        if channel == self.channel and not self.best_of:
            return self
        return self.model_copy(
            update={
                "channel": channel,
                "subject": self.subject if channel == "email" else None,
                "html": self.html if channel == "email" else None,
                "title": self.title if channel == "push" else None,
                "link": self.link if channel == "push" else None,
                "best_of": None,
            }
        )

    @model_validator(mode="after")
    def _best_time_options(self) -> Send:
        if self.at is None and (self.within is not None or self.best_time is not None):
            raise ValueError("within and best_time belong to a send at: best_time")
        if self.within is not None and self.within > BEST_TIME_LONGEST:
            raise ValueError("within is at most 7d for a send at: best_time (a week holds every hour)")
        if self.best_channel is not None and not self.best_of:
            raise ValueError("best_channel belongs to a send on channel: best(email, push, sms)")
        if self.best_of and self.at is not None:
            raise ValueError(
                "a send chooses its time (at: best_time) or its channel (channel: best(...)), not both yet"
            )
        return self

    @property
    def best_time_window(self) -> timedelta:
        """How long a send ``at: best_time`` may wait (``within``, 24h when not given)."""
        return self.within if self.within is not None else timedelta(hours=24)

    @property
    def best_time_options(self) -> BestTime:
        return self.best_time if self.best_time is not None else BestTime.model_validate({})

    @model_serializer(mode="wrap")
    def _without_unset_timing(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A send without at: means what it meant before best time existed: the journey's digest stays.
        out: dict[str, Any] = handler(self)
        for key in ("at", "within", "best_time", "best_of", "best_channel"):
            if out.get(key) is None:
                out.pop(key, None)
        if self.best_of:
            out["channel"] = f"best({', '.join(self.best_of)})"
            out.pop("best_of", None)
        return out

    @model_validator(mode="after")
    def _fields_fit_channel(self) -> Send:
        channels = self.channels
        if "email" in channels and not self.subject:
            raise ValueError(
                "an email needs a subject" if len(channels) == 1 else "best() lists email: give a subject"
            )
        if "email" not in channels and (self.subject is not None or self.html is not None):
            raise ValueError(f"subject and html are for email, not {' or '.join(channels)}")
        if "push" not in channels and (self.title is not None or self.link is not None):
            raise ValueError(f"title and link are for push, not {' or '.join(channels)}")
        if self.channel == "webhook" and not self.endpoint:
            raise ValueError("a webhook needs an endpoint (the name its URL is configured under)")
        if self.channel != "webhook" and self.endpoint is not None:
            raise ValueError(f"endpoint is for webhook, not {self.channel}")
        return self


class Branch(_Model):
    """Go to ``then`` where the test holds, else to ``else``; each is a step id, next or exit.

    The test is either a condition (``if:``, an expression) or an event (``event:``): did the customer do
    it since entering the journey (or, with ``within:``, in that long before now), optionally only events
    whose properties ``match`` the given values.
    """

    condition: Expression | None = Field(None, alias="if")
    event: Name | None = None
    match: dict[Name, MatchValue] | None = None
    since: Literal["entry"] | None = None
    within: PositiveDuration | None = None
    then: str = "next"
    otherwise: str = Field("next", alias="else")

    @model_validator(mode="after")
    def _one_test(self) -> Branch:
        if (self.condition is None) == (self.event is None):
            raise ValueError("a branch needs either if: <condition> or event: <event name>")
        if self.event is None and (self.match or self.since or self.within):
            raise ValueError("match, since and within belong to an event branch (event: ...)")
        if self.since is not None and self.within is not None:
            raise ValueError("give since: entry or within: <duration>, not both")
        return self


class WaitUntil(_Model):
    """Wait until a local time of day (``time``, ``weekdays``) or a date attribute plus ``offset``.

    With ``attribute``, ``time`` makes the wait end at that local time on the date (plus ``offset`` in
    whole days), and ``every: year`` / ``every: month`` at the next anniversary of the date (or the same
    day the next month) at ``time`` (midnight local without one), strictly after the instance reached the
    step. ``default_timezone`` is the zone of customers without a known ``timezone`` attribute.
    """

    time: TimeOfDay | None = None
    weekdays: list[Weekday] | None = Field(None, min_length=1)
    default_timezone: TimeZoneName | None = None
    attribute: Name | None = None
    offset: SignedDuration = timedelta(0)
    missing: str = "exit"
    every: Period | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WaitUntil:
        if self.time is None and self.attribute is None:
            raise ValueError('wait_until needs either time: "HH:MM" or attribute: <date attribute>')
        if self.attribute is None:
            if {"offset", "missing", "every"} & self.model_fields_set:
                raise ValueError("offset, missing and every belong to wait_until: {attribute: ...}")
        else:
            if self.weekdays is not None:
                raise ValueError("weekdays belong to wait_until: {time: ...} without an attribute")
            if (self.time is not None or self.every is not None) and self.offset % timedelta(days=1):
                raise ValueError(
                    "with time or every, offset is a whole number of days (e.g. -7d): the wait ends at a "
                    "time of day on the date moved by that many days"
                )
        if self.weekdays is not None and len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("a weekday is listed twice")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_every(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A wait without every means what it meant before every existed: its fingerprint (the journey's
        # digest) stays the same.
        out: dict[str, Any] = handler(self)
        if self.every is None:
            out.pop("every", None)
        return out

    @property
    def seconds_of_day(self) -> int:
        """Seconds after local midnight at which the wait ends (``time``; midnight when not given)."""
        return 0 if self.time is None else parse_time_of_day(self.time)


class WaitFor(_Model):
    """Wait for an event (optionally one whose properties ``match``) for at most ``timeout``."""

    event: Name
    match: dict[Name, MatchValue] | None = None
    timeout: PositiveDuration
    then: str = Field("next", description="where to go when the event comes")
    otherwise: str = Field("next", alias="else", description="where to go when the timeout passes first")


class Step(_Model):
    """One step: exactly one of send, wait, wait_until, wait_for, branch, split or exit."""

    id: Identifier | None = None
    send: Send | None = None
    wait: PositiveDuration | None = None
    wait_until: WaitUntil | None = None
    wait_for: WaitFor | None = None
    branch: Branch | None = None
    split: Split | None = Field(None, description="target -> percent of instances; sums to 100")
    exit: str | None = Field(None, description="leave the journey, with this reason")

    @model_validator(mode="before")
    @classmethod
    def _bare_exit(cls, value: Any) -> Any:
        # "- exit" on its own is the friendliest way to write the last step.
        if value == "exit":
            return {"exit": "exit step"}
        return value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"a step needs exactly one of send, wait, wait_until, wait_for, branch, split or exit "
                f"(found {found})"
            )
        return self

    @property
    def kind(self) -> str:
        for kind in STEP_KINDS:
            if getattr(self, kind) is not None:
                return kind
        raise AssertionError("validated step has no kind")


STEP_KINDS = ("send", "wait", "wait_until", "wait_for", "branch", "split", "exit")


GOAL_FROM: tuple[str, ...] = ("entry", "first_send")


class Goal(_Model):
    """A conversion: ``event`` (an event; ``revenue`` names the event property to sum, ``match`` keeps only
    events whose properties equal the given values) or ``signal`` (a condition that comes to hold for the
    customer, judged at each tick), within ``within`` of entry or, with ``from: first_send``, of the
    instance's first send step (the instant it reached it, in both arms)."""

    event: str | None = Field(None, min_length=1)
    signal: Expression | None = Field(None, description="a condition: converts at the first tick it holds")
    within: Duration
    start: Literal["entry", "first_send"] = Field(
        "entry", alias="from", description="where the goal window starts: entry or the first send"
    )
    revenue: str | None = None
    match: dict[Name, MatchValue] | None = None
    exit: bool = Field(True, description="leave the journey when the goal is reached")

    @model_validator(mode="after")
    def _event_or_signal(self) -> Goal:
        if self.event is not None and self.signal is not None:
            raise ValueError(
                "a goal is an event or a condition, not both: keep event: (goal: {event: purchase, within: "
                "14d}) or signal: (goal: {signal: <condition>, within: 7d})"
            )
        if self.event is None and self.signal is None:
            raise ValueError(
                "a goal needs event: <event name> (goal: {event: purchase, within: 14d}) or signal: "
                "<condition> (goal: {signal: <condition>, within: 7d})"
            )
        if self.signal is not None and (self.revenue is not None or self.match is not None):
            given = " and ".join(k for k in ("revenue", "match") if getattr(self, k) is not None)
            verb = "belong" if " and " in given else "belongs"
            raise ValueError(f"{given} {verb} to an event goal (event: ...), not to a signal goal")
        return self

    @property
    def what(self) -> str:
        """What the goal is, in the file's words: the event's name or the condition."""
        return self.event if self.event is not None else str(self.signal)

    @property
    def window_words(self) -> str:
        """``within 14d of entry`` or ``within 14d of the first send``."""
        anchor = "the first send" if self.start == "first_send" else "entry"
        return f"within {format_duration(self.within)} of {anchor}"


class Cooldown(_Model):
    cooldown: Duration


Reentry = Literal["never", "always", "after_exit"] | Cooldown


class Entry(_Model):
    """How customers enter: when ``signal`` becomes true, when they join ``segment``, or on each ``event``
    (one instance per distinct value of its ``key`` property). ``segment`` with a signal or an event only
    lets in customers who are in it."""

    signal: Expression | None = None
    segment: Expression | None = None
    event: Name | None = None
    key: Name | None = None
    within: PositiveDuration | None = Field(
        None, description="event entry: ignore events older than this when they reach the engine (1d)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Entry:
        if self.event is not None and self.signal is not None:
            raise ValueError("an entry is an event or a signal, not both (a segment may filter either)")
        if self.event is None and self.signal is None and self.segment is None:
            raise ValueError("entry needs a signal, a segment or an event")
        if self.event is None and (self.key is not None or self.within is not None):
            raise ValueError("key and within belong to an event entry (event: ...)")
        return self


class Migration(_Model):
    """Move in-flight instances of an older version onto this one: ``states`` maps each old step id to a
    step id of this version (or ``exit``); old steps not listed finish on their version."""

    from_version: int = Field(ge=1, le=INT32_MAX)
    states: dict[str, str] = Field(min_length=1)


class Journey(_Model):
    """A whole journey file."""

    id: Identifier
    version: int = Field(ge=1, le=INT32_MAX)
    name: str | None = None
    description: str | None = None
    priority: int = Field(
        0, ge=INT32_MIN, le=INT32_MAX, description="higher goes first when journeys compete for one customer"
    )
    metrics: dict[Identifier, Expression] = Field(default_factory=dict)
    entry: Entry | None = None
    signal: Expression | None = None
    segment: Expression | None = None
    exit_when: Expression | None = None
    holdout: float = Field(ge=0, le=100, description="percent of entrants held out as a control group")
    steps: list[Step] = Field(min_length=1)
    goal: Goal | None = None
    reentry: Reentry = "never"
    migrate: Annotated[list[Migration], BeforeValidator(_one_or_many)] = Field(default_factory=list)

    @property
    def effective_entry(self) -> Entry:
        """The entry, whether written under ``entry:`` or as top-level ``signal``/``segment`` (the loader
        checks that exactly one of the two forms is used)."""
        if self.entry is not None:
            return self.entry
        return Entry.model_validate({"signal": self.signal, "segment": self.segment})

    def step_ids(self) -> list[str]:
        """Each step's id: its declared ``id`` or ``step-N`` (1-based position)."""
        return [step.id or f"step-{i + 1}" for i, step in enumerate(self.steps)]
