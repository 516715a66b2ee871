"""The goal's two new forms in the language: ``from: first_send`` and a condition (``signal:``); what the
loader refuses, each at ``file:line:column`` saying what to write instead, and what stays as it was (a
journey that uses neither keeps its digest, so a store that ran it does not see a changed version)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine._workspace import validate_paths
from orchestrator.language import load_journey_text

ROOT = Path(__file__).resolve().parents[2]

JOURNEY = """\
id: onboard
version: 1
metrics:
  core_actions_done: distinct_events(create_project, invite_teammate, connect_integration)
signal: count(signup) > 0
holdout: 10
steps:
  - wait: 2d
  - send: {channel: email, subject: "Hi", template: mail.txt}
goal: GOAL
"""

CATALOG = """\
events:
  signup: {}
  create_project: {}
  invite_teammate: {}
  connect_integration: {}
  purchase:
    properties: [amount]
"""


def problems(tmp_path: Path, goal: str, catalog: str | None = None) -> list[str]:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "mail.txt").write_text("Hi")
    (tmp_path / "j.yaml").write_text(JOURNEY.replace("GOAL", goal))
    if catalog is not None:
        (tmp_path / "events.yaml").write_text(catalog)
    _, found = validate_paths([tmp_path / "j.yaml"])
    return [str(p).replace(str(tmp_path) + "/", "") for p in found]


def test_both_new_forms_load_and_say_where_the_window_starts() -> None:
    text = JOURNEY.replace("GOAL", '{signal: "core_actions_done >= 3", within: 7d, from: first_send}')
    goal = load_journey_text(text, "j.yaml").journey.goal
    assert goal is not None
    assert (goal.event, goal.signal, goal.start) == (None, "core_actions_done >= 3", "first_send")
    assert (goal.what, goal.window_words) == ("core_actions_done >= 3", "within 7d of the first send")
    default = load_journey_text(JOURNEY.replace("GOAL", "{event: purchase, within: 14d}"), "j.yaml")
    assert default.journey.goal is not None and default.journey.goal.start == "entry"
    assert default.journey.goal.window_words == "within 14d of entry"


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        (
            '{event: purchase, signal: "core_actions_done >= 3", within: 7d}',
            "j.yaml:10:7: goal: a goal is an event or a condition, not both: keep event: (goal: {event: "
            "purchase, within: 14d}) or signal: (goal: {signal: <condition>, within: 7d})",
        ),
        (
            "{within: 7d}",
            "j.yaml:10:7: goal: a goal needs event: <event name> (goal: {event: purchase, within: 14d}) or "
            "signal: <condition> (goal: {signal: <condition>, within: 7d})",
        ),
        (
            '{signal: "core_actions_done >= 3", within: 7d, revenue: amount}',
            "j.yaml:10:7: goal: revenue belongs to an event goal (event: ...), not to a signal goal",
        ),
        (
            "{event: purchase, within: 7d, from: first_message}",
            "j.yaml:10:43: goal.from: Input should be 'entry' or 'first_send'",
        ),
        ('{signal: "core_actions_done >=", within: 7d}', "j.yaml:10:37: the expression ends too early"),
        (
            '{signal: "core_action_done >= 3", within: 7d}',
            "j.yaml:10:17: unknown name 'core_action_done'; did you mean the metric 'core_actions_done'? (a "
            "customer attribute of this name must be listed under attributes: in events.yaml)",
        ),
        (
            '{signal: "entry.plan == 1", within: 7d}',
            "j.yaml:10:17: entry.plan: entry.<property> exists only in journeys entered by an event",
        ),
    ],
)
def test_mistakes_point_at_the_goal_and_say_what_to_write(tmp_path: Path, goal: str, expected: str) -> None:
    assert problems(tmp_path, goal) == [expected]


def test_a_condition_goal_reads_names_the_tracking_plan_checks(tmp_path: Path) -> None:
    assert problems(tmp_path, '{signal: "core_actions_done >= 3", within: 7d}', CATALOG) == []
    assert problems(tmp_path, '{signal: "count(create_projct) > 0", within: 7d}', CATALOG) == [
        "j.yaml:10:23: unknown event 'create_projct': not in events.yaml; did you mean 'create_project'?"
    ]


def test_a_journey_without_the_new_keys_keeps_its_digest() -> None:
    """Digests of the demo's journeys as they were before goals could start at the first send: a store
    that ran them would otherwise refuse them as changed without a new version."""
    from orchestrator.language._plan import digest_of

    def digest(name: str) -> str:
        path = ROOT / "journeys" / name
        return digest_of(load_journey_text(path.read_text(), str(path)).journey)

    assert digest("winback.yaml") == "08ac0a4a0c3d746d"
    assert digest("cart_abandonment.yaml") == "82a09326d1deb851"
    first_send = JOURNEY.replace("GOAL", "{event: purchase, within: 14d, from: first_send}")
    from_entry = JOURNEY.replace("GOAL", "{event: purchase, within: 14d}")
    assert digest_of(load_journey_text(first_send, "a").journey) != digest_of(
        load_journey_text(from_entry, "b").journey
    )
