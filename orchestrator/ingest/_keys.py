"""Event keys: what makes ingest idempotent.

Every event stored from a file gets a 64-bit integer key, stored with it and unique in the store:

- an event that carries its own id (``message_id``, ``messageId`` or ``event_id``) is keyed by a hash of
  it: the first 63 bits of ``blake2b("id:" + id)``, as a negative number. Wherever it comes from (a file,
  in-memory records, later the HTTP API), the same id is stored once;
- any other event is keyed by its source and position: ``source << 32 | line``, where ``source`` is the
  number the store gives the file's content (a 16-byte blake2b digest of its bytes, table
  ``event_sources``) and ``line`` its line (row number for Parquet). The same file ingested again, or
  rerun after a crash, gives the same keys; two identical events at different lines of one file have
  different keys and both count.

Derived keys are exact (no two sources share a number). Two different ids could share a hash: with
``n`` ids stored, the chance that any pair does is about ``n**2 / 2**64`` (one in 2,000 for a hundred
million ids), and the later of such a pair would be taken for a duplicate.

How each kind stays unique: events with their own id through a unique index over the negative keys
only; derived keys through their source's last line done (``event_sources.lines_done``) and the lines
it rejected (``event_source_rejects``), recorded with each chunk (see ``store._events.insert_new_events``),
so no index over every event is needed and the key costs the 20M-event reference ingest nothing
measurable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

DIGEST_BYTES = 16
LINE_BITS = 32
#: Fields (JSONL top level, CSV/Parquet columns, record keys) that hold an event's own id, by priority.
ID_FIELDS = ("message_id", "messageId", "event_id")
_PERSON = b"orch.source"


def message_key(message_id: str) -> int:
    """The key of an event that carries its own id: a negative 64-bit integer."""
    data = b"id:" + message_id.encode("utf-8", "surrogatepass")
    value = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
    return -(value >> 1) - 1


def file_digest(path: str | os.PathLike[str]) -> bytes:
    """The digest that identifies a file's content as a source of events."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES, person=_PERSON)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.digest()


def batch_digest(batch_id: str) -> bytes:
    """The digest that identifies a batch of in-memory records the caller names."""
    data = b"batch:" + batch_id.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES, person=_PERSON).digest()


def event_keys(
    source: int | None, lines: np.ndarray, message_ids: Sequence[str | None] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The keys of a chunk's events (int64) and the mask of those that have one (None: all do): derived
    from ``source`` and each event's line, or from its own id where ``message_ids`` has one. Without a
    source only the events with an id have a key."""
    n = len(lines)
    if source is not None:
        if not 0 < source < 1 << (63 - LINE_BITS):
            raise ValueError(f"event source number {source} does not fit in an event key")
        if n and (int(lines.max()) >= 1 << LINE_BITS or int(lines.min()) < 0):
            raise ValueError("a line number does not fit in an event key")
        keys = (np.int64(source) << LINE_BITS) | np.asarray(lines, dtype=np.int64)
        keyed = None
    else:
        keys = np.zeros(n, np.int64)
        keyed = np.zeros(n, bool)
    if message_ids is not None:
        for i, mid in enumerate(message_ids):
            if mid is not None:
                keys[i] = message_key(mid)
                if keyed is not None:
                    keyed[i] = True
    return keys, keyed
