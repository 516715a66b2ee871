"""Journey health: a journey whose part of a tick failed, with the error.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("journey_health",))


def upgrade() -> None:
    ops.create_table(
        "journey_health",
        sa.Column("journey_id", sa.String(), primary_key=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("since_us", INT, nullable=False),
        sa.Column("last_us", INT, nullable=False),
    )
