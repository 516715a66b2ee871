"""What the store has seen: event type names, property keys per event type and customer attribute keys.

``validate --db`` compares the names journeys read with these, so that an event, property or attribute no
data has ever carried is caught before a journey silently matches nobody. Event type names are all read;
property and attribute keys come from a bounded sample (the latest ``sample`` events, the latest-written
``sample`` customers), so the check costs the same on a store of any size. ``customer_attribute_names``
reads every customer instead, for the attributes message templates read. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from orchestrator.store._customers import STANDARD

#: Rows sampled for property keys (latest events) and attribute keys (latest-written customers).
SAMPLE = 100_000


@dataclass(frozen=True)
class SeenNames:
    events: frozenset[str]  # every event type name the store holds
    properties: dict[str, frozenset[str]]  # event type -> property keys, for the types in the sample
    attributes: frozenset[str]  # attribute keys (beyond the standard columns) in the sample
    has_customers: bool
    sample: int


def seen_names(conn: Connection, sample: int = SAMPLE) -> SeenNames:
    events = frozenset(str(r[0]) for r in conn.execute(text("SELECT name FROM event_types")).all())
    if conn.dialect.name == "sqlite":
        props_sql = (
            "SELECT t.name, j.key FROM (SELECT type_id, properties FROM events ORDER BY id DESC LIMIT :n) e "
            "JOIN event_types t ON t.id = e.type_id, json_each(e.properties) j GROUP BY t.name, j.key"
        )
        attrs_sql = (
            "SELECT DISTINCT j.key FROM "
            "(SELECT attributes FROM customers ORDER BY revision DESC LIMIT :n) c, json_each(c.attributes) j"
        )
        types_sql = (
            "SELECT DISTINCT t.name FROM (SELECT type_id FROM events ORDER BY id DESC LIMIT :n) e "
            "JOIN event_types t ON t.id = e.type_id"
        )
    else:
        props_sql = (
            "SELECT t.name, k FROM (SELECT type_id, properties FROM events ORDER BY id DESC LIMIT :n) e "
            "JOIN event_types t ON t.id = e.type_id, jsonb_object_keys(CAST(e.properties AS jsonb)) k "
            "GROUP BY t.name, k"
        )
        attrs_sql = (
            "SELECT DISTINCT k FROM (SELECT attributes FROM customers ORDER BY revision DESC LIMIT :n) c, "
            "jsonb_object_keys(CAST(c.attributes AS jsonb)) k"
        )
        types_sql = (
            "SELECT DISTINCT t.name FROM (SELECT type_id FROM events ORDER BY id DESC LIMIT :n) e "
            "JOIN event_types t ON t.id = e.type_id"
        )
    properties: dict[str, set[str]] = {str(r[0]): set() for r in conn.execute(text(types_sql), {"n": sample})}
    for name, key in conn.execute(text(props_sql), {"n": sample}).all():
        properties.setdefault(str(name), set()).add(str(key))
    attributes = frozenset(str(r[0]) for r in conn.execute(text(attrs_sql), {"n": sample}).all())
    has_customers = conn.execute(text("SELECT 1 FROM customers LIMIT 1")).first() is not None
    return SeenNames(
        events, {k: frozenset(v) for k, v in properties.items()}, attributes, has_customers, sample
    )


def customer_attribute_names(conn: Connection, *, standard: bool = True) -> set[str]:
    """Every attribute at least one customer has: the standard columns set for someone (one query each;
    left out with ``standard=False``) and every JSON attribute key of every customer (one query)."""
    found: set[str] = set()
    for column in STANDARD if standard else ():
        if conn.execute(text(f"SELECT 1 FROM customers WHERE {column} IS NOT NULL LIMIT 1")).first():
            found.add(column)
    if conn.dialect.name == "sqlite":
        sql = "SELECT DISTINCT j.key FROM customers, json_each(customers.attributes) j"
    else:
        sql = "SELECT DISTINCT jsonb_object_keys(CAST(attributes AS jsonb)) FROM customers"
    found.update(str(r[0]) for r in conn.execute(text(sql)).all())
    return found
