"""One index over the live instances for stepping, instead of two over every instance.

``ix_instances_due`` (journey, status, wake-up) and ``ix_instances_state`` (journey, status, state) held
every instance, finished ones too, and a step that moves an instance and parks it changed an entry in
both: on SQLite, keeping the two cost more than writing the rows. ``ix_instances_live`` holds only active
instances, by journey, version and wake-up: stepping changes one entry per instance, and an instance that
finishes leaves it. Instances waiting for an event are found in it among those not yet due (their state is
read from their rows).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None

LIVE = ["journey_id", "version", "wake_at_us"]
ACTIVE = "status = 'active'"


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, indexes={"journey_instances": ["ix_instances_live"]}) and not ops.has(
        schema, indexes={"journey_instances": ["ix_instances_state"]}
    )


def upgrade() -> None:
    ops.create_index(
        "ix_instances_live",
        "journey_instances",
        LIVE,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )
    ops.drop_index("ix_instances_due", "journey_instances")
    ops.drop_index("ix_instances_state", "journey_instances")


def downgrade() -> None:
    ops.create_index("ix_instances_due", "journey_instances", ["journey_id", "status", "wake_at_us"])
    ops.create_index("ix_instances_state", "journey_instances", ["journey_id", "status", "state"])
    ops.drop_index("ix_instances_live", "journey_instances")
