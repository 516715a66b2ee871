"""Goal windows from the first send, and goals that are conditions, in both arms: what the engine records,
what the lift report counts (figures worked out by hand in the comments), what ``why``, ``status`` (the
funnel) and the diagram say."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from orchestrator.clock import to_us
from orchestrator.engine import explain
from orchestrator.holdout import bucket, journey_seed
from orchestrator.measure import format_table, funnel_lines, journey_funnel, journey_report
from orchestrator.testing import World, at, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

START = at("2024-05-06T09:00:00Z")
DAY, HOUR = timedelta(days=1), timedelta(hours=1)

# Everyone who signed up enters at the first tick (START). The first email goes at START + 2d: the goal
# window of both arms is [START + 2d, START + 5d). A complaint before then makes the instance leave.
FIRST_SEND = """\
id: nurture
version: 1
signal: count(signup) > 0
exit_when: count(complaint) > 0
holdout: 50
steps:
  - wait: 2d
  - id: mail
    send: {channel: email, subject: "Hi", template: mail.txt}
  - wait: 1d
  - id: again
    send: {channel: email, subject: "Hi again", template: mail.txt}
goal: {event: purchase, within: 3d, from: first_send, revenue: amount}
"""

# A condition goal over the whole window from entry: [START, START + 3d).
CONDITION = """\
id: activation
version: 1
signal: count(signup) > 0
holdout: 50
steps:
  - wait: 1d
  - id: nudge
    send: {channel: email, subject: "Try it", template: mail.txt}
  - wait: 5d
goal: {signal: "count(create_project) >= 2", within: 3d}
"""


def arms(journey: str, treated: int, held: int) -> tuple[list[str], list[str]]:
    """The first customer ids of the pool c0, c1, ... that the engine's hash puts in each arm (50%)."""
    t: list[str] = []
    h: list[str] = []
    for i in itertools.count():
        cid = f"c{i}"
        (h if bucket(journey_seed(journey), cid) < 0.5 else t).append(cid)
        if len(t) >= treated and len(h) >= held:
            return t[:treated], h[:held]
    raise AssertionError("unreachable")


def set_up(world: World, journey_id: str, source: str, ids: list[str]) -> None:
    world.write_files({f"journeys/{journey_id}.yaml": source, "templates/mail.txt": "Hello"})
    world.clock.set(START)
    world.add_customers(*[customer(c) for c in ids])
    world.add_events(*[event(c, "signup", START - HOUR) for c in ids])


def by_customer(world: World, sql: str) -> dict[str, object]:
    return dict(world.rows(sql))


def us(instant: datetime) -> int:
    return to_us(instant)


def test_a_window_from_the_first_send_is_anchored_alike_in_both_arms(world: World) -> None:
    (t_early, t_in, t_late, t_gone), (h_early, h_in, h_late, h_gone) = arms("nurture", 4, 4)
    everyone = [t_early, t_in, t_late, t_gone, h_early, h_in, h_late, h_gone]
    set_up(world, "nurture", FIRST_SEND, everyone)
    world.add_events(
        # Before the first send: no window yet, in either arm, so no conversion (they go on).
        *[event(c, "purchase", START + DAY, amount=10.0) for c in (t_early, h_early)],
        # Inside [START + 2d, START + 5d): a conversion at the event's time, in both arms.
        *[event(c, "purchase", START + 2 * DAY + 12 * HOUR, amount=30.0) for c in (t_in, h_in)],
        # At START + 5d exactly: the window is half-open, so this is one instant too late.
        *[event(c, "purchase", START + 5 * DAY, amount=50.0) for c in (t_late, h_late)],
        # A complaint at START + 1d: they leave by exit_when before any send and never have a window.
        *[event(c, "complaint", START + DAY) for c in (t_gone, h_gone)],
    )
    world.run_until(START + 5 * DAY)

    first = by_customer(
        world,
        "SELECT c.id, i.first_send_us FROM journey_instances i JOIN customers c ON c.key = i.customer_key",
    )
    # The held-out arm reached the send step at the tick the treated arm queued its email.
    sent_at = us(START + 2 * DAY)
    assert first == {c: sent_at for c in everyone if c not in (t_gone, h_gone)} | {t_gone: None, h_gone: None}
    assert {m.customer_id for m in world.messages() if m.step == "mail"} == {t_early, t_in, t_late}
    assert world.rows("SELECT MIN(created_us) FROM messages") == [(sent_at,)]

    converted = by_customer(
        world,
        "SELECT c.id, v.converted_us FROM conversions v JOIN customers c ON c.key = v.customer_key",
    )
    assert converted == {t_in: us(START + 2 * DAY + 12 * HOUR), h_in: us(START + 2 * DAY + 12 * HOUR)}
    status = {i.customer: i.status for i in world.instances()}
    assert status[t_in] == status[h_in] == "converted"
    assert status[t_gone] == status[h_gone] == "exited"

    # The report at START + 5d: per arm, early, in and late are counted (their windows closed at START + 5d),
    # the leaver is not (no window). Treatment 1 of 3, holdout 1 of 3: rates 1/3 each, lift 0; revenue per
    # counted entry 30 / 3 = 10.00 in each arm.
    report = journey_report(world.store, "nurture", us(START + 5 * DAY))
    assert (report.entries, report.matured, report.left_before_first_send) == (8, 6, 2)
    assert report.lift is not None
    by_arm = {a.name: a for a in report.lift.arms}
    assert (by_arm["treatment"].n, by_arm["treatment"].conversions) == (3, 1)
    assert (by_arm["holdout"].n, by_arm["holdout"].conversions) == (3, 1)
    assert by_arm["treatment"].rate == pytest.approx(1 / 3) and by_arm["holdout"].rate == pytest.approx(1 / 3)
    assert by_arm["treatment"].revenue_per_customer == pytest.approx(10.0)
    comparison = report.lift.comparison()
    assert comparison is not None and comparison.to_dict()["absolute"] == pytest.approx(0.0)
    data = report.to_dict()
    assert data["goal"]["from"] == "first_send" and data["goal"]["words"] == (
        "purchase within 3d of the first send"
    )
    assert (data["still_in_window"], data["left_before_first_send"]) == (0, 2)
    text = format_table(report)
    assert "goal: purchase within 3d of the first send, revenue from amount" in text
    assert "entries counted: 6 whose goal window has closed" in text
    assert (
        "(left out: 0 still inside it or not yet sent to, 2 that left before any send and so had no goal"
        in text
    )
    # An hour earlier no window has closed yet: nothing is counted.
    early = journey_report(world.store, "nurture", us(START + 5 * DAY - HOUR))
    assert early.matured == 0 and early.lift is None

    # why, status (the funnel) and the diagram say where the window starts.
    story = explain(world.store, t_in)
    (entry,) = story.entries
    assert (
        entry.finish_words
        == "reached the goal: purchase of 30.00 on 2024-05-08 (within 3d of the first send)"
    )
    assert entry.conversion is not None and entry.conversion.window == "within 3d of the first send"
    assert story.conversions[0].window == "within 3d of the first send"
    funnel = journey_funnel(world.store, "nurture")
    assert funnel.goal == "purchase within 3d of the first send"
    assert "  goal: purchase within 3d of the first send" in funnel_lines(funnel)
    plan = world.engine.workspace.plans[0]
    assert "goal purchase within 3d of the first send" in plan.diagram("mermaid")


def test_a_condition_goal_converts_at_the_first_tick_it_holds_in_both_arms(world: World) -> None:
    (t_before, t_mid, t_late, t_one), (h_before, h_mid, h_late, h_one) = arms("activation", 4, 4)
    everyone = [t_before, t_mid, t_late, t_one, h_before, h_mid, h_late, h_one]
    set_up(world, "activation", CONDITION, everyone)
    world.add_events(
        # Already true at entry: converts at the entry tick, START.
        *[event(c, "create_project", START - 2 * HOUR) for c in (t_before, h_before) for _ in range(2)],
        # The second project at START + 2d 30m: the tick of START + 2d 1h is the first to see it.
        *[event(c, "create_project", START + DAY) for c in (t_mid, h_mid)],
        *[event(c, "create_project", START + 2 * DAY + timedelta(minutes=30)) for c in (t_mid, h_mid)],
        # Both projects at START + 3d 30m: the window [START, START + 3d) has closed by the next tick.
        *[event(c, "create_project", START + 3 * DAY + timedelta(minutes=30)) for c in (t_late, h_late)],
        *[event(c, "create_project", START + 3 * DAY + timedelta(minutes=40)) for c in (t_late, h_late)],
        # One project only: the condition never holds.
        *[event(c, "create_project", START + DAY) for c in (t_one, h_one)],
    )
    world.run_until(START + 4 * DAY)

    converted = by_customer(
        world,
        "SELECT c.id, v.converted_us FROM conversions v JOIN customers c ON c.key = v.customer_key",
    )
    assert converted == {
        t_before: us(START),
        h_before: us(START),
        t_mid: us(START + 2 * DAY + HOUR),
        h_mid: us(START + 2 * DAY + HOUR),
    }
    holdout = dict(
        world.rows("SELECT c.id, v.holdout FROM conversions v JOIN customers c ON c.key = v.customer_key")
    )
    assert not holdout[t_mid] and holdout[h_mid]
    # The goal ends the journey: the early converters never got the nudge (START + 1d).
    assert {m.customer_id for m in world.messages()} == {t_mid, t_late, t_one}
    reasons = {i.customer: i.reason for i in world.instances() if i.status == "converted"}
    assert reasons == dict.fromkeys((t_before, h_before, t_mid, h_mid), "goal: count(create_project) >= 2")

    # The report at START + 4d: every window closed at START + 3d. Per arm 2 of 4 converted.
    report = journey_report(world.store, "activation", us(START + 4 * DAY))
    assert report.goal_condition == "count(create_project) >= 2" and report.goal_event is None
    assert report.lift is not None
    assert [(a.name, a.n, a.conversions) for a in report.lift.arms] == [
        ("treatment", 4, 2),
        ("holdout", 4, 2),
    ]
    assert "goal: count(create_project) >= 2 within 3d of entry" in format_table(report)
    # CUPED needs the goal's events before entry: a condition goal has none, so it is left off.
    adjusted = journey_report(world.store, "activation", us(START + 4 * DAY), cuped=True)
    assert adjusted.cuped is False and any("CUPED is left off" in w for w in adjusted.warnings)

    story = explain(world.store, h_mid)
    assert story.entries[0].finish_words == "reached the goal: count(create_project) >= 2 on 2024-05-08"
    assert story.conversions[0].condition == "count(create_project) >= 2"
    assert story.conversions[0].arm == "holdout"


def test_a_condition_goal_from_the_first_send_waits_for_it(world: World) -> None:
    """With ``from: first_send`` a condition already true opens no window until the first send; the tick
    that sends looks for conversions before it steps, so the first tick that can convert is the next."""
    source = CONDITION.replace("within: 3d}", "within: 3d, from: first_send}").replace(
        "id: activation", "id: act"
    )
    (t_before,), (h_before,) = arms("act", 1, 1)
    set_up(world, "act", source, [t_before, h_before])
    world.add_events(
        *[event(c, "create_project", START - 2 * HOUR) for c in (t_before, h_before) for _ in range(2)]
    )
    world.run_until(START + 2 * DAY)
    converted = by_customer(
        world,
        "SELECT c.id, v.converted_us FROM conversions v JOIN customers c ON c.key = v.customer_key",
    )
    assert converted == {t_before: us(START + DAY + HOUR), h_before: us(START + DAY + HOUR)}
    assert [m.customer_id for m in world.messages()] == [t_before]
