"""Journey versions and the migrations between them.

A version is registered once with the digest and source it was compiled from (and the workspace's shared
metrics); a migration from one version to another is recorded once, and moving its instances is one UPDATE
per step mapping. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, text

from orchestrator.store._funnel import MIGRATED, MOVED, count_where


@dataclass(frozen=True)
class StoredVersion:
    journey_id: str
    version: int
    digest: str
    source: str
    shared_metrics: str | None = None


def stored_version(conn: Connection, journey_id: str, version: int) -> StoredVersion | None:
    row = conn.execute(
        text(
            "SELECT digest, source, shared_metrics FROM journey_versions "
            "WHERE journey_id = :j AND version = :v"
        ),
        {"j": journey_id, "v": version},
    ).first()
    return StoredVersion(journey_id, version, row[0], row[1], row[2]) if row else None


def stored_versions(conn: Connection, journey_id: str) -> list[int]:
    rows = conn.execute(
        text("SELECT version FROM journey_versions WHERE journey_id = :j ORDER BY version"), {"j": journey_id}
    ).all()
    return [int(r[0]) for r in rows]


class VersionSource(NamedTuple):
    """A registered version of a journey and the source it was compiled from."""

    version: int
    source: str


def latest_version_source(conn: Connection, journey_id: str) -> VersionSource | None:
    """The highest registered version of ``journey_id`` with its source (None when it never ran)."""
    row = conn.execute(
        text("SELECT version, source FROM journey_versions WHERE journey_id = :j ORDER BY version DESC"),
        {"j": journey_id},
    ).first()
    return None if row is None else VersionSource(row.version, row.source)


def journey_ids(conn: Connection) -> list[str]:
    """Every journey with a registered version (in no particular order)."""
    return [str(r[0]) for r in conn.execute(text("SELECT DISTINCT journey_id FROM journey_versions")).all()]


def register_version(
    conn: Connection,
    journey_id: str,
    version: int,
    digest: str,
    source: str,
    now_us: int,
    shared_metrics: str | None = None,
) -> None:
    conn.execute(
        text(
            "INSERT INTO journey_versions "
            "(journey_id, version, digest, source, shared_metrics, registered_us) "
            "VALUES (:j, :v, :d, :s, :m, :t)"
        ),
        {"j": journey_id, "v": version, "d": digest, "s": source, "m": shared_metrics, "t": now_us},
    )


def active_versions(conn: Connection, journey_id: str, other_than: int | None = None) -> list[int]:
    """The journey's versions with active instances; with ``other_than``, only registered versions but that
    one (each looked up on its own, so a journey with one registered version reads no instance)."""
    if other_than is None:
        rows = conn.execute(
            text(
                "SELECT DISTINCT version FROM journey_instances WHERE journey_id = :j AND status = 'active'"
            ),
            {"j": journey_id},
        ).all()
        return sorted(int(r[0]) for r in rows)
    rows = conn.execute(
        text(
            "SELECT v.version FROM journey_versions v WHERE v.journey_id = :j AND v.version <> :v "
            "AND EXISTS (SELECT 1 FROM journey_instances i WHERE i.journey_id = :j AND i.status = 'active' "
            "AND i.version = v.version)"
        ),
        {"j": journey_id, "v": other_than},
    ).all()
    return sorted(int(r[0]) for r in rows)


def migration_applied(conn: Connection, journey_id: str, to_version: int, from_version: int) -> bool:
    row = conn.execute(
        text(
            "SELECT 1 FROM journey_migrations WHERE journey_id = :j AND to_version = :t AND from_version = :f"
        ),
        {"j": journey_id, "t": to_version, "f": from_version},
    ).first()
    return row is not None


def record_migration(
    conn: Connection, journey_id: str, to_version: int, from_version: int, now_us: int, moved: int
) -> None:
    conn.execute(
        text(
            "INSERT INTO journey_migrations (journey_id, to_version, from_version, applied_us, moved) "
            "VALUES (:j, :t, :f, :now, :m)"
        ),
        {"j": journey_id, "t": to_version, "f": from_version, "now": now_us, "m": moved},
    )


def migrate_instances(
    conn: Connection, journey_id: str, from_version: int, to_version: int, old: str, new: str, now_us: int
) -> int:
    """Move the active instances of ``from_version`` at step ``old`` to step ``new`` of ``to_version``
    (``exited``: finish them); they are due at once, keeping when they reached their step. Returns how many
    moved. The funnel counts them leaving ``from_version`` (to ``moved`` or ``exited``) and arriving in
    ``to_version`` (from ``v<from_version>``)."""
    params = {"j": journey_id, "f": from_version, "t": to_version, "old": old, "new": new, "now": now_us}
    where = "journey_id = :j AND version = :f AND status = 'active' AND state = :old"
    count_where(conn, where, params, MIGRATED, "exited" if new == "exited" else MOVED)
    if new != "exited":
        count_where(conn, where, params, MIGRATED, new, version=to_version, source=f"v{from_version}")
    if new == "exited":
        sql = (
            "UPDATE journey_instances SET status = 'exited', state = 'exited', exited_us = :now, "
            "wake_at_us = NULL, exit_reason = 'left by migration to version ' || :t "
            "WHERE journey_id = :j AND version = :f AND status = 'active' AND state = :old"
        )
    else:
        sql = (
            "UPDATE journey_instances SET version = :t, state = :new, wake_at_us = :now "
            "WHERE journey_id = :j AND version = :f AND status = 'active' AND state = :old"
        )
    result = conn.execute(text(sql), params)
    return int(result.rowcount or 0)
