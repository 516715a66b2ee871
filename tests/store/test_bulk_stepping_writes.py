"""The store's side of stepping many instances at once: the due instances read back as columns (with
their state codes), the moves written per group of instances that moved alike (over runs of consecutive
ids, or a list of scattered ones) with their first sends, and the queued ledger rows, exactly as the
single-row paths would write them."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event, text

from orchestrator.store import Store, due_instances, insert_instances, move_instances, queue_messages
from orchestrator.store._bulk import id_runs
from orchestrator.store._customers import upsert_customers

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

N = 3000  # above the size at which moves are written per group
T = 1_000_000


def _fill(store: Store, n: int = N) -> None:
    with store.begin() as conn:
        upsert_customers(conn, [{"id": f"c{k}"} for k in range(1, n + 1)], now_us=0)
        keys = np.arange(1, n + 1, dtype=np.int64)
        insert_instances(conn, "j", 1, keys, keys % 10 == 0, "hello", T)


def _rows(store: Store) -> list[tuple[int, str, int, int, int | None]]:
    with store.connect() as conn:
        return [
            (int(r[0]), r[1], int(r[2]), int(r[3]), r[4])
            for r in conn.execute(
                text(
                    "SELECT id, state, since_us, wake_at_us, first_send_us FROM journey_instances ORDER BY id"
                )
            ).all()
        ]


def test_the_due_instances_come_back_in_id_order_with_their_state_codes(store: Store) -> None:
    _fill(store)
    with store.begin() as conn:
        # Some wake later (not due), some are at a state the version does not have.
        conn.execute(text("UPDATE journey_instances SET wake_at_us = :w WHERE id % 7 = 0"), {"w": T + 50})
        conn.execute(text("UPDATE journey_instances SET wake_at_us = :w WHERE id % 5 = 0"), {"w": T - 50})
        conn.execute(text("UPDATE journey_instances SET state = 'gone' WHERE id % 11 = 0"))
        due = due_instances(conn, "j", 1, T, states=["pause", "hello", "completed"])
        waiting = due_instances(conn, "j", 1, T, ["hello"], states=["pause", "hello", "completed"])
    expected = [i for i in range(1, N + 1) if i % 7 or i % 5 == 0]
    assert due.ids.tolist() == expected and due.keys.tolist() == expected
    assert due.state_codes is not None
    assert due.state_codes.tolist() == [-1 if i % 11 == 0 else 1 for i in expected]
    assert due.states.tolist() == ["gone" if i % 11 == 0 else "hello" for i in expected]
    assert due.holdout.tolist() == [i % 10 == 0 for i in expected]
    assert due.wake_at_us.tolist() == [T - 50 if i % 5 == 0 else T for i in expected]
    assert (due.since_us == T).all() and (due.entered_us == T).all()
    assert due.entry_keys.tolist() == [None] * len(expected)
    # With a wait for an event at "hello": the instances there that are not due yet too, in id order.
    assert waiting.ids.tolist() == [i for i in range(1, N + 1) if i % 7 or i % 5 == 0 or i % 11]


def test_moves_written_by_group_match_moves_written_row_by_row(store: Store) -> None:
    n = 6000
    _fill(store, n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    # Three groups of 1,000: two runs of consecutive ids and one of scattered ids (every third above
    # 3000); the first sends of two of them.
    scattered = ids[(ids > 3000) & (ids % 3 == 0)]
    runs = ids[ids <= 1000], ids[(ids > 1000) & (ids <= 2000)]
    names = ["hello", "pause", "later"]
    with store.begin() as conn:
        conn.execute(text("UPDATE journey_instances SET first_send_us = 7 WHERE id = 2"))
        for part, code in ((runs[0], 1), (runs[1], 2), (scattered, 1)):
            k = len(part)
            move_instances(
                conn, part, np.full(k, code), np.full(k, T + code), np.full(k, T + 10),
                names=names, sent=np.full(k, code == 1), first_send_us=T,
            )  # fmt: skip
        # A few rows with values of their own: written one by one (and by names).
        move_instances(conn, np.array([3003, 3004]), ["later", "hello"], np.array([5, 6]), np.array([8, 9]))
    rows = {r[0]: r[1:] for r in _rows(store)}
    assert rows[1] == ("pause", T + 1, T + 10, T) and rows[1000] == ("pause", T + 1, T + 10, T)
    assert rows[2] == ("pause", T + 1, T + 10, 7)  # a first send already recorded stays
    assert rows[1001] == ("later", T + 2, T + 10, None) and rows[2000] == ("later", T + 2, T + 10, None)
    assert rows[3006] == ("pause", T + 1, T + 10, T) and rows[6000] == ("pause", T + 1, T + 10, T)
    # Moved with the scattered group, then on their own (which records no first send and keeps one).
    assert rows[3003] == ("later", 5, 8, T) and rows[3004] == ("hello", 6, 9, None)
    assert rows[2001] == ("hello", T, T, None) and rows[3005] == ("hello", T, T, None)  # not moved
    assert sum(1 for r in rows.values() if r[0] == "pause") == 1999
    assert sum(1 for r in rows.values() if r[3] == T) == 999 + 1000


def test_queued_rows_are_the_same_over_runs_of_ids_and_over_scattered_ids(store: Store) -> None:
    _fill(store)
    ids = np.arange(1, N + 1, dtype=np.int64)
    with store.begin() as conn:
        for part, step in ((ids[ids <= 1500], "a"), (ids[ids % 2 == 1], "b")):
            queued = queue_messages(
                conn, journey_id="j", version=1, step=step, channel="email", transactional=False,
                instance_ids=part, key_suffix=f"/{step}", created_us=T,
            )  # fmt: skip
            assert queued == len(part)
    with store.connect() as conn:
        rows = conn.execute(
            text("SELECT idempotency_key, instance_id, customer_key, step, status FROM messages ORDER BY id")
        ).all()
    expected = [(f"j/v1/c{i}/{i}/a", i, i, "a", "queued") for i in range(1, 1501)]
    expected += [(f"j/v1/c{i}/{i}/b", i, i, "b", "queued") for i in range(1, N + 1, 2)]
    assert [tuple(r) for r in rows] == expected


def test_ids_make_runs_only_when_they_are_few() -> None:
    assert id_runs(np.array([3, 4, 5, 9, 10, 11, 12, 13])) == "[[3,5],[9,13]]"
    assert id_runs(np.array([7])) is None  # one run for one id: more than a quarter
    assert id_runs(np.array([1, 3, 5, 7])) is None
    assert id_runs(np.array([5, 4, 3, 2, 1, 0, 9, 8])) is None  # not increasing
    assert id_runs(np.array([], dtype=np.int64)) is None


def _live_index(store: Store) -> str | None:
    """SQLite: the stored definition of the live index (None on PostgreSQL)."""
    if not store.is_sqlite:
        return None
    with store.connect() as conn:
        value = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_instances_live'")).scalar()
    assert value is not None
    return str(value)


def test_a_move_of_most_of_the_table_keeps_the_live_index_and_what_it_finds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Moves of at least this many instances, at least half the table, set the index aside on SQLite.
    monkeypatch.setattr("orchestrator.store._instances.SET_ASIDE_MIN", 1000)
    _fill(store)
    before = _live_index(store)
    moved = np.arange(1, 2001, dtype=np.int64)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with store.begin() as conn:
        move_instances(
            conn,
            moved,
            np.ones(2000, np.int64),
            np.full(2000, T),
            np.full(2000, T + 10),
            names=["hello", "pause"],
        )
    assert _live_index(store) == before
    assert ("DROP INDEX ix_instances_live" in statements) == store.is_sqlite  # it was set aside
    with store.connect() as conn:
        assert due_instances(conn, "j", 1, T).ids.tolist() == list(range(2001, N + 1))
        assert due_instances(conn, "j", 1, T + 10).ids.tolist() == list(range(1, N + 1))
        if store.is_sqlite:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            plan = conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM journey_instances WHERE journey_id = 'j' "
                    "AND status = 'active' AND version = 1 AND wake_at_us <= 5"
                )
            ).all()
            assert "ix_instances_live" in str(plan)
    # A move rolled back leaves the rows and the index as they were.
    with pytest.raises(RuntimeError), store.begin() as conn:
        move_instances(
            conn, moved, np.zeros(2000, np.int64), np.full(2000, T), np.full(2000, T + 99), names=["hello"]
        )
        raise RuntimeError("the tick failed")
    assert _live_index(store) == before
    rows = _rows(store)
    assert all(r[1:4] == ("pause", T, T + 10) for r in rows[:2000])
    assert all(r[1:4] == ("hello", T, T) for r in rows[2000:])
