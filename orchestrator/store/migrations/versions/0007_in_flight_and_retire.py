"""Messages in flight (the instant a row was handed to its provider) and retired journeys.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("retired_journeys",), columns={"messages": ["inflight_us"]})


def upgrade() -> None:
    ops.add_column("messages", sa.Column("inflight_us", INT, nullable=True))
    ops.create_table(
        "retired_journeys",
        sa.Column("journey_id", sa.String(), primary_key=True),
        sa.Column("version", INT, nullable=False),
        sa.Column("retired_us", INT, nullable=False),
        sa.Column("cancelled", INT, nullable=False),
        sa.Column("finished", INT, nullable=False),
    )
