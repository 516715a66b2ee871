"""The SMTP email adapter: a pool of reused connections, STARTTLS/TLS and AUTH configurable, always bounded.

Connections are kept and reused (``SmtpPool``): opening one costs a TCP handshake, often TLS and a login,
far more than a message. The pool holds at most ``limits.concurrency`` connections, each used by one
thread at a time (the adapter is thread-safe); a connection goes back to the pool after each message, is
closed (QUIT) after ``max_messages_per_connection`` messages, and idle ones are closed after
``idle_timeout_s`` (servers drop idle sessions anyway). A transaction that ends early (a refused sender or
recipient) is followed by RSET before the connection is used again; a connection that fails or times out
is dropped.

A pooled connection may have died while idle (the server timed the session out). A message whose send on a
*reused* connection fails because the connection is gone (disconnected, reset, or a 421 "closing" reply)
before the server accepted the DATA command is sent again, once, on a fresh connection: nothing was
handed over yet. Once the DATA command is accepted (354) the message may have reached the server, so a
failure from there on is never retried here; it is classified as below.

SMTP has no idempotency key of its own. The message carries one twice: the Message-ID derived from the
key (identical on every resend, so receiving systems and ESPs can drop the duplicate) and the
``X-Idempotency-Key`` header; within a process, a key already accepted answers ``sent`` without a second
delivery.

Outcomes (see ``delivery``): 250 delivered; 4xx, timeouts and connection failures transient; 5xx permanent,
and a recipient refused with 5xx is a hard bounce that suppresses the address. An authentication failure
or a server without STARTTLS is a configuration problem, not a property of the message: it is reported as
transient with its own code, so fixing the settings lets the message go out. ``limits.rate_per_s`` paces
the messages (see ``limits``), across threads and processes sharing the server and login.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from orchestrator.channels._base import DeliveryResult, OutgoingMessage
from orchestrator.channels._delivery import SentKeys, classify_smtp, short, transport_failure
from orchestrator.channels._limits import ProviderLimits
from orchestrator.channels._mail import ComposeError, EmailSettings, compose_email
from orchestrator.errors import DeliveryError

Security = Literal["starttls", "tls", "none"]
_LEADING_DOT = re.compile(rb"(?m)^\.")
_CLOSING = 421  # "service not available, closing transmission channel"


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the mail server.

    ``security``: ``starttls`` (upgrade a plain connection, usually port 587), ``tls`` (TLS from the first
    byte, usually 465) or ``none`` (only for a relay on a trusted network). ``timeout_s`` bounds the
    connection and every command. ``ssl_context`` defaults to the system's trusted certificates.
    ``limits.concurrency`` is the size of the connection pool (and the messages in flight);
    ``limits.rate_per_s`` the messages per second the server takes. ``idle_timeout_s``: an idle pooled
    connection is closed after this long; ``max_messages_per_connection``: then a fresh one is opened.
    The password never appears in ``repr``.
    """

    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    local_hostname: str | None = None
    limits: ProviderLimits = field(default_factory=lambda: ProviderLimits(concurrency=4))
    idle_timeout_s: float = 30.0
    max_messages_per_connection: int = 100

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError(f"security must be starttls, tls or none, not {self.security!r}")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")
        if not self.idle_timeout_s > 0:
            raise ValueError("idle_timeout_s must be > 0")
        if self.max_messages_per_connection < 1:
            raise ValueError("max_messages_per_connection must be at least 1")

    @property
    def provider_key(self) -> str:
        """What identifies the provider account for its rate limit: server, port and login."""
        return f"smtp:{self.host}:{self.port}:{self.username or ''}"


class _Refused(DeliveryError):
    """An SMTP command was refused; carries the classified result. ``reset``: a transaction was left open
    (a refused sender or recipient), so the session needs RSET before its next message."""

    def __init__(self, result: DeliveryResult, *, reset: bool) -> None:
        super().__init__(result.error)
        self.result = result
        self.reset = reset


class _GoneBeforeData(DeliveryError):
    """The connection was found dead before the server accepted DATA: nothing was handed over."""

    def __init__(self, cause: BaseException | DeliveryResult) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Connection:
    client: smtplib.SMTP
    last_used: float
    messages: int = 0


class SmtpPool:
    """Open SMTP sessions to one server, reused across messages and threads (see the module docstring).

    ``take`` hands out a session for one thread's exclusive use (an idle one, or a fresh one opened, logged
    in and secured), waiting at most ``timeout_s`` while all ``size`` are busy; ``give_back`` returns it
    (or drops it); ``close`` quits every idle session and refuses new ones.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.size = settings.limits.concurrency
        self._context = settings.ssl_context or ssl.create_default_context()
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: list[_Connection] = []  # most recently used last: taken first (LIFO)
        self._lock = threading.Lock()
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()
        self.opened = 0  # sessions opened so far (for tests and benchmarks)

    # -- sessions -------------------------------------------------------------------------------------

    def acquire_slot(self) -> bool:
        """Wait (at most ``timeout_s``) until fewer than ``size`` sessions are in use; ``False`` if not."""
        return self._slots.acquire(timeout=self.settings.timeout_s)

    def release_slot(self) -> None:
        self._slots.release()

    def take_idle(self) -> _Connection | None:
        """The most recently used idle session that has not idled too long, or ``None``."""
        expired: list[_Connection] = []
        found: _Connection | None = None
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if now - conn.last_used < self.settings.idle_timeout_s:
                    found = conn
                    break
                expired.append(conn)
        for conn in expired:
            _quit(conn.client)
        return found

    def open(self) -> _Connection:
        """A fresh session: connected, EHLO, STARTTLS (and EHLO again) and AUTH as configured. Raises the
        smtplib or socket error of the step that failed."""
        if self._closed:
            raise smtplib.SMTPServerDisconnected("the SMTP adapter is closed")
        s = self.settings
        client: smtplib.SMTP
        if s.security == "tls":
            client = smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout_s, context=self._context
            )
        else:
            client = smtplib.SMTP(s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout_s)
        try:
            client.ehlo()
            if s.security == "starttls":
                client.starttls(context=self._context)
                client.ehlo()
            if s.username is not None and s.password is not None:
                client.login(s.username, s.password)
        except BaseException:
            client.close()
            raise
        with self._lock:
            self.opened += 1
        return _Connection(client, time.monotonic())

    def give_back(self, conn: _Connection, *, healthy: bool) -> None:
        """Return a session after a message: kept for the next one when ``healthy`` and under its message
        limit, else closed (with QUIT when healthy)."""
        conn.messages += 1
        if not healthy:
            conn.client.close()
            return
        if self._closed or conn.messages >= self.settings.max_messages_per_connection:
            _quit(conn.client)
            return
        conn.last_used = time.monotonic()
        with self._lock:
            self._idle.append(conn)
            start_reaper = self._reaper is None
            if start_reaper:
                self._reaper = threading.Thread(
                    target=_reap, args=(weakref.ref(self), self._wake), name="smtp-pool-reaper", daemon=True
                )
        if start_reaper:
            assert self._reaper is not None
            self._reaper.start()

    def close_idle(self, older_than_s: float = 0.0) -> int:
        """Quit the idle sessions unused for ``older_than_s`` seconds; the number closed."""
        now = time.monotonic()
        with self._lock:
            stale = [c for c in self._idle if now - c.last_used >= older_than_s]
            self._idle = [c for c in self._idle if now - c.last_used < older_than_s]
        for conn in stale:
            _quit(conn.client)
        return len(stale)

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Quit every idle session; sessions in use are closed when given back."""
        self._closed = True
        self._wake.set()
        self.close_idle()


def _reap(pool_ref: weakref.ref[SmtpPool], wake: threading.Event) -> None:
    """Close idle sessions past their idle time, until the pool is closed or gone."""
    while True:
        pool = pool_ref()
        if pool is None or pool._closed:
            return
        interval = pool.settings.idle_timeout_s / 2
        pool.close_idle(pool.settings.idle_timeout_s)
        del pool  # hold no reference while waiting: an abandoned pool can be collected
        if wake.wait(interval):
            return


def _quit(client: smtplib.SMTP) -> None:
    """QUIT politely, then close; a session that is already gone is simply closed."""
    with contextlib.suppress(OSError, smtplib.SMTPException):
        client.quit()
    client.close()


class SmtpAdapter:
    """Sends email over SMTP through a pool of connections; see the module docstring for outcomes,
    reuse and idempotency. ``state_dir``: where the rate limit is shared (``limits``); ``close()`` quits
    the pooled connections."""

    channels: frozenset[str] = frozenset({"email"})

    def __init__(
        self,
        smtp: SmtpSettings,
        email: EmailSettings,
        *,
        sent_keys: SentKeys | None = None,
        state_dir: Path | bool | None = True,
    ) -> None:
        self.smtp = smtp
        self.email = email
        self.concurrency = smtp.limits.concurrency
        self.pool = SmtpPool(smtp)
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._limiter = smtp.limits.limiter(smtp.provider_key, state_dir)
        self._server = f"mail server {smtp.host}:{smtp.port}"

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        if message.channel != "email":
            return DeliveryResult.failed(
                f"channel {message.channel!r} not served by SMTP", code="wrong_channel"
            )
        known = self._sent.get(message.idempotency_key)
        if known is not None:
            return DeliveryResult.sent(known)
        try:
            composed = compose_email(message, self.email)
        except ComposeError as exc:
            return DeliveryResult.failed(str(exc), code=exc.code, suppress=exc.suppress)
        if self._limiter is not None:
            refused = self._limiter.wait_turn(self._server)
            if refused is not None:
                return refused
        if not self.pool.acquire_slot():
            return DeliveryResult.retry(
                f"all {self.pool.size} connections to the {self._server} stayed busy", code="pool_busy"
            )
        try:
            result = self._deliver(composed.envelope_from, composed.recipient, composed.data)
        finally:
            self.pool.release_slot()
        if result is None:
            self._sent.add(message.idempotency_key, composed.message_id)
            return DeliveryResult.sent(composed.message_id)
        return result

    def _deliver(self, sender: str, recipient: str, data: bytes) -> DeliveryResult | None:
        """One message on a pooled session (retried once on a fresh one when a reused session turns out
        dead before DATA); ``None`` when the server accepted it, else the classified result."""
        conn = self.pool.take_idle()
        while True:
            reused = conn is not None
            try:
                if conn is None:
                    conn = self.pool.open()
            except Exception as exc:
                return self._classify(exc, recipient)
            try:
                _transaction(conn.client, sender, recipient, data)
            except _GoneBeforeData as exc:
                conn.client.close()
                conn = None
                if reused:
                    continue  # the pooled session had died: once more on a fresh one
                cause = exc.cause
                return cause if isinstance(cause, DeliveryResult) else self._classify(cause, recipient)
            except _Refused as exc:
                healthy = exc.result.code != f"smtp_{_CLOSING}" and (not exc.reset or _reset(conn.client))
                self.pool.give_back(conn, healthy=healthy)
                return exc.result
            except Exception as exc:
                conn.client.close()
                return self._classify(exc, recipient)
            self.pool.give_back(conn, healthy=True)
            return None

    def _classify(self, exc: BaseException, recipient: str) -> DeliveryResult:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return DeliveryResult.retry(
                f"the mail server refused the login ({exc.smtp_code}: {short(exc.smtp_error)})",
                code="smtp_auth",
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryResult.retry(
                f"the mail server lacks a required feature: {exc}", code="smtp_config"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return classify_smtp(exc.smtp_code, exc.smtp_error, stage="session", recipient=recipient)
        if isinstance(exc, OSError | smtplib.SMTPException):
            # Timeouts (TimeoutError), refused or dropped connections, TLS failures, a server that hangs up.
            return transport_failure(self._server, exc)
        raise exc

    def close(self) -> None:
        """Quit the pooled connections and release the rate limiter's file."""
        self.pool.close()
        if self._limiter is not None:
            self._limiter.close()


def _transaction(client: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """MAIL, RCPT and DATA on an open session, each failure classified at its own stage (the three commands
    in one write when the server offers PIPELINING, RFC 2920). Raises ``_GoneBeforeData`` when the session
    dies (or answers 421) before DATA is accepted, ``_Refused`` for a refusal, and the smtplib or socket
    error of a failure after that."""
    try:
        if client.does_esmtp and client.has_extn("pipelining"):
            # Both addresses are bare ASCII local@domain (checked by ``mail``): no quoting to do.
            client.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
            replies = [client.getreply(), client.getreply(), client.getreply()]
        else:
            replies = []
            for command in (
                lambda: client.mail(sender),
                lambda: client.rcpt(recipient),
                lambda: _data(client),
            ):
                replies.append(command())
                if replies[-1][0] not in (250, 251, 354):
                    break
        for (code, reply), stage, ok in zip(replies, _STAGES, ((250,), (250, 251), (354,)), strict=False):
            if code not in ok:
                if len(replies) == 3 and replies[2][0] == 354:
                    # A server that takes DATA after refusing the sender or recipient: abandon the session
                    # rather than end a message that has nobody to go to.
                    client.close()
                raise _refused(code, reply, stage, recipient)
    except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
        raise _GoneBeforeData(exc) from exc
    # DATA is accepted: from here on the message may reach the server, so nothing below is retried.
    payload = _LEADING_DOT.sub(b"..", data)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    client.send(payload + b".\r\n")
    code, reply = client.getreply()
    if code != 250:
        raise _Refused(classify_smtp(code, reply, stage="message", recipient=recipient), reset=False)


_STAGES = ("sender", "recipient", "message")


def _data(client: smtplib.SMTP) -> tuple[int, bytes]:
    """The DATA command alone (smtplib's ``data`` also sends the message: the reply comes first here)."""
    client.putcmd("data")
    return client.getreply()


def _refused(code: int, reply: bytes | str, stage: str, recipient: str) -> Exception:
    """The exception for a refusal before DATA: a 421 (the server is closing the session) is a gone
    session; any other refusal leaves a transaction to reset."""
    result = classify_smtp(code, reply, stage=stage, recipient=recipient)
    if code == _CLOSING:
        return _GoneBeforeData(result)
    return _Refused(result, reset=True)


def _reset(client: smtplib.SMTP) -> bool:
    """RSET after an aborted transaction; ``False`` when the session did not take it (drop it then)."""
    try:
        code, _ = client.rset()
    except (OSError, smtplib.SMTPException):
        return False
    return code == 250
