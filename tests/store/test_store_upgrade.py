"""Schema upgrades on open (``store._schema``): a store made by the first released schema, by the
hand-written upgrades of earlier versions, at an older revision or by today's version opens at today's
schema with every row kept; the migrations build exactly what ``tables.py`` declares; a store made by a
later version is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from first_schema import make_first_store
from sqlalchemy import Engine, event, inspect, text
from sqlmodel import SQLModel

from orchestrator.cli import main
from orchestrator.store import SchemaError, Store, open_store, sqlite_url
from orchestrator.store._customers import CONSENTS, customer_records, ensure_customer_keys, upsert_customers
from orchestrator.store._db import open_engine
from orchestrator.store._schema import alembic_config, head, legacy_revision, revisions, script_directory

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database on this run's backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return sqlite_url(tmp_path / "s.db")


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """A plain engine on that database, to make stores as earlier versions did."""
    made = open_engine(url)
    yield made
    made.dispose()


def _differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between the store and ``tables.py`` (types and defaults too)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _shape(engine: Engine) -> dict[str, Any]:
    """Every table's columns (type, nullable, default), indexes, unique constraints and primary key."""
    schema = inspect(engine)
    return {
        name: (
            sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in schema.get_columns(name)
            ),
            sorted((i["name"], i["column_names"], i["unique"]) for i in schema.get_indexes(name)),
            sorted(tuple(u["column_names"]) for u in schema.get_unique_constraints(name)),
            schema.get_pk_constraint(name)["constrained_columns"],
        )
        for name in sorted(schema.get_table_names())
    }


def _migrate(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def test_the_revisions_are_one_chain_named_by_their_files() -> None:
    scripts = list(script_directory().walk_revisions())
    assert [s.revision for s in reversed(scripts)] == list(revisions()) and revisions()[0] == "0001"
    assert script_directory().get_heads() == [head()]


def test_a_store_of_the_first_released_schema_upgrades_and_keeps_its_rows(url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_first_store(conn)
    assert legacy_revision(inspect(engine)) == "0001"

    store = open_store(url)
    assert _revision(store.engine) == head()
    assert _differences(store.engine) == []
    with store.connect() as conn:
        customers = conn.execute(
            text(
                "SELECT id, email, consent_email, consent_sms, attributes, revision, record_us FROM customers"
            )
        ).all()
        message = conn.execute(
            text("SELECT idempotency_key, status, attempts, transactional, test, inflight_us FROM messages")
        ).one()
        event = conn.execute(text("SELECT customer_key, ts_us, event_key FROM events")).one()
        instance = conn.execute(
            text("SELECT state, wake_at_us, since_us, claimed_by FROM journey_instances")
        ).one()
    assert sorted((r[0], r[1], bool(r[2]), bool(r[3]), r[4], r[5], r[6]) for r in customers) == [
        ("c1", "a@example.com", True, False, '{"plan": "gold"}', 0, 0),
        ("c2", None, True, True, "{}", 0, 0),
    ]
    assert (message[0], message[1], message[2], bool(message[3]), bool(message[4]), message[5]) == (
        "welcome:1:hello", "sent", 0, False, False, None,
    )  # fmt: skip
    assert tuple(event) == (1, 10, None) and tuple(instance) == ("hello", 20, None, None)
    with store.begin() as conn:  # the store works as one made today: a customer without consent on record
        assert ensure_customer_keys(conn, ["c1", "c3"], now_us=7).tolist() == [1, 3]
        upsert_customers(conn, [{"id": "c1", "consent_email": False}], now_us=8)
        records = customer_records(conn, [1, 3])
    c1, c3 = records[1], records[3]
    assert (c1["consent_email"], c1["consent_sms"], c1["plan"]) == (False, False, "gold")
    assert tuple(c3[name] for name in CONSENTS) == (None, None, None)
    store.dispose()


def test_the_migrations_build_what_create_all_builds(url: str, engine: Engine, backend: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:  # fmt: skip
    _migrate(engine, "head")
    assert _revision(engine) == head()
    assert _differences(engine) == []
    postgres = backend == "postgres"
    other = (
        request.getfixturevalue("postgres_server").new_database()
        if postgres
        else sqlite_url(tmp_path / "n.db")
    )
    created = open_store(other)  # an empty store: create_all and a stamp at the head
    assert _revision(created.engine) == head()
    assert _differences(created.engine) == []
    assert _shape(created.engine) == _shape(engine)
    created.dispose()


def test_a_store_made_today_opens_unchanged(url: str) -> None:
    store = open_store(url)
    shape = _shape(store.engine)
    with store.begin() as conn:
        upsert_customers(conn, [{"id": "c1"}], now_us=1)
    store.dispose()
    again = open_store(url)
    assert _revision(again.engine) == head() and _shape(again.engine) == shape

    with again.begin() as conn:  # the same schema made by the hand-written upgrades: recognised as today's
        conn.execute(text("DROP TABLE alembic_version"))
    assert legacy_revision(inspect(again.engine)) == head()
    again.dispose()
    recognised = open_store(url)
    assert _revision(recognised.engine) == head() and _shape(recognised.engine) == shape
    with recognised.connect() as conn:
        assert conn.execute(text("SELECT id FROM customers")).scalars().all() == ["c1"]
    recognised.dispose()


def test_opening_a_store_at_the_newest_revision_reads_its_revision_and_nothing_else(url: str) -> None:
    open_store(url).dispose()
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        open_store(url).dispose()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert [s for s in statements if "alembic_version" in s] == [
        "SELECT alembic_version.version_num \nFROM alembic_version"
    ]
    looks = ("sqlite_master", "PRAGMA", "pg_class", "pg_catalog.pg_", "information_schema", "CREATE", "ALTER")
    assert [s for s in statements if any(word in s for word in looks)] == []


def test_a_store_at_an_older_revision_keeps_its_consents_and_can_then_hold_none(
    url: str, engine: Engine
) -> None:
    _migrate(engine, "0003")  # before "no consent on record": consents NOT NULL, no record_us
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customers (id, email, consent_email, consent_sms, consent_push, attributes,"
                " updated_us, revision)"
                " VALUES ('c1', 'a@example.com', true, false, true, '{\"plan\": \"gold\"}', 5, 1)"
            )
        )
    upgraded = open_store(url)
    assert _revision(upgraded.engine) == head() and _differences(upgraded.engine) == []
    columns = {c["name"]: c for c in inspect(upgraded.engine).get_columns("customers")}
    assert all(columns[name]["nullable"] for name in CONSENTS) and "record_us" in columns
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


def test_the_old_index_the_hand_written_upgrade_kept_is_replaced(url: str) -> None:
    # A store with event keys opened by the version that indexed only keys of events with their own id:
    # the hand-written upgrade added the new column and table but kept the index over every key.
    store = open_store(url)
    with store.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP INDEX ux_events_own_key"))
        conn.execute(text("CREATE UNIQUE INDEX ux_events_key ON events (event_key)"))
        event = (
            "INSERT INTO events (customer_key, type_id, ts_us, properties, event_key) VALUES (1, 1, 5, '', 7)"
        )
        conn.execute(text(event))
    assert legacy_revision(inspect(store.engine)) == "0007"
    store.dispose()
    upgraded = open_store(url)
    indexes = {i["name"] for i in inspect(upgraded.engine).get_indexes("events")}
    assert "ux_events_own_key" in indexes and "ux_events_key" not in indexes
    assert _revision(upgraded.engine) == head() and _differences(upgraded.engine) == []
    with upgraded.connect() as conn:
        assert conn.execute(text("SELECT event_key FROM events")).scalar() == 7
    upgraded.dispose()


def test_a_store_from_a_later_version_is_refused(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(url)
    with store.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    store.dispose()
    for create in (True, False):
        with pytest.raises(SchemaError) as refused:
            open_store(url, create=create)
        assert str(refused.value) == (
            "the store's schema is at revision 0999, made by a later version (this one knows revisions up to"
            f" {head()}): open it with that version or a later one"
        )
    assert main(["status", "--db", url]) == 1  # the command line says it in one line
    assert capsys.readouterr().err == f"orchestrator status: {refused.value}\n"


def test_an_empty_store_opened_without_create_stays_empty(url: str, engine: Engine) -> None:
    with engine.begin() as conn:  # the database exists (a SQLite file, a PostgreSQL database), with no tables
        conn.execute(text("CREATE TABLE other (v INTEGER)"))
    store = open_store(url, create=False)
    assert not store.is_initialised() and inspect(store.engine).get_table_names() == ["other"]
    store.dispose()


def test_workers_opening_an_old_store_together_upgrade_it_once(url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_first_store(conn)
    errors: list[BaseException] = []
    opened: list[Store] = []

    def start() -> None:
        try:
            opened.append(open_store(url))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    for store in opened:
        store.dispose()
    assert _revision(engine) == head() and _differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM customers")).scalar() == 2
