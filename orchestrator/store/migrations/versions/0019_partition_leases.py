"""Customers split into partitions owned by workers through leases (``store._partitions``): one row per
partition with its owner, lease end and epoch, and one per live worker with its heartbeat's end.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("partition_leases", "partition_workers"))


def upgrade() -> None:
    ops.create_table(
        "partition_leases",
        sa.Column("partition", INT, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("lease_until_us", INT, nullable=True),
        sa.Column("epoch", INT, nullable=False),
    )
    ops.create_table(
        "partition_workers",
        sa.Column("worker", sa.Text(), primary_key=True),
        sa.Column("expires_us", INT, nullable=False),
    )
