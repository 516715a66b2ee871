"""The pooled HTTP client behind ``transport``: httpx with a deadline on every exchange (see ``transport``
for what it guarantees). Kept apart so that importing the channels does not load httpx: the adapters
create their pools when they are built.

``HttpPool`` holds the connections of one provider. Over HTTP/1.1 it drives httpx's blocking transport
from the caller's thread, through a network backend whose every socket operation gets the time left
before the exchange's deadline; over HTTP/2 it runs httpx's asyncio transport in an event loop thread of
its own (see ``transport``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from orchestrator.channels.transport import DEFAULT_MAX_RESPONSE_BYTES, USER_AGENT, HttpResponse

# -- the deadline -------------------------------------------------------------------------------------

# The deadline of the exchange running on this thread (httpx's sync client does all its I/O on the
# calling thread), as a time.monotonic() value; unset outside an exchange.
_exchange = threading.local()


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before this thread's deadline; ``error`` once it has passed."""
    deadline: float | None = getattr(_exchange, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the exchange reached its deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the deadline of the exchange using it.

    Two savings on the way, for providers called thousands of times a second: with ``gather`` writes are
    gathered and sent by the next read (a request's head and body leave in one packet rather than two;
    every HTTP/1.1 request is followed by a read of its answer, so nothing waits), and httpcore's check
    that an idle connection is still open (a ``poll`` on each idle connection, for every request the pool
    assigns) is skipped for a connection used within the last ``FRESH_S``: a server closing a keep-alive
    connection that soon is rare, and a request sent on it fails before the server read it (a transient
    failure, sent again with its key).
    """

    FRESH_S = 0.25

    def __init__(self, inner: httpcore.NetworkStream, *, gather: bool) -> None:
        self._inner = inner
        self._gather = gather
        self._pending: list[bytes] = []
        self._lock = threading.Lock()  # HTTP/2: one thread may flush while another writes
        self._used = time.monotonic()

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush(timeout)
        data = self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))
        self._used = time.monotonic()
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not self._gather:
            self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))
            self._used = time.monotonic()
        elif buffer:
            with self._lock:
                self._pending.append(buffer)

    def _flush(self, timeout: float | None) -> None:
        if not self._pending:
            return
        with self._lock:
            data, self._pending = b"".join(self._pending), []
        if data:
            self._inner.write(data, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._flush(timeout)
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, gather=self._gather)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and time.monotonic() - self._used < self.FRESH_S:
            return False
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's blocking backend with ``_DeadlineStream`` streams (gathering writes when ``gather``)."""

    def __init__(self, *, gather: bool) -> None:
        self._inner = httpcore.SyncBackend()
        self._gather = gather

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream, gather=self._gather)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - provider APIs are reached over TCP
        stream = self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream, gather=self._gather)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    """httpx's blocking HTTP/1.1 transport over a connection pool that uses ``_DeadlineBackend``."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(gather=True),
        )


class _LoopTransport:
    """httpx's asyncio transport driven from other threads: an event loop in a daemon thread of its own
    runs every exchange; ``exchange`` blocks its caller until its own exchange ends (at its deadline at the
    latest, by ``asyncio.timeout``, which cancels that exchange alone)."""

    def __init__(self, transport: httpx.AsyncHTTPTransport) -> None:
        self._transport = transport
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http2-pool", daemon=True)
        self._thread.start()

    def exchange(
        self,
        pool: HttpPool,
        method: str,
        url: str | httpx.URL,
        body: bytes,
        headers: Mapping[str, str] | None,
        deadline: float,
    ) -> HttpResponse:
        coroutine = self._exchange(pool, method, url, body, headers, deadline)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError as exc:  # the loop was stopped by close()
            coroutine.close()
            raise ConnectionError("the HTTP client is closed") from exc
        try:
            # The coroutine ends itself at the deadline; the margin covers a loop that is slow to run it.
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the provider did not answer within {pool.timeout_s:g} s") from None
        except concurrent.futures.CancelledError:
            raise ConnectionError("the HTTP client was closed during the exchange") from None

    async def _exchange(
        self,
        pool: HttpPool,
        method: str,
        url: str | httpx.URL,
        body: bytes,
        headers: Mapping[str, str] | None,
        deadline: float,
    ) -> HttpResponse:
        request = httpx.Request(
            method,
            url,
            content=body,
            headers=[*_DEFAULT_HEADERS, *(headers or {}).items()],
            extensions={"timeout": pool._timeouts},
        )
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                response = await self._transport.handle_async_request(request)
                try:
                    chunks: list[bytes] = []
                    size, limit = 0, pool.max_response_bytes
                    if limit:
                        async for chunk in response.aiter_raw():
                            chunks.append(chunk[: limit - size])
                            size += len(chunks[-1])
                            if size >= limit:
                                break
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TimeoutError(f"the provider did not answer within {pool.timeout_s:g} s") from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        return HttpResponse(
            status=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            body=b"".join(chunks),
        )

    async def _shutdown(self) -> None:
        """End the exchanges in flight (their callers get ``ConnectionError``) and close the connections."""
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._transport.aclose()

    def close(self) -> None:
        """Close the connections, then stop the loop and its thread."""
        if self._loop.is_closed() or not self._loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


# -- the pool -----------------------------------------------------------------------------------------


class HttpPool:
    """One pooled, thread-safe HTTP client for one provider (see the module docstring).

    ``max_connections`` bounds the connections open at once; idle connections are kept ``keepalive_s``
    seconds. ``max_in_flight`` (default ``max_connections``) bounds the requests in flight: a request waits
    for its turn here, within its deadline, never in httpcore's pool, whose queue can close a connection it
    has just handed to a waiting request (httpcore issue 1110: the request then fails or hangs). With
    HTTP/1.1 each request holds a connection, so keep ``max_in_flight`` at ``max_connections``; over HTTP/2
    one connection carries many. ``http2`` offers HTTP/2 (ALPN over TLS); with ``http1`` off as well,
    ``http://`` URLs speak HTTP/2 with prior knowledge (h2c). ``ssl_context`` defaults to the system's
    trusted certificates.

    httpcore's pool scans all its connections (and polls the idle ones) for every request it assigns, which
    costs more than the request itself past a few dozen connections; so the connections are split into
    shards of at most ``SHARD_SIZE``, each an httpx transport of its own, and a request goes to the shard
    with the fewest in flight. Requests go straight to httpx's transport (``httpx.Request`` in,
    ``httpx.Response`` out): the ``httpx.Client`` layer would only add cookies, redirects and auth, which
    provider calls do not use, at a third of the cost of a call. A pool serves one origin best: a request
    to another origin may close an idle connection to make room. With ``http2`` the exchanges run on an
    event loop instead (see the module docstring), with ``asyncio.timeout`` as their deadline.
    """

    SHARD_SIZE = 16

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 16,
        max_in_flight: int | None = None,
        keepalive_s: float = 5.0,
        http1: bool = True,
        http2: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not (http1 or http2):
            raise ValueError("enable http1, http2 or both")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must be >= 0")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.max_in_flight = max_in_flight or max_connections
        self._turns = threading.BoundedSemaphore(self.max_in_flight)
        context = ssl_context or ssl.create_default_context()
        self._closed = False
        self._lock = threading.Lock()
        self._timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        self._loop: _LoopTransport | None = None
        self._shards: list[_Shard] = []
        if http2:
            limits = httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=keepalive_s,
            )
            self._loop = _LoopTransport(
                httpx.AsyncHTTPTransport(
                    verify=context, http1=http1, http2=True, limits=limits, trust_env=False
                )
            )
            return
        count = -(-max_connections // self.SHARD_SIZE)
        self._shards = [
            _Shard(
                _Transport(
                    ssl_context=context,
                    limits=httpx.Limits(
                        max_connections=size, max_keepalive_connections=size, keepalive_expiry=keepalive_s
                    ),
                )
            )
            for size in (
                max_connections // count + (1 if i < max_connections % count else 0) for i in range(count)
            )
        ]
        self._lock = threading.Lock()
        self._closed = False
        self._timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}

    @staticmethod
    def parsed(url: str) -> httpx.URL:
        """``url`` parsed once, for a client that sends to it again and again."""
        return httpx.URL(url)

    def post(self, url: str | httpx.URL, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        """POST ``body`` to ``url`` (see the module docstring for the bounds and the errors raised)."""
        return self.request("POST", url, body=body, headers=headers)

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """One exchange, ended by the deadline ``timeout_s`` from now; the answer's body is cut at
        ``max_response_bytes``."""
        if self._closed:
            raise ConnectionError("the HTTP client is closed")
        deadline = time.monotonic() + self.timeout_s
        outer: float | None = getattr(_exchange, "deadline", None)
        if outer is not None:
            deadline = min(deadline, outer)
        if not self._turns.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError(
                f"all {self.max_in_flight} requests to the provider stayed in flight for {self.timeout_s:g} s"
            )
        if self._loop is not None:
            try:
                return self._loop.exchange(self, method, url, body, headers, deadline)
            finally:
                self._turns.release()
        with self._lock:
            shard = min(self._shards, key=_load)
            shard.in_flight += 1
        _exchange.deadline = deadline
        try:
            request = httpx.Request(
                method,
                url,
                content=body,
                headers=[*_DEFAULT_HEADERS, *(headers or {}).items()],
                extensions={"timeout": self._timeouts},
            )
            response = shard.transport.handle_request(request)
            try:
                data = self._read(response)
            finally:
                response.close()
            return HttpResponse(
                status=response.status_code,
                headers={name.lower(): value for name, value in response.headers.items()},
                body=data,
            )
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            _exchange.deadline = outer
            with self._lock:
                shard.in_flight -= 1
            self._turns.release()

    def _read(self, response: httpx.Response) -> bytes:
        limit = self.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        if limit:
            for chunk in response.iter_raw():
                chunks.append(chunk[: limit - size])
                size += len(chunks[-1])
                if size >= limit:
                    break  # the rest is not read: closing the response drops the connection
        return b"".join(chunks)

    def close(self) -> None:
        """Close every pooled connection; later requests fail with ``ConnectionError``."""
        self._closed = True
        for shard in self._shards:
            shard.transport.close()
        if self._loop is not None:
            self._loop.close()


_DEFAULT_HEADERS = [("User-Agent", USER_AGENT), ("Accept-Encoding", "identity")]


@dataclass
class _Shard:
    transport: _Transport
    in_flight: int = 0


def _load(shard: _Shard) -> int:
    return shard.in_flight
