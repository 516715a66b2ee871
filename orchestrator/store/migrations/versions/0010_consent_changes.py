"""Consent changes made through the engine (unsubscribe links, one-click POSTs).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(
        schema, tables=("consent_changes",), indexes={"consent_changes": ["ix_consent_changes_customer"]}
    )


def upgrade() -> None:
    ops.create_table(
        "consent_changes",
        sa.Column("id", INT, primary_key=True),
        sa.Column("customer_key", INT, nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("at_us", INT, nullable=False),
    )
    ops.create_index("ix_consent_changes_customer", "consent_changes", ["customer_key", "channel"])
