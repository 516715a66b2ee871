"""Fits of the churn and lifetime-value models kept in the store: one row per fit (``prediction_fits``),
the parameters as JSON text; readers take the newest fit of each purchase event and value property."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select

from orchestrator.store._tables import PredictionFit

FITS = PredictionFit.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StoredFit:
    """A kept fit: its id, when it was made, what it was fitted on and its parameters."""

    id: int
    fitted_us: int
    event: str
    value: str
    calibration_end_day: int
    parameters: dict[str, Any]


def save_prediction_fit(
    conn: Connection,
    fitted_us: int,
    event: str,
    value: str,
    calibration_end_day: int,
    parameters: dict[str, Any],
) -> int:
    """Keep a fit; its id."""
    result = conn.execute(
        insert(FITS)
        .values(
            fitted_us=int(fitted_us),
            event=event,
            value=value,
            calibration_end_day=int(calibration_end_day),
            parameters=orjson.dumps(parameters).decode(),
        )
        .returning(FITS.c.id)
    )
    return int(result.scalar_one())


def latest_prediction_fits(conn: Connection) -> dict[tuple[str, str], StoredFit]:
    """The newest fit of each (event, value property), by (event, value)."""
    col = FITS.c
    newest = select(func.max(col.id)).group_by(col.event, col.value).scalar_subquery()
    rows = conn.execute(
        select(col.id, col.fitted_us, col.event, col.value, col.calibration_end_day, col.parameters).where(
            col.id.in_(newest)
        )
    ).all()
    return {
        (r[2], r[3]): StoredFit(int(r[0]), int(r[1]), r[2], r[3], int(r[4]), orjson.loads(r[5])) for r in rows
    }
