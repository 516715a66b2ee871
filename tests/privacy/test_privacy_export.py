"""``orchestrator privacy export``: every record the store holds about one customer, and nobody else's, on
SQLite and PostgreSQL; tables are found from the schema, so none is missed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from orchestrator.testing import World, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

ROOT = Path(__file__).resolve().parents[2]

JOURNEY = """\
id: welcome
version: 1
signal: count(visit, within=1d) >= 1
holdout: 0
steps:
  - id: hello
    send:
      channel: email
      subject: "Hello {{ customer.first_name }}"
      template: hello.txt
goal:
  event: purchase
  within: 2d
"""


def export(db: str, customer_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator", "privacy", "export", customer_id, "--db", db, *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_export_holds_every_record_of_the_customer_and_no_one_else(world: World, store_url: str) -> None:
    world.write_files(
        {"journeys/welcome.yaml": JOURNEY, "templates/hello.txt": "Hi {{ customer.first_name }}"}
    )
    world.add_customers(customer("ann", first_name="Ann"), customer("bob", first_name="Bob"))
    now = world.clock.now()
    world.add_events(
        event("ann", "visit", now, page="/shoes"),
        event("bob", "visit", now, page="/hats"),
    )
    world.advance("1h")
    world.tick()
    world.add_events(event("ann", "purchase", world.clock.now(), amount=42.0))
    world.advance("1h")
    world.tick()

    done = export(store_url, "ann", "--format", "json")
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert records["customers"][0]["id"] == "ann" and records["customers"][0]["email"] == "ann@example.com"
    assert records["customers"][0]["attributes"]["first_name"] == "Ann"
    assert [(e["type"], e["properties"]) for e in records["events"]] == [
        ("visit", {"page": "/shoes"}),
        ("purchase", {"amount": 42.0}),
    ]
    assert [i["journey_id"] for i in records["journey_instances"]] == ["welcome"]
    assert [a["arm"] for a in records["holdout_assignments"]] == ["treatment"]
    (message,) = records["messages"]
    assert (message["recipient"], message["subject"], message["status"]) == (
        "ann@example.com",
        "Hello Ann",
        "sent",
    )
    assert message["body"].startswith("Hi Ann")
    assert [c["revenue"] for c in records["conversions"]] == [0.0]
    text = done.stdout
    assert "bob" not in text and "/hats" not in text and "Bob" not in text  # nobody else's records

    # Every table of the database that names a customer is one the export reads.
    store_tables = inspect(world.store.engine).get_table_names()
    with_customer = {
        name
        for name in store_tables
        if "customer_key" in {c["name"] for c in inspect(world.store.engine).get_columns(name)}
    }
    known = {t.name for t in SQLModel.metadata.sorted_tables if "customer_key" in t.c}
    assert with_customer <= known and {"events", "messages", "journey_instances"} <= with_customer

    summary = export(store_url, "ann")
    assert summary.returncode == 0 and "  events: 2" in summary.stdout and "  messages: 1" in summary.stdout

    unknown = export(store_url, "carol@example.com")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().endswith("no customer has that id")
    assert "carol" not in unknown.stderr and "Traceback" not in unknown.stderr
