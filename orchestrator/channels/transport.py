"""A small HTTP client for provider APIs: one POST, a deadline on the whole exchange, a bounded answer.

The stdlib's ``http.client`` is enough for form and JSON POSTs, and keeps the dependencies small. What this
adds is the discipline every adapter needs: ``timeout_s`` bounds the connection, the upload and every read,
and the whole exchange stops at the same deadline even against a server that answers one byte at a time (a
watchdog timer shuts the socket at the deadline); the answer's body is read up to ``max_response_bytes``
(provider answers are small; an error page is cut).
Failures are raised as ``OSError`` (``TimeoutError`` for the deadline, ``ConnectionError`` for the rest,
including malformed HTTP), which the adapters turn into transient results.

``deliver_once`` is the send path the HTTP adapters (push, SMS, webhook) share: the channel check and the
memo of sent keys first, then the adapter's own request, one POST, and the answer classified in
``delivery``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.channels.base import DeliveryResult, OutgoingMessage
from orchestrator.channels.delivery import SentKeys, classify_http, transport_failure

USER_AGENT = "orchestrator/0.1"
_READ_CHUNK = 16_384


@dataclass(frozen=True)
class HttpResponse:
    """A provider's answer: status, headers (names in lower case) and the body (possibly cut)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``http``/``https`` URL."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent on the request line

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Check ``url`` at configuration time: http or https, a host, no credentials, no fragment."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"provider URL {url!r} must start with http:// or https://")
        if not parts.hostname:
            raise ValueError(f"provider URL {url!r} has no host")
        if parts.username or parts.password:
            raise ValueError("put provider credentials in the adapter settings, not in the URL")
        if parts.fragment:
            raise ValueError(f"provider URL {url!r} has a fragment")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError(f"provider URL {url!r} has an invalid port") from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, target)


class HttpClient:
    """POSTs to one endpoint; see the module docstring for the time and size bounds."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = 65_536,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.endpoint = Endpoint.parse(url)
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self._ssl_context = ssl_context
        if self.endpoint.scheme == "https" and ssl_context is None:
            self._ssl_context = ssl.create_default_context()

    def post(self, body: bytes, headers: Mapping[str, str], *, target: str | None = None) -> HttpResponse:
        """POST ``body`` to the endpoint (or to ``target``, a path on the same host).

        Raises ``TimeoutError`` past the deadline and ``ConnectionError`` (or another ``OSError``) when the
        exchange fails; an HTTP error status is an answer, not an exception.
        """
        deadline = time.monotonic() + self.timeout_s
        conn = self._connection()
        cut = threading.Event()
        watchdog: threading.Timer | None = None
        try:
            conn.connect()  # bounded by timeout_s, like every socket operation below
            sock = conn.sock
            left = deadline - time.monotonic()
            if left <= 0 or sock is None:
                raise TimeoutError("the provider did not accept the connection before the deadline")
            # A socket timeout bounds each read, not their sum: a server that sends one byte at a time stays
            # under it forever. The watchdog shuts the socket at the deadline, which ends any read at once.
            watchdog = threading.Timer(left, _shut, (sock, cut))
            watchdog.daemon = True
            watchdog.start()
            conn.request(
                "POST",
                target or self.endpoint.target,
                body=body,
                headers={"User-Agent": USER_AGENT, "Connection": "close", **headers},
            )
            response = conn.getresponse()
            data = response.read(self.max_response_bytes)
            if cut.is_set():  # the answer was cut by the watchdog: it is not the whole answer
                raise TimeoutError("the provider did not finish answering before the deadline")
            return HttpResponse(
                status=response.status,
                headers={name.lower(): value for name, value in response.getheaders()},
                body=data,
            )
        except (OSError, http.client.HTTPException) as exc:
            if cut.is_set() or time.monotonic() >= deadline:
                raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
            if isinstance(exc, OSError):
                raise
            # Malformed or cut answers (BadStatusLine, IncompleteRead...): a failed exchange, like a reset.
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.endpoint.host, self.endpoint.port
        if self.endpoint.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout_s, context=self._ssl_context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout_s)


def _shut(sock: socket.socket, cut: threading.Event) -> None:
    """Stop every pending read and write on ``sock`` (from the watchdog thread)."""
    cut.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# -- one delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderRequest:
    """What an adapter POSTs for one message: through ``client`` (to ``target``, a path on its host, when
    set), named ``provider`` in results."""

    client: HttpClient
    provider: str
    body: bytes
    headers: dict[str, str]
    target: str | None = None


def deliver_once(
    message: OutgoingMessage,
    *,
    adapter: str,
    channels: Collection[str],
    sent: SentKeys,
    prepare: Callable[[OutgoingMessage], ProviderRequest | DeliveryResult],
    read_answer: Callable[[HttpResponse], tuple[str | None, bool]],
    suppress_statuses: Collection[int] = (),
) -> DeliveryResult:
    """One delivery of ``message`` to an HTTP provider, at most once per idempotency key in this process.

    A message on a channel outside ``channels`` fails (``wrong_channel``, naming ``adapter``). A key already
    in ``sent`` answers ``sent`` with its provider id, before ``prepare`` or any call.
    Otherwise ``prepare`` builds the request, or returns the result of a message that must not be sent;
    a network failure is a transient ``transport_failure``; an answer goes to ``classify_http`` with
    ``read_answer``'s (provider id, recipient refused) and ``suppress_statuses``. A delivered message's key
    and provider id are added to ``sent``.
    """
    if message.channel not in channels:
        return DeliveryResult.failed(
            f"channel {message.channel!r} not served by {adapter}", code="wrong_channel"
        )
    known = sent.get(message.idempotency_key)
    if known is not None:
        return DeliveryResult.sent(known)
    request = prepare(message)
    if isinstance(request, DeliveryResult):
        return request
    try:
        response = request.client.post(request.body, request.headers, target=request.target)
    except OSError as exc:
        return transport_failure(request.provider, exc)
    provider_id, recipient_refused = read_answer(response)
    result = classify_http(
        response.status,
        response.headers,
        response.body,
        provider=request.provider,
        provider_id=provider_id,
        suppress_statuses=suppress_statuses,
        recipient_refused=recipient_refused,
    )
    if result.ok and result.provider_id is not None:
        sent.add(message.idempotency_key, result.provider_id)
    return result
