"""The contact policy (``policy.yaml``): rules above every journey, as typed models.

A workspace has at most one policy, found as ``policy.yaml`` in the folder of its journey files or the
folder above it (next to ``journeys/``). It declares, for marketing messages (sends not declared
``transactional: true``):

- ``caps``: at most so many messages per local calendar day and per local calendar week (Monday to
  Sunday in the customer's time zone), per channel and across all channels (``all``);
- ``quiet_hours``: per channel, a local time window in which nothing is sent; ``hold`` delays the message to
  the window's end, ``drop`` suppresses it;

and for every message:

- ``consent``: a customer whose ``consent_<channel>`` is false gets nothing on that channel; channels listed
  under ``transactional_without_consent`` let a declared transactional send through anyway. A customer
  with no consent on record for a channel gets no marketing message there unless ``missing`` declares the
  channel ``opt_out`` (the default is ``opt_in``: no record, no marketing message); a transactional send
  needs no record;
- ``exclusions``: conditions over customer attributes (the signal language, no event aggregates) that no
  journey can override, e.g. ``vulnerable == true``; ``applies_to: marketing`` (the default) spares
  transactional sends, ``all`` does not.

Problems are reported as ``file:line:column: message``, like a journey file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.language._channels import Channel, ConsentChannel
from orchestrator.language._models import (
    Expression,
    Identifier,
    TimeOfDay,
    TimeZoneName,
    parse_time_of_day,
)
from orchestrator.language._schema_errors import schema_problems
from orchestrator.language._yamlio import Problem, SpecError, load_yaml, read_text
from orchestrator.signals import _lang as lang

POLICY_FILE = "policy.yaml"
CapScope = Literal["all", Channel]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Cap(_Model):
    """At most ``per_day`` and ``per_week`` marketing messages (local calendar day and week)."""

    per_day: Annotated[int, Field(ge=0)] | None = None
    per_week: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> Cap:
        if self.per_day is None and self.per_week is None:
            raise ValueError("a cap needs per_day, per_week or both")
        return self


class QuietHours(_Model):
    """No marketing message on the channel from ``start`` to ``end`` local time (across midnight when
    ``end`` comes before ``start``)."""

    start: TimeOfDay = Field(alias="from")
    end: TimeOfDay = Field(alias="to")
    action: Literal["hold", "drop"] = "hold"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if parse_time_of_day(self.start) == parse_time_of_day(self.end):
            raise ValueError("quiet hours need different from and to times")
        return self

    @property
    def start_s(self) -> int:
        return parse_time_of_day(self.start)

    @property
    def end_s(self) -> int:
        return parse_time_of_day(self.end)


class Consent(_Model):
    """What consent means, per channel.

    ``missing``: what a customer with no consent on record gets on the channel: ``opt_in`` (the default:
    they must have said yes, so no marketing message) or ``opt_out`` (yes unless they said no). A
    transactional send goes without a record; a recorded no stops it too, unless the channel is listed in
    ``transactional_without_consent``."""

    missing: dict[ConsentChannel, Literal["opt_in", "opt_out"]] = Field(default_factory=dict)
    transactional_without_consent: list[Channel] = Field(default_factory=list)

    def opt_in(self, channel: str) -> bool:
        """Whether a marketing message on ``channel`` needs a recorded yes."""
        return self.missing.get(channel, "opt_in") == "opt_in"  # type: ignore[call-overload]


class Exclusion(_Model):
    name: Identifier
    when: Expression
    applies_to: Literal["marketing", "all"] = "marketing"


class Policy(_Model):
    """A whole ``policy.yaml``."""

    caps: dict[CapScope, Cap] = Field(default_factory=dict)
    quiet_hours: dict[Channel, QuietHours] = Field(default_factory=dict)
    consent: Consent = Field(default_factory=Consent)
    exclusions: list[Exclusion] = Field(default_factory=list)
    default_timezone: TimeZoneName = "UTC"


@dataclass(frozen=True)
class ContactPolicy:
    """A loaded policy: the model, its parsed exclusion conditions and where it came from."""

    policy: Policy
    exclusions: tuple[tuple[Exclusion, lang.Node], ...]
    file: str

    @property
    def caps(self) -> dict[str, Cap]:
        return {str(scope): cap for scope, cap in self.policy.caps.items()}

    @property
    def quiet_hours(self) -> dict[str, QuietHours]:
        return {str(channel): quiet for channel, quiet in self.policy.quiet_hours.items()}


def load_policy(path: str | Path) -> ContactPolicy:
    """Read and check one ``policy.yaml``; raises ``SpecError`` listing every problem."""
    path = Path(path)
    return load_policy_text(read_text(path), str(path))


def load_policy_text(text: str, file: str) -> ContactPolicy:
    data, locations = load_yaml(text, file)
    if not isinstance(data, dict):
        raise SpecError([Problem(file, 1, 1, "a policy file must be a mapping of caps, quiet_hours, ...")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise SpecError(schema_problems(exc, data, locations, file, Policy, "policy")) from None
    problems: list[Problem] = []
    exclusions = []
    for i, exclusion in enumerate(policy.exclusions):
        loc = locations.of(("exclusions", i, "when"))
        try:
            node = lang.parse(exclusion.when)
        except lang.ExpressionError as exc:
            problems.append(Problem(file, loc.line, loc.column, f"exclusions[{i}].when: {exc}"))
            continue
        if lang.aggregates(node) or any(len(name.parts) != 1 for name in lang.free_names(node)):
            problems.append(
                Problem(
                    file,
                    loc.line,
                    loc.column,
                    f"exclusions[{i}].when: an exclusion reads customer attributes only, not events",
                )
            )
            continue
        exclusions.append((exclusion, node))
    if problems:
        raise SpecError(problems)
    return ContactPolicy(policy, tuple(exclusions), file)


def find_policy(journey_files: list[Path]) -> Path | None:
    """The ``policy.yaml`` of a set of journey files: in a journey file's folder or the folder above it.

    Two different policies for one workspace are refused (``SpecError``): the rules must be one."""
    found: dict[Path, Path] = {}
    for journey in journey_files:
        folder = journey.resolve().parent
        for candidate in (folder / POLICY_FILE, folder.parent / POLICY_FILE):
            if candidate.is_file():
                found.setdefault(candidate, journey)
                break
    if len(found) > 1:
        listing = ", ".join(str(p) for p in found)
        raise SpecError(
            [Problem(str(next(iter(found))), 1, 1, f"one policy per workspace, found: {listing}")]
        )
    return next(iter(found), None)


def policy_for(journey_files: list[Path]) -> tuple[ContactPolicy | None, list[Problem]]:
    """The loaded policy of a set of journey files (None without a ``policy.yaml``) and its problems."""
    try:
        path = find_policy([f for f in journey_files if f.exists()])
        return (load_policy(path) if path is not None else None), []
    except SpecError as exc:
        return None, list(exc.problems)
