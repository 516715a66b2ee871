"""Customer ids to store keys for a whole ingest, looked up a chunk at a time without a Python step per id.

An ingest names every customer of a chunk; at a million customers nearly every event names one not seen
earlier in its chunk, so a Python dict (one hash and, with fresh strings, two cache misses per id) took
more time than storing the events. ``IdIndex`` works on Arrow string arrays: each id's UTF-8 bytes are
hashed to 64 bits eight bytes at a time, all ids together (numpy), and the hashes are looked up in an
open-addressing table held in numpy arrays, probing every id at once. A hit is then checked against the
id itself (one vectorised comparison), so two ids that share a hash can never share a key: the later one
goes to a small dict instead (about one pair in 2**64 / n**2 ingests ever does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_U64 = np.uint64
_WORD = np.arange(8)


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: every bit of the input moves every bit of the output."""
    h ^= h >> _U64(33)
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    h ^= h >> _U64(33)
    return h


def string_hashes(ids: Sequence[str] | pa.Array) -> np.ndarray:
    """A 64-bit hash (uint64) of each string of ``ids`` (no nulls), from its length and its UTF-8 bytes
    read eight at a time: one numpy pass per eight bytes of the longest id, over the ids that long."""
    ids = string_array(ids)
    n = len(ids)
    _, offsets_buf, data_buf = ids.buffers()
    if n == 0:
        return np.zeros(0, _U64)
    offsets = np.frombuffer(offsets_buf, np.int32, count=n + 1, offset=ids.offset * 4).astype(np.int64)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = np.concatenate([data[offsets[0] : offsets[-1]], np.zeros(8, np.uint8)])
    starts = offsets[:-1] - offsets[0]
    lengths = offsets[1:] - offsets[:-1]
    with np.errstate(over="ignore"):
        h = _mix(lengths.astype(_U64) * _U64(0x9E3779B97F4A7C15))
        rows = np.arange(n)
        done = 0
        while len(rows):
            word = data[(starts[rows] + done)[:, None] + _WORD]  # eight bytes per id, zero past its end
            word[(lengths[rows] - done)[:, None] <= _WORD] = 0
            h[rows] = _mix(h[rows] ^ word.view(_U64).ravel())
            done += 8
            rows = rows[lengths[rows] > done]
    return h


class _HashTable:
    """Distinct 64-bit hashes to non-negative values, open addressing with linear probing over numpy
    arrays, at most half full; every operation takes a whole array of hashes."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.hashes = np.zeros(capacity, _U64)
        self.values = np.full(capacity, -1, np.int64)  # -1: an empty slot
        self.size = 0

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """The value of each hash, -1 where it is not in the table."""
        mask = len(self.values) - 1
        out = np.full(len(hashes), -1, np.int64)
        slots = (hashes & _U64(mask)).astype(np.int64)
        pending = np.arange(len(hashes))
        while len(pending):
            at = slots[pending]
            values = self.values[at]
            hit = (values >= 0) & (self.hashes[at] == hashes[pending])
            out[pending[hit]] = values[hit]
            pending = pending[(values >= 0) & ~hit]  # an other hash there: try the next slot
            slots[pending] = (slots[pending] + 1) & mask
        return out

    def add(self, hashes: np.ndarray, values: np.ndarray) -> None:
        """Add hashes that are distinct and not in the table yet, with their values."""
        if 2 * (self.size + len(hashes)) > len(self.values):
            capacity = len(self.values)
            while 2 * (self.size + len(hashes)) > capacity:
                capacity *= 2
            held = self.values >= 0
            old_hashes, old_values = self.hashes[held], self.values[held]
            self.hashes = np.zeros(capacity, _U64)
            self.values = np.full(capacity, -1, np.int64)
            self._place(old_hashes, old_values)
        self._place(hashes, values)
        self.size += len(hashes)

    def _place(self, hashes: np.ndarray, values: np.ndarray) -> None:
        mask = len(self.values) - 1
        slots = (hashes & _U64(mask)).astype(np.int64)
        pending = np.arange(len(hashes))
        placed = np.zeros(len(hashes), bool)
        while len(pending):
            at = slots[pending]
            free = self.values[at] < 0
            # Of the hashes wanting one free slot, the first takes it; the others probe on.
            taken, first = np.unique(at[free], return_index=True)
            winners = pending[free][first]
            self.hashes[taken] = hashes[winners]
            self.values[taken] = values[winners]
            placed[winners] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & mask


class IdIndex:
    """Strings (customer ids) to int64 values (their store keys), filled and read an array at a time."""

    def __init__(self) -> None:
        self._table = _HashTable()  # hash -> position in the ids added
        self._ids: list[pa.Array] = []
        self._values = np.zeros(1 << 16, np.int64)  # by position, the first ``_count`` in use
        self._count = 0
        self._shared: dict[str, int] = {}  # ids whose hash an other id of the table has

    def __len__(self) -> int:
        return self._count + len(self._shared)

    def get(self, ids: Sequence[str] | pa.Array) -> np.ndarray:
        """The value of each of these distinct ids, -1 for those not added."""
        ids = string_array(ids)
        hashes = string_hashes(ids)
        positions = self._table.find(hashes)
        hit = np.flatnonzero(positions >= 0)
        out = np.full(len(ids), -1, np.int64)
        if len(hit):
            held = pa.chunked_array(self._ids, pa.string()).take(pa.array(positions[hit]))
            same = pc.equal(ids.take(pa.array(hit)), held).to_numpy(zero_copy_only=False)
            out[hit[same]] = self._values[positions[hit[same]]]
        if self._shared:
            missing = np.flatnonzero(out < 0)
            values = ids.take(pa.array(missing)).to_pylist()
            out[missing] = [self._shared.get(v, -1) for v in values]
        return out

    def add(self, ids: Sequence[str] | pa.Array, values: np.ndarray) -> None:
        """Add distinct ids not added yet, with their values."""
        ids, values = string_array(ids), np.asarray(values, np.int64)
        hashes = string_hashes(ids)
        # An id whose hash is held already, or repeated among these, goes to the dict.
        _, first = np.unique(hashes, return_index=True)
        fresh = np.zeros(len(ids), bool)
        fresh[first] = True
        fresh[fresh] = self._table.find(hashes[fresh]) < 0
        rows = np.flatnonzero(fresh)
        if len(rows) < len(ids):
            others = np.flatnonzero(~fresh)
            self._shared.update(
                zip(ids.take(pa.array(others)).to_pylist(), values[others].tolist(), strict=True)
            )
        if len(rows):
            start, end = self._count, self._count + len(rows)
            if end > len(self._values):
                self._values = np.resize(self._values, max(end, 2 * len(self._values)))
            self._values[start:end] = values[rows]
            self._count = end
            self._table.add(hashes[rows], np.arange(start, end))
            self._ids.append(ids.take(pa.array(rows)) if len(rows) < len(ids) else ids)
            if len(self._ids) > 64:  # a few large arrays: taking from them stays cheap
                self._ids = [pa.concat_arrays(self._ids)]


def string_array(ids: Sequence[str] | pa.Array) -> pa.Array:
    """``ids`` as an Arrow string array (not large or a view: the index reads its offsets as int32)."""
    if isinstance(ids, pa.Array):
        return ids if ids.type == pa.string() else ids.cast(pa.string())
    return pa.array(ids, pa.string())
