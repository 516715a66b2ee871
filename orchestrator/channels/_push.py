"""Push notifications: payloads shaped for FCM or APNs, a 4 KB bound, and a generic HTTP adapter.

The adapters for Google's and Apple's services are in ``fcm`` (FCM HTTP v1, OAuth2 service-account tokens)
and ``apns`` (HTTP/2 with JWT provider tokens); they shape their payloads with the ``PushRules`` here.

FCM (HTTP v1 ``messages:send`` body)::

    {"message": {"token": T, "notification": {"title": ..., "body": ...},
                 "data": {...message.data, "link": L},
                 "android": {"notification": {"click_action": A}}}}          # when configured

APNs (the JSON body; the device token goes in the URL)::

    {"aps": {"alert": {"title": ..., "body": ...}}, "link": L, ...message.data}

The deep link travels as a custom key (``link`` by default) where each platform's app reads it: in FCM's
``data``, which FCM hands to Android apps as extras and to iOS apps as custom keys of the APNs payload, and
beside ``aps`` when sending to APNs directly. Both services refuse payloads over 4096 bytes, so a bigger one
is refused here, before any call, with its size in the reason.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import orjson

from orchestrator.channels._base import DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys, key_header_value
from orchestrator.channels._limits import ProviderLimits
from orchestrator.channels._transport import (
    HttpClient,
    HttpDelivery,
    HttpResponse,
    ProviderRequest,
)
from orchestrator.errors import DeliveryError

PUSH_PAYLOAD_LIMIT = 4096
Platform = Literal["fcm", "apns"]
# A fixed namespace: the apns-id of a message is the same UUID on every resend.
_APNS_ID_NAMESPACE = uuid.UUID("6f1c7c2e-4f4b-4d0e-9a55-3f1f3d0c2b71")


class PushRefused(DeliveryError, ValueError):
    """A push message that must not be sent (too big, not encodable, no device token)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PushRules:
    """How push messages are shaped: platform, the key of the deep link, the size bound."""

    platform: Platform = "fcm"
    link_key: str = "link"
    android_click_action: str | None = None
    max_payload_bytes: int = PUSH_PAYLOAD_LIMIT

    def __post_init__(self) -> None:
        if self.platform not in ("fcm", "apns"):
            raise ValueError(f"platform must be fcm or apns, not {self.platform!r}")
        if not self.link_key or self.link_key == "aps":
            raise ValueError("link_key must be a non-empty key other than 'aps'")
        if not 0 < self.max_payload_bytes <= PUSH_PAYLOAD_LIMIT:
            raise ValueError(f"max_payload_bytes must be between 1 and {PUSH_PAYLOAD_LIMIT}")

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        """The platform's JSON document for ``message`` (see the module docstring)."""
        alert = (
            {"body": message.body}
            if message.title is None
            else {"title": message.title, "body": message.body}
        )
        data = dict(message.data or {})
        if self.platform == "apns":
            if "aps" in data:
                raise PushRefused(
                    "message data may not use the key 'aps' (reserved by APNs)", code="invalid_data"
                )
            document: dict[str, Any] = {"aps": {"alert": alert}, **data}
            if message.link is not None:
                document[self.link_key] = message.link
            return document
        if message.link is not None:
            data[self.link_key] = message.link
        body: dict[str, Any] = {"token": message.recipient, "notification": alert}
        if data:
            body["data"] = data
        if self.android_click_action is not None:
            body["android"] = {"notification": {"click_action": self.android_click_action}}
        return {"message": body}

    def encode(self, message: OutgoingMessage) -> bytes:
        """The payload as compact UTF-8 JSON; ``PushRefused`` when it is over the bound or not encodable."""
        if not message.recipient.strip():
            raise PushRefused("the push message has no device token", code="invalid_token")
        try:
            encoded = orjson.dumps(self.payload(message))
        except orjson.JSONEncodeError as exc:  # lone surrogates in the text
            raise PushRefused(f"the push payload is not valid text: {exc}", code="invalid_body") from exc
        if len(encoded) > self.max_payload_bytes:
            raise PushRefused(
                f"the push payload is {len(encoded)} bytes, over the {self.max_payload_bytes}-byte limit "
                f"of {self.platform.upper()} (shorten the title, body, link or data)",
                code="payload_too_large",
            )
        return encoded


class HttpPushAdapter(HttpDelivery):
    """Sends push messages to an FCM- or APNs-shaped HTTP endpoint with a fixed bearer token: a gateway of
    your own, or a test double. For Google's and Apple's own services use ``FcmAdapter`` (OAuth2 tokens
    from a service account) and ``ApnsAdapter`` (HTTP/2, JWT provider tokens).

    For APNs, ``url`` contains ``{token}`` where the device token goes
    (``https://gateway.example/3/device/{token}``) and ``apns_topic`` is the app's bundle id; the
    ``apns-id`` header is a UUID derived from the idempotency key. Every request also carries the key in
    ``idempotency_header``. 404 and 410 mean the device token is gone: the failure suppresses it.
    ``limits``: calls in flight and messages per second (see ``limits``); ``http2`` offers HTTP/2.
    """

    channels: frozenset[str] = frozenset({"push"})

    def __init__(
        self,
        url: str,
        *,
        rules: PushRules | None = None,
        bearer_token: str | None = None,
        apns_topic: str | None = None,
        timeout_s: float = 10.0,
        idempotency_header: str = "Idempotency-Key",
        suppress_statuses: frozenset[int] = frozenset({404, 410}),
        ssl_context: ssl.SSLContext | None = None,
        sent_keys: SentKeys | None = None,
        limits: ProviderLimits | None = None,
        http2: bool = False,
        state_dir: Path | bool | None = True,
    ) -> None:
        self.rules = rules or PushRules()
        limits = limits or ProviderLimits()
        self.concurrency = limits.concurrency
        if self.rules.platform == "apns" and "{token}" not in url:
            raise ValueError("an APNs URL needs a {token} placeholder for the device token")
        # The URL is checked with a stand-in for the token, which each send replaces with the real one.
        stand_in = "orchestrator-device-token"
        self.client = HttpClient(
            url.replace("{token}", stand_in),
            timeout_s=timeout_s,
            ssl_context=ssl_context,
            max_connections=limits.concurrency,
            http2=http2,
        )
        self._target_template = self.client.endpoint.target.replace(stand_in, "{token}")
        self.bearer_token = bearer_token
        self.apns_topic = apns_topic
        self.idempotency_header = idempotency_header
        self.suppress_statuses = suppress_statuses
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._provider = f"push service {self.client.endpoint.host}"
        self._limiter = limits.limiter(f"push:{url}", state_dir)

    adapter_name = "the push adapter"

    def _answer(self, response: HttpResponse, message: OutgoingMessage) -> tuple[str | None, bool]:
        return _read_answer(response)

    def close(self) -> None:
        """Close the pooled connections and release the rate limiter's file."""
        self.client.close()
        if self._limiter is not None:
            self._limiter.close()

    def _request(self, message: OutgoingMessage) -> ProviderRequest | DeliveryResult:
        try:
            body = self.rules.encode(message)
        except PushRefused as exc:
            return DeliveryResult.failed(str(exc), code=exc.code)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            self.idempotency_header: key_header_value(message.idempotency_key),
        }
        if self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        target = None
        if self.rules.platform == "apns":
            headers.update({"apns-id": apns_id(message.idempotency_key), "apns-push-type": "alert"})
            if self.apns_topic:
                headers["apns-topic"] = self.apns_topic
            target = self._target_template.replace("{token}", quote(message.recipient, safe=""))
        return ProviderRequest(self.client, self._provider, body, headers, target)


def apns_id(idempotency_key: str) -> str:
    """The ``apns-id`` of a message: a UUID derived from its idempotency key, the same on every resend."""
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, key_header_value(idempotency_key)))


def _read_answer(response: HttpResponse) -> tuple[str | None, bool]:
    """The provider id (FCM's message name, else APNs' ``apns-id`` header); push never reads a refusal
    of the recipient from the body (404/410 say it)."""
    return _provider_id(response.body) or response.headers.get("apns-id"), False


def _provider_id(body: bytes) -> str | None:
    """FCM answers ``{"name": "projects/.../messages/ID"}``; APNs answers with an empty body."""
    try:
        answer = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    name = answer.get("name") if isinstance(answer, dict) else None
    return name if isinstance(name, str) and name else None
