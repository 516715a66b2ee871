"""Deterministic holdout assignment, compatible with GrowthBook's hash version 2.

``bucket(seed, value)`` maps a customer id to a number in ``[0, 1)`` with four decimal places::

    fnv1a32(str(fnv1a32(seed + value))) % 10000 / 10000

where ``fnv1a32`` is 32-bit FNV-1a over the UTF-8 bytes and ``str`` is the decimal form of the first hash.
The assignment is a pure function of (seed, id): no state, no randomness, identical on every machine and
in every run, so a customer never changes arm between ticks.

Compatibility note: for ASCII ids (the usual case: numbers, UUIDs, e-mail hashes) this equals GrowthBook's
``hash(seed, value, 2)`` in every SDK. GrowthBook's SDKs feed characters rather than UTF-8 bytes into FNV
(JavaScript uses UTF-16 code units, Python code points), so for non-ASCII ids the SDKs disagree with each
other; we hash UTF-8 bytes, the byte-level definition of FNV-1a.

``buckets`` is the vectorised form used for whole customer tables; it equals ``bucket`` element by element.

Two layers decide whether a customer entering a journey is messaged (``assign_arms``):

1. the **global holdout**: ``buckets(GLOBAL_SEED, id) < global_percent / 100``. Its salt is fixed and shared
   by every journey, so the same customers are held out of all of them;
2. the **journey holdout**: ``buckets(journey_seed(journey), id) < journey_percent / 100``, for customers
   not in the global holdout. Each journey has its own salt, so journey holdouts are independent of each
   other and of the global layer.

Both are thresholds on fixed buckets, so lowering either percent only ever releases held-out customers into
treatment; a treated customer never becomes held out by a ramp down.

A journey's ``split`` step sends each instance down one arm with ``split_arms``: the bucket of
``<customer id>:<entry instant>`` under the salt ``<journey>:split:<step>`` against the arms' cumulative
percents. The engine routes instances with it and the lift report recomputes every entry's arm with it, so
the two cannot disagree; the salt is independent of the holdout's, so arms and holdout are independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GLOBAL_SEED = "global-holdout"
"""Seed of the global holdout: customers held out of every journey."""

TREATMENT, HOLDOUT = "treatment", "holdout"
"""Arm names as stored in ``holdout_assignments.arm`` (the send path refuses ``holdout``)."""
GLOBAL_LAYER, JOURNEY_LAYER = "global", "journey"
"""Which layer decided an arm, as stored in ``holdout_assignments.layer``."""

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF
_BUCKETS = 10000
_ASCII_ZERO = 0x30


def journey_seed(journey_id: str) -> str:
    """Per-journey salt, so holdouts of different journeys are independent of one another."""
    return f"{journey_id}:holdout"


def _fnv1a32(data: bytes, state: int = _FNV_OFFSET) -> int:
    """32-bit FNV-1a of ``data``, continuing from ``state`` (the offset basis by default)."""
    for byte in data:
        state = ((state ^ byte) * _FNV_PRIME) & _MASK32
    return state


def bucket(seed: str, value: str) -> float:
    """Bucket of ``value`` under ``seed``: GrowthBook hash v2, a float in ``[0, 1)`` with 4 decimals."""
    first = _fnv1a32((seed + value).encode("utf-8"))
    second = _fnv1a32(str(first).encode("ascii"))
    return (second % _BUCKETS) / _BUCKETS


def _encode(values: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of every value as an (n, width) uint8 matrix padded with zeros, and the byte lengths.

    Lengths are taken from the Python strings, not from the padded matrix: numpy's fixed-width bytes
    strip trailing NULs, so a value ending in "\\x00" would otherwise hash as if the NUL were absent.
    """
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "UO":
            raise TypeError(f"values must be strings, got an array of dtype {values.dtype}; use astype(str)")
        items: list[str] = values.ravel().tolist()
    else:
        items = list(values)
    n = len(items)
    if n == 0:
        return np.zeros((0, 1), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    try:
        # Fast path: all ASCII, so characters are bytes and numpy does the encoding in C.
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
        width = max(int(lengths.max()), 1)
        fixed = np.array(items, dtype=f"S{width}")
    except UnicodeEncodeError:
        encoded = [item.encode("utf-8") for item in items]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        width = max(int(lengths.max()), 1)
        fixed = np.array(encoded, dtype=f"S{width}")
    except TypeError as exc:
        raise TypeError("values must be strings") from exc
    if fixed.dtype.kind != "S":  # pragma: no cover - numpy guarantees this for an explicit dtype
        raise TypeError("values must be strings")
    return fixed.view(np.uint8).reshape(n, width), lengths


def _decimal_fnv(first: np.ndarray) -> np.ndarray:
    """FNV-1a over the decimal digits of each uint32 in ``first`` (no leading zeros), vectorised.

    Digits are visited from the 10^9 place down; a place takes part only when the number has that many
    digits, except the units place, which every number (including 0) has.
    """
    h = np.full(first.shape, _FNV_OFFSET, dtype=np.uint32)
    prime = np.uint32(_FNV_PRIME)
    digit = np.empty_like(first)
    for place in range(9, -1, -1):
        power = np.uint32(10**place)
        np.floor_divide(first, power, out=digit)
        np.remainder(digit, np.uint32(10), out=digit)
        digit += np.uint32(_ASCII_ZERO)
        if place == 0:
            h ^= digit
            h *= prime
        else:
            active = first >= power
            np.bitwise_xor(h, digit, out=h, where=active)
            np.multiply(h, prime, out=h, where=active)
    return h


def buckets(seed: str, values: Sequence[str] | np.ndarray) -> np.ndarray:
    """``bucket(seed, v)`` for every ``v`` in ``values``, as a float64 array (vectorised).

    Work is a loop over byte positions (the longest id's length, plus ten decimal digits), each step a
    numpy operation over all customers; there is no per-customer hashing in Python.
    """
    matrix, lengths = _encode(values)
    n = matrix.shape[0]
    # The seed is a common prefix: hash it once and start every customer from that state.
    h = np.full(n, _fnv1a32(seed.encode("utf-8")), dtype=np.uint32)
    prime = np.uint32(_FNV_PRIME)
    # Column-major copy so each byte position is one contiguous vector.
    columns = np.ascontiguousarray(matrix.T)
    for j in range(columns.shape[0]):
        # Only strings longer than j have a byte at position j; the rest is zero padding.
        active = lengths > j
        column = columns[j].astype(np.uint32)
        np.bitwise_xor(h, column, out=h, where=active)
        np.multiply(h, prime, out=h, where=active)
    second = _decimal_fnv(h)
    return (second % np.uint32(_BUCKETS)).astype(np.float64) / _BUCKETS


def _objects(*values: str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def split_seed(journey_id: str, step_id: str) -> str:
    """Salt of a journey's ``split`` step: independent of the holdouts' and of the journey's other splits."""
    return f"{journey_id}:split:{step_id}"


def split_arms(
    journey_id: str,
    step_id: str,
    customer_ids: Sequence[str] | np.ndarray,
    entered_us: Sequence[int] | np.ndarray,
    percents: Sequence[float],
) -> np.ndarray:
    """The arm (0-based, in the order the split lists them) each entry takes at split step ``step_id``:
    ``buckets(split_seed(journey, step), "<customer id>:<entered_us>")`` against the cumulative
    ``percents`` (which add up to 100). Pure and vectorised: the same customer and entry always take the
    same arm, on any machine, whenever it is computed."""
    # Joined as Python strings: numpy's fixed-width strings would drop an id's trailing NULs.
    ids = customer_ids.tolist() if isinstance(customer_ids, np.ndarray) else list(customer_ids)
    entered = np.asarray(entered_us, dtype=np.int64).tolist()
    if len(ids) != len(entered):
        raise ValueError("customer_ids and entered_us must be of equal length")
    if not len(percents):
        raise ValueError("a split needs at least one arm")
    values = [f"{cid}:{at}" for cid, at in zip(ids, entered, strict=True)]
    bucket = buckets(split_seed(journey_id, step_id), values)
    edges = np.cumsum(np.asarray(percents, dtype=np.float64)) / 100.0
    return np.minimum(np.searchsorted(edges, bucket, side="right"), len(edges) - 1).astype(np.int64)


def in_holdout(buckets: np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask of customers held out at ``percent`` (0 to 100): ``buckets < percent / 100``.

    Because the rule is a threshold on a fixed bucket, lowering the percent only releases customers from
    the holdout into treatment; it never moves a treated customer into the holdout.
    """
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"holdout percent must be within [0, 100], got {percent}")
    return np.asarray(buckets, dtype=np.float64) < percent / 100.0


def global_holdout(values: Sequence[str] | np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask of the customer ids in ``values`` that are in the global holdout at ``percent``.

    Pure and vectorised: ``buckets(GLOBAL_SEED, values) < percent / 100``. The salt does not depend on any
    journey, so a customer is in the global holdout for every journey or for none.
    """
    return in_holdout(buckets(GLOBAL_SEED, values), percent)


@dataclass(frozen=True)
class Assignments:
    """The arm of each entering customer, aligned with the ids given to ``assign_arms``.

    ``arm`` is ``"holdout"`` or ``"treatment"``; ``layer`` is ``"global"`` when the global holdout decided
    (the customer is then held out) and ``"journey"`` otherwise; ``bucket`` and ``percent`` are the deciding
    layer's bucket and percent; ``reason`` says the same in words, one short sentence per row.
    """

    arm: np.ndarray
    layer: np.ndarray
    bucket: np.ndarray
    percent: np.ndarray
    reason: np.ndarray

    @property
    def held_out(self) -> np.ndarray:
        return self.arm == HOLDOUT

    def __len__(self) -> int:
        return int(self.arm.shape[0])


def assign_arms(
    journey_id: str,
    values: Sequence[str] | np.ndarray,
    journey_percent: float,
    global_percent: float = 0.0,
) -> Assignments:
    """Arms of customer ids ``values`` entering ``journey_id``: global layer first, then the journey's.

    Pure and vectorised (two ``buckets`` passes over all ids). The reasons are one constant string per
    (layer, arm), so a stored row explains itself without the code at hand.
    """
    global_buckets = buckets(GLOBAL_SEED, values)
    journey_buckets = buckets(journey_seed(journey_id), values)
    in_global = in_holdout(global_buckets, global_percent)
    in_journey = in_holdout(journey_buckets, journey_percent) & ~in_global
    # Each row's case (0 global, 1 journey, 2 treatment) picks from one small object array per column, so
    # every row shares the same few string objects: a fixed-width string array of the reasons would cost
    # hundreds of bytes per row (hundreds of MB for a million entrants).
    case = np.where(in_global, 0, np.where(in_journey, 1, 2)).astype(np.int8)
    reasons = [
        f"global holdout: hash({GLOBAL_SEED!r}, id) < {global_percent:g}%",
        f"journey holdout: hash({journey_seed(journey_id)!r}, id) < {journey_percent:g}%",
        (
            f"treatment: hash({journey_seed(journey_id)!r}, id) >= {journey_percent:g}% and not in the "
            f"{global_percent:g}% global holdout"
        ),
    ]
    arm = _objects(HOLDOUT, HOLDOUT, TREATMENT)[case]
    layer = _objects(GLOBAL_LAYER, JOURNEY_LAYER, JOURNEY_LAYER)[case]
    reason = _objects(*reasons)[case]
    return Assignments(
        arm=arm,
        layer=layer,
        bucket=np.where(in_global, global_buckets, journey_buckets),
        percent=np.where(in_global, float(global_percent), float(journey_percent)),
        reason=reason,
    )
