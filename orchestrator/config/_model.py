"""The workspace config, ``orchestrator.yaml``, as typed models.

One file at the root of a workspace (beside ``journeys/``) says how the engine runs there::

    store: sqlite:///orchestrator.db       # or ${ORCHESTRATOR_DB}, postgresql+psycopg://...
    journeys: journeys                     # folders are relative to this file
    templates: templates
    outbox: outbox                         # where the outbox provider writes
    inbox: inbox                           # files the daemon ingests before each tick (optional)
    tick: 1m                               # the daemon's interval
    global_holdout: 5                      # percent of all customers no journey messages
    currency: EUR                          # ISO 4217: money in the reports (default: plain numbers)
    sender:
      from: "Shop <hello@shop.example>"
      reply_to: help@shop.example
    channels:                              # per channel its provider; without this section, the outbox
      email:
        provider: smtp
        host: smtp.example.com
        username: apikey
        password: ${SMTP_PASSWORD}
        rate_limit: 50                     # messages per second, across processes
    webhooks:                              # named endpoints for webhook steps
      crm:
        url: https://crm.example/hooks/journeys
        secret: ${CRM_WEBHOOK_SECRET}
    unsubscribe:
      base_url: https://shop.example/u
      keys:
        - id: k1
          secret: ${UNSUBSCRIBE_KEY_1}
    tracking:                              # clicks and opens of marketing email
      base_url: https://t.shop.example     # signed with the unsubscribe keys unless given its own keys
    http:
      listen: 127.0.0.1:8000
      api_keys:
        - id: web
          key: ${ORCHESTRATOR_WRITE_KEY}
      privacy_keys:                        # POST /v1/privacy/export (access requests)
        - id: dpo
          key: ${ORCHESTRATOR_PRIVACY_KEY}
      console:                             # the read-only console at /console/ (off without this)
        keys:
          - id: ops
            key: ${ORCHESTRATOR_CONSOLE_KEY}
    log:
      format: json
      level: info
    predict:                               # the daemon refits the purchase models its journeys read
      refit_every: 1d                      # (refit: false turns it off)
    snapshot:                              # the signal state, so a restart reads only newer events
      every: 10m                           # (enabled: false turns it off; path: default <store file>.signals)
    workers:                               # several daemons on one PostgreSQL store
      partitions: 64                       # customers split among them (0: each holds every customer)
      lease: 2m                            # a dead worker's partitions are taken over after this
    reports:                               # the daemon emails a weekly report through channels.email
      weekly:
        to: [ana@shop.example, ops@shop.example]
        day: monday
        at: "08:00"
        timezone: Europe/Paris

(``${NAME}`` is plain text in YAML's block style; inside ``{...}`` quote it: ``"${NAME}"``.)

Every section is optional; a workspace without the file runs as the engine always has (SQLite file here,
``journeys/``, every channel to the ``outbox/`` folder). Secrets are ``${NAME}`` references only (see
``_secrets``). The models know no runtime: the channels package turns a channel's section into an
adapter, the daemon reads ``tick`` and ``log``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from orchestrator.config._secrets import EnvText, Secret, SecretRef
from orchestrator.durations import parse_duration
from orchestrator.language import CHANNELS
from orchestrator.money import check_currency
from orchestrator.zones import zone_or_none

CHANNEL_NAMES: tuple[str, ...] = CHANNELS
DeliveryModeName = Literal["at_least_once", "at_most_once"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, timedelta):
        raise ValueError("write a duration with its unit, e.g. 30s, 5m or 1h")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Name = Annotated[str, Field(pattern=_NAME, max_length=64)]


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("write an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("credentials go in their own fields (as ${NAME}), not in the URL")
    if len(value) > 2048:
        raise ValueError("a URL is at most 2048 characters")
    return value


Url = Annotated[EnvText, AfterValidator(_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# -- channels --------------------------------------------------------------------------------------------


class _Channel(_Model):
    """What every channel's section has: how many provider calls run at once, at most how many messages
    a second reach the provider (across every thread and process sharing it), the delivery mode, and the
    bound on one provider call."""

    concurrency: Annotated[int, Field(ge=1, le=1024)] = 8
    rate_limit: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    delivery: DeliveryModeName = "at_least_once"
    timeout: Duration = timedelta(seconds=10)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=5):
            raise ValueError("a provider timeout is between 0 and 5m")
        return value


class OutboxChannel(_Channel):
    """Messages written as files to the workspace's ``outbox`` folder (development, demos, audits).
    ``layout``: ``files``, one file per message (the default), or ``spool``, one JSON-lines file per
    dispatch batch with one fsync each (``orchestrator outbox-unpack`` turns spools into the files)."""

    provider: Literal["outbox"]
    layout: Literal["files", "spool"] = "files"


class SmtpChannel(_Channel):
    """Email through an SMTP server, over a pool of reused connections: ``concurrency`` is the number of
    connections (and of messages in flight)."""

    provider: Literal["smtp"]
    host: EnvText
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: EnvText | None = None
    password: SecretRef | None = None

    @model_validator(mode="after")
    def _login(self) -> SmtpChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (as ${NAME}), or neither")
        return self


class TwilioChannel(_Channel):
    """SMS through Twilio's Messages API (a form POST), or any gateway speaking the same."""

    provider: Literal["twilio"]
    account_sid: EnvText
    auth_token: SecretRef
    from_: Annotated[EnvText, Field(alias="from")]
    url: Url | None = None  # default: Twilio's own API for the account


class HttpSmsChannel(_Channel):
    """SMS through another gateway: a JSON POST with to, from, body and the idempotency key."""

    provider: Literal["http"]
    url: Url
    from_: Annotated[EnvText, Field(alias="from")]
    token: SecretRef | None = None  # sent as a bearer token
    id_field: str = "id"  # where the gateway's answer names its message id


class FcmChannel(_Channel):
    """Push through Firebase Cloud Messaging (HTTP v1) with a service account's OAuth2 tokens."""

    provider: Literal["fcm"]
    project_id: EnvText
    credentials_file: EnvText  # the service account's JSON key file
    url: Url | None = None  # default: https://fcm.googleapis.com/v1/projects/{project_id}/messages:send


class ApnsChannel(_Channel):
    """Push through Apple's APNs over HTTP/2, with token (JWT) authentication."""

    provider: Literal["apns"]
    team_id: EnvText
    key_id: EnvText
    key_file: EnvText  # the .p8 signing key
    topic: EnvText  # the app's bundle id
    environment: Literal["production", "sandbox"] = "production"
    url: Url | None = None  # default: Apple's host for the environment


class HttpWebhookChannel(_Channel):
    """Webhook steps POST signed JSON to the endpoints named under ``webhooks``."""

    provider: Literal["http"]


EmailChannel = Annotated[OutboxChannel | SmtpChannel, Field(discriminator="provider")]
SmsChannel = Annotated[OutboxChannel | TwilioChannel | HttpSmsChannel, Field(discriminator="provider")]
PushChannel = Annotated[OutboxChannel | FcmChannel | ApnsChannel, Field(discriminator="provider")]
WebhookChannel = Annotated[OutboxChannel | HttpWebhookChannel, Field(discriminator="provider")]
AnyChannel = (
    OutboxChannel
    | SmtpChannel
    | TwilioChannel
    | HttpSmsChannel
    | FcmChannel
    | ApnsChannel
    | HttpWebhookChannel
)


class Channels(_Model):
    email: EmailChannel | None = None
    sms: SmsChannel | None = None
    push: PushChannel | None = None
    webhook: WebhookChannel | None = None

    def configured(self) -> dict[str, AnyChannel]:
        """The channels this section routes, by name."""
        return {name: section for name in CHANNEL_NAMES if (section := getattr(self, name)) is not None}


# -- the rest --------------------------------------------------------------------------------------------


class Sender(_Model):
    """Who email comes from. ``message_id_domain`` defaults to the domain of ``from``."""

    from_: Annotated[EnvText, Field(alias="from", min_length=3)]
    reply_to: EnvText | None = None
    envelope_from: EnvText | None = None  # MAIL FROM, where bounces go (default: the from address)
    message_id_domain: EnvText | None = None


class Webhook(_Model):
    url: Url
    secret: SecretRef


class SigningKey(_Model):
    id: Name
    secret: SecretRef


def _unique_ids(keys: list[SigningKey] | None) -> None:
    ids = [key.id for key in keys or ()]
    if len(set(ids)) != len(ids):
        raise ValueError("each signing key needs its own id")


class Unsubscribe(_Model):
    """Signed unsubscribe links ``<base_url>/<token>`` (the HTTP service answers them at ``/u/<token>``).
    The first key signs; every listed key verifies, so a key can be rotated out by adding a new one first
    and removing the old one once its links have expired."""

    base_url: Url
    keys: Annotated[list[SigningKey], Field(min_length=1)]
    mailto: EnvText | None = None

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError("one-click unsubscribe (RFC 8058) needs an https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("the token is added to the path: write the URL without ?query or #fragment")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Unsubscribe:
        _unique_ids(self.keys)
        return self


class Tracking(_Model):
    """Tracked clicks ``<base_url>/c/<token>`` and the open pixel ``<base_url>/o/<token>.gif`` in marketing
    email; ``opens``/``clicks`` turn each off. Signed with ``keys`` when given, else the unsubscribe keys."""

    base_url: Url
    opens: bool = True
    clicks: bool = True
    keys: Annotated[list[SigningKey], Field(min_length=1)] | None = None

    @field_validator("base_url")
    @classmethod
    def _no_query(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("links are added to the path: write the URL without ?query or #fragment")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Tracking:
        _unique_ids(self.keys)
        return self


class ApiKey(_Model):
    id: Name
    key: SecretRef


#: The shortest console key taken: the key signs the console's sessions when no ``session_secret`` is set.
MIN_CONSOLE_KEY = 16


class Console(_Model):
    """The read-only console in the browser (``/console/``): the keys an operator logs in with, the secret
    that signs its session cookies (default: derived from the keys), how long a session lasts, and whether
    the cookie is sent over HTTPS only (set it when a TLS proxy is in front)."""

    keys: Annotated[list[ApiKey], Field(min_length=1)]
    session_secret: SecretRef | None = None
    session: Duration = timedelta(hours=8)
    secure_cookie: bool = False

    @model_validator(mode="after")
    def _checked(self) -> Console:
        ids = [key.id for key in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("each console key needs its own id")
        for key in self.keys:
            if key.key.is_set and len(key.key.reveal()) < MIN_CONSOLE_KEY:
                raise ValueError(
                    f"the console key {key.id!r} (${{{key.key.name}}}) is too short: at least "
                    f"{MIN_CONSOLE_KEY} characters"
                )
        if self.session <= timedelta(0):
            raise ValueError("the console's session must last longer than zero")
        return self


class Http(_Model):
    """The HTTP service: where it listens, the write keys apps authenticate with, and the console."""

    listen: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]-]+:\d{1,5}$")] = "127.0.0.1:8000"
    api_keys: list[ApiKey] = Field(default_factory=list)
    # Keys of the privacy API (access requests), never the write keys apps carry.
    privacy_keys: list[ApiKey] = Field(default_factory=list)
    console: Console | None = None

    @model_validator(mode="after")
    def _unique(self) -> Http:
        ids = [key.id for key in self.api_keys]
        if len(set(ids)) != len(ids):
            raise ValueError("each API key needs its own id")
        privacy = [key.id for key in self.privacy_keys]
        if len(set(privacy)) != len(privacy):
            raise ValueError("each privacy key needs its own id")
        port = int(self.listen.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        return self


class Log(_Model):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Predict(_Model):
    """The purchase models' refit by the daemon: whether it refits the fits its journeys read, and how
    old the newest fit may grow before the next (``engine._refit``)."""

    refit: bool = True
    refit_every: Duration = timedelta(days=1)

    @field_validator("refit_every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=10) <= value <= timedelta(days=90):
            raise ValueError("the refit interval is between 10m and 90d")
        return value


WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")
_HOUR = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class WeeklyReport(_Model):
    """The weekly report the daemon emails (the portfolio and an analytics summary): to whom, on which
    local day and hour of the week, in which time zone, with which subject (default: one naming the
    week), and an optional link to the console shown at its foot."""

    to: Annotated[list[EnvText], Field(min_length=1, max_length=100)]
    day: str = "monday"
    at: str = "08:00"
    timezone: str = "UTC"
    subject: Annotated[EnvText, Field(min_length=1, max_length=200)] | None = None
    console_url: Url | None = None

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _ADDRESS.fullmatch(address.strip()):
                raise ValueError(f"{address!r} is not an email address (write name@domain, one per item)")
        if len({a.strip().lower() for a in value}) != len(value):
            raise ValueError("an address is listed twice")
        return [a.strip() for a in value]

    @field_validator("day")
    @classmethod
    def _day(cls, value: str) -> str:
        if value.lower() not in WEEKDAYS:
            raise ValueError(f"the day is one of {', '.join(WEEKDAYS)}, not {value!r}")
        return value.lower()

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> str:
        if not isinstance(value, str) or not _HOUR.fullmatch(value):
            raise ValueError(f'write the local time as "HH:MM" (quoted), e.g. "08:00", not {value!r}')
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if zone_or_none(value) is None:
            raise ValueError(
                f"{value!r} is not a time zone this machine knows (an IANA name, e.g. Europe/Paris)"
            )
        return value

    @property
    def weekday(self) -> int:
        """The day as a number, Monday 0."""
        return WEEKDAYS.index(self.day)

    @property
    def seconds_of_day(self) -> int:
        hours, minutes = self.at.split(":")
        return int(hours) * 3600 + int(minutes) * 60


class Snapshot(_Model):
    """The signal state's snapshot, which lets a restart read only the events that came after it
    (``engine._state_snapshot``): on or off, where (default: beside a SQLite store's file,
    ``<file>.signals``; on PostgreSQL none unless given, one path per worker), and how often the daemon
    writes it (and at shutdown)."""

    enabled: bool = True
    path: EnvText | None = None
    every: Duration = timedelta(minutes=10)

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("the snapshot interval is between 1s and 1d")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value.endswith(("/", "\\"))):
            raise ValueError("write the snapshot's file name (a folder or an empty path is not one)")
        return value


class Workers(_Model):
    """How several engine processes share one PostgreSQL store (``engine._workers``): ``partitions``
    splits the customers into that many partitions held by the workers through leases (each worker then
    holds the signal state of its own customers only; 0, the default: every worker holds every customer),
    ``lease`` is how long a partition stays with a worker that stopped renewing it (a dead worker's
    partitions are taken over after it; each tick renews it, so it must be longer than a tick). Ignored on
    SQLite, which one process runs."""

    partitions: Annotated[int, Field(ge=0, le=4096)] = 0
    lease: Duration = timedelta(minutes=2)

    @field_validator("lease")
    @classmethod
    def _lease(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("the lease is between 1s and 1d")
        return value


class Reports(_Model):
    """Reports the daemon sends by itself."""

    weekly: WeeklyReport | None = None


class ConfigFile(_Model):
    """The whole of ``orchestrator.yaml``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True
    )

    store: Annotated[EnvText | None, Field(repr=False)] = None  # may hold a password from ${NAME}
    journeys: EnvText = "journeys"
    templates: EnvText | None = None
    outbox: EnvText = "outbox"
    inbox: EnvText | None = None
    tick: Duration = timedelta(minutes=1)
    global_holdout: Annotated[float, Field(ge=0, le=100)] = 0.0
    currency: str | None = None  # ISO 4217 code: how the reports write money
    sender: Sender | None = None
    channels: Channels | None = None
    webhooks: dict[Name, Webhook] = Field(default_factory=dict)
    unsubscribe: Unsubscribe | None = None
    tracking: Tracking | None = None
    http: Http = Field(default_factory=Http)
    log: Log = Field(default_factory=Log)
    predict: Predict = Field(default_factory=Predict)
    reports: Reports = Field(default_factory=Reports)
    snapshot: Snapshot = Field(default_factory=Snapshot)
    workers: Workers = Field(default_factory=Workers)

    @field_validator("tick")
    @classmethod
    def _tick(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("the tick interval is between 1s and 1d")
        return value

    @model_validator(mode="after")
    def _webhooks(self) -> ConfigFile:
        channels = self.channels.configured() if self.channels else {}
        if isinstance(channels.get("webhook"), HttpWebhookChannel) and not self.webhooks:
            raise ValueError("channels.webhook sends to the endpoints under webhooks:, and none is named")
        return self

    @model_validator(mode="after")
    def _lease_outlives_tick(self) -> ConfigFile:
        if self.workers.partitions and self.workers.lease <= self.tick:
            raise ValueError(
                "workers.lease must be longer than the tick interval (each tick renews it); "
                f"it is {_text(self.workers.lease)} for a tick of {_text(self.tick)}"
            )
        return self

    @model_validator(mode="after")
    def _reports(self) -> ConfigFile:
        if self.reports.weekly is not None and self.channels is not None and self.channels.email is None:
            raise ValueError(
                "reports.weekly is sent through channels.email, and the channels section sets none"
            )
        return self

    @model_validator(mode="after")
    def _tracking_keys(self) -> ConfigFile:
        if self.tracking is not None and self.tracking.keys is None and self.unsubscribe is None:
            raise ValueError("tracking links are signed: give tracking.keys, or an unsubscribe section")
        return self

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else check_currency(value)


def _text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 and seconds >= 60 else f"{seconds}s"


def secrets_of(model: BaseModel) -> list[tuple[tuple[str | int, ...], Secret]]:
    """Every ``Secret`` in ``model``, with its path (field names by their YAML key, list indexes)."""
    found: list[tuple[tuple[str | int, ...], Secret]] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, Secret):
            found.append((path, value))
        elif isinstance(value, BaseModel):
            for name, info in type(value).model_fields.items():
                walk(getattr(value, name), (*path, info.alias or name))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(item, (*path, index))

    walk(model, ())
    return found
