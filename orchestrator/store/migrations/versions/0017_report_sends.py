"""Scheduled reports the daemon sends (the weekly report): one row per report and period, claimed before
it is sent, with its outcome.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=("report_sends",))


def upgrade() -> None:
    ops.create_table(
        "report_sends",
        sa.Column("report", sa.Text(), primary_key=True),
        sa.Column("period", sa.Text(), primary_key=True),
        sa.Column("due_us", INT, nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", INT, nullable=False),
        sa.Column("delivered", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_us", INT, nullable=False),
        sa.Column("sent_us", INT, nullable=True),
    )
