"""The pooled HTTP client behind ``transport``: httpx with a deadline on every exchange (see ``transport``
for what it guarantees). Kept apart so that importing the channels does not load httpx: the adapters
create their pools when they are built.

``HttpPool`` holds the connections of one provider and runs every exchange on httpx's asyncio transport,
in an event loop thread of its own (uvloop when installed): one thread does the I/O of all the requests in
flight, however many, instead of a blocked thread per request whose wake-ups fight over the GIL. Callers
stay synchronous: ``request`` waits for one exchange; ``submit`` starts one and answers a future, so that
one thread can have a whole group in flight (``transport.deliver_many``). Each exchange runs under
``asyncio.timeout`` set to its deadline, which cancels that exchange alone, whatever step it is at.

httpcore reaches the network through ``_AsyncioBackend``: asyncio's own transports and protocols (rather
than httpcore's anyio backend, whose cancel scopes and socket polls cost more than the rest of a request),
with a request's head and body gathered into one write, and an idle connection's check answered from the
protocol's state (closed by the server, or data it should not have sent) without a system call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import httpcore
import httpx

from orchestrator.channels._transport import DEFAULT_MAX_RESPONSE_BYTES, USER_AGENT, HttpResponse

_T = TypeVar("_T")
Exchange = tuple[str, "str | httpx.URL", bytes, "Mapping[str, str] | None"]
"""One request of ``HttpPool.request_many``: method, URL, body, headers."""

# -- asyncio streams for httpcore ----------------------------------------------------------------------


class _Protocol(asyncio.Protocol):
    """The receiving side of one connection: what arrived and not yet read, end of file, the error."""

    PAUSE_AT = 1 << 18  # stop reading from the socket past this many unread bytes

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.PAUSE_AT and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection for httpcore. Timeouts per operation are not applied here: the whole exchange runs
    under ``asyncio.timeout`` at its deadline (``HttpPool``), which ends any of these waits."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, *, gather: bool) -> None:
        self._transport = transport
        self._protocol = protocol
        self._gather = gather
        self._pending: list[bytes] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        protocol = self._protocol
        while not protocol.chunks:
            if protocol.eof:
                if protocol.error is not None:
                    raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
                return b""
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.waiter
            finally:
                protocol.waiter = None
        data = protocol.chunks[0]
        if len(data) <= max_bytes:
            protocol.chunks.pop(0)
        else:
            data, protocol.chunks[0] = data[:max_bytes], data[max_bytes:]
        protocol.size -= len(data)
        if protocol.paused and protocol.size <= _Protocol.PAUSE_AT // 2:
            protocol.paused = False
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # With ``gather`` (HTTP/1.1 only), writes wait for the next read: every HTTP/1.1 request is followed
        # by a read of its answer, so a request's head and body leave in one write. HTTP/2 writes go at once
        # (another stream may be the one reading).
        if buffer:
            self._pending.append(buffer)
        if not self._gather:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._protocol.eof and self._protocol.error is not None:
            self._pending.clear()
            raise httpcore.WriteError(str(self._protocol.error) or "the connection was closed")
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection was closed")
        self._transport.write(data)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._pending.clear()
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self._flush()
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport, self._protocol, ssl_context, server_hostname=server_hostname
            )
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        assert transport is not None
        return _AsyncioStream(transport, self._protocol, gather=self._gather)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks before reusing an idle connection: closed by the server, or sent something.
            return self._protocol.eof or bool(self._protocol.chunks)
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio's transports (see ``_AsyncioStream``; ``gather`` for
    HTTP/1.1 alone)."""

    def __init__(self, *, gather: bool) -> None:
        self._gather = gather

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_connection(
                _Protocol, host, port, local_addr=(local_address, 0) if local_address else None
            )
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        if socket_options and sock is not None:
            for option in socket_options:
                sock.setsockopt(*option)
        return _AsyncioStream(transport, protocol, gather=self._gather)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - provider APIs are reached over TCP
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _AsyncioStream(transport, protocol, gather=self._gather)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's asyncio transport over a connection pool that uses ``_AsyncioBackend``."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, limits: httpx.Limits, http1: bool, http2: bool
    ) -> None:
        super().__init__(verify=ssl_context, limits=limits, http1=http1, http2=http2, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            network_backend=_AsyncioBackend(gather=not http2),
        )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


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

    Requests are built as ``httpx.Request`` (by the calling thread). Over HTTP/1.1 alone they go to
    httpcore's HTTP/1.1 connections held by ``_Connections``: httpcore's pool scans all its connections
    and hands each one over through locks and events for every request, which cost a quarter of an
    exchange. With ``http2`` they go to httpx's asyncio transport (its pool multiplexes the streams). The
    ``httpx.AsyncClient`` layer would only add cookies, redirects and auth, which provider calls do not
    use. A pool serves one origin best: a request to another origin may close an idle connection to make
    room.
    """

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
        self._turns = asyncio.Semaphore(self.max_in_flight)  # used on the loop alone
        context = ssl_context or ssl.create_default_context()
        self._closed = False
        self._timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        self._connections: _Connections | None = None
        self._http2: _Transport | None = None
        if http2:
            limits = httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=keepalive_s,
            )
            self._http2 = _Transport(ssl_context=context, limits=limits, http1=http1, http2=True)
        else:
            self._connections = _Connections(context, max_connections, keepalive_s)
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-pool", daemon=True)
        self._thread.start()

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
        ``max_response_bytes``. Raises ``TimeoutError`` past the deadline, ``ConnectionError`` when the
        exchange fails."""
        future = self.submit(method, url, body=body, headers=headers)
        return self.result(future)

    def submit(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> concurrent.futures.Future[HttpResponse]:
        """Start one exchange (``request`` without the wait) and answer its future; ``result`` reads it.
        The deadline starts now and covers the wait for a turn among the ``max_in_flight``."""
        if self._closed:
            raise ConnectionError("the HTTP client is closed")
        deadline = time.monotonic() + self.timeout_s
        coroutine = self._exchange(self._build(method, url, body, headers), deadline)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError as exc:  # the loop was stopped by close()
            coroutine.close()
            raise ConnectionError("the HTTP client is closed") from exc
        setattr(future, "deadline", deadline)  # noqa: B010 - read by result()
        return future

    def result(self, future: concurrent.futures.Future[_T]) -> _T:
        """The answer of a ``submit``-ted exchange, once it has ended (by its deadline at the latest)."""
        deadline: float = getattr(future, "deadline", time.monotonic() + self.timeout_s)
        try:
            # The coroutine ends itself at the deadline; the margin covers a loop that is slow to run it.
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from None
        except concurrent.futures.CancelledError:
            raise ConnectionError("the HTTP client was closed during the exchange") from None

    def request_many(self, requests: Sequence[Exchange]) -> list[HttpResponse | OSError]:
        """Several exchanges (method, URL, body, headers) at once, handed to the loop in one go; each
        answer, or its ``TimeoutError``/``ConnectionError``, in order. Every exchange has the deadline
        ``timeout_s`` from now, its wait for a turn among the ``max_in_flight`` included."""
        return self.results(self.submit_many(requests), len(requests))

    def submit_many(
        self, requests: Sequence[Exchange]
    ) -> concurrent.futures.Future[list[HttpResponse | OSError]]:
        """``request_many`` without the wait: ``results`` reads the answers."""
        future: concurrent.futures.Future[list[HttpResponse | OSError]] = concurrent.futures.Future()
        if self._closed:
            future.set_exception(ConnectionError("the HTTP client is closed"))
            return future
        deadline = time.monotonic() + self.timeout_s
        coroutine = self._exchange_all([self._build(*request) for request in requests], deadline)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:  # the loop was stopped by close()
            coroutine.close()
            future.set_exception(ConnectionError("the HTTP client is closed"))
            return future
        setattr(future, "deadline", deadline)  # noqa: B010 - read by result()
        return future

    def results(
        self, future: concurrent.futures.Future[list[HttpResponse | OSError]], count: int | None = None
    ) -> list[HttpResponse | OSError]:
        """The answers of a ``submit_many`` (``count`` requests: every one gets the error of a failed
        hand-over)."""
        try:
            return self.result(future)
        except OSError as exc:
            return [exc] * (count if count is not None else 0)

    def _build(
        self, method: str, url: str | httpx.URL, body: bytes, headers: Mapping[str, str] | None
    ) -> httpx.Request:
        """The request, built by the calling thread (not the loop's: it has every exchange's I/O to do)."""
        return httpx.Request(
            method,
            url,
            content=body,
            headers=[*_DEFAULT_HEADERS, *(headers or {}).items()],
            extensions={"timeout": self._timeouts},
        )

    async def _exchange_all(
        self, requests: Sequence[httpx.Request], deadline: float
    ) -> list[HttpResponse | OSError]:
        answers = await asyncio.gather(
            *(self._exchange(request, deadline) for request in requests),
            return_exceptions=True,
        )
        return [
            a if isinstance(a, HttpResponse | OSError) else ConnectionError(f"{type(a).__name__}: {a}")
            for a in answers
        ]

    async def _exchange(self, request: httpx.Request, deadline: float) -> HttpResponse:
        try:
            if self._turns.locked():
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._turns.acquire()
            else:
                await self._turns.acquire()  # a free turn: taken at once
        except TimeoutError:
            raise TimeoutError(
                f"all {self.max_in_flight} requests to the provider stayed in flight for {self.timeout_s:g} s"
            ) from None
        try:
            if self._connections is not None:
                return await self._exchange_http1(request, deadline)
            return await self._exchange_now(request, deadline)
        finally:
            self._turns.release()

    async def _exchange_http1(self, request: httpx.Request, deadline: float) -> HttpResponse:
        """One HTTP/1.1 exchange on a connection of ``_Connections`` (see ``HttpPool``)."""
        assert self._connections is not None
        connection: httpcore.AsyncHTTP11Connection | None = None
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                connection = await self._connections.take(request.url)
                url = request.url
                response = await connection.handle_async_request(
                    httpcore.Request(
                        method=request.method,
                        url=httpcore.URL(
                            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                        ),
                        headers=request.headers.raw,
                        content=request.content,
                        extensions=request.extensions,
                    )
                )
                try:
                    body = await _read_bounded(response.aiter_stream(), self.max_response_bytes)
                finally:
                    await response.aclose()
        except (TimeoutError, httpcore.TimeoutException) as exc:
            self._connections.drop(connection)
            raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            self._connections.drop(connection)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._connections.drop(connection)
            raise
        self._connections.give_back(connection)
        return HttpResponse(
            status=response.status,
            headers={name.decode("latin-1").lower(): v.decode("latin-1") for name, v in response.headers},
            body=body,
        )

    async def _exchange_now(self, request: httpx.Request, deadline: float) -> HttpResponse:
        """One exchange through httpx's transport (HTTP/2 pools)."""
        assert self._http2 is not None
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                response = await self._http2.handle_async_request(request)
                try:
                    body = await _read_bounded(response.aiter_raw(), self.max_response_bytes)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the provider did not answer within {self.timeout_s:g} s") from exc
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        return HttpResponse(
            status=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            body=body,
        )

    async def _shutdown(self) -> None:
        """End the exchanges in flight (their callers get ``ConnectionError``) and close the connections."""
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http2 is not None:
            await self._http2.aclose()
        if self._connections is not None:
            self._connections.close()

    def close(self) -> None:
        """Close every pooled connection, then stop the loop and its thread; later requests fail with
        ``ConnectionError``."""
        self._closed = True
        if self._loop.is_closed() or not self._loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


_DEFAULT_HEADERS = [("User-Agent", USER_AGENT), ("Accept-Encoding", "identity")]


class _Connections:
    """The HTTP/1.1 connections of a pool, reused newest first: httpcore's connection (``h11`` underneath)
    without httpcore's pool, whose bookkeeping for every request (a scan of its connections, locks and
    events to hand one over) cost a quarter of an exchange. Used on the pool's loop alone, by exchanges
    that hold one of the pool's turns: so at most ``max_connections`` are busy when the pool's
    ``max_in_flight`` is not larger; an idle one is closed to make room for another origin's."""

    def __init__(self, ssl_context: ssl.SSLContext, max_connections: int, keepalive_s: float) -> None:
        self._ssl_context = ssl_context
        self._max = max_connections
        self._keepalive_s = keepalive_s
        self._backend = _AsyncioBackend(gather=True)
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTP11Connection]] = {}
        self._count = 0

    async def take(self, url: httpx.URL) -> httpcore.AsyncHTTP11Connection:
        """An idle connection to ``url``'s origin still open, else a new one."""
        scheme, host = url.raw_scheme, url.raw_host
        port = url.port or (443 if scheme == b"https" else 80)
        idle = self._idle.get((scheme, host, port))
        while idle:
            connection = idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            self.drop(connection)
        if self._count >= self._max:
            for other in self._idle.values():
                if other:
                    self.drop(other.pop(0))
                    break
        hostname = host.decode("ascii")
        self._count += 1
        try:
            stream = await self._backend.connect_tcp(hostname, port)
            if scheme == b"https":
                stream = await stream.start_tls(self._ssl_context, server_hostname=hostname)
        except BaseException:
            self._count -= 1
            raise
        return httpcore.AsyncHTTP11Connection(
            httpcore.Origin(scheme, host, port), stream, keepalive_expiry=self._keepalive_s
        )

    def give_back(self, connection: httpcore.AsyncHTTP11Connection) -> None:
        """Keep ``connection`` for the next request, unless it was closed (by the server, or by a cut
        answer)."""
        if connection.is_idle():
            origin = connection._origin  # httpcore keeps the origin there
            self._idle.setdefault((origin.scheme, origin.host, origin.port), []).append(connection)
        else:
            self.drop(connection)

    def drop(self, connection: httpcore.AsyncHTTP11Connection | None) -> None:
        """Close ``connection`` (after a failure, or expired)."""
        if connection is None:
            return
        self._count -= 1
        stream = connection._network_stream  # closed at once, without awaiting
        if isinstance(stream, _AsyncioStream):
            stream.close()

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                self.drop(idle.pop())


async def _read_bounded(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """An answer's body, read up to ``limit`` bytes (0: nothing read); the rest is left unread, and
    closing the response then drops the connection."""
    kept: list[bytes] = []
    size = 0
    if limit:
        async for chunk in chunks:
            kept.append(chunk[: limit - size])
            size += len(kept[-1])
            if size >= limit:
                break
    return kept[0] if len(kept) == 1 else b"".join(kept)
