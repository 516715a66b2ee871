"""The journey language as typed models.

A journey file is validated into these frozen pydantic models. Unknown keys are errors, types are strict
(``template: 12`` is not quietly turned into ``"12"``), and durations must carry a unit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from orchestrator.durations import parse_duration


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 30m, 4h or 3d")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Channel = Literal["email", "sms", "push"]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)]
Expression = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Send(_Model):
    """Render templates and send them on one channel."""

    channel: Channel
    template: str = Field(description="text body template, a path under templates/")
    subject: str | None = Field(None, description="email subject, an inline template")
    html: str | None = Field(None, description="email HTML body template, a path under templates/")
    title: str | None = Field(None, description="push title, an inline template")
    link: str | None = Field(None, description="push deep link, an inline template")

    @model_validator(mode="after")
    def _fields_fit_channel(self) -> Send:
        if self.channel == "email" and not self.subject:
            raise ValueError("an email needs a subject")
        if self.channel != "email" and (self.subject is not None or self.html is not None):
            raise ValueError(f"subject and html are for email, not {self.channel}")
        if self.channel != "push" and (self.title is not None or self.link is not None):
            raise ValueError(f"title and link are for push, not {self.channel}")
        return self


class Branch(_Model):
    """Go to ``then`` where the condition holds, else to ``else``; each is a step id, next or exit."""

    condition: Expression = Field(alias="if")
    then: str = "next"
    otherwise: str = Field("next", alias="else")


class Step(_Model):
    """One step: exactly one of send, wait, branch or exit."""

    id: Identifier | None = None
    send: Send | None = None
    wait: Duration | None = None
    branch: Branch | None = None
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
        kinds = [k for k in ("send", "wait", "branch", "exit") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a step needs exactly one of send, wait, branch or exit (found {found})")
        return self

    @property
    def kind(self) -> str:
        for kind in ("send", "wait", "branch", "exit"):
            if getattr(self, kind) is not None:
                return kind
        raise AssertionError("validated step has no kind")


class Goal(_Model):
    """A conversion: ``event`` within ``within`` of entry; ``revenue`` names the event property to sum."""

    event: str = Field(min_length=1)
    within: Duration
    revenue: str | None = None
    exit: bool = Field(True, description="leave the journey when the goal is reached")


class Cooldown(_Model):
    cooldown: Duration


Reentry = Literal["never", "always", "after_exit"] | Cooldown


class Journey(_Model):
    """A whole journey file."""

    id: Identifier
    version: int = Field(ge=1)
    name: str | None = None
    description: str | None = None
    metrics: dict[Identifier, Expression] = Field(default_factory=dict)
    signal: Expression
    segment: Expression | None = None
    holdout: float = Field(ge=0, le=100, description="percent of entrants held out as a control group")
    steps: list[Step] = Field(min_length=1)
    goal: Goal | None = None
    reentry: Reentry = "never"

    def step_ids(self) -> list[str]:
        """Each step's id: its declared ``id`` or ``step-N`` (1-based position)."""
        return [step.id or f"step-{i + 1}" for i, step in enumerate(self.steps)]
