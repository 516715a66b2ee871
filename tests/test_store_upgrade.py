"""A store made by an earlier version opens in this one: columns added since are added, with their
defaults for the rows already there, and nothing stored is lost."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text

from orchestrator.store import SchemaError, Store, open_store
from orchestrator.store.customers import upsert_customers
from orchestrator.store.db import _add_column


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
