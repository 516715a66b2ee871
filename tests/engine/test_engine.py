"""The whole loop on a simulated clock: events at given times, the expected entries, waits, rendered
messages, holdout silence, conversions and the lift report."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._memory import MemoryAdapter
from orchestrator.channels._outbox import OutboxAdapter
from orchestrator.clock import SimulatedClock, to_us
from orchestrator.engine._tick import ClockBehind, Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.holdout import bucket, journey_seed
from orchestrator.ingest import ingest_events_records
from orchestrator.measure._report import journey_report
from orchestrator.store import Store
from orchestrator.store._customers import upsert_customers
from orchestrator.testing import T0, World, customer, event

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

CART = """\
id: cart
version: 1
metrics:
  cart_category: top_value(add_to_cart.category, within=1d)
signal: since(add_to_cart) <= 1d and since(purchase) >= since(add_to_cart)
segment: country != "FR"
holdout: 30
steps:
  - wait: 2h
  - branch:
      if: since(purchase) < 2h
      then: exit
  - id: reminder
    send:
      channel: email
      subject: "{{ customer.first_name }}, your {{ metrics.cart_category }} are waiting"
      template: cart/reminder.txt
  - wait: 1d
  - id: last_call
    send:
      channel: sms
      template: cart/last_call.txt
goal: {event: purchase, within: 3d, revenue: amount}
reentry: never
"""


def write_workspace(root: Path, journey: str = CART) -> Path:
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    (root / "templates" / "cart").mkdir(parents=True, exist_ok=True)
    (root / "journeys" / "cart.yaml").write_text(journey)
    (root / "templates" / "cart" / "reminder.txt").write_text(
        "Hi {{ customer.first_name }}, you left {{ metrics.cart_category }} in your cart.\n"
    )
    (root / "templates" / "cart" / "last_call.txt").write_text("Last call, {{ customer.first_name }}!\n")
    return root / "journeys"


def shoppers(n: int) -> list[dict[str, Any]]:
    """c0..c(n-1): c0 lives in France, c5 declined SMS."""
    return [
        customer(f"c{i}", first_name=f"Name{i}", country="FR" if i == 0 else "GB", consent_sms=i != 5)
        for i in range(n)
    ]


@pytest.fixture
def world(world: World) -> World:
    """The plugin's world with the cart workspace and twelve shoppers."""
    write_workspace(world.folder)
    world.add_customers(*shoppers(12))
    return world


def held_out(cid: str, percent: float = 30) -> bool:
    """The arm the engine must give, computed here from the published hash definition."""
    return bucket(journey_seed("cart"), cid) < percent / 100


def test_cart_journey_end_to_end(world: World) -> None:
    ids = [f"c{i}" for i in range(12)]
    # Everyone adds a pair of shoes to a cart just before T0; c1 and c2 buy within the first wait.
    world.add_events(*(event(c, "add_to_cart", T0 - timedelta(minutes=30), category="shoes") for c in ids))
    world.add_events(
        event("c1", "purchase", T0 + timedelta(minutes=40), amount=50.0),
        event("c2", "purchase", T0 + timedelta(minutes=50), amount=20.0),
    )
    world.run_until(T0 + timedelta(days=2))

    entered = {
        r[0]: (r[1], r[2], r[3])
        for r in world.rows(
            "SELECT c.id, i.holdout, i.status, i.entered_us FROM journey_instances i "
            "JOIN customers c ON c.key = i.customer_key"
        )
    }
    # c0 lives in FR and is excluded by the segment; everyone else entered at the first tick.
    assert set(entered) == set(ids) - {"c0"}
    assert all(entered_us == to_us(T0) for _, _, entered_us in entered.values())
    # The arm is the one the published hash gives, and both arms are present in this sample.
    assert {cid: bool(h) for cid, (h, _, _) in entered.items()} == {cid: held_out(cid) for cid in entered}
    holdout = {cid for cid in entered if held_out(cid)}
    assert holdout and holdout != set(entered)

    # Held-out customers receive nothing at all, in the ledger or at the adapter.
    sent_to = {m.customer_id for m in world.adapter.sent}
    assert not sent_to & holdout
    assert not world.rows(
        "SELECT 1 FROM messages m JOIN journey_instances i ON i.id = m.instance_id WHERE i.holdout"
    )

    buyers = {"c1", "c2"}
    treated = set(entered) - holdout - buyers
    emails = {m.customer_id: m for m in world.adapter.sent if m.channel == "email"}
    assert set(emails) == treated
    for cid, message in emails.items():
        n = cid[1:]
        assert message.subject == f"Name{n}, your shoes are waiting"
        assert message.body == f"Hi Name{n}, you left shoes in your cart."
        assert message.recipient == f"{cid}@example.com"
    # The reminder went out at the tick two hours after entry, the SMS a day later.
    created = {r[0]: r[1] for r in world.rows("SELECT step, MIN(created_us) FROM messages GROUP BY step")}
    assert created["reminder"] == to_us(T0 + timedelta(hours=2))
    assert created["last_call"] == to_us(T0 + timedelta(days=1, hours=2))
    sms = {m.customer_id for m in world.adapter.sent if m.channel == "sms"}
    assert sms == treated - {"c5"}  # c5 declined SMS
    if "c5" in treated:
        assert world.rows(
            "SELECT status, reason FROM messages m JOIN customers c ON c.key = m.customer_key "
            "WHERE c.id = 'c5' AND m.channel = 'sms'"
        ) == [("suppressed", "no consent for sms")]

    # Buyers converted (whatever their arm) and left the journey before any message.
    conversions = {
        r[0]: r[1]
        for r in world.rows(
            "SELECT c.id, v.revenue FROM conversions v JOIN customers c ON c.key = v.customer_key"
        )
    }
    assert conversions == {"c1": 50.0, "c2": 20.0}
    assert entered["c1"][1] == entered["c2"][1] == "converted"
    assert {entered[c][1] for c in treated - {"c5"}} == {"completed"}

    # Each message was delivered exactly once.
    assert len(world.adapter.sent) == len(treated) + len(treated - {"c5"})
    assert len({m.idempotency_key for m in world.adapter.sent}) == len(world.adapter.sent)


def test_no_reentry_and_edge_triggered_entry(world: World) -> None:
    world.add_events(event("c3", "add_to_cart", T0 - timedelta(minutes=5)))
    world.run_until(T0 + timedelta(hours=3))
    # The signal stays true for a day, but the customer enters once.
    assert world.rows("SELECT COUNT(*) FROM journey_instances")[0][0] == 1
    # A new cart two days later: re-entry is "never".
    world.clock.set(T0 + timedelta(days=2))
    world.add_events(event("c3", "add_to_cart", T0 + timedelta(days=2) - timedelta(minutes=5)))
    world.run_until(T0 + timedelta(days=2, hours=3))
    assert world.rows("SELECT COUNT(*) FROM journey_instances")[0][0] == 1


def test_reentry_after_exit(world: World) -> None:
    w = world
    write_workspace(w.folder, CART.replace("reentry: never", "reentry: after_exit"))
    w.add_events(event("c3", "add_to_cart", T0 - timedelta(minutes=5)))
    w.run_until(T0 + timedelta(days=2))
    w.add_events(event("c3", "add_to_cart", T0 + timedelta(days=2, minutes=10)))
    w.run_until(T0 + timedelta(days=2, hours=2))
    statuses = [r[0] for r in w.rows("SELECT status FROM journey_instances ORDER BY id")]
    assert statuses == ["completed", "active"]
    # The arm is decided once: the second entry has the same arm as the first.
    assert len({r[0] for r in w.rows("SELECT holdout FROM journey_instances")}) == 1


def test_outbox_files_and_holdout_guard_at_send(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        upsert_customers(conn, shoppers(12), now_us=to_us(T0))
    clock = SimulatedClock(T0)
    outbox = tmp_path / "outbox"
    engine = Engine(
        store, load_workspace([write_workspace(tmp_path)]), ChannelRouter([OutboxAdapter(outbox)]), clock
    )
    ingest_events_records(
        store, [event(f"c{i}", "add_to_cart", T0 - timedelta(minutes=1)) for i in range(12)], now_us=to_us(T0)
    )
    engine.tick()
    clock.advance(timedelta(hours=2))
    engine.tick()
    files = sorted((outbox / "email").glob("*.eml"))
    treated = [f"c{i}" for i in range(1, 12) if not held_out(f"c{i}")]
    assert len(files) == len(treated)
    # Forge a queued message for a held-out customer, as a bug elsewhere might: the send path refuses it.
    victim = next(f"c{i}" for i in range(1, 12) if held_out(f"c{i}"))
    with store.begin() as conn:
        key = conn.execute(text("SELECT key FROM customers WHERE id = :c"), {"c": victim}).scalar()
        conn.execute(
            text(
                "INSERT INTO messages (idempotency_key, journey_id, version, instance_id, customer_key, "
                "step, channel, recipient, body, status, created_us) VALUES ('forged', 'cart', 1, 0, :k, "
                "'reminder', 'email', 'x@example.com', 'hello', 'queued', 0)"
            ),
            {"k": key},
        )
    report = engine.dispatch()
    assert report.refused == 1 and report.delivered == 0
    with store.connect() as conn:
        assert (
            conn.execute(text("SELECT status FROM messages WHERE idempotency_key = 'forged'")).scalar()
            == "refused"
        )
    assert len(sorted((outbox / "email").glob("*.eml"))) == len(treated)


def test_report_arm_sizes_match_instances(world: World) -> None:
    world.add_events(
        *(event(f"c{i}", "add_to_cart", T0 - timedelta(minutes=30), category="bags") for i in range(12))
    )
    world.add_events(event("c4", "purchase", T0 + timedelta(days=1), amount=80.0))
    world.run_until(T0 + timedelta(days=4))
    report = journey_report(world.store, "cart")
    assert report.lift is not None
    arms = {a.name: a for a in report.lift.arms}
    counts = dict(
        world.rows(
            "SELECT CASE WHEN holdout THEN 'holdout' ELSE 'treatment' END, COUNT(*) "
            "FROM journey_instances GROUP BY 1"
        )
    )
    assert {k: v.n for k, v in arms.items()} == counts
    assert sum(a.conversions for a in arms.values()) == 1
    assert report.matured == report.entries == sum(counts.values())


HELLO = """\
id: hello
version: 1
entry:
  segment: country == "GB"
holdout: 0
steps:
  - id: greet
    send: {channel: email, subject: "Hello", template: cart/last_call.txt}
"""


def with_hello(root: Path, cart: str = CART) -> Path:
    journeys = write_workspace(root, cart)
    (journeys / "hello.yaml").write_text(HELLO)
    return journeys


def test_a_failing_journey_is_marked_failed_and_the_others_run(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world.engine.tick()  # cart version 1 runs here
    adapter = MemoryAdapter()
    # The cart journey edited without a new version number, beside a journey that works.
    changed = with_hello(tmp_path / "v2", CART.replace("holdout: 30", "holdout: 50"))
    engine = Engine(world.store, load_workspace([changed]), ChannelRouter([adapter]), world.clock)
    with caplog.at_level("WARNING", logger="orchestrator.engine"):
        report = engine.tick()
        assert set(report.failed) == {"cart"}
        assert report.failed["cart"].startswith("VersionConflict: ")
        assert (
            "journey 'cart' version 1 has changed since it first ran; give the changed journey version 2"
            in (report.failed["cart"])
        )
        assert "\n" not in report.failed["cart"]
        assert report.journeys["hello"].entered == 11 and report.delivery.delivered == 11  # dispatch went on
        assert {m.journey_id for m in adapter.sent} == {"hello"}
        world.clock.advance(timedelta(hours=1))
        engine.tick()  # still failing: stored, not logged again
        assert world.rows("SELECT journey_id, error, since_us, last_us FROM journey_health") == [
            ("cart", report.failed["cart"], to_us(T0), to_us(T0 + timedelta(hours=1)))
        ]
        bumped = with_hello(
            tmp_path / "v3", CART.replace("holdout: 30", "holdout: 50").replace("version: 1", "version: 2")
        )
        world.clock.advance(timedelta(hours=1))
        fixed = Engine(world.store, load_workspace([bumped]), ChannelRouter([adapter]), world.clock)
        assert fixed.tick().failed == {}
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [  # once when it failed, once when it worked again: not at every tick
        f"journey cart failed (its work at this tick was undone): {report.failed['cart']}",
        "journey cart works again",
    ]
    assert world.rows("SELECT journey_id FROM journey_health") == []  # the mark cleared
    assert sorted(
        r[0] for r in world.rows("SELECT version FROM journey_versions WHERE journey_id = 'cart'")
    ) == [
        1,
        2,
    ]


def test_a_journey_that_fails_at_any_step_is_undone_and_named_without_customer_values(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    world.add_events(*(event(f"c{i}", "add_to_cart", T0 - timedelta(minutes=5)) for i in range(1, 12)))
    adapter = MemoryAdapter()
    workspace = load_workspace([with_hello(tmp_path / "w")])
    hello = workspace.plan("hello")
    hello.journey = hello.journey.model_copy(update={"priority": 99999999999999999999})  # past validate
    engine = Engine(world.store, workspace, ChannelRouter([adapter]), world.clock)
    report = engine.tick()
    assert report.failed == {
        "hello": f"OverflowError: {hello.file}: priority 99999999999999999999 is out of range "
        "(-2**63 to 2**63-1) (at engine/_tick.py:" + report.failed["hello"].rsplit(":", 1)[1]
    }
    assert report.journeys["cart"].entered == 11
    assert not world.rows("SELECT 1 FROM journey_versions WHERE journey_id = 'hello'")

    # Anything raised inside a journey's work: its transaction rolls back, the error names no customer.
    hello.journey = hello.journey.model_copy(update={"priority": 5})
    original = Engine._advance

    def advance(self: Engine, conn: Any, plan: Any, *args: Any) -> Any:
        stepped = original(self, conn, plan, *args)
        if plan.id == "hello":
            raise KeyError("c7@example.com")  # after its ledger rows were written
        return stepped

    monkeypatch.setattr(Engine, "_advance", advance)
    world.clock.advance(timedelta(hours=2))
    report = engine.tick()
    assert report.failed["hello"].startswith("KeyError (at ") and "c7" not in report.failed["hello"]
    assert report.journeys["hello"].entered == 0  # counted afresh: what it did was undone
    # On SQLite the journey's whole tick is one transaction; on PostgreSQL workers step claimed batches in
    # transactions of their own, after the entries committed: the batch that failed is what rolled back.
    entered = world.rows("SELECT COUNT(*) FROM journey_instances WHERE journey_id = 'hello'")[0][0]
    assert entered == (0 if backend == "sqlite" else 11)
    assert not world.rows("SELECT 1 FROM messages WHERE journey_id = 'hello'")
    assert {m.journey_id for m in adapter.sent} == {"cart"}  # the reminders went out
    monkeypatch.setattr(Engine, "_advance", original)
    world.clock.advance(timedelta(hours=1))
    report = engine.tick()
    assert report.failed == {}
    assert world.rows("SELECT COUNT(*) FROM journey_instances WHERE journey_id = 'hello'")[0][0] == 11
    assert len([m for m in adapter.sent if m.journey_id == "hello"]) == 11
    assert world.rows("SELECT COUNT(*) FROM journey_health")[0][0] == 0


def test_a_clock_that_steps_back_is_refused_and_an_equal_instant_repeats_nothing(world: World) -> None:
    world.add_events(*(event(f"c{i}", "add_to_cart", T0 - timedelta(minutes=5)) for i in range(1, 12)))
    world.run_until(T0 + timedelta(hours=3))  # entries at T0, reminders at T0 + 2h
    before = world.rows("SELECT COUNT(*) FROM messages")[0][0], world.rows("SELECT COUNT(*) FROM ticks")[0][0]
    last = world.clock.now() - timedelta(hours=1)
    world.clock.set(last - timedelta(hours=2, minutes=30))  # an NTP step back, or a restored VM
    with pytest.raises(ClockBehind, match=r"the clock \(2024-05-01T09:30:00\+00:00\) is before the last tick "
                       r"\(2024-05-01T12:00:00\+00:00\); refusing to run"):  # fmt: skip
        world.engine.tick()
    world.clock.set(last)
    world.engine.tick()  # the same instant again: allowed, and nothing new to do
    after = world.rows("SELECT COUNT(*) FROM messages")[0][0], world.rows("SELECT COUNT(*) FROM ticks")[0][0]
    assert after == (before[0], before[1] + 1)
    assert world.rows("SELECT COUNT(*) FROM journey_instances")[0][0] == 11


def test_instances_finish_on_the_version_they_entered(world: World, tmp_path: Path) -> None:
    world.add_events(event("c3", "add_to_cart", T0 - timedelta(minutes=5), category="hats"))
    world.engine.tick()  # c3 enters version 1 and waits two hours
    v2 = textwrap.dedent(CART).replace("version: 1", "version: 2").replace("wait: 2h", "wait: 5h")
    engine = Engine(
        world.store,
        load_workspace([write_workspace(tmp_path / "v2", v2)]),
        ChannelRouter([world.adapter]),
        world.clock,
    )
    world.clock.advance(timedelta(hours=2))
    engine.tick()
    # Version 1's two-hour wait held: the reminder went out at two hours, from version 1's steps.
    rows = world.rows("SELECT version, step FROM messages")
    held = held_out("c3")
    assert rows == ([] if held else [(1, "reminder")])
