"""Fits of the churn and lifetime-value models kept in the store (``orchestrator predict fit --save``).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("prediction_fits",))


def upgrade() -> None:
    ops.create_table(
        "prediction_fits",
        sa.Column("id", INT, primary_key=True),
        sa.Column("fitted_us", INT, nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("calibration_end_day", INT, nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
    )
