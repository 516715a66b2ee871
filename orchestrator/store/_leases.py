"""How several worker processes share one PostgreSQL store: advisory locks for singleton jobs and leased
row claims for stepping.

- A *singleton* job (registering versions, migrations, entry with its signal edge and event cursor,
  conversions, exit criteria, dispatch) runs in one worker at a time: it takes a PostgreSQL advisory lock
  named after the job. Transaction-level locks end with the transaction; the session-level one (dispatch,
  which spans several transactions) is released explicitly.
- *Stepping* is shared: a worker claims a batch of due instances with ``SELECT ... FOR UPDATE SKIP
  LOCKED`` and stamps them ``claimed_by`` / ``lease_until_us`` in a short transaction; the transaction
  that steps them locks them again (only if the claim is still its own and unexpired), writes their state
  changes and ledger rows and clears the claim, all in one commit. A worker that dies leaves claims that
  expire after the lease, when any other worker takes them over.

Lease instants are the database server's clock (``clock_timestamp()``): liveness is wall-clock by nature,
and one clock for every worker avoids skew between hosts. SQLite runs one worker, so every lock is
granted at once and nothing is claimed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

if TYPE_CHECKING:
    from orchestrator.store._partitions import Ownership

#: The database server's current instant in microseconds since the epoch.
DB_NOW_US = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"


@dataclass(frozen=True)
class Claim:
    """A batch of instances claimed by one worker: ``due_instances`` given it reads (and locks) only these,
    instead of every due instance."""

    worker: str
    ids: list[int]


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a job name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def try_singleton(conn: Connection, name: str) -> bool:
    """Whether this transaction now holds job ``name``'s lock (held until it ends); never waits."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_key(name)}).scalar())


def wait_singleton(conn: Connection, name: str) -> None:
    """Take job ``name``'s lock for the rest of this transaction, waiting for it if another worker has it."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})


@contextmanager
def session_singleton(engine: Engine, name: str, *, shared: bool = False) -> Iterator[bool]:
    """Yields whether job ``name``'s lock was got, holding it (on a connection of its own) until the block
    ends; a worker that dies loses the lock with its connection. ``shared``: many holders at once, none
    while someone holds it alone (partitioned workers each dispatch their own customers' messages under
    the shared lock; a dispatch of every message takes it alone)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    kind = "_shared" if shared else ""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        got = bool(conn.execute(text(f"SELECT pg_try_advisory_lock{kind}(:k)"), {"k": key}).scalar())
        try:
            yield got
        finally:
            if got:
                conn.execute(text(f"SELECT pg_advisory_unlock{kind}(:k)"), {"k": key})


def claim_due(
    conn: Connection,
    journey_id: str,
    version: int,
    now_us: int,
    worker: str,
    batch: int,
    lease_seconds: float,
    *,
    waiting_states: Sequence[str] = (),
    after_id: int | None = None,
    ownership: Ownership | None = None,
) -> list[int]:
    """Claim up to ``batch`` active instances of one version for ``worker`` and return their ids.

    Without ``after_id``: instances due at ``now_us`` (oldest wake-up first). With it: instances at one of
    ``waiting_states`` that are not yet due (waits for an event look at every tick), with ids above
    ``after_id`` in id order, so one pass over them ends. Instances locked by another worker's claim or
    step are skipped, as are those under a lease that has not expired. With ``ownership``, only the
    instances of customers in its partitions.
    """
    from orchestrator.store._partitions import owned_clause  # it imports this module

    params: dict[str, Any] = {
        "j": journey_id,
        "v": version,
        "now": now_us,
        "w": worker,
        "n": batch,
        "lease": round(lease_seconds * 1_000_000),
    }
    if after_id is None:
        which = "wake_at_us <= :now"
        order = "wake_at_us, id"
    else:
        if not waiting_states:
            return []
        listing = ", ".join(f":s{i}" for i in range(len(waiting_states)))
        params.update({f"s{i}": s for i, s in enumerate(waiting_states)})
        params["after"] = after_id
        which = f"state IN ({listing}) AND wake_at_us > :now AND id > :after"
        order = "id"
    rows = conn.execute(
        text(
            f"UPDATE journey_instances SET claimed_by = :w, lease_until_us = {DB_NOW_US} + :lease "
            "WHERE id IN (SELECT id FROM journey_instances WHERE journey_id = :j AND version = :v "
            f"AND status = 'active' AND {which} AND (lease_until_us IS NULL OR lease_until_us < {DB_NOW_US}) "
            f"AND {owned_clause('customer_key', ownership)} "
            f"ORDER BY {order} LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING id"
        ),
        params,
    ).all()
    return sorted(int(r[0]) for r in rows)


def lock_claimed(
    conn: Connection, journey_id: str, version: int, worker: str, ids: Sequence[int], columns: str
) -> list[tuple[Any, ...]]:
    """``columns`` of the instances among ``ids`` that are still active and still claimed by ``worker``
    under an unexpired lease, locked until this transaction ends (a claim that expired and was taken
    over by another worker is left to that worker)."""
    if not ids:
        return []
    rows = conn.execute(
        text(
            f"SELECT {columns} FROM journey_instances WHERE id = ANY(:ids) AND journey_id = :j "
            f"AND version = :v AND status = 'active' AND claimed_by = :w AND lease_until_us >= {DB_NOW_US} "
            "ORDER BY id FOR UPDATE"
        ),
        {"ids": [int(i) for i in ids], "j": journey_id, "v": version, "w": worker},
    ).all()
    return [tuple(r) for r in rows]


def release(conn: Connection, worker: str, ids: Sequence[int]) -> None:
    """Clear ``worker``'s claims on ``ids`` (in the transaction that stepped them). Rows that moved or
    finished have had theirs cleared by the same UPDATE (``move_instances``, ``finish_steps``), so this
    writes only the rows that stayed where they were."""
    if ids:
        conn.execute(
            text(
                "UPDATE journey_instances SET claimed_by = NULL, lease_until_us = NULL "
                "WHERE id = ANY(:ids) AND claimed_by = :w"
            ),
            {"ids": [int(i) for i in ids], "w": worker},
        )
