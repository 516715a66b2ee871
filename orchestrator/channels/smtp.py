"""The SMTP email adapter: one connection per message, STARTTLS/TLS and AUTH configurable, always bounded.

SMTP has no idempotency key of its own. The message carries one twice: the Message-ID derived from the
key (identical on every resend, so receiving systems and ESPs can drop the duplicate) and the
``X-Idempotency-Key`` header; within a process, a key already accepted answers ``sent`` without a second
delivery.

Outcomes (see ``delivery``): 250 delivered; 4xx, timeouts and connection failures transient; 5xx permanent,
and a recipient refused with 5xx is a hard bounce that suppresses the address. An authentication failure
or a server without STARTTLS is a configuration problem, not a property of the message: it is reported as
transient with its own code, so fixing the settings lets the message go out.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.channels.base import DeliveryResult, OutgoingMessage
from orchestrator.channels.delivery import SentKeys, classify_smtp, short, transport_failure
from orchestrator.channels.mail import ComposeError, EmailSettings, compose_email

Security = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the mail server.

    ``security``: ``starttls`` (upgrade a plain connection, usually port 587), ``tls`` (TLS from the first
    byte, usually 465) or ``none`` (only for a relay on a trusted network). ``timeout_s`` bounds the
    connection and every command. ``ssl_context`` defaults to the system's trusted certificates.
    """

    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    local_hostname: str | None = None

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError(f"security must be starttls, tls or none, not {self.security!r}")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")


class _Refused(Exception):
    """An SMTP command failed; carries the classified result."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.error)
        self.result = result


class SmtpAdapter:
    """Sends email over SMTP; see the module docstring for outcomes and idempotency."""

    channels: frozenset[str] = frozenset({"email"})

    def __init__(
        self, smtp: SmtpSettings, email: EmailSettings, *, sent_keys: SentKeys | None = None
    ) -> None:
        self.smtp = smtp
        self.email = email
        self._sent = sent_keys if sent_keys is not None else SentKeys()
        self._context = smtp.ssl_context or ssl.create_default_context()

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
        try:
            self._deliver(composed.envelope_from, composed.recipient, composed.data)
        except _Refused as exc:
            return exc.result
        except smtplib.SMTPAuthenticationError as exc:
            return DeliveryResult.retry(
                f"the mail server refused the login ({exc.smtp_code}: {short(exc.smtp_error)})",
                code="smtp_auth",
            )
        except smtplib.SMTPNotSupportedError as exc:
            return DeliveryResult.retry(
                f"the mail server lacks a required feature: {exc}", code="smtp_config"
            )
        except smtplib.SMTPResponseException as exc:
            return classify_smtp(exc.smtp_code, exc.smtp_error, stage="session", recipient=composed.recipient)
        except (OSError, smtplib.SMTPException) as exc:
            # Timeouts (TimeoutError), refused or dropped connections, TLS failures, a server that hangs up.
            return transport_failure(f"mail server {self.smtp.host}:{self.smtp.port}", exc)
        self._sent.add(message.idempotency_key, composed.message_id)
        return DeliveryResult.sent(composed.message_id)

    def _deliver(self, sender: str, recipient: str, data: bytes) -> None:
        """One SMTP session: connect, secure, log in, MAIL/RCPT/DATA. Raises on any failure."""
        smtp = self.smtp
        client: smtplib.SMTP
        if smtp.security == "tls":
            client = smtplib.SMTP_SSL(
                smtp.host,
                smtp.port,
                local_hostname=smtp.local_hostname,
                timeout=smtp.timeout_s,
                context=self._context,
            )
        else:
            client = smtplib.SMTP(
                smtp.host, smtp.port, local_hostname=smtp.local_hostname, timeout=smtp.timeout_s
            )
        try:
            client.ehlo()
            if smtp.security == "starttls":
                client.starttls(context=self._context)
                client.ehlo()
            if smtp.username is not None and smtp.password is not None:
                client.login(smtp.username, smtp.password)
            # The commands one by one rather than sendmail(): each failure is classified at its own stage.
            reply: bytes | str
            code, reply = client.mail(sender)
            if code != 250:
                raise _Refused(classify_smtp(code, reply, stage="sender", recipient=recipient))
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                raise _Refused(classify_smtp(code, reply, stage="recipient", recipient=recipient))
            try:
                code, reply = client.data(data)
            except smtplib.SMTPDataError as exc:  # the DATA command itself was refused
                code, reply = exc.smtp_code, exc.smtp_error
            if code != 250:
                raise _Refused(classify_smtp(code, reply, stage="message", recipient=recipient))
        finally:
            # The message is accepted (or refused) by now: a failing QUIT must not turn it into a retry.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()
            client.close()
