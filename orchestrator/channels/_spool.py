"""The spool layout of the file outbox: one JSON-lines file per dispatch batch, not one file per message.

A spool is ``<outbox>/spool/<channel>/<name>.jsonl``, written once and never changed: a temp file in the same
folder, one ``write``, ``fsync``, ``rename`` to its final name, ``fsync`` of the folder (the last two only
when durable). Its first line is a header, ``{"spool": 1, "channel": ..., "keys": [...]}``, the idempotency
keys of the messages it holds, so the keys of every spool can be read without reading the messages; each
line after it is one whole message::

    {"key": "<idempotency key>", "file": "<file name>", "data": "<the file's text>"}

``file`` is the name the message has in the per-message layout (``<channel>/<file>``, which is also the
provider id the outbox answers in both layouts) and ``data`` that file's content, so ``unpack_spools`` turns a
spool into exactly the files the per-message layout writes, byte for byte. Spool names start with the
wall time in nanoseconds (only to order them; nothing reads it as the engine's time), then the process id
and a counter, so two processes never pick the same name.

``spooled_keys`` reads the keys of a folder's spools (the headers only); ``spooled_messages`` and
``read_spool`` read the messages back; ``unpack_spools`` explodes spools into per-message files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from orchestrator._files import fsync_folder

SPOOL_FOLDER = "spool"
SPOOL_SUFFIX = ".jsonl"
SPOOL_VERSION = 1
_TEMP_PREFIX = ".tmp-"
_counter = itertools.count()
_counter_lock = threading.Lock()


@dataclass(frozen=True)
class SpooledMessage:
    """One message of a spool: its idempotency key, its channel, its file name in the per-message layout
    (the outbox's provider id) and that file's bytes."""

    key: str
    channel: str
    file: str
    data: bytes


def spool_folder(outbox: Path | str, channel: str) -> Path:
    """Where the spools of ``channel`` go under the outbox folder ``outbox``."""
    return Path(outbox) / SPOOL_FOLDER / channel


def _dumps(document: dict[str, object]) -> bytes:
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:  # a lone surrogate: the stdlib escapes it (\udXXX), and reads it back
        return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8", "surrogatepass"))


def encode_spool(channel: str, entries: Sequence[tuple[str, str, bytes]]) -> bytes:
    """The bytes of a spool holding ``entries`` (key, file name, file bytes), header first."""
    lines = [_dumps({"spool": SPOOL_VERSION, "channel": channel, "keys": [key for key, _, _ in entries]})]
    for key, name, data in entries:
        text = data.decode("utf-8", "surrogatepass")
        lines.append(_dumps({"key": key, "file": name, "data": text}))
    lines.append(b"")
    return b"\n".join(lines)


def write_spool(
    outbox: Path | str, channel: str, entries: Sequence[tuple[str, str, bytes]], *, durable: bool = True
) -> Path:
    """Write one spool of ``entries`` for ``channel`` atomically (see the module docstring); its path."""
    folder = os.fspath(spool_folder(outbox, channel))
    with _counter_lock:
        seq = next(_counter)
    name = (
        f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident() % 100_000:05d}-{seq:09d}{SPOOL_SUFFIX}"
    )
    target = os.path.join(folder, name)
    tmp = os.path.join(folder, _TEMP_PREFIX + name)
    write_file(tmp, target, encode_spool(channel, entries), durable=durable, exclusive=True)
    return Path(target)


def write_file(tmp: str, target: str, data: bytes, *, durable: bool, exclusive: bool = False) -> None:
    """Write ``data`` to the temp file ``tmp`` (owner-only: outbox files hold customer data; ``exclusive``:
    refuse one that exists), then rename it to ``target`` in the same folder, so that readers see no file
    or the whole file; with ``durable``, the file and its folder are fsynced. The temp file is removed on
    any failure."""
    folder = os.path.dirname(target)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, flags, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(folder)


def spool_paths(outbox: Path | str, channel: str | None = None) -> list[Path]:
    """The finished spools under ``outbox`` (of ``channel``, or of every channel), oldest first."""
    root = Path(outbox) / SPOOL_FOLDER
    folders = [root / channel] if channel is not None else sorted(p for p in _listdir(root) if p.is_dir())
    paths: list[Path] = []
    for folder in folders:
        paths.extend(
            p
            for p in _listdir(folder)
            if p.name.endswith(SPOOL_SUFFIX) and not p.name.startswith(_TEMP_PREFIX)
        )
    return sorted(paths, key=lambda p: (p.name, p.parent.name))


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def spool_keys(path: Path | str) -> list[str]:
    """The idempotency keys a spool holds, from its header line."""
    with open(path, "rb") as handle:
        header = _loads(handle.readline())
    if not isinstance(header, dict) or header.get("spool") != SPOOL_VERSION:
        raise ValueError(f"{path}: not a spool (its first line is not a spool header)")
    keys = header.get("keys")
    if not isinstance(keys, list):
        raise ValueError(f"{path}: the spool header has no list of keys")
    return [str(key) for key in keys]


def spooled_keys(outbox: Path | str, channel: str) -> set[str]:
    """Every idempotency key spooled for ``channel`` under ``outbox`` (reads the spools' headers only)."""
    found: set[str] = set()
    for path in spool_paths(outbox, channel):
        found.update(spool_keys(path))
    return found


def read_spool(path: Path | str) -> Iterator[SpooledMessage]:
    """The messages of one spool, in the order they were written."""
    with open(path, "rb") as handle:
        header = _loads(handle.readline())
        if not isinstance(header, dict) or header.get("spool") != SPOOL_VERSION:
            raise ValueError(f"{path}: not a spool (its first line is not a spool header)")
        channel = str(header.get("channel"))
        for line in handle:
            if not line.strip():
                continue
            entry = _loads(line)
            if not isinstance(entry, dict):
                raise ValueError(f"{path}: a line is not a message")
            data = str(entry["data"]).encode("utf-8", "surrogatepass")
            yield SpooledMessage(str(entry["key"]), channel, str(entry["file"]), data)


def spooled_messages(outbox: Path | str, channel: str | None = None) -> Iterator[SpooledMessage]:
    """Every spooled message under ``outbox`` (of ``channel``, or of every channel), oldest spool first."""
    for path in spool_paths(outbox, channel):
        yield from read_spool(path)


def unpack_spools(outbox: Path | str, channels: Iterable[str] | None = None, *, durable: bool = True) -> int:
    """Write every spooled message under ``outbox`` as its file of the per-message layout
    (``<outbox>/<channel>/<file>``, the same bytes the per-message layout writes); a file already there is
    left as it is. Spools are kept. Returns the number of files written."""
    from orchestrator.channels._outbox import write_atomically

    wanted = None if channels is None else set(channels)
    written = 0
    touched: set[str] = set()
    for message in spooled_messages(outbox):
        if wanted is not None and message.channel not in wanted:
            continue
        folder = os.path.join(os.fspath(outbox), message.channel)
        target = os.path.join(folder, message.file)
        if os.path.exists(target):
            continue
        write_atomically(target, message.file, message.data, durable=False)
        touched.add(folder)
        written += 1
    if durable and touched:
        os.sync()  # one flush for every file written, then the folders' entries
        for folder in sorted(touched):
            fsync_folder(folder)
    return written
