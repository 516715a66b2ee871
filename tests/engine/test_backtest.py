"""Backtests: the same as a live run of the same ticks, blind to the future, under the contact policy,
sending nothing; the overlap matrix and the weekly distribution on a case counted by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.clock import to_us
from orchestrator.engine import backtest, load_workspace
from orchestrator.engine._tick import MissingFit
from orchestrator.ingest import EventChunk
from orchestrator.measure import BacktestReport, backtest_report
from orchestrator.store import Store, upsert_customers
from orchestrator.testing import T0, World, customer, event, write_files

CART = """\
id: cart
version: 1
signal: count(add_to_cart, within=1d) > 0 and since(purchase) > since(add_to_cart)
holdout: 0
steps:
  - wait: 2h
  - branch: {if: since(purchase) < 2h, then: exit}
  - id: reminder
    send: {channel: email, subject: "Your cart", template: t.txt}
  - id: sms
    send: {channel: sms, template: t.txt}
goal: {event: purchase, within: 2d}
reentry: always
"""
BROWSE = """\
id: browse
version: 1
signal: count(product_view, within=1d) >= 2
holdout: 0
steps:
  - id: picks
    send: {channel: email, subject: "Picks", template: t.txt}
reentry: always
"""
POLICY = "caps:\n  all: {per_day: 1}\n"
FILES = {"journeys/cart.yaml": CART, "journeys/browse.yaml": BROWSE, "templates/t.txt": "Hi"}
CUSTOMERS = ["ann", "bob", "cy", "dee"]


def _events() -> list[dict[str, Any]]:
    """A day of behaviour: carts (one bought within the wait), views, purchases."""
    h = timedelta(hours=1)
    return [
        event("ann", "add_to_cart", T0 + 1 * h + timedelta(minutes=10)),
        event("bob", "add_to_cart", T0 + 2 * h),
        event("bob", "purchase", T0 + 3 * h + timedelta(minutes=30)),  # within the wait: converts
        event("cy", "product_view", T0 + 1 * h),
        event("cy", "product_view", T0 + 1 * h + timedelta(minutes=5)),
        event("ann", "product_view", T0 + 5 * h),
        event("ann", "product_view", T0 + 5 * h + timedelta(minutes=1)),
        event("dee", "add_to_cart", T0 + 6 * h + timedelta(minutes=30)),
        event("dee", "product_view", T0 + 7 * h),
        event("dee", "product_view", T0 + 7 * h + timedelta(minutes=2)),
        event("ann", "purchase", T0 + 20 * h),
    ]


def _chunk(records: list[dict[str, Any]]) -> EventChunk:
    """The events as the backtest reads them, with their properties (all but customer, name and time)."""
    ids = sorted({r["customer_id"] for r in records})
    names = sorted({r["event"] for r in records})
    return EventChunk(
        customer_ids=ids,
        customer_codes=np.array([ids.index(r["customer_id"]) for r in records], dtype=np.int64),
        event_names=names,
        event_codes=np.array([names.index(r["event"]) for r in records], dtype=np.int64),
        ts_us=np.array([to_us(r["ts"]) for r in records], dtype=np.int64),
        properties=[json.dumps(r.get("properties", {})) for r in records],
    )


def _customers(store: Store, now_us: int) -> None:
    with store.begin() as conn:
        upsert_customers(conn, [customer(c) for c in CUSTOMERS], now_us)


def _backtest(folder: Path, records: list[dict[str, Any]], hours: int = 24) -> BacktestReport:
    workspace = load_workspace([folder / "journeys"])
    run = backtest(
        workspace,
        _chunk(records),
        backtest_report,
        start=T0,
        end=T0 + timedelta(hours=hours),
        customers=_customers,
    )
    assert run.delivered == run.report.totals["sent"]  # the adapter took (and dropped) what was sent
    return run.report


def _live(folder: Path, records: list[dict[str, Any]], hours: int = 24) -> World:
    """A World ticked hourly from T0, each event added when the clock passes it."""
    world = World(folder)
    world.add_customers(*(customer(c) for c in CUSTOMERS))
    pending = sorted(records, key=lambda r: r["ts"])
    for k in range(hours):
        now = T0 + timedelta(hours=k)
        due = [r for r in pending if r["ts"] < now]
        pending = [r for r in pending if r["ts"] >= now]
        if due:
            world.add_events(*due)
        world.clock.set(now)
        world.tick()
    return world


def test_a_backtest_does_what_a_live_run_of_the_same_ticks_did(tmp_path: Path) -> None:
    for where in ("bt", "live"):
        write_files(tmp_path / where, {**FILES, "journeys/policy.yaml": POLICY})
    report = _backtest(tmp_path / "bt", _events())
    world = _live(tmp_path / "live", _events())
    try:
        ledger = world.messages()
        sent = sum(1 for m in ledger if m.status == "sent")
        suppressed = sum(1 for m in ledger if m.status == "suppressed")
        instances = world.instances()
        totals = report.totals
        assert (totals["sent"], totals["suppressed"], totals["entries"]) == (sent, suppressed, len(instances))
        assert totals["sent"] > 0 and totals["suppressed"] > 0
        by_step = {(m["journey"], m["step"]): (m["sent"], m["suppressed"]) for m in report.data["messages"]}
        live_steps: dict[tuple[str, str], list[int]] = {}
        for m in ledger:
            pair = live_steps.setdefault((m.journey_id, m.step), [0, 0])
            pair[0] += m.status == "sent"
            pair[1] += m.status == "suppressed"
        assert by_step == {k: tuple(v) for k, v in live_steps.items()}
        outcomes = {o["journey"]: o for o in report.data["outcomes"]}
        assert outcomes["cart"]["exited"] == sum(
            1 for i in instances if i.journey == "cart" and i.status == "exited"
        )
        assert outcomes["cart"]["converted"] == 1  # bob bought during the wait (ann had finished)
    finally:
        world.close()


def test_the_contact_policy_applies_and_caps_hit_are_counted(tmp_path: Path) -> None:
    write_files(tmp_path, {**FILES, "journeys/policy.yaml": POLICY})
    report = _backtest(tmp_path, _events())
    reasons = report.data["suppressions"]
    capped = [r for r in reasons if r.startswith("capped by policy")]
    assert capped and report.totals["caps_hit"] == sum(reasons[r] for r in capped)
    assert report.totals["caps_hit"] == sum(d["caps_hit"] for d in report.data["days"])
    # Without the policy, nothing is capped.
    write_files(tmp_path / "free", FILES)
    assert _backtest(tmp_path / "free", _events()).totals["caps_hit"] == 0


def test_a_backtest_never_sees_its_future(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    records = _events()
    base = _backtest(tmp_path, records, hours=3).data  # ticks at 0h, 1h and 2h
    # ann entered the cart journey at the 2h tick; a purchase of hers at 2h30 comes after every tick of this
    # window, so it changes nothing (in a longer window it would convert her and end her journey).
    later = [*records, event("ann", "purchase", T0 + timedelta(hours=2, minutes=30))]
    again = _backtest(tmp_path, later, hours=3).data
    for key in ("days", "messages", "conversions", "outcomes", "overlap"):
        assert again[key] == base[key], key
    assert base["totals"]["entries"] == 2  # ann's cart and cy's views; bob's cart at 2h is not before 2h
    longer = _backtest(tmp_path, later, hours=24).data
    assert {(r["journey"], r["arm"]): r["converted"] for r in longer["conversions"]["journeys"]}[
        ("cart", "treated")
    ] == 2  # ann (at 2h30) and bob


def test_nothing_is_sent_and_no_outbox_is_written(tmp_path: Path, monkeypatch: Any) -> None:
    write_files(tmp_path, FILES)
    monkeypatch.chdir(tmp_path)
    report = _backtest(tmp_path, _events())
    assert report.totals["sent"] > 0
    assert not (tmp_path / "outbox").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journeys", "templates"]


def test_overlap_and_messages_per_customer_week_counted_by_hand(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    report = _backtest(tmp_path, _events(), hours=24 * 7)
    overlap = report.data["overlap"]
    matrix = dict(zip(overlap["journeys"], overlap["matrix"], strict=True))
    # cart: ann, bob, dee; browse: cy, ann, dee. Both: ann and dee.
    index = {j: i for i, j in enumerate(overlap["journeys"])}
    assert matrix["cart"][index["cart"]] == 3 and matrix["browse"][index["browse"]] == 3
    assert matrix["cart"][index["browse"]] == matrix["browse"][index["cart"]] == 2
    assert (overlap["customers_in_any"], overlap["customers_in_several"]) == (4, 2)
    weekly = report.data["messages_per_customer_week"]
    # One week, four customers: ann 3 (reminder, sms, picks), bob 0, cy 1 (picks), dee 3.
    assert weekly["customer_weeks"] == 4 and weekly["weeks"] == 1
    assert weekly["distribution"] == {"0": 1, "1": 1, "2": 0, "3": 2, "4": 0, "5+": 0}
    assert weekly["max"] == 3 and weekly["quantiles"]["p50"] == 1 and weekly["quantiles"]["p90"] == 3


AT_RISK = """\
id: at_risk
version: 1
holdout: 0
signal: p_alive(purchase) < 0.5
steps:
  - send: {channel: email, subject: "We miss you", template: t.txt}
"""


def _purchases() -> tuple[list[str], list[dict[str, Any]]]:
    """Forty customers who bought every week or two for months and go on into the window; eight who bought
    weekly for two months, then stopped half a year before it."""
    ids, records = [], []
    for i in range(48):
        who, gone = f"c{i:02d}", i >= 40
        ids.append(who)
        first = T0 - timedelta(days=300 if gone else 200 + i)
        days = range(0, 63, 7) if gone else range(0, 200 + i + 2, 7 + i % 8)
        records += [event(who, "purchase", first + timedelta(days=d), amount=10 + i % 5) for d in days]
    return ids, records


def test_predictions_in_a_backtest_read_a_fit_of_the_history_before_it(tmp_path: Path) -> None:
    """The backtest fits the purchase models on the purchases before its start and enters whom a live
    engine holding that fit enters, tick for tick."""
    pytest.importorskip("pymc_marketing")
    from orchestrator.predict import fit_history, save_fit

    ids, records = _purchases()
    files = {"journeys/at_risk.yaml": AT_RISK, "templates/t.txt": "Hi"}
    for where in ("bt", "live"):
        write_files(tmp_path / where, files)

    def customers(store: Store, now_us: int) -> None:
        with store.begin() as conn:
            upsert_customers(conn, [customer(c) for c in ids], now_us)

    workspace = load_workspace([tmp_path / "bt" / "journeys"])
    run = backtest(workspace, _chunk(records), backtest_report, start=T0, end=T0 + timedelta(hours=3),
                   customers=customers)  # fmt: skip

    world = World(tmp_path / "live")
    try:
        world.add_customers(*(customer(c) for c in ids))
        world.add_events(*(r for r in records if r["ts"] < T0))
        fit = fit_history(world.store, (T0 - timedelta(days=1)).date())
        save_fit(world.store, fit, to_us(T0))
        for k in range(3):
            now = T0 + timedelta(hours=k)
            world.add_events(*(r for r in records if T0 + timedelta(hours=k - 1) <= r["ts"] < now))
            world.clock.set(now)
            assert world.tick().failed == {}
        entered = sorted(i.customer for i in world.instances())
    finally:
        world.close()
    assert entered == [f"c{i}" for i in range(40, 48)]  # the eight who stopped buying
    assert run.report.totals["entries"] == len(entered)
    assert run.report.totals["sent"] == len(entered)


def test_a_backtest_whose_predictions_cannot_be_fitted_says_why(tmp_path: Path) -> None:
    pytest.importorskip("pymc_marketing")
    write_files(tmp_path, {"journeys/at_risk.yaml": AT_RISK, "templates/t.txt": "Hi"})
    late = [event("c1", "purchase", T0 + timedelta(hours=1), amount=5)]  # no purchase before the window
    with pytest.raises(MissingFit) as caught:
        backtest(load_workspace([tmp_path / "journeys"]), _chunk(late), backtest_report, start=T0,
                 end=T0 + timedelta(hours=3))  # fmt: skip
    day = (T0 - timedelta(days=1)).date().isoformat()
    assert str(caught.value) == (
        "the backtest fits the purchase models the journeys read on the history before --from, up to "
        f"{day}: purchase.amount: no purchase event on or before {day}: nothing to fit"
    )
