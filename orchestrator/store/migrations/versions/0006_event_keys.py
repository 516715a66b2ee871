"""Event keys: each event's key (unique), the sources events were ingested from, and the duplicates an
ingest batch did not store again.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already (a store that
    gained the key column after revision 0008 was written has that revision's index instead)."""
    return ops.has(
        schema,
        tables=("event_sources",),
        columns={"events": ["event_key"], "ingest_batches": ["duplicates"]},
    ) and bool({"ux_events_key", "ux_events_own_key"} & ops.index_names(schema, "events"))


def upgrade() -> None:
    ops.add_column("events", sa.Column("event_key", INT, nullable=True))
    ops.create_index("ux_events_key", "events", ["event_key"], unique=True)
    ops.create_table(
        "event_sources",
        sa.Column("id", INT, primary_key=True),
        sa.Column("digest", sa.LargeBinary(), nullable=False, unique=True),
        sa.Column("first_us", INT, nullable=False),
    )
    ops.add_column("ingest_batches", sa.Column("duplicates", INT, nullable=False, server_default="0"))
