"""Many workers and delivery: shared metrics kept with each version, instance claims and leases, the
ledger's attempts, next attempt and transactional flag (and an index by customer), suppressions.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(
        schema,
        tables=("suppressions",),
        columns={
            "journey_versions": ["shared_metrics"],
            "journey_instances": ["claimed_by", "lease_until_us"],
            "messages": ["attempts", "next_attempt_us", "transactional"],
        },
        indexes={"messages": ["ix_messages_customer"]},
    )


def upgrade() -> None:
    ops.add_column("journey_versions", sa.Column("shared_metrics", sa.Text(), nullable=True))
    ops.add_column("journey_instances", sa.Column("claimed_by", sa.String(), nullable=True))
    ops.add_column("journey_instances", sa.Column("lease_until_us", INT, nullable=True))
    ops.add_column("messages", sa.Column("attempts", INT, nullable=False, server_default="0"))
    ops.add_column("messages", sa.Column("next_attempt_us", INT, nullable=True))
    ops.add_column(
        "messages", sa.Column("transactional", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    ops.create_index("ix_messages_customer", "messages", ["customer_key", "status"])
    ops.create_table(
        "suppressions",
        sa.Column("channel", sa.String(), primary_key=True),
        sa.Column("address", sa.String(), primary_key=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("code", sa.String(), nullable=True),
        sa.Column("message_id", INT, nullable=True),
        sa.Column("created_us", INT, nullable=False),
    )
