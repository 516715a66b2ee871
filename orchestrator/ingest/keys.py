"""Event keys: what makes ingest idempotent.

Every event stored from a file gets a 16-byte key, unique in the events table:

- an event that carries its own id (``message_id``, ``messageId`` or ``event_id``) is keyed by
  ``blake2b("id:" + id, 16 bytes)``, wherever it comes from (a file, in-memory records, later the HTTP
  API), so the same id is stored once;
- any other event is keyed by its source and position: the first 12 bytes of the blake2b digest of the
  file's bytes, then its line (row number for Parquet) as 4 big-endian bytes. The same file ingested
  again, or rerun after a crash, gives the same keys; two identical events at different lines of one file
  have different keys and both count.

Keys of one file are consecutive in the key index (same prefix, growing line), so a chunk's inserts touch
a few index pages, and the keys already stored of a chunk are found with one range scan.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

KEY_BYTES = 16
SOURCE_BYTES = 12
#: Fields (JSONL top level, CSV/Parquet columns, record keys) that hold an event's own id, by priority.
ID_FIELDS = ("message_id", "messageId", "event_id")
_PERSON = b"orch.source"


def message_key(message_id: str) -> bytes:
    """The key of an event that carries its own id."""
    return hashlib.blake2b(
        b"id:" + message_id.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES
    ).digest()


def file_source(path: str | os.PathLike[str]) -> bytes:
    """The 12-byte source prefix of a file: a digest of its bytes."""
    digest = hashlib.blake2b(digest_size=SOURCE_BYTES, person=_PERSON)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.digest()


def named_source(name: str) -> bytes:
    """The source prefix of a batch the caller names (in-memory records)."""
    data = b"batch:" + name.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=SOURCE_BYTES, person=_PERSON).digest()


def event_keys(source: bytes, lines: np.ndarray, message_ids: Sequence[str | None] | None) -> np.ndarray:
    """The keys of a chunk's events as an ``(n, 16)`` uint8 array: derived from ``source`` and each
    event's line, or from its own id where ``message_ids`` has one."""
    n = len(lines)
    keys = np.empty((n, KEY_BYTES), np.uint8)
    keys[:, :SOURCE_BYTES] = np.frombuffer(source, np.uint8)
    keys[:, SOURCE_BYTES:] = np.asarray(lines, dtype=">u4").view(np.uint8).reshape(n, 4)
    if message_ids is not None:
        for i, mid in enumerate(message_ids):
            if mid is not None:
                keys[i] = np.frombuffer(message_key(mid), np.uint8)
    return keys
