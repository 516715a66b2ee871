"""The webhook adapter: messages as signed JSON POSTs to the business's own endpoints, for outreach done by
people or another system (a customer-success tool that opens a task, a CRM that logs the touch).

A message on the ``webhook`` channel names its endpoint (``recipient``, from the journey's ``endpoint:``);
the adapter maps names to endpoints, each with its own URL and signing secret (``WebhookEndpoint``), and
refuses a name it does not know (a permanent ``unknown_endpoint`` failure, before any call). Given a single
URL instead, every message goes there, which also lets the adapter stand in for another channel (route
``email`` to a CRM).

Each request carries:

- ``X-Orchestrator-Timestamp``: the send time, Unix seconds, from the injected clock;
- ``X-Orchestrator-Signature``: ``v1=`` and the hex HMAC-SHA256, under the endpoint's secret, of
  ``"<timestamp>." + body``; the receiver recomputes it (``verify_signature``) and rejects old timestamps,
  so a captured request can be neither altered nor replayed later;
- ``Idempotency-Key``: the message's key, also in the body, so the receiver can drop a resend.

The body is ``webhook_document``: ``idempotency_key``, ``endpoint``, ``customer_id``, ``journey``
(``id/step``) and ``body``, the rendered template, as JSON when it is JSON text (a webhook template usually
renders a JSON object) and as a string otherwise; for a message of another channel also ``channel``,
``subject``, ``title`` and ``link`` when set. The file outbox writes the same document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from orchestrator.channels._base import CHANNELS, DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys, key_header_value
from orchestrator.channels._limits import ProviderLimits, RateLimiter
from orchestrator.channels._transport import (
    Endpoint,
    HttpClient,
    HttpDelivery,
    HttpResponse,
    ProviderRequest,
)

if TYPE_CHECKING:
    from orchestrator.channels._http_pool import HttpPool
from orchestrator.clock import Clock, SystemClock

SIGNATURE_HEADER = "X-Orchestrator-Signature"
TIMESTAMP_HEADER = "X-Orchestrator-Timestamp"
SIGNATURE_VERSION = "v1"


def webhook_document(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON document sent for ``message`` (see the module docstring)."""
    try:
        body: Any = json.loads(message.body)
    except ValueError:
        body = message.body
    document: dict[str, Any] = {
        "idempotency_key": message.idempotency_key,
        "endpoint": message.recipient,
        "customer_id": message.customer_id,
        "journey": f"{message.journey_id}/{message.step}",
        "body": body,
    }
    if message.channel != "webhook":
        document["channel"] = message.channel
        for name in ("subject", "title", "link"):
            value = getattr(message, name)
            if value is not None:
                document[name] = value
    return document


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    reason: str


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = 300,
) -> SignatureCheck:
    """What a receiver runs: the timestamp is recent (within ``tolerance_s`` of ``now_s``) and the
    signature matches (constant-time comparison)."""
    if not timestamp.isdigit():
        return SignatureCheck(False, "the timestamp is not a number of seconds")
    if abs(now_s - int(timestamp)) > tolerance_s:
        return SignatureCheck(False, f"the timestamp is more than {tolerance_s:g} s away from now")
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature.strip()):
        return SignatureCheck(False, "the signature does not match")
    return SignatureCheck(True, "valid")


@dataclass(frozen=True)
class WebhookEndpoint:
    """One named receiver: its ``url`` and the ``secret`` its requests are signed with (at least 16
    characters, never shown in ``repr``); ``rate_per_s`` caps the calls per second to it (``None``: the
    adapter's ``limits``)."""

    url: str
    secret: str | bytes = field(repr=False)
    rate_per_s: float | None = None

    def __post_init__(self) -> None:
        Endpoint.parse(self.url)
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must be at least 16 characters")
        if self.rate_per_s is not None and not self.rate_per_s > 0:
            raise ValueError("rate_per_s must be > 0")


class WebhookAdapter(HttpDelivery):
    """POSTs each message as signed JSON to its endpoint's URL; serves ``channels`` (``webhook`` by default).

    ``endpoints`` maps endpoint names to ``WebhookEndpoint`` (each with its own URL and secret), or to bare
    URLs signed with ``secret``; or it is one URL for every message (signed with ``secret``). A message
    naming an endpoint that is not configured fails permanently (``unknown_endpoint``). Endpoints on one
    host share a pooled HTTP client (``close()`` closes them all); ``limits.concurrency`` bounds each
    pool's connections, and each endpoint has its own rate limit (``rate_per_s``, else
    ``limits.rate_per_s``).
    """

    def __init__(
        self,
        endpoints: Mapping[str, WebhookEndpoint | str] | str,
        *,
        secret: str | bytes | None = None,
        clock: Clock | None = None,
        channels: Iterable[str] = ("webhook",),
        timeout_s: float = 10.0,
        idempotency_header: str = "Idempotency-Key",
        ssl_context: ssl.SSLContext | None = None,
        sent_keys: SentKeys | None = None,
        limits: ProviderLimits | None = None,
        state_dir: Path | bool | None = True,
    ) -> None:
        self.channels: frozenset[str] = frozenset(channels)
        unknown = self.channels - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}")
        if secret is not None and len(secret) < 16:
            raise ValueError("the webhook secret must be at least 16 characters")
        limits = limits or ProviderLimits()
        self.concurrency = limits.concurrency
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._pools: dict[str, HttpPool] = {}  # one per origin (scheme, host, port): endpoints there share it

        # Every URL and secret is checked now, at configuration, not at the first send.
        def endpoint(value: WebhookEndpoint | str) -> WebhookEndpoint:
            if isinstance(value, WebhookEndpoint):
                return value
            if secret is None:
                raise ValueError("a webhook endpoint given as a bare URL needs the adapter's secret")
            return WebhookEndpoint(value, secret)

        if isinstance(endpoints, str):
            named: dict[str, WebhookEndpoint] = {}
            self._default: _Target | None = self._target("", endpoint(endpoints), limits, state_dir)
        else:
            if not endpoints:
                raise ValueError("a webhook adapter needs at least one endpoint")
            named = {name: endpoint(value) for name, value in endpoints.items()}
            self._default = None
        self._targets = {name: self._target(name, value, limits, state_dir) for name, value in named.items()}
        # The adapter runs at the edge, like the daemon: the wall clock unless a test injects another.
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.idempotency_header = idempotency_header
        self._sent = sent_keys if sent_keys is not None else SentKeys()

    def _target(
        self, name: str, endpoint: WebhookEndpoint, limits: ProviderLimits, state_dir: Path | bool | None
    ) -> _Target:
        from orchestrator.channels._http_pool import HttpPool

        origin = Endpoint.parse(endpoint.url).origin
        if origin not in self._pools:
            self._pools[origin] = HttpPool(
                timeout_s=self._timeout_s, ssl_context=self._ssl_context, max_connections=limits.concurrency
            )
        client = HttpClient(endpoint.url, pool=self._pools[origin])
        rate = ProviderLimits(
            concurrency=limits.concurrency,
            rate_per_s=endpoint.rate_per_s or limits.rate_per_s,
            burst=limits.burst,
            max_wait_s=limits.max_wait_s,
        )
        limiter = rate.limiter(f"webhook:{name}:{endpoint.url}", state_dir)
        key = endpoint.secret.encode("utf-8") if isinstance(endpoint.secret, str) else endpoint.secret
        return _Target(client, key, limiter)

    @property
    def endpoint_names(self) -> frozenset[str]:
        """The endpoint names messages may use (empty when every message goes to one URL)."""
        return frozenset(self._targets)

    adapter_name = "this webhook"

    def _answer(self, response: HttpResponse, message: OutgoingMessage) -> tuple[str | None, bool]:
        return _read_answer(response, message)

    def _request(self, message: OutgoingMessage) -> ProviderRequest | DeliveryResult:
        target = self._targets.get(message.recipient, self._default)
        if target is None:
            known_names = ", ".join(sorted(self._targets))
            return DeliveryResult.failed(
                f"no webhook endpoint named {message.recipient!r} is configured (known: {known_names})",
                code="unknown_endpoint",
            )
        client = target.client
        provider = f"webhook {message.recipient if message.channel == 'webhook' else client.endpoint.host}"
        try:
            body = orjson.dumps(webhook_document(message))
        except orjson.JSONEncodeError as exc:
            return DeliveryResult.failed(f"the message cannot be encoded as JSON: {exc}", code="invalid_body")
        timestamp = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(target.secret, timestamp, body),
            self.idempotency_header: key_header_value(message.idempotency_key),
        }
        return ProviderRequest(client, provider, body, headers, limiter=target.limiter)

    def close(self) -> None:
        """Close the pooled connections and the rate limiters' files."""
        for pool in self._pools.values():
            pool.close()
        for target in [*self._targets.values(), *([self._default] if self._default else [])]:
            if target.limiter is not None:
                target.limiter.close()


@dataclass(frozen=True)
class _Target:
    client: HttpClient
    secret: bytes
    limiter: RateLimiter | None


def _read_answer(response: HttpResponse, message: OutgoingMessage) -> tuple[str | None, bool]:
    """The receiver's own reference, when it gives one; else the key itself identifies the delivery."""
    return response.headers.get("x-request-id") or message.idempotency_key, False
