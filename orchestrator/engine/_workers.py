"""Several engine processes on one PostgreSQL store (see ``store._leases`` for the locking scheme).

An ``Engine`` on PostgreSQL gets a ``Sharing``: per journey, the worker that wins the journey's advisory
lock does the singleton part of the tick (migrations, entry, conversions, exit criteria); every worker
then claims batches of due instances and steps each batch in a transaction of its own, which writes the
state changes and ledger rows and clears the claim together. Dispatch runs in one worker at a time.

With ``partitions`` (``workers.partitions`` in ``orchestrator.yaml``), customers are split into that
many partitions, each owned by one worker through a lease (``store._partitions``): at each tick a worker
balances its partitions, holds the signal state of their customers only, and enters, converts, exits,
steps and dispatches for them alone; the journey's lock then guards only its migrations. Every write of
entry, conversions and exits happens in a transaction that first checks (and locks) the worker's leases
at the epochs it balanced to, so a worker whose lease ran out while it was stalled writes nothing there.

SQLite stores run one worker process: an engine on SQLite has no ``Sharing`` and steps everything in the
journey's transaction.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from orchestrator.language import JourneyPlan
from orchestrator.store import (
    Connection,
    Ownership,
    Store,
    balance_partitions,
    join_partitions,
    partitions_still_held,
    release_partitions,
)
from orchestrator.store import _leases as leases

#: Instances claimed (and stepped in one transaction) at a time.
DEFAULT_BATCH = 5000
#: How long a claim holds before another worker may take it over (the claiming worker died).
DEFAULT_LEASE_SECONDS = 120.0


def worker_identity() -> str:
    """A name unique to this process: host, pid and a random part (pids are reused after restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Sharing:
    """How one engine process shares a PostgreSQL store with others."""

    worker: str = field(default_factory=worker_identity)
    batch: int = DEFAULT_BATCH
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    partitions: int = 0  # 0: every worker holds every customer; else the store's partition count
    ownership: Ownership | None = None  # the partitions held since the last ``balance``

    def __post_init__(self) -> None:
        if self.batch < 1 or self.lease_seconds <= 0:
            raise ValueError("a worker needs a batch of at least 1 and a positive lease")
        if self.partitions < 0:
            raise ValueError("the partition count is 0 (none) or more")

    @staticmethod
    def for_store(store: Store, *, partitions: int = 0, lease_seconds: float | None = None) -> Sharing | None:
        """A ``Sharing`` for PostgreSQL stores, None for SQLite (one worker)."""
        if not store.is_postgres:
            return None
        return Sharing(
            partitions=partitions,
            lease_seconds=DEFAULT_LEASE_SECONDS if lease_seconds is None else lease_seconds,
        )

    def join(self, store: Store) -> None:
        """Be counted among the live workers before the first ``balance`` (with partitions)."""
        if self.partitions:
            with store.begin() as conn:
                join_partitions(conn, self.worker, self.lease_seconds)

    def balance(self, store: Store) -> Ownership | None:
        """Renew, give back and take partitions (with partitions; see ``store._partitions``), in a
        transaction of its own; what this worker holds now (None without partitions)."""
        if not self.partitions:
            return None
        with store.begin() as conn:
            self.ownership = balance_partitions(conn, self.worker, self.lease_seconds, self.partitions)
        return self.ownership

    def holds(self, conn: Connection) -> bool:
        """Whether this worker still holds what it balanced to (true without partitions), those leases
        locked until ``conn``'s transaction ends."""
        own = self.ownership
        return own is None or partitions_still_held(conn, self.worker, own.partitions, own.epochs)

    def leave(self, store: Store) -> None:
        """Hand every partition back at once (a clean stop), so the others take them at their next tick."""
        if self.partitions:
            with store.begin() as conn:
                release_partitions(conn, self.worker)
            self.ownership = None

    def lead(self, conn: Connection, journey_id: str) -> bool:
        """Whether this worker does the journey's singleton work in this transaction."""
        return leases.try_singleton(conn, f"journey:{journey_id}")

    def claims(self, store: Store, plan: JourneyPlan, now_us: int) -> Iterator[list[int]]:
        """Batches of instance ids of ``plan``'s version claimed by this worker, each in a committed
        transaction of its own: first the due ones, then one pass over those waiting for an event. An
        instance is handed out at most once per call, as a tick steps each instance once."""
        seen: set[int] = set()
        after: int | None = None
        waiting = tuple(plan.wait_for_states())
        while True:
            with store.begin() as conn:
                ids = leases.claim_due(
                    conn,
                    plan.id,
                    plan.version,
                    now_us,
                    self.worker,
                    self.batch,
                    self.lease_seconds,
                    waiting_states=waiting,
                    after_id=after,
                    ownership=self.ownership,
                )
            if not ids and (after is not None or not waiting):
                return
            if not ids:
                after = 0  # the due ones are done: now one pass over the waits for an event
                continue
            fresh = [i for i in ids if i not in seen]
            if len(fresh) < len(ids):  # stepped earlier in this call and still due: left for the next tick
                with store.begin() as conn:
                    leases.release(conn, self.worker, [i for i in ids if i in seen])
            if after is not None:
                after = max(ids)
            elif not fresh:
                if not waiting:
                    return
                after = 0
            if fresh:
                seen.update(fresh)
                yield fresh

    @contextmanager
    def stepping(self, conn: Connection, ids: Sequence[int]) -> Iterator[leases.Claim]:
        """Yields this worker's claim on ``ids``, for ``due_instances`` to read (and lock) only those
        instances; the claims are cleared at the end of the block, in the same transaction."""
        yield leases.Claim(self.worker, list(ids))
        leases.release(conn, self.worker, ids)
