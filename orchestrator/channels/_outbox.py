"""The file outbox: an adapter that "delivers" by writing each message to a folder.

Used by the demo and by anyone who wants to look at what a journey would send before wiring a real
provider. Each message becomes one file, ``<folder>/<channel>/<key>.<ext>``:

- email: ``.eml``, the message exactly as the SMTP adapter would send it (``mail.compose_email``: From,
  To, Subject, Date, a Message-ID derived from the idempotency key, List-Unsubscribe when configured,
  ``multipart/alternative`` with the text part first and the HTML part, CSS inlined, last), with LF line
  endings as .eml files usually have, plus ``X-Customer-Id`` and ``X-Journey`` headers;
- sms: ``.txt``, a small header block (``To:``, ``Key:``, with SMS rules also ``Segments:``), a blank line,
  then the body;
- push: ``.json`` with recipient, title, body, link (and data, and with push rules the platform payload).
- webhook: ``.json``, the document the webhook adapter would POST: the endpoint's name, the customer id
  and the body (as JSON when it is JSON).

Given ``SmsRules`` or ``PushRules``, the outbox applies the same checks as the real adapters (E.164 numbers,
segment limit, 4 KB payloads) and refuses what they would refuse; without them it writes what it is given.

Files are written atomically (temp file in the same folder, then ``os.replace``) so a reader never sees half
a message, and the file name is the idempotency record: a second send with the same key finds the file and
answers ``sent`` with the same provider id without writing again. ``durable=True`` (the default) also
fsyncs each file and its folder before answering, so an answered ``sent`` survives a power cut; that costs
a disk flush per message (about 1-2 ms here), and ``durable=False`` leaves flushing to the OS (a crash of
the machine may lose files the ledger already counts as sent).

``layout="spool"`` (``layout: spool`` in the config's outbox channels) writes each group the dispatcher
hands over as one spool, a JSON-lines file under ``<folder>/spool/<channel>/`` (``channels._spool``), with
one fsync per group instead of one per message; the provider id of a message is the same file name in
both layouts, and ``orchestrator outbox-unpack`` (``channels.unpack_spools``) turns spools into exactly the
files of the per-message layout. Idempotency holds the same way: a key already spooled (or already written
as a file) answers ``sent`` with the same provider id and is not written again. The adapter looks the
keys up in the spools' headers unless every message of the group says ``first_attempt`` (its ledger row
was never handed to any adapter before, so no spool can hold it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from orchestrator.channels._base import CHANNELS, DeliveryResult, OutgoingMessage
from orchestrator.channels._mail import ComposeError, EmailSettings, compose_email, message_id
from orchestrator.channels._push import PushRefused, PushRules
from orchestrator.channels._sms import SmsRefused, SmsRules
from orchestrator.channels._spool import spool_keys, spool_paths, write_file, write_spool
from orchestrator.channels._webhook import webhook_document
from orchestrator.errors import DeliveryError

_EXTENSIONS: dict[str, str] = {"email": "eml", "sms": "txt", "push": "json", "webhook": "json"}
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_READABLE_CHARS = 80
TEMP_PREFIX = ".tmp-"
OutboxLayout = Literal["files", "spool"]
OUTBOX_LAYOUTS: tuple[str, ...] = ("files", "spool")
SPOOL_GROUP = 1000  # messages per spool that dispatch is asked to hand over at once
OUTBOX_DOMAIN = "outbox.orchestrator.invalid"


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
    """The RFC 5322 Message-ID of the outbox email with this idempotency key (stable across resends)."""
    return message_id(idempotency_key, OUTBOX_DOMAIN)


class _Undeliverable(DeliveryError, ValueError):
    """The message itself is unacceptable: a permanent failure."""

    def __init__(self, message: str, *, code: str, suppress: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.suppress = suppress


class OutboxAdapter:
    """Writes messages of all three channels under ``folder``; see the module docstring for the layout.

    ``email`` settings default to ``sender`` with Message-IDs under ``outbox.orchestrator.invalid``.
    """

    channels: frozenset[str] = frozenset(CHANNELS)

    def __init__(
        self,
        folder: Path,
        *,
        sender: str = "Orchestrator <noreply@orchestrator.invalid>",
        email: EmailSettings | None = None,
        sms: SmsRules | None = None,
        push: PushRules | None = None,
        durable: bool = True,
        layout: OutboxLayout = "files",
    ) -> None:
        if layout not in OUTBOX_LAYOUTS:
            raise ValueError(f"unknown outbox layout {layout!r}; expected files or spool")
        self.layout = layout
        self.folder = Path(folder)
        self._root = str(self.folder)
        self.email = email or EmailSettings(sender=sender, message_id_domain=OUTBOX_DOMAIN)
        self.sender = self.email.sender
        self.sms = sms
        self.push = push
        self.durable = durable

    @property
    def group(self) -> int:
        """Messages dispatch hands over at once: with the spool layout, a whole dispatch batch (one spool
        and one fsync for it); 0 (no wish) with the per-message layout."""
        return SPOOL_GROUP if self.layout == "spool" else 0

    @property
    def send_many(self) -> Any:
        """With the spool layout, the call that takes a whole group (``ChannelLanes`` hands each group
        over in one call): ``send_many(messages, width)``; None with the per-message layout."""
        return self._send_spooled if self.layout == "spool" else None

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where ``message`` is (or would be) written."""
        return Path(self._target(message)[0])

    def _target(self, message: OutgoingMessage) -> tuple[str, str]:
        # Plain strings on the hot path: building pathlib objects costs more than the file system calls.
        name = f"{file_stem(message.idempotency_key)}.{_EXTENSIONS[message.channel]}"
        return f"{self._root}{os.sep}{message.channel}{os.sep}{name}", name

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        """Write ``message`` once per idempotency key; the provider id is the file name.

        Invalid messages (line breaks in the recipient or key, an email recipient that is not an address,
        and with rules what the real adapter would refuse) answer ``failed``; file system errors answer
        ``retry`` (a full disk or a missing mount can recover). Local file writes need no extra time bound.
        """
        if message.channel not in self.channels:
            return DeliveryResult.failed(f"channel {message.channel!r} not served by the outbox")
        if self.layout == "spool":
            return self._send_spooled([message])[0]
        target, name = self._target(message)
        try:
            if os.path.exists(target):
                return DeliveryResult.sent(name)
            payload = self._payload(message)
            self._write(target, name, payload)
        except _Undeliverable as exc:
            return DeliveryResult.failed(str(exc), code=exc.code, suppress=exc.suppress)
        except OSError as exc:
            return DeliveryResult.retry(f"could not write {target}: {exc}", code="io")
        return DeliveryResult.sent(name)

    def _send_spooled(self, messages: Sequence[OutgoingMessage], width: int = 1) -> list[DeliveryResult]:
        """Write ``messages`` as one spool per channel: those already spooled or written (a retry) answer
        ``sent`` with their provider id and are left out; invalid ones answer ``failed``; a file system
        error answers ``retry`` for every message of the spool."""
        results: list[DeliveryResult | None] = [None] * len(messages)
        by_channel: dict[str, list[int]] = {}
        for i, message in enumerate(messages):
            if message.channel not in self.channels:
                results[i] = DeliveryResult.failed(f"channel {message.channel!r} not served by the outbox")
            else:
                by_channel.setdefault(message.channel, []).append(i)
        for channel, indexes in by_channel.items():
            self._spool_channel(channel, [messages[i] for i in indexes], indexes, results)
        return [r if r is not None else DeliveryResult.retry("not written", code="io") for r in results]

    def _spool_channel(
        self,
        channel: str,
        messages: list[OutgoingMessage],
        indexes: list[int],
        results: list[DeliveryResult | None],
    ) -> None:
        ext = _EXTENSIONS[channel]
        known: set[str] = set()
        if not all(m.first_attempt for m in messages):
            try:
                known = self._known_keys(channel, [m for m in messages if not m.first_attempt])
            except (OSError, ValueError) as exc:
                # Without the lookup a message sent before could be spooled twice: try again later.
                for i in indexes:
                    results[i] = DeliveryResult.retry(
                        f"could not read the spools of {channel}: {exc}", code="io"
                    )
                return
        entries: list[tuple[str, str, bytes]] = []
        pending: list[tuple[int, str]] = []
        in_spool: set[str] = set()
        for i, message in zip(indexes, messages, strict=True):
            key = message.idempotency_key
            name = f"{file_stem(key)}.{ext}"
            if key in known or key in in_spool:
                results[i] = DeliveryResult.sent(name)
                continue
            try:
                payload = self._payload(message)
            except _Undeliverable as exc:
                results[i] = DeliveryResult.failed(str(exc), code=exc.code, suppress=exc.suppress)
                continue
            entries.append((key, name, payload))
            pending.append((i, name))
            in_spool.add(key)
        if not entries:
            return
        try:
            write_spool(self.folder, channel, entries, durable=self.durable)
        except OSError as exc:
            for i, _ in pending:
                results[i] = DeliveryResult.retry(f"could not write a spool of {channel}: {exc}", code="io")
            return
        for i, name in pending:
            results[i] = DeliveryResult.sent(name)

    def _known_keys(self, channel: str, messages: list[OutgoingMessage]) -> set[str]:
        """Which keys of ``messages`` are already in a spool of ``channel`` or written as a file. Reads
        every spool header of the channel (nothing is kept between calls, so a long-running dispatcher's
        memory does not grow with the outbox): only messages sent again pay for it."""
        wanted = {m.idempotency_key for m in messages}
        found: set[str] = set()
        for message in messages:
            if os.path.exists(self._target(message)[0]):
                found.add(message.idempotency_key)
        for path in spool_paths(self.folder, channel):
            if found >= wanted:
                break
            found.update(wanted.intersection(spool_keys(path)))
        return found

    # -- rendering ------------------------------------------------------------------------------------

    def _payload(self, message: OutgoingMessage) -> bytes:
        recipient, key = message.recipient, message.idempotency_key
        if "\r" in recipient or "\n" in recipient or "\r" in key or "\n" in key:
            # A line break in a header value is header injection; refuse rather than mangle.
            label = "recipient" if "\r" in recipient or "\n" in recipient else "idempotency key"
            raise _Undeliverable(f"{label} contains a line break", code="invalid_header")
        if message.channel == "email":
            return self._email(message)
        if message.channel == "sms":
            return self._sms(message)
        if message.channel == "webhook":
            return self._webhook(message)
        return self._push(message)

    def _email(self, message: OutgoingMessage) -> bytes:
        extra = [
            ("X-Customer-Id", message.customer_id),
            ("X-Journey", f"{message.journey_id}/{message.step}"),
        ]
        try:
            return compose_email(message, self.email, linesep="\n", extra_headers=extra).data
        except ComposeError as exc:
            raise _Undeliverable(
                f"cannot build the email: {exc}", code=exc.code, suppress=exc.suppress
            ) from exc

    def _sms(self, message: OutgoingMessage) -> bytes:
        header = f"To: {message.recipient}\nKey: {message.idempotency_key}\n"
        if self.sms is not None:
            try:
                sms = self.sms.prepare(message)
            except SmsRefused as exc:
                raise _Undeliverable(str(exc), code=exc.code, suppress=exc.suppress) from exc
            header = (
                f"To: {sms.to}\nKey: {message.idempotency_key}\n"
                f"Segments: {sms.segments.segments} ({sms.segments.encoding})\n"
            )
        return f"{header}\n{message.body}".encode("utf-8", "surrogatepass")

    def _push(self, message: OutgoingMessage) -> bytes:
        document: dict[str, Any] = {
            "idempotency_key": message.idempotency_key,
            "recipient": message.recipient,
            "title": message.title,
            "body": message.body,
            "link": message.link,
        }
        if message.data is not None:
            document["data"] = message.data
        if self.push is not None:
            try:
                document["payload"] = json.loads(self.push.encode(message))
            except PushRefused as exc:
                raise _Undeliverable(str(exc), code=exc.code) from exc
        return _json(document)

    @staticmethod
    def _webhook(message: OutgoingMessage) -> bytes:
        """A webhook call as JSON: what the webhook adapter would POST (``webhook.webhook_document``)."""
        return _json(webhook_document(message))

    # -- writing --------------------------------------------------------------------------------------

    def _write(self, target: str, name: str, data: bytes) -> None:
        write_atomically(target, name, data, durable=self.durable)


def write_atomically(target: str, name: str, data: bytes, *, durable: bool) -> None:
    """Write ``data`` to ``target`` so that readers see either no file or the whole file (and, when
    ``durable``, fsynced with its folder)."""
    # The temp file lives in the target's folder (os.replace is only atomic within one file system);
    # its name is unique per key, process and thread, so no random name has to be drawn and retried.
    folder = os.path.dirname(target)
    tmp = f"{folder}{os.sep}{TEMP_PREFIX}{name}-{os.getpid()}-{threading.get_ident()}.part"
    write_file(tmp, target, data, durable=durable)


def _json(document: dict[str, Any]) -> bytes:
    """``document`` as indented UTF-8 JSON with a final newline."""
    try:
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # lone surrogates: the stdlib encoder writes them through
        return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8", "surrogatepass")
