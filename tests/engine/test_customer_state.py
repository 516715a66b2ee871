"""The engine's customer columns, kept current from the customers written since the last tick, always
equal a full read of the store."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from orchestrator.engine._customer_state import CustomerState
from orchestrator.engine._snapshot import load_customer_frame
from orchestrator.store import Store
from orchestrator.store._customers import (
    CUSTOMERS,
    CustomerWrites,
    ensure_customer_keys,
    max_revision,
    upsert_customers,
)

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

NOW = 1_700_000_000_000_000
NAMES = ["id", "email", "consent_sms", "timezone", "tier", "spend", "vip", "tags"]


def same_frame(got: object, want: object) -> None:
    assert got.n == want.n  # type: ignore[attr-defined]
    assert np.array_equal(got.exists, want.exists)  # type: ignore[attr-defined]
    for name in NAMES:
        a, b = got.columns[name], want.columns[name]  # type: ignore[attr-defined]
        assert a.dtype == b.dtype, name
        if a.dtype == np.float64:
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert a.tolist() == b.tolist(), name


def test_changes_only_and_equal_to_a_full_read(store: Store) -> None:
    rng = np.random.default_rng(11)
    state = CustomerState()
    tiers = ["lapsed", "at_risk", "highly_active", None]
    for round_ in range(12):
        rows = []
        for i in rng.choice(60, size=15, replace=False):
            row: dict[str, object] = {"id": f"c{i}"}
            if rng.random() < 0.5:
                row["email"] = None if rng.random() < 0.2 else f"c{i}@example.com"
            if rng.random() < 0.4:
                row["consent_sms"] = bool(rng.random() < 0.5)
            row["tier"] = tiers[int(rng.integers(len(tiers)))]
            row["spend"] = None if rng.random() < 0.1 else round(float(rng.uniform(0, 500)), 2)
            row["vip"] = bool(rng.random() < 0.2)
            if round_ >= 8 and rng.random() < 0.3:
                row["spend"] = "unknown"  # text among numbers: the column becomes object for everyone
            rows.append(row)
        with store.begin() as conn:
            upsert_customers(conn, rows, NOW)
            # Customers created by events have no attributes at all (vip missing: no longer all booleans).
            ensure_customer_keys(conn, [f"e{round_}-{j}" for j in range(int(rng.integers(0, 4)))], NOW)
        with store.connect() as conn:
            got = state.frame(conn, NAMES)
            want = load_customer_frame(conn, NAMES)
        same_frame(got, want)
        with store.connect() as conn:  # nothing changed: nothing read, same answer
            again = state.frame(conn, NAMES)
        same_frame(again, want)
    # One full read at the start, and one per change of a column's type (number -> text, bool -> mixed).
    assert 1 < state.full_reads <= 4


def test_new_columns_read_everything_once(store: Store) -> None:
    with store.begin() as conn:
        upsert_customers(conn, [{"id": "a", "plan": "gold"}, {"id": "b", "plan": "free"}], NOW)
    state = CustomerState()
    with store.connect() as conn:
        assert state.frame(conn, ["id"]).columns["id"].tolist() == [None, "a", "b"]
        frame = state.frame(conn, ["id", "plan"])
    assert frame.columns["plan"].tolist() == [None, "gold", "free"] and state.full_reads == 2


def test_a_stale_customer_row_is_skipped_and_bumps_no_revision(store: Store) -> None:
    # ann's newest record is at NOW + 10; an older row (a replayed export) changes nothing, not even the
    # revision the engine reads changes by; rows as old as the stored one still apply, in order.
    with store.begin() as conn:
        first = upsert_customers(
            conn,
            [
                {"id": "ann", "consent_email": False, "tier": "gold", "record_us": NOW + 10},
                {"id": "ann", "consent_email": True, "tier": "bronze", "record_us": NOW + 5},  # older
                {"id": "bob", "consent_email": True},  # no time given: the write's (NOW)
            ],
            NOW,
        )
    assert first == CustomerWrites(written=2, stale=1)
    state = CustomerState()
    with store.connect() as conn:
        state.frame(conn, ["consent_email", "tier"])
        revision = max_revision(conn)
    with store.begin() as conn:
        replay = upsert_customers(
            conn,
            [{"id": "ann", "consent_email": True, "tier": "bronze", "record_us": NOW + 9}],
            NOW + 1000,
        )
    assert replay == CustomerWrites(written=0, stale=1)
    with store.connect() as conn:
        assert max_revision(conn) == revision
        frame = state.frame(conn, ["consent_email", "tier"])
        assert state.changed is not None and len(state.changed) == 0
    ann = int(frame.columns["tier"].tolist().index("gold"))
    assert frame.columns["consent_email"].tolist()[ann] is False
    with store.begin() as conn:
        same_time = upsert_customers(conn, [{"id": "ann", "tier": "silver", "record_us": NOW + 10}], NOW)
    assert same_time == CustomerWrites(written=1, stale=0)
    with store.connect() as conn:
        frame = state.frame(conn, ["consent_email", "tier"])
        assert state.changed is not None and state.changed.tolist() == [ann]
        stamps = dict(conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.record_us)).all())
    assert frame.columns["tier"][ann] == "silver" and frame.columns["consent_email"].tolist()[ann] is False
    assert stamps == {"ann": NOW + 10, "bob": NOW}
