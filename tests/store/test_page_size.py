"""The page size of SQLite stores: a new store is made with the store's larger pages (``_db.PAGE_SIZE``,
which stepping a million instances writes faster), and a store made with SQLite's default pages keeps
them, with its rows, when this version opens it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.store import open_store, sqlite_url
from orchestrator.store._db import PAGE_SIZE


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_a_new_store_has_the_larger_pages(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path / "new.db"))
    store.dispose()
    assert PAGE_SIZE != 4096
    assert _page_size(tmp_path / "new.db") == PAGE_SIZE


def test_a_store_with_default_pages_keeps_them_and_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE kept (x INTEGER)")
    conn.execute("INSERT INTO kept VALUES (7)")
    conn.commit()
    conn.close()
    store = open_store(sqlite_url(path))
    with store.begin() as c:
        c.exec_driver_sql("INSERT INTO kept VALUES (8)")
    store.dispose()
    assert _page_size(path) == 4096
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT x FROM kept ORDER BY x")] == [7, 8]
    conn.close()
