"""What the program's lift (the global holdout against everyone else) reads beside the events: when the
engine first ticked, the global-holdout percents the engine recorded, who entered a journey in a period,
and who any journey ever assigned to its treatment arm. Each is one grouped query, whatever the number of
customers."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, text

from orchestrator.store._bulk import column


def first_tick_us(conn: Connection) -> int | None:
    """The instant of the earliest tick recorded (None before any tick)."""
    value = conn.execute(text("SELECT MIN(now_us) FROM ticks")).scalar()
    return None if value is None else int(value)


def global_layer_percents(conn: Connection) -> dict[float, int]:
    """The global-holdout percents in force when customers were held out by the global layer
    (``holdout_assignments.layer = 'global'``), each with the number of assignments it decided."""
    rows = conn.execute(
        text(
            "SELECT percent, COUNT(*) FROM holdout_assignments WHERE layer = 'global' "
            "GROUP BY percent ORDER BY percent"
        )
    ).all()
    return {float(r[0]): int(r[1]) for r in rows}


def entered_customer_keys(conn: Connection, since_us: int, until_us: int) -> np.ndarray:
    """The keys of the customers who entered any journey with ``since_us <= entered_us < until_us``, each
    once, in key order (int64)."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT customer_key FROM journey_instances "
            "WHERE entered_us >= :a AND entered_us < :b ORDER BY customer_key"
        ),
        {"a": since_us, "b": until_us},
    ).all()
    return column(rows, 0, np.int64)


def treated_customer_keys(conn: Connection) -> np.ndarray:
    """The keys of the customers any journey assigned to its treatment arm, each once, in key order."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT customer_key FROM holdout_assignments WHERE arm = 'treatment' "
            "ORDER BY customer_key"
        )
    ).all()
    return column(rows, 0, np.int64)
