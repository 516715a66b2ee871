"""The per-step funnel's counts, kept as steps happen (``journey_funnel``); the ledger's outcomes per step.

A row counts how many instances of one journey version and arm (``treatment`` or ``holdout``) went from
``source`` through ``trigger_name`` to ``dest``. The triggers are the state machine's (``next``, ``yes``,
``no``, ``split-<n>``, ``goal``, see ``language._machine``) plus the moves made outside the steps:

- ``entry``: an instance entered (``source`` is ``''``, ``dest`` the first step);
- ``migrated``: a version's ``migrate:`` moved it; in the old version ``dest`` is ``moved`` (or
  ``exited``), in the new one ``source`` is ``v<old version>`` and ``dest`` the step it landed on;
- ``exit_when``: the journey's ``exit_when`` became true (``dest`` ``exited``);
- ``retired``: ``orchestrator retire`` finished it (``dest`` ``exited``);
- ``before-counting``: written once when a store made before the counts existed was upgraded: every
  instance then, at the step it was at or how it had finished (per-step history before is not known).

Every write is one set-based statement (a multi-row upsert, or an INSERT ... SELECT grouped over the rows an
UPDATE is about to change) in the caller's transaction, so the counts commit with the state change they
count. ``step_message_counts`` reads message outcomes per send step from the ledger, which is written as
steps happen already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, TextClause, text

from orchestrator.holdout import HOLDOUT as HOLDOUT_ARM
from orchestrator.holdout import TREATMENT as TREATMENT_ARM

ENTRY_TRIGGER = "entry"
MIGRATED = "migrated"
EXIT_WHEN = "exit_when"
RETIRED = "retired"
BEFORE_COUNTING = "before-counting"
#: The destination, in the old version, of instances a migration moved onto a newer version.
MOVED = "moved"

_KEY = "journey_id, version, arm, source, trigger_name, dest"
_UPSERT = f" ON CONFLICT ({_KEY}) DO UPDATE SET n = journey_funnel.n + excluded.n"


def _arm(column: str = "holdout") -> str:
    """SQL naming the arm of an instance from its holdout flag."""
    return f"CASE WHEN {column} THEN '{HOLDOUT_ARM}' ELSE '{TREATMENT_ARM}' END"


@dataclass(frozen=True)
class FunnelCount:
    """How many instances of one version and arm took one transition."""

    journey_id: str
    version: int
    arm: str
    source: str
    trigger: str
    dest: str
    n: int


def arm_counts(
    journey_id: str, version: int, source: str, trigger: str, dest: str, held: np.ndarray
) -> list[FunnelCount]:
    """The counts of one transition taken by instances with these holdout flags, one per arm present."""
    held_n = int(np.count_nonzero(held))
    out = []
    if len(held) - held_n:
        out.append(FunnelCount(journey_id, version, TREATMENT_ARM, source, trigger, dest, len(held) - held_n))
    if held_n:
        out.append(FunnelCount(journey_id, version, HOLDOUT_ARM, source, trigger, dest, held_n))
    return out


def add_funnel_counts(conn: Connection, counts: Sequence[FunnelCount]) -> None:
    """Add ``counts`` to the funnel in one statement (rows with the same key are summed first)."""
    summed: dict[tuple[str, int, str, str, str, str], int] = {}
    for c in counts:
        if c.n:
            key = (c.journey_id, c.version, c.arm, c.source, c.trigger, c.dest)
            summed[key] = summed.get(key, 0) + c.n
    if not summed:
        return
    params: dict[str, Any] = {}
    for i, (key, n) in enumerate(summed.items()):
        params.update({f"j{i}": key[0], f"v{i}": key[1], f"a{i}": key[2], f"s{i}": key[3], f"t{i}": key[4]})
        params.update({f"d{i}": key[5], f"n{i}": n})
    conn.execute(_insert_counts(len(summed)), params)


@lru_cache(maxsize=64)
def _insert_counts(rows: int) -> TextClause:
    """The statement adding ``rows`` counts (built once per number of rows: every step writes one)."""
    values = ", ".join(f"(:j{i}, :v{i}, :a{i}, :s{i}, :t{i}, :d{i}, :n{i})" for i in range(rows))
    return text(f"INSERT INTO journey_funnel ({_KEY}, n) VALUES {values}{_UPSERT}")


def count_leaving(conn: Connection, ids: np.ndarray, trigger: str, dest: str) -> None:
    """Count the active instances among ``ids`` as taking ``trigger`` to ``dest`` from the step each is at
    (one INSERT ... SELECT grouped by version, arm and step; run it before the UPDATE that moves them)."""
    if not len(ids):
        return
    if conn.dialect.name == "postgresql":
        within, value = "id = ANY(CAST(:ids AS BIGINT[]))", np.asarray(ids).tolist()
    else:
        within, value = "id IN (SELECT value FROM json_each(:ids))", orjson.dumps(np.asarray(ids).tolist())
    count_where(conn, f"{within} AND status = 'active'", {"ids": value}, trigger, dest)


def count_where(
    conn: Connection,
    where: str,
    params: dict[str, Any],
    trigger: str,
    dest: str,
    *,
    version: int | None = None,
    source: str | None = None,
) -> None:
    """Count the instances matching ``where`` (SQL over ``journey_instances``) as taking ``trigger`` to
    ``dest``, grouped by journey, version, arm and step; ``version`` and ``source``, when given, are counted
    instead of the instance's own version and step."""
    selected = ["journey_id", "version", _arm(), "state"]
    grouped = ["journey_id", "version", "holdout", "state"]
    if version is not None:
        selected[1] = "CAST(:fv AS BIGINT)"
        grouped.remove("version")
    if source is not None:
        selected[3] = "CAST(:fs AS TEXT)"
        grouped.remove("state")
    conn.execute(
        text(
            f"INSERT INTO journey_funnel ({_KEY}, n) SELECT {', '.join(selected)}, CAST(:trigger AS TEXT), "
            f"CAST(:dest AS TEXT), COUNT(*) FROM journey_instances WHERE {where} "
            f"GROUP BY {', '.join(grouped)}{_UPSERT}"
        ),
        {**params, "trigger": trigger, "dest": dest, "fv": version, "fs": source},
    )


def funnel_counts(conn: Connection, journey_id: str, version: int | None = None) -> list[FunnelCount]:
    """The funnel's counts of one journey (one version of it, when given)."""
    only = " AND version = :v" if version is not None else ""
    rows = conn.execute(
        text(
            f"SELECT {_KEY}, n FROM journey_funnel WHERE journey_id = :j{only} "
            "ORDER BY version, arm, source, trigger_name, dest"
        ),
        {"j": journey_id, "v": version},
    ).all()
    return [FunnelCount(r[0], int(r[1]), r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


@dataclass(frozen=True)
class StepMessages:
    """Ledger rows of one send step of one version and arm, by status and reason."""

    version: int
    step: str
    arm: str
    status: str
    reason: str | None
    n: int


def step_message_counts(conn: Connection, journey_id: str, version: int | None = None) -> list[StepMessages]:
    """The ledger's messages of one journey (one version, when given) by version, step, arm, status and
    reason, in one query; test sends are left out. The arm is the instance's (held-out instances never
    get a ledger row, so a holdout row here would be a bug the report shows)."""
    only = " AND m.version = :v" if version is not None else ""
    rows = conn.execute(
        text(
            f"SELECT m.version, m.step, {_arm('i.holdout')}, m.status, m.reason, "
            "COUNT(*) FROM messages m JOIN journey_instances i ON i.id = m.instance_id "
            f"WHERE m.journey_id = :j AND m.test = :no{only} "
            "GROUP BY m.version, m.step, i.holdout, m.status, m.reason "
            "ORDER BY m.version, m.step, m.status, m.reason"
        ),
        {"j": journey_id, "v": version, "no": False},
    ).all()
    return [StepMessages(int(r[0]), r[1], r[2], r[3], r[4], int(r[5])) for r in rows]


@dataclass(frozen=True)
class ArmConversions:
    """Goal conversions of one version and arm (recorded for both arms, in or after the journey)."""

    version: int
    arm: str
    n: int


def conversion_counts(conn: Connection, journey_id: str) -> list[ArmConversions]:
    """The journey's conversions per version and arm, in one query."""
    rows = conn.execute(
        text(
            f"SELECT version, {_arm()}, COUNT(*) FROM conversions WHERE journey_id = :j "
            "GROUP BY version, holdout"
        ),
        {"j": journey_id},
    ).all()
    return [ArmConversions(int(r[0]), r[1], int(r[2])) for r in rows]
