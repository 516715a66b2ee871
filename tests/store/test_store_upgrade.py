"""A store made by an earlier version opens in this one: columns added since are added, with their
defaults for the rows already there, columns that may now be NULL are relaxed, and nothing stored is
lost."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, inspect, text

from orchestrator.store import SchemaError, Store, open_store
from orchestrator.store.customers import CONSENTS, customer_records, ensure_customer_keys, upsert_customers
from orchestrator.store.db import _add_column
from orchestrator.store.tables import Customer

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_an_older_store_gets_the_columns_added_since(store: Store, backend: str) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    with store.begin() as conn:  # what a store from before these columns looked like
        upsert_customers(conn, [{"id": "c1", "email": "a@example.com"}, {"id": "c2"}], now_us=0)
        conn.execute(text("DROP INDEX ix_customers_revision"))
        for table, column in (
            ("customers", "revision"),
            ("messages", "attempts"),
            ("messages", "transactional"),
            ("journey_versions", "shared_metrics"),
        ):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    store.dispose()

    upgraded = open_store(url)
    inspector = inspect(upgraded.engine)
    assert "revision" in {c["name"] for c in inspector.get_columns("customers")}
    assert {"attempts", "transactional"} <= {c["name"] for c in inspector.get_columns("messages")}
    assert "shared_metrics" in {c["name"] for c in inspector.get_columns("journey_versions")}
    assert "ix_customers_revision" in {i["name"] for i in inspector.get_indexes("customers")}
    with upgraded.connect() as conn:
        rows = conn.execute(text("SELECT id, email, revision FROM customers ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("c1", "a@example.com", 0), ("c2", None, 0)]
    with upgraded.begin() as conn:  # the defaults apply to new rows too
        conn.execute(
            text(
                "INSERT INTO messages (idempotency_key, journey_id, version, instance_id, customer_key,"
                " step, channel, status, created_us) VALUES ('k', 'j', 1, 1, 1, 's', 'email', 'queued', 0)"
            )
        )
        attempts, transactional = conn.execute(text("SELECT attempts, transactional FROM messages")).one()
    assert attempts == 0 and not transactional
    upgraded.dispose()
    again = open_store(url)  # a complete schema is left as it is
    assert {c["name"] for c in inspect(again.engine).get_columns("customers")} >= {"revision"}
    again.dispose()


def test_a_column_that_cannot_be_added_is_a_clear_error(store: Store) -> None:
    later = Table("customers", MetaData(), Column("must_have", Integer, nullable=False))
    with (
        pytest.raises(SchemaError, match=r"customers has no column must_have.*no default"),
        store.begin() as conn,
    ):
        _add_column(conn, later, later.c.must_have)


def test_an_older_store_keeps_its_consents_and_can_then_hold_none(store: Store) -> None:
    # A store from before "no consent on record": consents NOT NULL (true by default), no record_us.
    url = store.engine.url.render_as_string(hide_password=False)
    old = Customer.__table__.to_metadata(MetaData())  # type: ignore[attr-defined]
    for name in CONSENTS:
        old.c[name].nullable = False
    with store.begin() as conn:
        conn.execute(text("DROP TABLE customers"))
        old.create(conn)
        conn.execute(
            insert(old),
            [
                {
                    "id": "c1",
                    "email": "a@example.com",
                    "consent_email": True,
                    "consent_sms": False,
                    "consent_push": True,
                    "attributes": '{"plan": "gold"}',
                    "updated_us": 5,
                    "revision": 1,
                    "record_us": 0,
                },
            ],
        )
        conn.execute(text("ALTER TABLE customers DROP COLUMN record_us"))
    store.dispose()

    upgraded = open_store(url)
    columns = {c["name"]: c for c in inspect(upgraded.engine).get_columns("customers")}
    assert all(columns[name]["nullable"] for name in CONSENTS) and "record_us" in columns
    indexes = {i["name"]: i for i in inspect(upgraded.engine).get_indexes("customers")}
    assert indexes["ix_customers_id"]["unique"] and "ix_customers_revision" in indexes
    with upgraded.begin() as conn:
        assert ensure_customer_keys(conn, ["c1", "c2"], now_us=7).tolist() == [1, 2]
        written = upsert_customers(conn, [{"id": "c1", "consent_push": False}], now_us=8)
        records = customer_records(conn, [1, 2])
    assert written.written == 1
    c1, c2 = records[1], records[2]
    assert (c1["consent_email"], c1["consent_sms"], c1["consent_push"]) == (True, False, False)
    assert c1["plan"] == "gold" and c1["email"] == "a@example.com"
    assert (c2["consent_email"], c2["consent_sms"], c2["consent_push"]) == (None, None, None)
    upgraded.dispose()
    again = open_store(url)  # nothing left to change
    assert all(c["nullable"] for c in inspect(again.engine).get_columns("customers") if c["name"] in CONSENTS)
    again.dispose()
