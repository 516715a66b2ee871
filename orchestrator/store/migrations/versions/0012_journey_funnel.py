"""The per-step funnel's counts (``journey_funnel``), back-filled from the instances already stored.

The counts are kept as steps happen from this revision on. For a store that ran before, what is known
exactly is written once with the trigger ``before-counting``: every instance stored, per version and arm,
at the step it is at (active) or as it finished (``completed``, ``exited``, ``converted``). Which steps those
instances passed before the upgrade is not known, and the funnel says so rather than guessing.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store without a recorded revision has this revision's table already."""
    return ops.has(schema, tables=("journey_funnel",))


def upgrade() -> None:
    if ops.has(sa.inspect(op.get_bind()), tables=("journey_funnel",)):
        return  # counted from the start: nothing to back-fill
    op.create_table(
        "journey_funnel",
        sa.Column("journey_id", sa.String(), nullable=False),
        sa.Column("version", INT, nullable=False),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("trigger_name", sa.String(), nullable=False),
        sa.Column("dest", sa.String(), nullable=False),
        sa.Column("n", INT, nullable=False),
        sa.PrimaryKeyConstraint("journey_id", "version", "arm", "source", "trigger_name", "dest"),
    )
    op.execute(
        "INSERT INTO journey_funnel (journey_id, version, arm, source, trigger_name, dest, n) "
        "SELECT journey_id, version, CASE WHEN holdout THEN 'holdout' ELSE 'treatment' END, '', "
        "'before-counting', CASE WHEN status = 'active' THEN state ELSE status END, COUNT(*) "
        "FROM journey_instances GROUP BY journey_id, version, holdout, "
        "CASE WHEN status = 'active' THEN state ELSE status END"
    )
