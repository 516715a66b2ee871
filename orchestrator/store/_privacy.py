"""Everything the store holds about one customer, for an access request (GDPR article 15, CCPA).

The tables are found from the schema, not listed by hand: every table with a ``customer_key`` column
gives the customer's rows, so a table added later is exported without a change here. The customer's own
row and the suppressions of its addresses (email, phone, push token) come with them. Values are as stored,
with the JSON text columns (attributes, properties, entry data) parsed and event types named.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlmodel import SQLModel

from orchestrator.store._customers import CUSTOMERS, customer_key
from orchestrator.store._events import EVENT_TYPES
from orchestrator.store._tables import Suppression

SUPPRESSIONS = Suppression.__table__  # type: ignore[attr-defined]

#: Text columns holding JSON, parsed in the export.
JSON_COLUMNS = {"attributes", "properties", "data", "entry_values", "detail"}
#: The customer's columns that are addresses, whose suppressions belong to the export.
ADDRESS_COLUMNS = ("email", "phone", "push_token")


def customer_export(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    """Every row about the customer ``customer_id``, by table (tables without one are left out); None
    when no customer has that id."""
    key = customer_key(conn, customer_id)
    if key is None:
        return None
    row = conn.execute(select(CUSTOMERS).where(CUSTOMERS.c.key == key)).mappings().one()
    out: dict[str, Any] = {"customers": [_plain(dict(row))]}
    type_names: dict[int, str] = dict(conn.execute(select(EVENT_TYPES.c.id, EVENT_TYPES.c.name)).all())
    for table in SQLModel.metadata.sorted_tables:
        if table.name == "customers" or "customer_key" not in table.c:
            continue
        order = [c for c in (table.c.get("id"), table.c.get("at_us"), table.c.get("ts_us")) if c is not None]
        rows = (
            conn.execute(select(table).where(table.c.customer_key == key).order_by(*order)).mappings().all()
        )
        if not rows:
            continue
        found = [_plain(dict(r)) for r in rows]
        if table.name == "events":
            for event in found:
                event["type"] = type_names.get(event.pop("type_id"))
        out[str(table.name)] = found
    addresses = [row[c] for c in ADDRESS_COLUMNS if row[c]]
    if addresses:
        held = (
            conn.execute(select(SUPPRESSIONS).where(SUPPRESSIONS.c.address.in_(addresses))).mappings().all()
        )
        if held:
            out["suppressions"] = [_plain(dict(r)) for r in held]
    return out


def _plain(mapping: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON can hold it: names as plain text, JSON text parsed, bytes as hex."""
    row = {str(name): value for name, value in mapping.items()}
    for name, value in row.items():
        if isinstance(value, bytes | memoryview):
            row[name] = bytes(value).hex()
        elif name in JSON_COLUMNS and isinstance(value, str):
            with contextlib.suppress(orjson.JSONDecodeError):
                row[name] = orjson.loads(value)
    return row
