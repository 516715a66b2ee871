"""The store: tables plus plain, set-based helpers that read and write them."""

from orchestrator.store.db import DEFAULT_URL, SchemaError, Store, database_url, open_store, sqlite_url

__all__ = ["DEFAULT_URL", "SchemaError", "Store", "database_url", "open_store", "sqlite_url"]
