"""Customers hashed into a fixed number of partitions, each owned by one worker through a lease.

A customer's partition is its store key modulo the store's partition count (``partition_of``): every worker
of one store computes the same partition for a customer, and within a partition the keys ``p, p + P,
p + 2P, ...`` number its customers densely (``key // P``), so state kept per partition needs no index of
its own. The count is fixed when the first worker sets the partitions up (``ensure_partitions``); a worker
configured with another count is refused rather than splitting customers two ways.

Ownership (PostgreSQL): each partition has a row in ``partition_leases`` (owner, lease end in database
time, and an ``epoch`` counting owner changes: a fencing token for work done under the lease). Each live
worker keeps a heartbeat row in ``partition_workers``. Every worker calls ``balance_partitions`` at each
tick, before its work, in a short transaction of its own:

1. it renews its heartbeat and forgets heartbeats that expired (workers that died or left);
2. its share is ``ceil(partitions / live workers)``;
3. it renews the leases it holds, gives back those above its share (lowest numbers kept), and takes
   partitions nobody holds or whose lease expired, up to its share, skipping rows another worker is
   balancing at that moment (``FOR UPDATE SKIP LOCKED``).

So a worker that dies loses its partitions when their lease ends, and the others take them over at their
next balance; a worker that joins raises the live count, the others give back their surplus at their
next tick, and the new worker takes them at its next. A worker that leaves cleanly
(``release_partitions``) hands its partitions back at once. Lease instants are the database server's
clock, as for row claims (``store._leases``). SQLite stores run one worker, which owns every partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text

from orchestrator.errors import StoreError
from orchestrator.store._leases import DB_NOW_US

#: Partitions of a new store.
DEFAULT_PARTITIONS = 64
#: A lease given back, and a lease's end from now.
FREE = "owner = NULL, lease_until_us = NULL"
UNTIL = f"{DB_NOW_US} + :lease"


class PartitionCountError(StoreError):
    """A worker's partition count differs from the one the store was set up with."""


@dataclass(frozen=True)
class Ownership:
    """The partitions one worker holds after balancing, with each one's epoch (aligned), the store's
    partition count and the number of live workers it counted."""

    worker: str
    partitions: tuple[int, ...]
    epochs: tuple[int, ...]
    count: int
    live_workers: int

    def customers(self, keys: np.ndarray) -> np.ndarray:
        """Which of ``keys`` (customer keys) fall in this worker's partitions (a boolean mask)."""
        owned = np.zeros(self.count, bool)
        owned[list(self.partitions)] = True
        return owned[partition_of(keys, self.count)]


def owned_clause(column: str, ownership: Ownership | None) -> str:
    """An SQL condition true for rows whose ``column`` (a customer key) falls in ``ownership``'s
    partitions; ``1 = 1`` without one. The numbers are the engine's own integers, written in the text."""
    if ownership is None:
        return "1 = 1"
    if not ownership.partitions:
        return "1 = 0"
    listing = ", ".join(str(int(p)) for p in ownership.partitions)
    count = int(ownership.count)
    # The remainder by integer division (keys are positive), as both backends write it without a "%",
    # which a DBAPI cursor's parameters would take for a placeholder.
    return f"({column} - ({column} / {count}) * {count}) IN ({listing})"


def join_partitions(conn: Connection, worker: str, lease_seconds: float) -> None:
    """Count ``worker`` among the live workers (its heartbeat) before its first balance, so that workers
    starting together split the partitions at once instead of the first one taking them all."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        text(
            "INSERT INTO partition_workers (worker, expires_us) "
            f"VALUES (:w, {UNTIL}) "
            "ON CONFLICT (worker) DO UPDATE SET expires_us = EXCLUDED.expires_us"
        ),
        {"w": worker, "lease": round(lease_seconds * 1_000_000)},
    )


def partition_of(keys: np.ndarray, count: int) -> np.ndarray:
    """The partition of each customer key."""
    return np.asarray(keys, dtype=np.int64) % count


def ensure_partitions(conn: Connection, count: int) -> int:
    """Set up ``count`` partitions if the store has none; the store's count. Raises
    ``PartitionCountError`` when the store was set up with another count."""
    if count < 1:
        raise PartitionCountError(f"the partition count must be at least 1, not {count}")
    have = int(conn.execute(text("SELECT COUNT(*) FROM partition_leases")).scalar() or 0)
    if have == 0:
        conn.execute(
            text("INSERT INTO partition_leases (partition, epoch) VALUES (:p, 0) ON CONFLICT DO NOTHING"),
            [{"p": p} for p in range(count)],
        )
        have = int(conn.execute(text("SELECT COUNT(*) FROM partition_leases")).scalar() or 0)
    if have != count:
        raise PartitionCountError(
            f"the store is split into {have} partitions, not {count}: set partitions to {have} "
            "(the count is fixed when the store is first shared)"
        )
    return have


def balance_partitions(conn: Connection, worker: str, lease_seconds: float, count: int) -> Ownership:
    """Renew ``worker``'s heartbeat and leases, give back its surplus, take free partitions up to its
    share, in the caller's (short) transaction; what it holds now."""
    if conn.dialect.name != "postgresql":
        return Ownership(worker, tuple(range(count)), (0,) * count, count, 1)
    ensure_partitions(conn, count)
    lease = round(lease_seconds * 1_000_000)
    params = {"w": worker, "lease": lease}
    conn.execute(
        text(
            "INSERT INTO partition_workers (worker, expires_us) "
            f"VALUES (:w, {UNTIL}) "
            "ON CONFLICT (worker) DO UPDATE SET expires_us = EXCLUDED.expires_us"
        ),
        params,
    )
    conn.execute(text(f"DELETE FROM partition_workers WHERE expires_us < {DB_NOW_US}"))
    live = max(1, int(conn.execute(text("SELECT COUNT(*) FROM partition_workers")).scalar() or 1))
    share = -(-count // live)

    held = [
        int(r[0])
        for r in conn.execute(
            text(
                "SELECT partition FROM partition_leases WHERE owner = :w "
                f"AND lease_until_us >= {DB_NOW_US} ORDER BY partition FOR UPDATE"
            ),
            params,
        )
    ]
    keep, surplus = held[:share], held[share:]
    if surplus:
        conn.execute(
            text(f"UPDATE partition_leases SET {FREE} WHERE partition = ANY(:ps)"),
            {"ps": surplus},
        )
    if keep:
        conn.execute(
            text(f"UPDATE partition_leases SET lease_until_us = {UNTIL} WHERE partition = ANY(:ps)"),
            {"ps": keep, "lease": lease},
        )
    wanted = share - len(keep)
    if wanted > 0:
        # Free first (nobody holds them), then expired ones (their worker died), lowest numbers first.
        conn.execute(
            text(
                f"UPDATE partition_leases SET owner = :w, lease_until_us = {UNTIL}, "
                "epoch = epoch + 1 WHERE partition IN (SELECT partition FROM partition_leases "
                f"WHERE owner IS NULL OR lease_until_us < {DB_NOW_US} "
                "ORDER BY owner IS NOT NULL, partition LIMIT :n FOR UPDATE SKIP LOCKED)"
            ),
            {**params, "n": wanted},
        )
    rows = conn.execute(
        text(
            "SELECT partition, epoch FROM partition_leases WHERE owner = :w "
            f"AND lease_until_us >= {DB_NOW_US} ORDER BY partition"
        ),
        params,
    ).all()
    return Ownership(worker, tuple(int(r[0]) for r in rows), tuple(int(r[1]) for r in rows), count, live)


def partitions_still_held(
    conn: Connection, worker: str, partitions: Sequence[int], epochs: Sequence[int]
) -> bool:
    """Whether ``worker`` still holds every one of ``partitions`` at the same epochs under an unexpired
    lease, locking those rows until the transaction ends (so no other worker takes them over meanwhile)."""
    if conn.dialect.name != "postgresql" or not partitions:
        return True
    rows = conn.execute(
        text(
            "SELECT partition, epoch FROM partition_leases WHERE partition = ANY(:ps) AND owner = :w "
            f"AND lease_until_us >= {DB_NOW_US} FOR SHARE"
        ),
        {"ps": list(partitions), "w": worker},
    ).all()
    return dict(zip(partitions, epochs, strict=True)) == {int(p): int(e) for p, e in rows}


def release_partitions(conn: Connection, worker: str) -> None:
    """Give back every partition ``worker`` holds and forget its heartbeat (a clean stop)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(f"UPDATE partition_leases SET {FREE} WHERE owner = :w"), {"w": worker})
    conn.execute(text("DELETE FROM partition_workers WHERE worker = :w"), {"w": worker})


def partition_owners(conn: Connection) -> dict[int, str | None]:
    """Each partition's owner under an unexpired lease (None when free or expired), for status and tests;
    empty when the store's workers do not use partitions (and on SQLite)."""
    if conn.dialect.name != "postgresql":
        return {}
    rows = conn.execute(
        text(
            f"SELECT partition, CASE WHEN lease_until_us >= {DB_NOW_US} THEN owner END "
            "FROM partition_leases ORDER BY partition"
        )
    ).all()
    return {int(p): o for p, o in rows}
