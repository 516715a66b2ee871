"""Backtest reports kept in the store (``orchestrator backtest --save``).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("backtest_reports",))


def upgrade() -> None:
    ops.create_table(
        "backtest_reports",
        sa.Column("id", INT, primary_key=True),
        sa.Column("created_us", INT, nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
    )
