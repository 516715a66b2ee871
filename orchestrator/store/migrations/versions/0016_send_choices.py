"""What send steps that choose per customer (``at: best_time``, ``channel: best(...)``) chose for each
instance: the policy (or the comparison share), the channel, when to send, the local hour chosen and the
counts behind it.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("send_choices",))


def upgrade() -> None:
    ops.create_table(
        "send_choices",
        sa.Column("instance_id", INT, primary_key=True),
        sa.Column("step", sa.String(), primary_key=True),
        sa.Column("visit_us", INT, primary_key=True),
        sa.Column("journey_id", sa.String(), nullable=False),
        sa.Column("version", INT, nullable=False),
        sa.Column("customer_key", INT, nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("send_at_us", INT, nullable=False),
        sa.Column("hour_of_week", INT, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    ops.create_index("ix_send_choices_journey", "send_choices", ["journey_id", "step"])
    ops.create_index("ix_send_choices_customer", "send_choices", ["customer_key"])
