"""Opening the store a reading command needs: it must exist and hold the schema, else one line saying so."""

from __future__ import annotations

from orchestrator.cli._errors import UsageError
from orchestrator.store import Store, open_store


def existing_store(url: str | None, empty: str) -> Store:
    """The store at ``url``; ``UsageError`` when there is none, or ``empty`` when it holds no schema yet."""
    try:
        store = open_store(url, create=False)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not store.is_initialised():
        store.dispose()
        raise UsageError(empty)
    return store
