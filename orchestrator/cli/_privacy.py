"""``orchestrator privacy``: what the store holds about one customer (an access request)."""

from __future__ import annotations

import json

from orchestrator.cli._errors import Failure
from orchestrator.cli._settings import Args
from orchestrator.store import customer_export, open_store


def run_privacy_export(args: Args) -> int:
    """Print every record about the customer: JSON (``--format json``, for the requester) or, for the
    operator, a line per table with its number of rows."""
    try:
        store = open_store(args.db, create=False)
    except FileNotFoundError:
        raise Failure("no store here; ingest data and run the engine first") from None
    try:
        if not store.is_initialised():
            raise Failure("no store with engine tables here; ingest data and run the engine first")
        with store.connect() as conn:
            records = customer_export(conn, args.customer)
    finally:
        store.dispose()
    if records is None:
        raise Failure("no customer has that id")  # the id is not repeated: it may be an address
    if args.format == "json":
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0
    print("records held about the customer, by table (--format json prints them all):")
    for table, rows in records.items():
        print(f"  {table}: {len(rows)}")
    return 0
