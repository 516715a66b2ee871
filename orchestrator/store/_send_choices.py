"""What send steps that choose per customer chose (``send_choices``): written in bulk by the stepper when
instances reach such a step, read back when they wake at it, by ``why`` and by the journey report.

Each row is one visit of one instance to one step, in both arms (a held-out instance waits for its best
time too, so both arms walk the journey on the same schedule). ``detail`` is JSON text with the counts
behind the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection

from orchestrator.store._bulk import column, executemany, fetch, objects
from orchestrator.store._customers import chunked

CHOICE_COLUMNS = (
    "instance_id",
    "step",
    "visit_us",
    "journey_id",
    "version",
    "customer_key",
    "policy",
    "channel",
    "send_at_us",
    "hour_of_week",
    "detail",
)


def record_send_choices(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows with ``CHOICE_COLUMNS`` (``detail`` a dict), one executemany; a visit already recorded keeps its
    first choice."""
    if not rows:
        return
    listing = ", ".join(CHOICE_COLUMNS)
    values = ", ".join(":" + c for c in CHOICE_COLUMNS)
    conflict = "ON CONFLICT (instance_id, step, visit_us) DO NOTHING"
    executemany(
        conn,
        f"INSERT INTO send_choices ({listing}) VALUES ({values}) {conflict}",
        [{**row, "detail": orjson.dumps(row["detail"]).decode()} for row in rows],
    )


def chosen_visits(conn: Connection, step: str, instance_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The recorded visits of these instances to ``step``: (instance id, visit_us) arrays."""
    out: list[tuple[Any, ...]] = []
    for part in chunked(sorted({int(i) for i in instance_ids})):
        listing = ", ".join(str(i) for i in part)  # plain ints: safe to inline
        out.extend(
            fetch(
                conn,
                "SELECT instance_id, visit_us FROM send_choices WHERE step = :s "
                f"AND instance_id IN ({listing})",
                {"s": step},
            )
        )
    return column(out, 0, np.int64), column(out, 1, np.int64)


@dataclass(frozen=True)
class SendChoiceRow:
    """One recorded choice, as ``why`` shows it."""

    instance_id: int
    journey_id: str
    version: int
    step: str
    visit_us: int
    policy: str
    channel: str
    send_at_us: int
    hour_of_week: int | None
    detail: dict[str, Any]


def customer_send_choices(
    conn: Connection, customer_key: int, journey_id: str | None = None
) -> list[SendChoiceRow]:
    """Every recorded choice of one customer (in ``journey_id`` only, when given), oldest first."""
    only = " AND journey_id = :j" if journey_id else ""
    rows = fetch(
        conn,
        "SELECT instance_id, journey_id, version, step, visit_us, policy, channel, send_at_us, hour_of_week, "
        "detail "
        f"FROM send_choices WHERE customer_key = :k{only} ORDER BY visit_us, instance_id",
        {"k": int(customer_key), "j": journey_id},
    )
    return [
        SendChoiceRow(
            int(r[0]),
            r[1],
            int(r[2]),
            r[3],
            int(r[4]),
            r[5],
            r[6],
            int(r[7]),
            r[8],
            orjson.loads(r[9] or "{}"),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class JourneyChoices:
    """A journey's recorded choices as aligned columns: instance id, customer key, step and policy (the
    first visit of each instance to each step)."""

    instance_id: np.ndarray
    customer_key: np.ndarray
    step: np.ndarray
    policy: np.ndarray

    def __len__(self) -> int:
        return int(self.instance_id.shape[0])


def journey_send_choices(conn: Connection, journey_id: str) -> JourneyChoices:
    """The policy each instance of ``journey_id`` got at each choosing send step (its first visit)."""
    rows = fetch(
        conn,
        "SELECT instance_id, customer_key, step, policy FROM send_choices c WHERE journey_id = :j "
        "AND visit_us = (SELECT MIN(visit_us) FROM send_choices f "
        "WHERE f.instance_id = c.instance_id AND f.step = c.step) "
        "ORDER BY step, instance_id",
        {"j": journey_id},
    )
    return JourneyChoices(
        column(rows, 0, np.int64), column(rows, 1, np.int64), objects(rows, 2), objects(rows, 3)
    )
