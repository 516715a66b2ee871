"""The first released schema (``orchestrator/store/_tables.py`` of the first commit), as plain tables, to
make the stores that version made: no ``alembic_version``, consents NOT NULL, none of the later columns.

PostgreSQL stores began two revisions later, with 64-bit integers; SQLite keeps ``INTEGER``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

INT = BigInteger().with_variant(Integer(), "sqlite")

FIRST = MetaData()

Table(
    "customers",
    FIRST,
    Column("key", INT, primary_key=True),
    Column("id", String, nullable=False, unique=True, index=True),
    Column("email", String),
    Column("phone", String),
    Column("push_token", String),
    Column("timezone", String),
    Column("consent_email", Boolean, nullable=False, default=True),
    Column("consent_sms", Boolean, nullable=False, default=True),
    Column("consent_push", Boolean, nullable=False, default=True),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("updated_us", INT, nullable=False, default=0),
)
Table(
    "event_types",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("name", String, nullable=False, unique=True),
)
Table(
    "events",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("customer_key", INT, nullable=False),
    Column("type_id", INT, nullable=False),
    Column("ts_us", INT, nullable=False),
    Column("properties", Text, nullable=False, default="{}"),
)
Table(
    "journey_versions",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("journey_id", String, nullable=False),
    Column("version", INT, nullable=False),
    Column("digest", String, nullable=False),
    Column("source", Text, nullable=False),
    Column("registered_us", INT, nullable=False),
    UniqueConstraint("journey_id", "version"),
)
Table(
    "journey_instances",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("journey_id", String, nullable=False),
    Column("version", INT, nullable=False),
    Column("customer_key", INT, nullable=False),
    Column("state", String, nullable=False),
    Column("status", String, nullable=False),
    Column("holdout", Boolean, nullable=False),
    Column("entered_us", INT, nullable=False),
    Column("wake_at_us", INT),
    Column("exited_us", INT),
    Column("exit_reason", String),
    Index("ix_instances_due", "journey_id", "status", "wake_at_us"),
    Index("ix_instances_customer", "journey_id", "customer_key"),
)
Table(
    "signal_members",
    FIRST,
    Column("journey_id", String, primary_key=True),
    Column("customer_key", INT, primary_key=True),
    Column("since_us", INT, nullable=False),
)
Table(
    "holdout_assignments",
    FIRST,
    Column("journey_id", String, primary_key=True),
    Column("customer_key", INT, primary_key=True),
    Column("arm", String, nullable=False),
    Column("bucket", Float, nullable=False),
    Column("percent", Float, nullable=False),
    Column("assigned_us", INT, nullable=False),
    Column("reason", String, nullable=False),
)
Table(
    "messages",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("idempotency_key", String, nullable=False, unique=True),
    Column("journey_id", String, nullable=False),
    Column("version", INT, nullable=False),
    Column("instance_id", INT, nullable=False),
    Column("customer_key", INT, nullable=False),
    Column("step", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("recipient", String),
    Column("subject", Text),
    Column("body", Text),
    Column("html", Text),
    Column("title", String),
    Column("link", String),
    Column("status", String, nullable=False),
    Column("reason", String),
    Column("created_us", INT, nullable=False),
    Column("sent_us", INT),
    Column("provider_id", String),
    Index("ix_messages_status", "status"),
)
Table(
    "conversions",
    FIRST,
    Column("instance_id", INT, primary_key=True),
    Column("journey_id", String, nullable=False, index=True),
    Column("version", INT, nullable=False),
    Column("customer_key", INT, nullable=False),
    Column("holdout", Boolean, nullable=False),
    Column("entered_us", INT, nullable=False),
    Column("converted_us", INT, nullable=False),
    Column("revenue", Float, nullable=False, default=0.0),
)
Table(
    "ingest_batches",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("source", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("accepted", INT, nullable=False),
    Column("rejected", INT, nullable=False),
    Column("started_us", INT, nullable=False),
    Column("seconds", Float, nullable=False),
)
Table(
    "ticks",
    FIRST,
    Column("id", INT, primary_key=True),
    Column("now_us", INT, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("summary", Text, nullable=False),
)


def make_first_store(conn: Connection) -> None:
    """Create the first released schema on ``conn``'s empty database, with a few rows in it: two
    customers (one who declined SMS), an event, a journey version, an instance and a sent message."""
    FIRST.create_all(conn)
    t = FIRST.tables
    conn.execute(
        t["customers"].insert(),
        [{"id": "c1", "email": "a@example.com", "consent_sms": False, "attributes": '{"plan": "gold"}'}],
    )
    conn.execute(t["customers"].insert(), [{"id": "c2", "phone": "+33600000000", "updated_us": 5}])
    conn.execute(t["event_types"].insert(), [{"name": "signup"}])
    conn.execute(t["events"].insert(), [{"customer_key": 1, "type_id": 1, "ts_us": 10, "properties": "{}"}])
    conn.execute(
        t["journey_versions"].insert(),
        [{"journey_id": "welcome", "version": 1, "digest": "d", "source": "id: welcome", "registered_us": 1}],
    )
    conn.execute(
        t["journey_instances"].insert(),
        [
            {
                "journey_id": "welcome",
                "version": 1,
                "customer_key": 1,
                "state": "hello",
                "status": "active",
                "holdout": False,
                "entered_us": 10,
                "wake_at_us": 20,
            }
        ],
    )
    conn.execute(
        t["messages"].insert(),
        [
            {
                "idempotency_key": "welcome:1:hello",
                "journey_id": "welcome",
                "version": 1,
                "instance_id": 1,
                "customer_key": 1,
                "step": "hello",
                "channel": "email",
                "recipient": "a@example.com",
                "status": "sent",
                "created_us": 10,
                "sent_us": 11,
            }
        ],
    )
