"""The values that let each instance in: the entry condition's metrics (and attributes) at entry.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, columns={"journey_instances": ["entry_values"]})


def upgrade() -> None:
    # Instances entered before this revision have none: ``why`` says their values were not recorded.
    ops.add_column("journey_instances", sa.Column("entry_values", sa.Text(), nullable=True))
