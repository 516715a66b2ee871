"""Event keys without an index over every event: only keys of events with their own id (negative) are
indexed, each source records its last line done, and the lines it rejected.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already (the
    hand-written upgrade added the column and table but kept the old index of a store that had it)."""
    return ops.has(
        schema,
        tables=("event_source_rejects",),
        columns={"event_sources": ["lines_done"]},
        indexes={"events": ["ux_events_own_key"]},
    ) and "ux_events_key" not in ops.index_names(schema, "events")


def upgrade() -> None:
    ops.drop_index("ux_events_key", "events")
    ops.create_index(
        "ux_events_own_key",
        "events",
        ["event_key"],
        unique=True,
        sqlite_where=sa.text("event_key < 0"),
        postgresql_where=sa.text("event_key < 0"),
    )
    ops.add_column("event_sources", sa.Column("lines_done", INT, nullable=False, server_default="0"))
    ops.create_table(
        "event_source_rejects",
        sa.Column("source_id", INT, primary_key=True),
        sa.Column("line", INT, primary_key=True),
    )
