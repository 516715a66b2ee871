"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store import Store, open_store, sqlite_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store in a temporary directory, disposed at teardown."""
    s = open_store(sqlite_url(tmp_path / "t.db"))
    try:
        yield s
    finally:
        s.dispose()
