"""Test sends: the ledger marks messages sent by ``orchestrator send-test``.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, columns={"messages": ["test"]})


def upgrade() -> None:
    ops.add_column("messages", sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false()))
