"""The instant each journey instance passed its first send step (the goal window's start for goals
``from: first_send``), for both arms: a held-out instance walks the steps too, without a message.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, columns={"journey_instances": ["first_send_us"]})


def upgrade() -> None:
    ops.add_column("journey_instances", sa.Column("first_send_us", INT, nullable=True))
