"""The ingest's index of customer ids: every id gets back the value it was added with, whatever its
length or its hash."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from orchestrator.ingest import _ids
from orchestrator.ingest._ids import IdIndex, string_hashes


def test_ids_of_every_length_get_their_values_back_and_unknown_ids_none() -> None:
    ids = ["7", "", "12345678", "123456789", "é" * 9, "user-0001@example.com", "a" * 300, "a" * 299]
    index = IdIndex()
    index.add(pa.array(ids[:5]), np.arange(5) * 10)
    index.add(pa.array(ids[5:]), np.arange(5, 8) * 10)
    asked = pa.array(["a" * 300, "nobody", "7", "1234567", "123456789", "a" * 301, "é" * 9])
    assert index.get(asked).tolist() == [60, -1, 0, -1, 30, -1, 40]
    assert len(index) == 8


def test_many_ids_added_over_many_calls_grow_the_table() -> None:
    index = IdIndex()
    rng = np.random.default_rng(5)
    numbers = rng.permutation(300_000)
    for part in np.array_split(numbers, 100):
        ids = pa.array([f"c{v}" for v in part.tolist()])
        known = index.get(ids)
        assert (known == -1).all()
        index.add(ids, part * 2)
    probe = rng.choice(numbers, 20_000, replace=False)
    got = index.get(pa.array([f"c{v}" for v in probe.tolist()] + ["c-1"]))
    assert got[:-1].tolist() == (probe * 2).tolist()
    assert got[-1] == -1


def test_strings_hash_by_their_bytes_alone() -> None:
    sliced = pa.array(["x", "abc", "abcdefghijk", "y"]).slice(1, 2)
    assert string_hashes(sliced).tolist() == string_hashes(pa.array(["abc", "abcdefghijk"])).tolist()
    assert len(set(string_hashes(pa.array(["a", "a\0", "b", "ab", "ba"])).tolist())) == 5


def test_ids_that_share_a_hash_keep_their_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every id hashes alike: the table holds the first, the others go to the dict, and a hit on the table
    # is checked against the id itself.
    monkeypatch.setattr(_ids, "string_hashes", lambda ids: np.full(len(ids), 42, np.uint64))
    index = IdIndex()
    index.add(pa.array(["a", "b"]), np.array([1, 2]))
    assert index.get(pa.array(["b", "a", "c"])).tolist() == [2, 1, -1]
    index.add(pa.array(["c"]), np.array([3]))
    assert index.get(pa.array(["c", "d", "a", "b"])).tolist() == [3, -1, 1, 2]
