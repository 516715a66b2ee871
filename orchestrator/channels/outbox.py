"""The file outbox: an adapter that "delivers" by writing each message to a folder.

Used by the demo and by anyone who wants to look at what a journey would send before wiring a real
provider. Each message becomes one file, ``<folder>/<channel>/<key>.<ext>``:

- email: ``.eml``, a real RFC 5322 message (From, To, Subject, Date, a Message-ID derived from the
  idempotency key; ``multipart/alternative``, text part first then HTML part, when there is HTML);
- sms: ``.txt``, a small header block (``To:``, ``Key:``), a blank line, then the body;
- push: ``.json`` with recipient, title, body, link.

Files are written atomically (temp file in the same folder, then ``os.replace``) so a reader never sees half
a message, and the file name is the idempotency record: a second send with the same key finds the file and
answers ``sent`` with the same provider id without writing again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from orchestrator.channels.base import CHANNELS, DeliveryResult, OutgoingMessage
from orchestrator.clock import from_us

_EXTENSIONS: dict[str, str] = {"email": "eml", "sms": "txt", "push": "json"}
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_READABLE_CHARS = 80
TEMP_PREFIX = ".tmp-"


def _digest(key: str) -> str:
    # surrogatepass: a key is any str; a lone surrogate must still hash rather than crash the send.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def file_stem(idempotency_key: str) -> str:
    """A file-name-safe stem for ``idempotency_key``, distinct for distinct keys.

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` (so ``a/b`` and ``a_b`` read alike); the appended
    short hash of the raw key keeps them apart. Leading dots are dropped so no outbox file is hidden.
    """
    readable = _UNSAFE_CHARS.sub("_", idempotency_key)[:_READABLE_CHARS].lstrip(".") or "message"
    return f"{readable}-{_digest(idempotency_key)[:12]}"


def message_id_for(idempotency_key: str) -> str:
    """The RFC 5322 Message-ID of the email with this idempotency key (stable across resends)."""
    return f"<{_digest(idempotency_key)[:32]}@outbox.orchestrator.invalid>"


class _Undeliverable(ValueError):
    """The message itself is unacceptable: a permanent failure."""


class OutboxAdapter:
    """Writes messages of all three channels under ``folder``; see the module docstring for the layout."""

    channels: frozenset[str] = frozenset(CHANNELS)

    def __init__(self, folder: Path, *, sender: str = "Orchestrator <noreply@orchestrator.invalid>") -> None:
        self.folder = Path(folder)
        self.sender = sender

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where ``message`` is (or would be) written."""
        ext = _EXTENSIONS[message.channel]
        return self.folder / message.channel / f"{file_stem(message.idempotency_key)}.{ext}"

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        """Write ``message`` once per idempotency key; the provider id is the file name.

        Invalid messages (line breaks in the recipient or key, an email recipient without ``@``) answer
        ``failed``; file system errors answer ``retry`` (a full disk or a missing mount can recover).
        Local file writes need no extra time bound.
        """
        if message.channel not in self.channels:
            return DeliveryResult.failed(f"channel {message.channel!r} not served by the outbox")
        target = self.path_for(message)
        try:
            if target.exists():
                return DeliveryResult.sent(target.name)
            payload = self._payload(message)
            self._write_atomic(target, payload)
        except _Undeliverable as exc:
            return DeliveryResult.failed(str(exc))
        except OSError as exc:
            return DeliveryResult.retry(f"could not write {target}: {exc}")
        return DeliveryResult.sent(target.name)

    # -- rendering ------------------------------------------------------------------------------------

    def _payload(self, message: OutgoingMessage) -> bytes:
        for label, value in (("recipient", message.recipient), ("idempotency key", message.idempotency_key)):
            if "\r" in value or "\n" in value:
                # A line break in a header value is header injection; refuse rather than mangle.
                raise _Undeliverable(f"{label} contains a line break")
        if message.channel == "email":
            return self._email(message)
        if message.channel == "sms":
            return self._sms(message)
        return self._push(message)

    def _email(self, message: OutgoingMessage) -> bytes:
        if "@" not in message.recipient:
            raise _Undeliverable(f"email recipient {message.recipient!r} is not an address")
        msg = EmailMessage()
        try:
            msg["From"] = self.sender
            msg["To"] = message.recipient
            if message.subject is not None:
                msg["Subject"] = message.subject
            msg["Date"] = format_datetime(from_us(message.created_us))
            msg["Message-ID"] = message_id_for(message.idempotency_key)
            msg["X-Idempotency-Key"] = message.idempotency_key
            msg["X-Customer-Id"] = message.customer_id
            msg["X-Journey"] = f"{message.journey_id}/{message.step}"
            msg.set_content(message.body)
            if message.html is not None:
                # add_alternative turns the message into multipart/alternative: text first, html last,
                # so clients that can show HTML pick the last part, the rest fall back to text.
                msg.add_alternative(message.html, subtype="html")
            # The default policy writes LF line endings: what mail clients and the email package read back
            # from .eml files; an SMTP provider adapter would serialise with policy.SMTP (CRLF) instead.
            return msg.as_bytes()
        except (ValueError, TypeError) as exc:
            # The email package refuses header values it cannot encode safely (e.g. line breaks).
            raise _Undeliverable(f"cannot build the email: {exc}") from exc

    @staticmethod
    def _sms(message: OutgoingMessage) -> bytes:
        text = f"To: {message.recipient}\nKey: {message.idempotency_key}\n\n{message.body}"
        return text.encode("utf-8", "surrogatepass")

    @staticmethod
    def _push(message: OutgoingMessage) -> bytes:
        document = {
            "idempotency_key": message.idempotency_key,
            "recipient": message.recipient,
            "title": message.title,
            "body": message.body,
            "link": message.link,
        }
        return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8", "surrogatepass")

    # -- writing --------------------------------------------------------------------------------------

    @staticmethod
    def _write_atomic(target: Path, data: bytes) -> None:
        """Write ``data`` to ``target`` so that readers see either no file or the whole file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        # The temp file lives in the target's folder: os.replace is only atomic within one file system.
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; best effort, since not every platform can open a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
