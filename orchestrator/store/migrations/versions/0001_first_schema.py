"""The first released schema: customers, events, journey versions and instances, signal members, holdout
assignments, the send ledger, conversions, ingest batches and ticks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from orchestrator.store.migrations import ops
from orchestrator.store.migrations.ops import INT

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

TABLES = (
    "customers",
    "event_types",
    "events",
    "journey_versions",
    "journey_instances",
    "signal_members",
    "holdout_assignments",
    "messages",
    "conversions",
    "ingest_batches",
    "ticks",
)


def applied(schema: Inspector) -> bool:
    """Whether a store made before migrations existed has this revision's changes already."""
    return ops.has(schema, tables=TABLES)


def upgrade() -> None:
    ops.create_table(
        "customers",
        sa.Column("key", INT, primary_key=True),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("push_token", sa.String(), nullable=True),
        sa.Column("timezone", sa.String(), nullable=True),
        sa.Column("consent_email", sa.Boolean(), nullable=False),
        sa.Column("consent_sms", sa.Boolean(), nullable=False),
        sa.Column("consent_push", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("updated_us", INT, nullable=False),
    )
    ops.create_index("ix_customers_id", "customers", ["id"], unique=True)
    ops.create_table(
        "event_types",
        sa.Column("id", INT, primary_key=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
    )
    ops.create_table(
        "events",
        sa.Column("id", INT, primary_key=True),
        sa.Column("customer_key", INT, nullable=False),
        sa.Column("type_id", INT, nullable=False),
        sa.Column("ts_us", INT, nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
    )
    ops.create_table(
        "journey_versions",
        sa.Column("id", INT, primary_key=True),
        sa.Column("journey_id", sa.String(), nullable=False),
        sa.Column("version", INT, nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("registered_us", INT, nullable=False),
        sa.UniqueConstraint("journey_id", "version"),
    )
    ops.create_table(
        "journey_instances",
        sa.Column("id", INT, primary_key=True),
        sa.Column("journey_id", sa.String(), nullable=False),
        sa.Column("version", INT, nullable=False),
        sa.Column("customer_key", INT, nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("entered_us", INT, nullable=False),
        sa.Column("wake_at_us", INT, nullable=True),
        sa.Column("exited_us", INT, nullable=True),
        sa.Column("exit_reason", sa.String(), nullable=True),
    )
    ops.create_index("ix_instances_due", "journey_instances", ["journey_id", "status", "wake_at_us"])
    ops.create_index("ix_instances_customer", "journey_instances", ["journey_id", "customer_key"])
    ops.create_table(
        "signal_members",
        sa.Column("journey_id", sa.String(), primary_key=True),
        sa.Column("customer_key", INT, primary_key=True),
        sa.Column("since_us", INT, nullable=False),
    )
    ops.create_table(
        "holdout_assignments",
        sa.Column("journey_id", sa.String(), primary_key=True),
        sa.Column("customer_key", INT, primary_key=True),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("assigned_us", INT, nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
    )
    ops.create_table(
        "messages",
        sa.Column("id", INT, primary_key=True),
        sa.Column("idempotency_key", sa.String(), nullable=False, unique=True),
        sa.Column("journey_id", sa.String(), nullable=False),
        sa.Column("version", INT, nullable=False),
        sa.Column("instance_id", INT, nullable=False),
        sa.Column("customer_key", INT, nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("link", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("created_us", INT, nullable=False),
        sa.Column("sent_us", INT, nullable=True),
        sa.Column("provider_id", sa.String(), nullable=True),
    )
    ops.create_index("ix_messages_status", "messages", ["status"])
    ops.create_table(
        "conversions",
        sa.Column("instance_id", INT, primary_key=True),
        sa.Column("journey_id", sa.String(), nullable=False),
        sa.Column("version", INT, nullable=False),
        sa.Column("customer_key", INT, nullable=False),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("entered_us", INT, nullable=False),
        sa.Column("converted_us", INT, nullable=False),
        sa.Column("revenue", sa.Float(), nullable=False),
    )
    ops.create_index("ix_conversions_journey_id", "conversions", ["journey_id"])
    ops.create_table(
        "ingest_batches",
        sa.Column("id", INT, primary_key=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("accepted", INT, nullable=False),
        sa.Column("rejected", INT, nullable=False),
        sa.Column("started_us", INT, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    ops.create_table(
        "ticks",
        sa.Column("id", INT, primary_key=True),
        sa.Column("now_us", INT, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
    )
