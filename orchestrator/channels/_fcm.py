"""Firebase Cloud Messaging (HTTP v1): push messages authorised by OAuth2 service-account access tokens.

Each message is one POST of the ``PushRules`` FCM document (``{"message": {"token": ..., ...}}``) to
``https://fcm.googleapis.com/v1/projects/{project}/messages:send`` with ``Authorization: Bearer <access
token>``. The access token comes from the service account (its JSON key file, or the same JSON given as
``service_account_info``, typically from an environment variable) through google-auth: a JWT signed with the
account's private key is exchanged at the account's ``token_uri`` for a token that lives about an hour.
``ServiceAccountTokens`` keeps one token for every thread and fetches a new one ``refresh_margin_s``
before the old one expires (or at once when FCM answers 401), so sends never carry an expired token. The
token requests go through a small pool of their own, with the same deadline and size bounds as every
provider call (``transport``).

Outcomes, on top of ``delivery.classify_http``:

- the provider id is FCM's message name (``projects/<p>/messages/<id>``);
- ``UNREGISTERED`` (404) and ``SENDER_ID_MISMATCH`` (the token belongs to another project), and a 400
  ``INVALID_ARGUMENT`` whose violation is the ``message.token`` field, suppress the device token;
- 401 is answered by fetching a fresh token and sending once more; a 401 again, a 403 other than
  ``SENDER_ID_MISMATCH``, or a token that cannot be had (the token server down, the key revoked), is a
  configuration problem: transient with the code ``fcm_auth``, so fixing the account lets the message go;
- 429 ``QUOTA_EXCEEDED`` and 5xx are transient (with ``Retry-After`` when given).

FCM has no idempotency key; the adapter still sends the key in ``Idempotency-Key`` (for gateways) and keeps
the memo of sent keys, so a key delivered by this process is not sent twice.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport
import orjson
from google.oauth2 import service_account

from orchestrator.channels._base import DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys, key_header_value, short
from orchestrator.channels._http_pool import HttpPool
from orchestrator.channels._limits import ProviderLimits
from orchestrator.channels._push import PushRefused, PushRules
from orchestrator.channels._transport import HttpClient, HttpResponse, ProviderRequest, deliver_once
from orchestrator.clock import Clock, SystemClock

FCM_URL = "https://fcm.googleapis.com/v1/projects/{project}/messages:send"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_REQUIRED_KEYS = ("client_email", "private_key", "token_uri")
_SUPPRESSING_ERRORS = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


@dataclass(frozen=True)
class FcmSettings:
    """How to reach FCM. The service account comes from ``service_account_file`` (its JSON key) or
    ``service_account_info`` (the parsed JSON, never shown in ``repr``); ``project_id`` defaults to the
    account's. ``{project}`` in ``url`` is replaced by the project id (change the URL only for a gateway or
    a test server).
    ``refresh_margin_s``: how long before its expiry a token is replaced. ``http2`` offers HTTP/2 (ALPN);
    ``limits``: calls in flight and messages per second (see ``limits``)."""

    service_account_file: Path | None = None
    service_account_info: Mapping[str, Any] | None = field(default=None, repr=False)
    project_id: str | None = None
    url: str = FCM_URL
    timeout_s: float = 10.0
    refresh_margin_s: float = 300.0
    http2: bool = True
    limits: ProviderLimits = field(default_factory=lambda: ProviderLimits(concurrency=16))
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if (self.service_account_file is None) == (self.service_account_info is None):
            raise ValueError("give the service account as a file or as its JSON, one of the two")
        if self.refresh_margin_s < 0:
            raise ValueError("refresh_margin_s must be >= 0")

    def account(self) -> dict[str, Any]:
        """The service account's JSON, checked: a ``service_account`` with an email, a key and a token
        URI. ``ValueError`` saying what is wrong (never quoting the key)."""
        if self.service_account_info is not None:
            info = dict(self.service_account_info)
            where = "the service account JSON"
        else:
            assert self.service_account_file is not None
            where = f"the service account file {self.service_account_file}"
            try:
                info = json.loads(Path(self.service_account_file).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"cannot read {where}: {exc.strerror or exc}") from None
            except ValueError:
                raise ValueError(f"{where} is not JSON") from None
            if not isinstance(info, dict):
                raise ValueError(f"{where} is not a JSON object")
        if info.get("type", "service_account") != "service_account":
            raise ValueError(f"{where} is a {info.get('type')!r} credential, not a service_account")
        missing = [key for key in _REQUIRED_KEYS if not isinstance(info.get(key), str) or not info[key]]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        return info


# -- access tokens ------------------------------------------------------------------------------------


class _AuthResponse(google.auth.transport.Response):
    def __init__(self, response: HttpResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.body


class _AuthRequest(google.auth.transport.Request):
    """google-auth's HTTP interface over an ``HttpPool`` (deadline and size bounds included)."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _AuthResponse:
        payload = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        try:
            return _AuthResponse(self.pool.request(method, url, body=payload, headers=headers))
        except OSError as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc


class ServiceAccountTokens:
    """The current OAuth2 access token of a service account, shared by threads, replaced
    ``refresh_margin_s`` before it expires (see the module docstring). ``clock`` says what time it is (tests
    move it forward); ``refreshes`` counts the tokens fetched."""

    def __init__(
        self,
        account: Mapping[str, Any],
        *,
        scopes: tuple[str, ...] = (FCM_SCOPE,),
        pool: HttpPool,
        clock: Clock,
        refresh_margin_s: float = 300.0,
    ) -> None:
        try:
            self._credentials = service_account.Credentials.from_service_account_info(
                dict(account), scopes=list(scopes)
            )
        except (ValueError, KeyError) as exc:  # an unreadable private key
            raise ValueError(f"the service account cannot be used: {type(exc).__name__}") from None
        self._request = _AuthRequest(pool)
        self._clock = clock
        self._margin = timedelta(seconds=refresh_margin_s)
        self._lock = threading.Lock()
        self._current: tuple[str, datetime] | None = None  # (token, replace it from this instant)
        self.refreshes = 0

    def token(self) -> str:
        """A token valid for at least the margin; fetches one when needed. Raises google-auth's
        ``RefreshError``/``TransportError`` when none can be had."""
        current = self._current
        if current is not None and self._clock.now() < current[1]:
            return current[0]
        with self._lock:
            current = self._current
            now = self._clock.now()
            if current is not None and now < current[1]:
                return current[0]
            self._credentials.refresh(self._request)
            self.refreshes += 1
            token = str(self._credentials.token)
            expiry = self._credentials.expiry
            lifetime = timedelta(hours=1)
            if expiry is not None:
                aware = expiry if expiry.tzinfo is not None else expiry.replace(tzinfo=UTC)
                lifetime = aware - datetime.now(UTC)
            # A token that lives less than twice the margin is replaced half-way through its life.
            margin = min(self._margin, lifetime / 2)
            self._current = (token, now + lifetime - margin)
            return token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (FCM refused it): the next ``token()`` fetches a new one."""
        with self._lock:
            if self._current is not None and self._current[0] == token:
                self._current = None


# -- the adapter --------------------------------------------------------------------------------------


class FcmAdapter:
    """Sends push messages through FCM HTTP v1 (see the module docstring). ``rules`` shape the payload
    (platform ``fcm``); ``clock`` drives token refresh (the wall clock unless a test injects one);
    ``close()`` closes the pooled connections."""

    channels: frozenset[str] = frozenset({"push"})

    def __init__(
        self,
        settings: FcmSettings,
        *,
        rules: PushRules | None = None,
        sent_keys: SentKeys | None = None,
        state_dir: Path | bool | None = True,
        clock: Clock | None = None,
    ) -> None:
        self.rules = rules or PushRules(platform="fcm")
        if self.rules.platform != "fcm":
            raise ValueError("FCM needs push rules for the fcm platform")
        account = settings.account()
        self.project_id = settings.project_id or account.get("project_id")
        if not self.project_id:
            raise ValueError("no FCM project: set project_id or use a service account that names one")
        self.settings = settings
        self.concurrency = settings.limits.concurrency
        self.client = HttpClient(
            settings.url.replace("{project}", str(self.project_id)),
            timeout_s=settings.timeout_s,
            ssl_context=settings.ssl_context,
            max_connections=settings.limits.concurrency,
            http2=settings.http2,
        )
        self._token_pool = HttpPool(
            timeout_s=settings.timeout_s, ssl_context=settings.ssl_context, max_connections=2
        )
        self.tokens = ServiceAccountTokens(
            account,
            pool=self._token_pool,
            clock=clock if clock is not None else SystemClock(),
            refresh_margin_s=settings.refresh_margin_s,
        )
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._provider = f"FCM ({self.client.endpoint.host})"
        self._limiter = settings.limits.limiter(f"fcm:{self.project_id}", state_dir)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        used: list[str] = []
        result = self._send(message, used)
        if result.code == "http_401" and used:
            self.tokens.invalidate(used[-1])  # refused: fetch another and try once more
            result = self._send(message, used)
        if result.code in ("http_401", "http_403") and not result.suppress:
            return DeliveryResult.retry(f"FCM refused the credentials: {result.error}", code="fcm_auth")
        return result

    def _send(self, message: OutgoingMessage, used: list[str]) -> DeliveryResult:
        return deliver_once(
            message,
            adapter="the FCM adapter",
            channels=self.channels,
            sent=self._sent,
            prepare=lambda m: self._request(m, used),
            read_answer=_read_answer,
            suppress_statuses=(404,),
            limiter=self._limiter,
        )

    def _request(self, message: OutgoingMessage, used: list[str]) -> ProviderRequest | DeliveryResult:
        try:
            body = self.rules.encode(message)
        except PushRefused as exc:
            return DeliveryResult.failed(str(exc), code=exc.code)
        try:
            token = self.tokens.token()
        except google.auth.exceptions.GoogleAuthError as exc:
            return DeliveryResult.retry(
                f"no FCM access token from the service account's token server: {short(str(exc))}",
                code="fcm_auth",
            )
        used.append(token)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key_header_value(message.idempotency_key),
        }
        return ProviderRequest(self.client, self._provider, body, headers)

    def close(self) -> None:
        """Close the pooled connections (FCM's and the token server's) and the rate limiter's file."""
        self.client.close()
        self._token_pool.close()
        if self._limiter is not None:
            self._limiter.close()


def _read_answer(response: HttpResponse) -> tuple[str | None, bool]:
    """FCM's message name, and whether its error is about the device token."""
    try:
        answer = orjson.loads(response.body) if response.body else None
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(answer, dict):
        return None, False
    name = answer.get("name")
    if isinstance(name, str) and name:
        return name, False
    error = answer.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    refused = False
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("errorCode") in _SUPPRESSING_ERRORS:
            refused = True
        violations = detail.get("fieldViolations")
        for violation in violations if isinstance(violations, list) else []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                refused = True
    return None, refused
