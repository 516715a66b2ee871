"""Journey steps: customers' revision, where an instance is and what it carries (since, entry key and
event, data), journey migrations, entry cursors and the holdout layer.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

INSTANCE_COLUMNS = ("since_us", "entry_key", "entry_event_id", "data")


def _revision_default(schema: Inspector) -> object:
    return next(c.get("default") for c in schema.get_columns("customers") if c["name"] == "revision")


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return (
        ops.has(
            schema,
            tables=("journey_migrations", "entry_cursors"),
            columns={
                "customers": ["revision"],
                "journey_instances": INSTANCE_COLUMNS,
                "holdout_assignments": ["layer"],
            },
            indexes={"customers": ["ix_customers_revision"]},
        )
        # The state index, or (from revision 0018) the index over live instances that replaced it.
        and bool({"ix_instances_state", "ix_instances_live"} & ops.index_names(schema, "journey_instances"))
        and _revision_default(schema) is None
    )


def upgrade() -> None:
    # Rows already there start at revision 0; new rows are given theirs by the writer, so the default
    # goes once the column is filled (on SQLite by rebuilding the table).
    ops.add_column("customers", sa.Column("revision", INT, nullable=False, server_default="0"))
    if _revision_default(sa.inspect(op.get_bind())) is not None:
        with op.batch_alter_table("customers") as batch:
            batch.alter_column("revision", existing_type=INT, existing_nullable=False, server_default=None)
    ops.create_index("ix_customers_revision", "customers", ["revision"])
    ops.add_column("journey_instances", sa.Column("since_us", INT, nullable=True))
    ops.add_column("journey_instances", sa.Column("entry_key", sa.String(), nullable=True))
    ops.add_column("journey_instances", sa.Column("entry_event_id", INT, nullable=True))
    ops.add_column("journey_instances", sa.Column("data", sa.Text(), nullable=True))
    ops.create_index("ix_instances_state", "journey_instances", ["journey_id", "status", "state"])
    ops.create_table(
        "journey_migrations",
        sa.Column("journey_id", sa.String(), primary_key=True),
        sa.Column("to_version", INT, primary_key=True),
        sa.Column("from_version", INT, primary_key=True),
        sa.Column("applied_us", INT, nullable=False),
        sa.Column("moved", INT, nullable=False),
    )
    ops.create_table(
        "entry_cursors",
        sa.Column("journey_id", sa.String(), primary_key=True),
        sa.Column("last_event_id", INT, nullable=False),
        sa.Column("pending", sa.Text(), nullable=False),
    )
    ops.add_column("holdout_assignments", sa.Column("layer", sa.String(), nullable=True))
