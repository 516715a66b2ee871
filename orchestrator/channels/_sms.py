"""SMS: phone numbers in E.164, GSM-7/UCS-2 segment counting, and two HTTP provider adapters: a Twilio-style
form POST (``HttpSmsAdapter``) and a generic JSON POST for other gateways (``JsonSmsAdapter``).

Segments: a single SMS holds 160 GSM-7 characters or 70 UCS-2 code units; a longer text is split into
parts of 153 or 67 (the rest of each part carries the header that joins them). GSM-7's extension
characters ``^ { } \\ [ ~ ] | €`` (and form feed) take two septets, and an escape pair is never split
across parts; in UCS-2 a character outside the Basic Multilingual Plane (most emoji) takes two code units
and a surrogate pair is never split either. One character outside GSM-7 turns the whole text into UCS-2.

``SmsRules`` refuses, before any provider call, what must not be sent: a number that is not a valid phone
number (a permanent failure that suppresses the number), an empty text, or a text longer than
``max_segments`` (permanent, with the count in the reason: each segment is billed).
"""

from __future__ import annotations

import base64
import json
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import orjson
import phonenumbers

from orchestrator.channels._base import DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys, key_header_value
from orchestrator.channels._limits import ProviderLimits
from orchestrator.channels._transport import (
    Endpoint,
    HttpClient,
    HttpDelivery,
    HttpResponse,
    ProviderRequest,
)
from orchestrator.errors import DeliveryError

# GSM 03.38 default alphabet (ESC, 0x1B, left out: it is not a character one can send) and its extension
# table, whose characters are sent as ESC + character and so count twice.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")
_GSM7 = GSM7_BASIC | GSM7_EXTENDED

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SmsSegments:
    """How a text travels: its encoding, its length in septets (GSM-7) or code units (UCS-2), its parts."""

    encoding: Encoding
    units: int
    segments: int


def count_segments(text: str) -> SmsSegments:
    """The encoding and number of SMS segments ``text`` needs (0 for an empty text)."""
    if set(text) <= _GSM7:
        doubled = sum(text.count(char) for char in GSM7_EXTENDED)
        widths = None if not doubled else [2 if char in GSM7_EXTENDED else 1 for char in text]
        return _segments("GSM-7", len(text) + doubled, 160, 153, widths)
    units = len(text.encode("utf-16-le")) // 2
    widths = None if units == len(text) else [2 if ord(char) > 0xFFFF else 1 for char in text]
    return _segments("UCS-2", units, 70, 67, widths)


def _segments(
    encoding: Encoding, units: int, single: int, part: int, widths: list[int] | None
) -> SmsSegments:
    if units == 0:
        return SmsSegments(encoding, 0, 0)
    if units <= single:
        return SmsSegments(encoding, units, 1)
    if widths is None:  # every character one unit: nothing can straddle two parts
        return SmsSegments(encoding, units, math.ceil(units / part))
    count, used = 1, 0
    for width in widths:
        if used + width > part:  # a two-unit character that does not fit starts the next part
            count, used = count + 1, 0
        used += width
    return SmsSegments(encoding, units, count)


# -- numbers ------------------------------------------------------------------------------------------


class InvalidNumber(DeliveryError, ValueError):
    """Not a valid phone number; the message says why."""


_POSSIBLE_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "is too short",
    phonenumbers.ValidationResult.TOO_LONG: "is too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "has a length no number of its country has",
}


@lru_cache(maxsize=65_536)  # phonenumbers takes ~40 µs a number; customers get many messages
def normalise_number(raw: str, default_region: str | None = None) -> str:
    """``raw`` as an E.164 number (``+14155550123``); ``InvalidNumber`` with the reason otherwise.

    A number without a ``+`` country prefix is read as a national number of ``default_region`` (an ISO
    3166 code such as ``US`` or ``GB``); without a region it must carry its country prefix.
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"phone number {raw!r} cannot be read: {exc._msg}") from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible in _POSSIBLE_REASONS:
        raise InvalidNumber(f"phone number {raw!r} {_POSSIBLE_REASONS[possible]}")
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumber(f"phone number {raw!r} is not a valid number in its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# -- rules --------------------------------------------------------------------------------------------


class SmsRefused(DeliveryError, ValueError):
    """A message that must not be sent; ``code`` and ``suppress`` as in ``DeliveryResult``."""

    def __init__(self, message: str, *, code: str, suppress: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.suppress = suppress

    def result(self) -> DeliveryResult:
        return DeliveryResult.failed(str(self), code=self.code, suppress=self.suppress)


@dataclass(frozen=True)
class PreparedSms:
    to: str
    body: str
    segments: SmsSegments


@dataclass(frozen=True)
class SmsRules:
    """The checks every SMS passes before a provider sees it (see the module docstring)."""

    default_region: str | None = None
    max_segments: int = 4

    def __post_init__(self) -> None:
        if self.default_region is not None and self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"unknown default region {self.default_region!r} (use an ISO 3166 code like 'US')"
            )
        if self.max_segments < 1:
            raise ValueError("max_segments must be at least 1")

    def prepare(self, message: OutgoingMessage) -> PreparedSms:
        """The normalised number and segment count of ``message``; ``SmsRefused`` if it must not be sent."""
        try:
            to = normalise_number(message.recipient, self.default_region)
        except InvalidNumber as exc:
            raise SmsRefused(str(exc), code="invalid_number", suppress=True) from None
        if not message.body.isascii():
            try:
                message.body.encode("utf-8")
            except UnicodeEncodeError:
                raise SmsRefused("the SMS text is not valid Unicode text", code="invalid_body") from None
        segments = count_segments(message.body)
        if segments.segments == 0:
            raise SmsRefused("the SMS text is empty", code="empty")
        if segments.segments > self.max_segments:
            raise SmsRefused(
                f"the SMS needs {segments.segments} segments ({segments.units} {segments.encoding} "
                f"{'septets' if segments.encoding == 'GSM-7' else 'code units'}), over the maximum of "
                f"{self.max_segments}",
                code="too_long",
            )
        return PreparedSms(to, message.body, segments)


# -- the provider adapters -----------------------------------------------------------------------------

# Twilio error codes that are about the recipient: invalid "To" number, unsubscribed (STOP), unreachable
# by SMS, not a mobile number.
TWILIO_RECIPIENT_ERRORS = frozenset({21211, 21610, 21612, 21614})
TWILIO_URL = "https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Messages.json"


def twilio_url(account_sid: str) -> str:
    """Twilio's own "create message" endpoint for the account."""
    return TWILIO_URL.format(account_sid=quote(account_sid, safe=""))


@dataclass(frozen=True)
class TwilioSmsSettings:
    """A Twilio-style SMS API: ``url`` is its "create message" endpoint (for Twilio,
    ``https://api.twilio.com/2010-04-01/Accounts/<sid>/Messages.json``), ``sender`` the number or sender id
    messages come from, ``account_sid``/``auth_token`` the basic-auth credentials (the token never appears
    in ``repr``). ``recipient_errors``: the JSON error ``code`` values that mean the number itself is at
    fault. ``limits``: calls in flight and messages per second (see ``limits``)."""

    url: str
    sender: str
    account_sid: str
    auth_token: str = field(repr=False)
    timeout_s: float = 10.0
    idempotency_header: str = "Idempotency-Key"
    recipient_errors: frozenset[int] = TWILIO_RECIPIENT_ERRORS
    limits: ProviderLimits = field(default_factory=ProviderLimits)
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if not self.sender:
            raise ValueError("an SMS sender (number or sender id) is required")
        Endpoint.parse(self.url)


class HttpSmsAdapter(HttpDelivery):
    """Sends SMS through a Twilio-style API: a form POST of ``To``, ``From`` and ``Body`` with basic auth.

    Built from ``TwilioSmsSettings``, or from the URL and the same fields as keywords
    (``HttpSmsAdapter(url, sender=..., account_sid=..., auth_token=...)``). The idempotency key goes in the
    ``idempotency_header`` so the provider can drop a resend; the provider's message id (``sid`` in its JSON
    answer) becomes the ``provider_id``. A 4xx whose JSON ``code`` is in ``recipient_errors`` suppresses the
    number. One pooled HTTP client per adapter (``close()`` closes it).
    """

    channels: frozenset[str] = frozenset({"sms"})

    def __init__(
        self,
        settings: TwilioSmsSettings | str,
        *,
        rules: SmsRules | None = None,
        sent_keys: SentKeys | None = None,
        state_dir: Path | bool | None = True,
        **options: Any,
    ) -> None:
        if isinstance(settings, str):
            settings = TwilioSmsSettings(url=settings, **options)
        elif options:
            raise TypeError(f"give either TwilioSmsSettings or keywords, not both ({', '.join(options)})")
        self.settings = settings
        self.client = HttpClient(
            settings.url,
            timeout_s=settings.timeout_s,
            ssl_context=settings.ssl_context,
            max_connections=settings.limits.concurrency,
        )
        self.sender = settings.sender
        self.rules = rules or SmsRules()
        self.idempotency_header = settings.idempotency_header
        self.recipient_errors = settings.recipient_errors
        self.concurrency = settings.limits.concurrency
        credentials = f"{settings.account_sid}:{settings.auth_token}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._provider = f"SMS provider {self.client.endpoint.host}"
        self._limiter = settings.limits.limiter(f"sms:{settings.url}:{settings.account_sid}", state_dir)

    def _request(self, message: OutgoingMessage) -> ProviderRequest | DeliveryResult:
        try:
            sms = self.rules.prepare(message)
        except SmsRefused as exc:
            return exc.result()
        form = urlencode({"To": sms.to, "From": self.sender, "Body": sms.body}).encode("ascii")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": self._authorization,
            self.idempotency_header: key_header_value(message.idempotency_key),
        }
        return ProviderRequest(self.client, self._provider, form, headers)

    adapter_name = "the SMS adapter"

    def _answer(self, response: HttpResponse, message: OutgoingMessage) -> tuple[str | None, bool]:
        """The message id (``sid``) and whether the error ``code`` is about the recipient."""
        answer = _json_object(response.body)
        sid = answer.get("sid")
        error_code = answer.get("code")
        return (
            sid if isinstance(sid, str) and sid else None,
            isinstance(error_code, int) and error_code in self.recipient_errors,
        )

    def close(self) -> None:
        """Close the pooled connections and release the rate limiter's file."""
        self.client.close()
        if self._limiter is not None:
            self._limiter.close()


@dataclass(frozen=True)
class JsonSmsSettings:
    """A generic SMS gateway that takes a JSON POST.

    The body is ``{to_field: number, from_field: sender, body_field: text, key_field: idempotency key}``
    plus ``extra_fields`` (fixed values the gateway wants, such as ``{"type": "text"}``); ``key_field`` and
    ``idempotency_header`` may be ``None`` when the gateway has no use for them. Authentication: a bearer
    token, or basic auth with ``username``/``password``, or neither (the secrets never appear in ``repr``).
    The provider id is read from the answer at ``id_field``, a dotted path (``id``, ``data.id``,
    ``messages.0.message-id``); when ``error_field`` is set, an error answer whose value there is in
    ``recipient_errors`` (compared as text) suppresses the number.
    """

    url: str
    sender: str
    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    to_field: str = "to"
    from_field: str = "from"
    body_field: str = "body"
    key_field: str | None = "idempotency_key"
    id_field: str = "id"
    error_field: str | None = None
    recipient_errors: frozenset[str] = frozenset()
    extra_fields: Mapping[str, str | int | bool] = field(default_factory=dict)
    idempotency_header: str | None = "Idempotency-Key"
    timeout_s: float = 10.0
    limits: ProviderLimits = field(default_factory=ProviderLimits)
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if not self.sender:
            raise ValueError("an SMS sender (number or sender id) is required")
        Endpoint.parse(self.url)
        if self.bearer_token is not None and (self.username is not None or self.password is not None):
            raise ValueError("give a bearer token or a username and password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        named = [
            self.to_field,
            self.from_field,
            self.body_field,
            *([self.key_field] if self.key_field else []),
        ]
        if len(set(named)) != len(named) or not all(named):
            raise ValueError("the to, from, body and key fields need distinct, non-empty names")
        clash = sorted(set(named) & set(self.extra_fields))
        if clash:
            raise ValueError(f"extra_fields may not set {', '.join(clash)}: the adapter fills them")
        if not self.id_field:
            raise ValueError("id_field must name where the gateway's message id is")


class JsonSmsAdapter(HttpDelivery):
    """Sends SMS through a gateway that takes JSON (see ``JsonSmsSettings``), with the same checks as the
    Twilio-style adapter (``SmsRules``: E.164 numbers, segment limit) and the same outcomes. One pooled HTTP
    client per adapter (``close()`` closes it)."""

    channels: frozenset[str] = frozenset({"sms"})

    def __init__(
        self,
        settings: JsonSmsSettings,
        *,
        rules: SmsRules | None = None,
        sent_keys: SentKeys | None = None,
        state_dir: Path | bool | None = True,
    ) -> None:
        self.settings = settings
        self.rules = rules or SmsRules()
        self.concurrency = settings.limits.concurrency
        self.client = HttpClient(
            settings.url,
            timeout_s=settings.timeout_s,
            ssl_context=settings.ssl_context,
            max_connections=settings.limits.concurrency,
        )
        self._headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}
        if settings.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.bearer_token}"
        elif settings.username is not None and settings.password is not None:
            credentials = f"{settings.username}:{settings.password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._provider = f"SMS gateway {self.client.endpoint.host}"
        self._limiter = settings.limits.limiter(
            f"sms-json:{settings.url}:{settings.username or ''}", state_dir
        )

    def _request(self, message: OutgoingMessage) -> ProviderRequest | DeliveryResult:
        try:
            sms = self.rules.prepare(message)
        except SmsRefused as exc:
            return exc.result()
        s = self.settings
        document: dict[str, Any] = dict(s.extra_fields)
        document.update({s.to_field: sms.to, s.from_field: s.sender, s.body_field: sms.body})
        if s.key_field:
            document[s.key_field] = message.idempotency_key
        try:
            body = orjson.dumps(document)
        except orjson.JSONEncodeError as exc:  # a lone surrogate in the key
            return DeliveryResult.failed(f"the SMS cannot be encoded as JSON: {exc}", code="invalid_body")
        headers = dict(self._headers)
        if s.idempotency_header:
            headers[s.idempotency_header] = key_header_value(message.idempotency_key)
        return ProviderRequest(self.client, self._provider, body, headers)

    adapter_name = "the SMS adapter"

    def _answer(self, response: HttpResponse, message: OutgoingMessage) -> tuple[str | None, bool]:
        answer = _json_object(response.body)
        provider_id = lookup(answer, self.settings.id_field)
        refused = False
        if self.settings.error_field and response.status >= 400:
            error = lookup(answer, self.settings.error_field)
            refused = error is not None and error in self.settings.recipient_errors
        return provider_id, refused

    def close(self) -> None:
        """Close the pooled connections and release the rate limiter's file."""
        self.client.close()
        if self._limiter is not None:
            self._limiter.close()


def lookup(document: Any, path: str) -> str | None:
    """The value at ``path`` (dot-separated keys, or indexes into lists) as text, or ``None`` when the
    path leads nowhere or to something other than a string or a number."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value)
        return text or None
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is not one (an HTML error page, an empty answer)."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
