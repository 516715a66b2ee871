"""HTTP for provider APIs: pooled httpx clients with a deadline on the whole exchange and bounded answers.

Each provider adapter owns one ``HttpPool`` (``http_pool``, loaded when the first adapter is built): httpx
connections kept alive and reused (HTTP/1.1 keep-alive, or HTTP/2 multiplexing when ``http2`` is on:
through TLS with ALPN, or with prior knowledge on ``http://`` URLs when ``http1`` is off), shared by every
thread of the adapter and closed by ``close()``; ``HttpClient`` is one endpoint on a pool. What the pool
adds to httpx is the discipline every adapter needs:

- ``timeout_s`` is a deadline on the whole exchange, not on each step: waiting for a turn among the
  requests in flight, connecting, TLS, sending and every read stop at the same instant, even against a
  server that answers one byte at a time: the exchange runs on the pool's event loop under
  ``asyncio.timeout`` at its deadline.
- The answer's body is read up to ``max_response_bytes`` (provider answers are small; an error page is
  cut), raw: the request asks for ``Accept-Encoding: identity`` so no compressed bomb is inflated.
- Failures are raised as ``OSError``: ``TimeoutError`` past the deadline, ``ConnectionError`` for the rest
  (refused, reset, malformed HTTP), which the adapters turn into transient results. An HTTP error status
  is an answer, not an exception.

Every pool runs its exchanges in an event loop thread of its own (``http_pool``): one thread does the I/O
of all the requests in flight, callers stay synchronous, and a deadline cancels one exchange without
touching the others (with HTTP/2, a stream whose answer has arrived never waits for an unrelated slow
one). Proxies from the environment are not used (``trust_env`` off): the deadline holds only on
connections this module makes.

``deliver_once`` is the send path the HTTP adapters (push, SMS, webhook) share: the channel check and the
memo of sent keys first, then the adapter's own request, the provider's rate limit, one POST, and the
answer classified in ``delivery``. ``deliver_many`` is the same for a group of messages from one thread
(the adapters' ``send_many``, which ``lanes`` calls with a channel's share of a dispatch group): the
requests are handed to the pool's loop together and the thread waits once for them all, rather than a
thread blocked on each request.
"""

from __future__ import annotations

import concurrent.futures
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from orchestrator.channels._base import DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys, classify_http, transport_failure
from orchestrator.channels._limits import RateLimiter

if TYPE_CHECKING:
    from orchestrator.channels._http_pool import HttpPool

USER_AGENT = "orchestrator/0.1"
DEFAULT_MAX_RESPONSE_BYTES = 65_536
HAND_OVER = 32  # requests prepared by ``deliver_many`` before they are handed to the pool's loop together


@dataclass(frozen=True)
class HttpResponse:
    """A provider's answer: status, headers (names in lower case) and the body (possibly cut)."""

    status: int
    headers: dict[str, str]
    body: bytes


_Answers = concurrent.futures.Future[list[HttpResponse | OSError]]


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

    @property
    def origin(self) -> str:
        """``scheme://host:port``, the part of a URL before its target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.target


class HttpClient:
    """POSTs to one endpoint through a pool (its own unless ``pool`` is given, to share one between
    endpoints of a provider); see the module docstring for the time and size bounds."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_connections: int = 16,
        max_in_flight: int | None = None,
        http1: bool = True,
        http2: bool = False,
        pool: HttpPool | None = None,
    ) -> None:
        from orchestrator.channels._http_pool import HttpPool

        self.endpoint = Endpoint.parse(url)
        self._owns_pool = pool is None
        self.pool = pool or HttpPool(
            timeout_s=timeout_s,
            ssl_context=ssl_context,
            max_response_bytes=max_response_bytes,
            max_connections=max_connections,
            max_in_flight=max_in_flight,
            http1=http1,
            http2=http2,
        )
        self.timeout_s = self.pool.timeout_s
        self.max_response_bytes = self.pool.max_response_bytes
        self._url: Any = HttpPool.parsed(self.endpoint.url)  # parsed once: every request reuses it

    def post(self, body: bytes, headers: Mapping[str, str], *, target: str | None = None) -> HttpResponse:
        """POST ``body`` to the endpoint (or to ``target``, a path on the same host).

        Raises ``TimeoutError`` past the deadline and ``ConnectionError`` when the exchange fails; an HTTP
        error status is an answer, not an exception.
        """
        url = self._url if target is None else self.endpoint.origin + target
        return self.pool.post(url, body, headers)

    def submit(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        target: str | None = None,
        on_turn: Callable[[], object] | None = None,
    ) -> concurrent.futures.Future[HttpResponse]:
        """Start ``post`` without waiting for the answer (``pool.result`` reads it); ``on_turn`` (the rate
        limit) runs first."""
        url = self._url if target is None else self.endpoint.origin + target
        if on_turn is not None:
            on_turn()
        return self.pool.submit("POST", url, body=body, headers=headers)

    def url_for(self, target: str | None) -> Any:
        """The URL a request to ``target`` (a path on the endpoint's host; ``None``: the endpoint) goes to."""
        return self._url if target is None else self.endpoint.origin + target

    def close(self) -> None:
        """Close the pool if this client made it (a shared pool is closed by its owner)."""
        if self._owns_pool:
            self.pool.close()


# -- one delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderRequest:
    """What an adapter POSTs for one message: through ``client`` (to ``target``, a path on its host, when
    set), named ``provider`` in results; ``limiter``, when set, is the rate limit of this request's
    provider (an adapter with several endpoints picks one per message)."""

    client: HttpClient
    provider: str
    body: bytes
    headers: dict[str, str]
    target: str | None = None
    limiter: RateLimiter | None = None


def deliver_once(
    message: OutgoingMessage,
    *,
    adapter: str,
    channels: Collection[str],
    sent: SentKeys,
    prepare: Callable[[OutgoingMessage], ProviderRequest | DeliveryResult],
    read_answer: Callable[[HttpResponse], tuple[str | None, bool]],
    suppress_statuses: Collection[int] = (),
    limiter: RateLimiter | None = None,
) -> DeliveryResult:
    """One delivery of ``message`` to an HTTP provider, at most once per idempotency key in this process.

    A message on a channel outside ``channels`` fails (``wrong_channel``, naming ``adapter``). A key already
    in ``sent`` answers ``sent`` with its provider id, before ``prepare`` or any call.
    Otherwise ``prepare`` builds the request, or returns the result of a message that must not be sent;
    then ``limiter`` (the provider's rate limit) gives the call its turn, or a transient ``rate_limited``
    when the wait would be too long; a network failure is a transient ``transport_failure``; an answer
    goes to ``classify_http`` with ``read_answer``'s (provider id, recipient refused) and
    ``suppress_statuses``. A delivered message's key and provider id are added to ``sent``.
    """
    request = _prepared(message, adapter, channels, sent, prepare)
    if isinstance(request, DeliveryResult):
        return request
    limiter = request.limiter or limiter
    if limiter is not None:
        refused = limiter.wait_turn(request.provider)
        if refused is not None:
            return refused
    try:
        response = request.client.post(request.body, request.headers, target=request.target)
    except OSError as exc:
        return transport_failure(request.provider, exc)
    return _answered(message, request, response, sent, read_answer, suppress_statuses)


def deliver_many(
    messages: Sequence[OutgoingMessage],
    *,
    adapter: str,
    channels: Collection[str],
    sent: SentKeys,
    prepare: Callable[[OutgoingMessage], ProviderRequest | DeliveryResult],
    read_answer: Callable[[HttpResponse, OutgoingMessage], tuple[str | None, bool]],
    suppress_statuses: Collection[int] = (),
    limiter: RateLimiter | None = None,
    width: int | None = None,
) -> list[DeliveryResult]:
    """``deliver_once`` for each of ``messages`` (results in the same order), all from this thread,
    without a thread per request: the requests are prepared, then handed to their pool's event loop
    together (``HttpPool.request_many``; at most ``width`` at a time when that is below the pool's
    ``max_in_flight``), or, under a rate limit, each on its turn; then the answers are read. Same checks,
    bounds and results as ``deliver_once``; a message whose preparation raises gets a transient
    ``adapter_error`` alone."""
    results: list[DeliveryResult | None] = [None] * len(messages)
    paced: list[tuple[int, ProviderRequest, concurrent.futures.Future[HttpResponse]]] = []
    waiting: dict[int, list[tuple[int, ProviderRequest]]] = {}  # by pool: prepared, not handed over yet
    handed: list[tuple[list[tuple[int, ProviderRequest]], _Answers]] = []

    def hand_over(part: list[tuple[int, ProviderRequest]]) -> None:
        pool = part[0][1].client.pool
        future = pool.submit_many([("POST", r.client.url_for(r.target), r.body, r.headers) for _, r in part])
        handed.append((part, future))
        if width and width < pool.max_in_flight:  # the lanes are narrower than the pool: one part at a time
            collect(*handed.pop())

    def collect(part: list[tuple[int, ProviderRequest]], future: _Answers) -> None:
        answers = part[0][1].client.pool.results(future, len(part))
        for (index, request), reply in zip(part, answers, strict=True):
            message = messages[index]
            results[index] = _result(message, request, reply, sent, read_answer, suppress_statuses)

    for index, message in enumerate(messages):
        try:
            request = _prepared(message, adapter, channels, sent, prepare)
        except Exception as exc:
            results[index] = DeliveryResult.retry(f"adapter error: {exc}", code="adapter_error")
            continue
        if isinstance(request, DeliveryResult):
            results[index] = request
            continue
        turn = request.limiter or limiter
        if turn is None:
            # Handed over a few at a time, so the first requests go while the next are prepared.
            part = waiting.setdefault(id(request.client.pool), [])
            part.append((index, request))
            if len(part) >= min(HAND_OVER, width or HAND_OVER):
                hand_over(waiting.pop(id(request.client.pool)))
            continue
        # A rate limit spaces the starts: each request goes on its turn, the answers are read below.
        refused = turn.wait_turn(request.provider)
        if refused is not None:
            results[index] = refused
            continue
        try:
            future = request.client.submit(request.body, request.headers, target=request.target)
            paced.append((index, request, future))
        except OSError as exc:
            results[index] = transport_failure(request.provider, exc)
    for part in waiting.values():
        hand_over(part)
    for part, handed_future in handed:
        collect(part, handed_future)
    for index, request, future in paced:
        answer: HttpResponse | OSError
        try:
            answer = request.client.pool.result(future)
        except OSError as exc:
            answer = exc
        results[index] = _result(messages[index], request, answer, sent, read_answer, suppress_statuses)
    return [result for result in results if result is not None]


def _result(
    message: OutgoingMessage,
    request: ProviderRequest,
    answer: HttpResponse | OSError,
    sent: SentKeys,
    read_answer: Callable[[HttpResponse, OutgoingMessage], tuple[str | None, bool]],
    suppress_statuses: Collection[int],
) -> DeliveryResult:
    if isinstance(answer, OSError):
        return transport_failure(request.provider, answer)
    read = partial(_read_for, read_answer, message)
    return _answered(message, request, answer, sent, read, suppress_statuses)


def _read_for(
    read_answer: Callable[[HttpResponse, OutgoingMessage], tuple[str | None, bool]],
    message: OutgoingMessage,
    response: HttpResponse,
) -> tuple[str | None, bool]:
    return read_answer(response, message)


def _prepared(
    message: OutgoingMessage,
    adapter: str,
    channels: Collection[str],
    sent: SentKeys,
    prepare: Callable[[OutgoingMessage], ProviderRequest | DeliveryResult],
) -> ProviderRequest | DeliveryResult:
    if message.channel not in channels:
        return DeliveryResult.failed(
            f"channel {message.channel!r} not served by {adapter}", code="wrong_channel"
        )
    known = sent.get(message.idempotency_key)
    if known is not None:
        return DeliveryResult.sent(known)
    return prepare(message)


def _answered(
    message: OutgoingMessage,
    request: ProviderRequest,
    response: HttpResponse,
    sent: SentKeys,
    read_answer: Callable[[HttpResponse], tuple[str | None, bool]],
    suppress_statuses: Collection[int],
) -> DeliveryResult:
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


def __getattr__(name: str) -> Any:
    """``HttpPool`` lives in ``http_pool`` (it loads httpx); reachable from here too."""
    if name == "HttpPool":
        from orchestrator.channels._http_pool import HttpPool

        return HttpPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class HttpDelivery:
    """``send`` and ``send_many`` of an adapter that makes one provider request per message, through
    ``deliver_once`` and ``deliver_many``. A subclass names itself (``adapter_name``, for wrong-channel
    results), sets ``channels`` and ``_sent`` (and ``_limiter``, ``suppress_statuses`` when it has them),
    and gives ``_request`` (the request of a message, or the result of one that must not be sent) and
    ``_answer`` (the provider id in an answer, and whether it refuses the recipient)."""

    adapter_name = "this adapter"
    channels: frozenset[str]
    suppress_statuses: Collection[int] = ()
    _sent: SentKeys
    _limiter: RateLimiter | None = None

    def _request(self, message: OutgoingMessage) -> ProviderRequest | DeliveryResult:
        raise NotImplementedError

    def _answer(self, response: HttpResponse, message: OutgoingMessage) -> tuple[str | None, bool]:
        raise NotImplementedError

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        return deliver_once(
            message,
            adapter=self.adapter_name,
            channels=self.channels,
            sent=self._sent,
            prepare=self._request,
            read_answer=lambda response: self._answer(response, message),
            suppress_statuses=self.suppress_statuses,
            limiter=self._limiter,
        )

    def send_many(
        self, messages: Sequence[OutgoingMessage], width: int | None = None
    ) -> list[DeliveryResult]:
        """``send`` for each message, all in flight together from this thread (``deliver_many``)."""
        return deliver_many(
            messages,
            adapter=self.adapter_name,
            channels=self.channels,
            sent=self._sent,
            prepare=self._request,
            read_answer=self._answer,
            suppress_statuses=self.suppress_statuses,
            limiter=self._limiter,
            width=width,
        )
