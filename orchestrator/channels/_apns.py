"""Apple Push Notification service: HTTP/2 with token-based (JWT) authentication.

Each message is one POST, over HTTP/2 (Apple accepts nothing else), of the ``PushRules`` APNs document to
``/3/device/<device token>`` on ``api.push.apple.com`` (or ``api.sandbox.push.apple.com``), with the
headers ``authorization: bearer <provider token>``, ``apns-topic`` (the app's bundle id),
``apns-push-type``, ``apns-priority`` and ``apns-id``, a UUID derived from the idempotency key (the same
on every resend). The connection is kept open and multiplexes the messages in flight.

The provider token is a JWT signed with the team's ``.p8`` key (ES256, ``kid`` = key id, ``iss`` = team id,
``iat`` = now). Apple refuses a token older than an hour and throttles one renewed more often than every
20 minutes (``TooManyProviderTokenUpdates``), so ``ProviderToken`` signs one, shares it between threads and
renews it every ``token_ttl_s`` (50 minutes by default).

Outcomes, on top of ``delivery.classify_http``:

- ``BadDeviceToken``, ``DeviceTokenNotForTopic`` (400) and 410 ``Unregistered`` suppress the device token;
- ``ExpiredProviderToken`` (403) renews the JWT (when it is at least 20 minutes old) and sends once more;
  the other token and topic refusals (``InvalidProviderToken``, ``MissingProviderToken``, ``BadTopic``,
  ``TopicDisallowed``, ``MissingTopic``, ``Forbidden``...) are configuration problems: transient, code
  ``apns_auth``, so fixing the settings lets the message go;
- 429 ``TooManyRequests`` and 5xx are transient; other 4xx (``PayloadTooLarge``...) permanent.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import jwt
import orjson
from jwt.algorithms import ECAlgorithm

from orchestrator.channels._base import DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys
from orchestrator.channels._limits import ProviderLimits
from orchestrator.channels._push import PushRefused, PushRules, apns_id
from orchestrator.channels._transport import HttpClient, HttpResponse, ProviderRequest, deliver_once
from orchestrator.clock import Clock, SystemClock

APNS_URLS = {"production": "https://api.push.apple.com", "sandbox": "https://api.sandbox.push.apple.com"}
Environment = Literal["production", "sandbox"]
# Apple: a provider token is refused after an hour, and renewing it more often than every 20 minutes is
# throttled.
MIN_TOKEN_AGE_S = 20 * 60
MAX_TOKEN_AGE_S = 60 * 60
_SUPPRESSING_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})
_CONFIG_REASONS = frozenset(
    {
        "InvalidProviderToken",
        "MissingProviderToken",
        "ExpiredProviderToken",
        "BadCertificate",
        "BadCertificateEnvironment",
        "Forbidden",
        "BadTopic",
        "TopicDisallowed",
        "MissingTopic",
        "InvalidPushType",
        "TooManyProviderTokenUpdates",
    }
)


@dataclass(frozen=True)
class ApnsSettings:
    """How to reach APNs with a token-signing key: ``team_id``, ``key_id`` and the key itself
    (``private_key``, the PEM text of the ``.p8`` file, never shown in ``repr``; or ``private_key_file``);
    ``topic`` is the app's bundle id. ``environment`` picks Apple's production or sandbox host; ``url``
    replaces it (a gateway, a test server: ``http://`` speaks HTTP/2 with prior knowledge).
    ``token_ttl_s``: how long a provider token is used (between 20 and 60 minutes). ``limits``: calls in
    flight and messages per second (see ``limits``)."""

    team_id: str
    key_id: str
    topic: str
    private_key: str | None = field(default=None, repr=False)
    private_key_file: Path | None = None
    environment: Environment = "production"
    url: str | None = None
    push_type: str = "alert"
    priority: int = 10
    token_ttl_s: float = 50 * 60
    timeout_s: float = 10.0
    limits: ProviderLimits = field(default_factory=lambda: ProviderLimits(concurrency=16))
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        for name in ("team_id", "key_id", "topic"):
            if not getattr(self, name):
                raise ValueError(f"APNs needs {name}")
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("give the APNs signing key as private_key or private_key_file, one of the two")
        if self.environment not in APNS_URLS:
            raise ValueError(f"environment must be production or sandbox, not {self.environment!r}")
        if not MIN_TOKEN_AGE_S <= self.token_ttl_s < MAX_TOKEN_AGE_S:
            raise ValueError("token_ttl_s must be at least 20 minutes and under an hour (Apple's rules)")
        if self.priority not in (1, 5, 10):
            raise ValueError("priority must be 1, 5 or 10")

    @property
    def base_url(self) -> str:
        return (self.url or APNS_URLS[self.environment]).rstrip("/")

    def signing_key(self) -> str:
        """The PEM text of the key, checked to be an EC key PyJWT can sign with (``ValueError`` if not)."""
        if self.private_key is not None:
            pem, where = self.private_key, "the APNs private_key"
        else:
            assert self.private_key_file is not None
            where = f"the APNs key file {self.private_key_file}"
            try:
                pem = Path(self.private_key_file).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {where}: {exc}") from None
        try:
            ECAlgorithm(ECAlgorithm.SHA256).prepare_key(pem)
        except Exception:  # PyJWT raises several kinds for a key it cannot use; none may quote the key
            raise ValueError(
                f"{where} is not an EC private key in PEM form (the .p8 file Apple gives)"
            ) from None
        return pem


class ProviderToken:
    """The JWT every request carries, shared by threads, renewed every ``ttl_s`` seconds of ``clock``
    time (see the module docstring); ``issued`` counts the tokens signed."""

    def __init__(self, key: str, *, team_id: str, key_id: str, ttl_s: float, clock: Clock) -> None:
        self._key = key
        self._team_id = team_id
        self._key_id = key_id
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[str, datetime] | None = None  # (token, issued at)
        self.issued = 0

    def token(self) -> str:
        current = self._current
        if current is not None and self._clock.now() - current[1] < self._ttl:
            return current[0]
        with self._lock:
            now = self._clock.now()
            current = self._current
            if current is not None and now - current[1] < self._ttl:
                return current[0]
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now.timestamp())},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._current = (token, now)
            self.issued += 1
            return token

    def renew(self, token: str) -> bool:
        """Drop ``token`` (Apple called it expired) when it is old enough to be renewed without being
        throttled; ``True`` if the next ``token()`` signs a new one."""
        with self._lock:
            current = self._current
            if current is None or current[0] != token:
                return True  # already renewed by another thread
            if self._clock.now() - current[1] < timedelta(seconds=MIN_TOKEN_AGE_S):
                return False
            self._current = None
            return True


class ApnsAdapter:
    """Sends push messages to APNs over HTTP/2 (see the module docstring). ``rules`` shape the payload
    (platform ``apns``); ``clock`` dates the provider tokens (the wall clock unless a test injects one);
    ``close()`` closes the connection."""

    channels: frozenset[str] = frozenset({"push"})

    def __init__(
        self,
        settings: ApnsSettings,
        *,
        rules: PushRules | None = None,
        sent_keys: SentKeys | None = None,
        state_dir: Path | bool | None = True,
        clock: Clock | None = None,
    ) -> None:
        self.rules = rules or PushRules(platform="apns")
        if self.rules.platform != "apns":
            raise ValueError("APNs needs push rules for the apns platform")
        self.settings = settings
        self.concurrency = settings.limits.concurrency
        self.tokens = ProviderToken(
            settings.signing_key(),
            team_id=settings.team_id,
            key_id=settings.key_id,
            ttl_s=settings.token_ttl_s,
            clock=clock if clock is not None else SystemClock(),
        )
        # HTTP/2 only: over TLS it is negotiated with ALPN, over http:// spoken with prior knowledge. One
        # connection multiplexes the calls in flight (APNs takes hundreds of streams on each).
        self.client = HttpClient(
            settings.base_url + "/3/device/",
            timeout_s=settings.timeout_s,
            ssl_context=settings.ssl_context,
            max_connections=2,
            max_in_flight=settings.limits.concurrency,
            http1=False,
            http2=True,
        )
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._provider = f"APNs ({self.client.endpoint.host})"
        self._limiter = settings.limits.limiter(f"apns:{settings.team_id}:{settings.topic}", state_dir)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        used: list[str] = []
        reasons: list[str] = []
        result = self._send(message, used, reasons)
        if reasons and reasons[-1] == "ExpiredProviderToken" and used and self.tokens.renew(used[-1]):
            result = self._send(message, used, reasons)
        if reasons and reasons[-1] in _CONFIG_REASONS and not result.ok:
            return DeliveryResult.retry(f"APNs refused the settings: {result.error}", code="apns_auth")
        return result

    def _send(self, message: OutgoingMessage, used: list[str], reasons: list[str]) -> DeliveryResult:
        def read_answer(response: HttpResponse) -> tuple[str | None, bool]:
            reason = _reason(response.body)
            reasons.append(reason or "")
            return response.headers.get("apns-id"), reason in _SUPPRESSING_REASONS

        return deliver_once(
            message,
            adapter="the APNs adapter",
            channels=self.channels,
            sent=self._sent,
            prepare=lambda m: self._request(m, used),
            read_answer=read_answer,
            suppress_statuses=(410,),
            limiter=self._limiter,
        )

    def _request(self, message: OutgoingMessage, used: list[str]) -> ProviderRequest | DeliveryResult:
        try:
            body = self.rules.encode(message)
        except PushRefused as exc:
            return DeliveryResult.failed(str(exc), code=exc.code)
        token = self.tokens.token()
        used.append(token)
        s = self.settings
        headers = {
            "content-type": "application/json",
            "authorization": f"bearer {token}",
            "apns-topic": s.topic,
            "apns-push-type": s.push_type,
            "apns-priority": str(s.priority),
            "apns-id": apns_id(message.idempotency_key),
        }
        target = self.client.endpoint.target + quote(message.recipient.strip(), safe="")
        return ProviderRequest(self.client, self._provider, body, headers, target)

    def close(self) -> None:
        """Close the connection and release the rate limiter's file."""
        self.client.close()
        if self._limiter is not None:
            self._limiter.close()


def _reason(body: bytes) -> str | None:
    """APNs' error ``reason`` (``{"reason": "BadDeviceToken"}``), if the body has one."""
    try:
        answer = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    reason = answer.get("reason") if isinstance(answer, dict) else None
    return reason if isinstance(reason, str) else None
