"""Plain builders of test input: customers, events and workspace files.

customer("ann", country="GB")   # opted in on every channel, ann@example.com, a valid UK mobile
event("ann", "add_to_cart", T0, category="shoes")
write_files(folder, {"journeys/cart.yaml": CART, "templates/cart/reminder.txt": "Hi"})
"""

from __future__ import annotations

import textwrap
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

#: A recorded yes on every channel: a customer without consent on record gets no marketing message.
CONSENTED: dict[str, bool] = {"consent_email": True, "consent_sms": True, "consent_push": True}


def phone_for(customer_id: str) -> str:
    """A valid UK mobile number (``+4479111`` and five digits) derived from the id, the same every run."""
    return f"+4479111{zlib.crc32(customer_id.encode()) % 100_000:05d}"


def customer(customer_id: str, **attributes: Any) -> dict[str, Any]:
    """A customer row for ``World.add_customers`` (or ``upsert_customers``): opted in on email, SMS and
    push, ``<id>@example.com`` and ``phone_for(id)``, plus ``attributes``. An attribute given as ``None``
    is left out of the row (``customer("ann", phone=None)`` has no phone)."""
    row: dict[str, Any] = {
        "id": customer_id,
        "email": f"{customer_id}@example.com",
        "phone": phone_for(customer_id),
    }
    row.update(CONSENTED)
    row.update(attributes)
    return {name: value for name, value in row.items() if value is not None}


def event(customer_id: str, name: str, when: datetime, **properties: Any) -> dict[str, Any]:
    """An event record for ``World.add_events`` (or ``ingest_events_records``) at the instant ``when``."""
    return {"customer_id": customer_id, "event": name, "ts": when, "properties": properties}


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write each ``relative path -> text`` under ``root`` (folders made as needed; the text is dedented)."""
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
