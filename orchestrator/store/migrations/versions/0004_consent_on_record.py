"""Consent as the customer's records said: the consent columns may hold NULL (no record said), and the
time of the newest customer record applied.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

CONSENTS = ("consent_email", "consent_sms", "consent_push")


def _strict(schema: Inspector) -> list[str]:
    """The consent columns that do not allow NULL yet."""
    return [c["name"] for c in schema.get_columns("customers") if c["name"] in CONSENTS and not c["nullable"]]


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, columns={"customers": ["record_us"]}) and not _strict(schema)


def upgrade() -> None:
    ops.add_column("customers", sa.Column("record_us", INT, nullable=False, server_default="0"))
    strict = _strict(sa.inspect(op.get_bind()))
    if strict:  # on SQLite the table is rebuilt, keeping every row
        with op.batch_alter_table("customers") as batch:
            for name in strict:
                batch.alter_column(name, existing_type=sa.Boolean(), nullable=True)
