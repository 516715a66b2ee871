"""Real local servers for the channel adapter tests: HTTP (stdlib) and SMTP (aiosmtpd) on 127.0.0.1.

Each server binds a free port, records what it received, answers as the test tells it, and is stopped by
its handle at the end of the test (no process is left behind, no sleeping handler outlives it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# -- HTTP ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Reply:
    """How the server answers one request.

    ``delay_s``: wait before answering (the server stays silent); ``drip_s``: send the body one byte at a
    time with this pause between bytes; ``hang_up``: close the connection without any answer.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0
    hang_up: bool = False


class LocalHttpServer:
    """A threaded HTTP server whose answers come from ``respond(request)``. With ``keep_alive`` it keeps
    connections open between requests (HTTP/1.1 keep-alive); ``connections`` counts those accepted."""

    def __init__(
        self, respond: Callable[[Request], Reply] | None = None, *, keep_alive: bool = False
    ) -> None:
        self.respond = respond or (lambda request: Reply())
        self.keep_alive = keep_alive
        self.connections = 0
        self.requests: list[Request] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(request)
                reply = server.respond(request)
                if reply.delay_s and server._stopping.wait(reply.delay_s):
                    return
                if reply.hang_up:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                if not server.keep_alive:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not reply.drip_s:
                    self.wfile.write(reply.body)
                    return
                for i in range(len(reply.body)):
                    self.wfile.write(reply.body[i : i + 1])
                    self.wfile.flush()
                    if server._stopping.wait(reply.drip_s):
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop to notice, once per interval.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LocalHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # wakes handlers that are waiting out a delay or a drip
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- SMTP ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool


class SmtpRecorder:
    """An aiosmtpd handler that keeps what arrives and can refuse or stall on request."""

    def __init__(self, *, pipelining: bool = False) -> None:
        self.messages: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.data_delay_s = 0.0
        self.connections = 0
        self.commands: list[str] = []  # MAIL, RCPT, DATA and RSET as they arrive
        self.pipelining = pipelining  # advertise PIPELINING (aiosmtpd reads commands in order either way)
        self.hang_up_after_message = False  # close the session right after answering 250 to a message
        self.hang_up_before_reply = False  # close the session once the data is received, without a reply

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.commands.append("MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.commands.append("RSET")
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        self.commands.append("RCPT")
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.commands.append("DATA")
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        self.messages.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.content,
                # STARTTLS fills session.ssl; for TLS from the first byte the transport itself is TLS.
                tls=session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        if self.hang_up_before_reply:
            server.transport.close()
        elif self.hang_up_after_message:
            # After the 250 below is written: the session is gone by the time the client sends again.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 Message accepted for delivery"


def password_authenticator(username: str, password: str) -> Callable[..., AuthResult]:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


class LocalSmtpServer:
    """aiosmtpd's threaded controller on a free port of 127.0.0.1; extra SMTP options pass through."""

    def __init__(self, handler: SmtpRecorder, **smtp_options: Any) -> None:
        self.handler = handler
        self.port = closed_port()
        self._controller = Controller(handler, hostname="127.0.0.1", port=self.port, **smtp_options)

    def __enter__(self) -> LocalSmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made with the openssl command (an EC key: fast to generate)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context


def client_tls_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


# -- HTTP/2 -------------------------------------------------------------------------------------------


class LocalH2Server:
    """An HTTP/2 server with prior knowledge (h2c, no TLS) on a free port of 127.0.0.1, built on ``h2`` and
    asyncio in a thread of its own: answers come from ``respond(request)`` (``Reply.status``, ``headers``,
    ``body`` and ``delay_s``), requests are recorded with their pseudo-header ``:path`` as ``path``; every
    connection is counted in ``connections``."""

    def __init__(self, respond: Callable[[Request], Reply] | None = None) -> None:
        self.respond = respond or (lambda request: Reply())
        self.requests: list[Request] = []
        self.connections = 0
        self.port = closed_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.events

        self.connections += 1
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        tasks: set[asyncio.Task[None]] = set()

        async def answer(stream_id: int, request: Request) -> None:
            reply = self.respond(request)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            headers = [(":status", str(reply.status)), ("content-length", str(len(reply.body)))]
            headers += [(name.lower(), value) for name, value in reply.headers.items()]
            try:
                conn.send_headers(stream_id, headers, end_stream=not reply.body)
                if reply.body:
                    conn.send_data(stream_id, reply.body, end_stream=True)
                writer.write(conn.data_to_send())
            except Exception:  # the stream was reset or the connection closed meanwhile
                pass

        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        request = Request(
                            headers.get(":method", ""),
                            headers.get(":path", ""),
                            {k: v for k, v in headers.items() if not k.startswith(":")},
                            bytes(body),
                        )
                        self.requests.append(request)
                        task = asyncio.ensure_future(answer(event.stream_id, request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                writer.write(conn.data_to_send())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> LocalH2Server:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
