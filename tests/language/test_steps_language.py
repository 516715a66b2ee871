"""The step vocabulary in the journey language: each new shape compiles, and each mistake is reported as
file:line:column with a message a marketer can act on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.engine._workspace import validate_paths
from orchestrator.language import SpecError, compile_journey, load_journey_text
from orchestrator.language._plan import NO_STATE

BASE = """\
id: demo
version: 2
priority: 3
entry: {event: add_to_cart, key: cart_id}
holdout: 10
steps:
  - id: bought
    wait_for: {event: purchase, match: {cart_id: entry.cart_id}, timeout: 4h, then: exit}
  - id: coin
    split: {a: 50, b: 50}
  - id: a
    wait_until: {time: "10:00", weekdays: [mon, fri]}
  - exit
  - id: b
    wait_until: {attribute: renewal_at, offset: -7d, missing: exit}
  - branch: {if: bought.score <= 6 and entry.total > 100, then: a}
migrate: {from_version: 1, states: {old: a}}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_journey_text(textwrap.dedent(text), "j.yaml")
    return [str(p) for p in info.value.problems]


def test_new_step_kinds_compile_to_one_table() -> None:
    plan = compile_journey(load_journey_text(BASE, "j.yaml").journey)
    assert plan.priority == 3
    assert plan.entry.kind == "event" and plan.entry.key == "cart_id"
    assert plan.triggers[-2:] == ("split-0", "split-1")
    code = plan.code
    assert plan.table[code("bought"), plan.trigger("yes")] == code("exited")
    assert plan.table[code("bought"), plan.trigger("no")] == code("coin")
    assert plan.table[code("coin"), plan.trigger("split-0")] == code("a")
    assert plan.table[code("coin"), plan.trigger("split-1")] == code("b")
    assert plan.table[code("b"), plan.trigger("no")] == code("exited")  # the date is missing
    assert plan.table[code("a"), plan.trigger("yes")] == NO_STATE
    a = plan.steps[code("a")]
    assert (a.time_of_day_s, a.weekdays, a.default_timezone) == (36000, (0, 4), "UTC")
    assert plan.steps[code("b")].offset_us == -7 * 86400 * 1_000_000
    branch = plan.steps[-1]
    assert branch.instance_names == {"bought.score", "entry.total"}
    assert plan.captures == {"bought": {"score"}}
    assert plan.event_properties() == {"cart_id", "score"}
    assert [(m.from_version, m.states) for m in plan.migrations] == [(1, {"old": "a"})]
    assert not any(s.in_cycle for s in plan.steps)  # no step can be reached twice


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("timeout: 4h", "timout: 4h"), "j.yaml:8:66: unknown key 'timout'; did you mean 'timeout'?"),
        (
            ("{a: 50, b: 50}", "{a: 50, b: 40}"),
            "j.yaml:10:12: steps[1].split: split percents must add up to 100",
        ),
        (('"10:00"', '"25:00"'), "j.yaml:12:24: steps[2].wait_until.time: '25:00' is not a time of day"),
        (("weekdays: [mon, fri]", "weekdays: [mon, fry]"), "j.yaml:12:49: steps[2].wait_until.weekdays[1]"),
        (
            ('{time: "10:00", weekdays: [mon, fri]}', '{time: "10:00", default_timezone: Mars/Base}'),
            "j.yaml:12:51: steps[2].wait_until.default_timezone: 'Mars/Base' is not an IANA time zone",
        ),
        (("offset: -7d", "offset: 7"), "j.yaml:15:49: steps[4].wait_until.offset: 7 is not a duration"),
        (("missing: exit", "missing: nowhere"), "j.yaml:15:63: no step with id 'nowhere'"),
        (("then: exit}", "then: exit, else: nop}"), "j.yaml:8:97: no step with id 'nop'"),
        (("if: bought.score", "if: purchase.amount"), "j.yaml:16:18: purchase.amount is an event property"),
        (("states: {old: a}", "states: {old: zz}"), "j.yaml:17:42: no step with id 'zz' in version 2"),
        (("from_version: 1", "from_version: 2"), "j.yaml:17:25: migrate can only move instances of versions"),
        (
            ("entry: {event: add_to_cart, key: cart_id}", "signal: count(x) > 0"),
            "j.yaml:8:50: entry.cart_id: entry.<property> exists only in journeys entered by an event",
        ),
        (
            ("match: {cart_id: entry.cart_id}", "match: {cart_id: [1]}"),
            "j.yaml:8:50: steps[0].wait_for.match.cart_id: expected entry.<property>, metrics.<name>",
        ),
        (
            ("match: {cart_id: entry.cart_id}", "match: {cart_id: metrics.cart}"),
            "j.yaml:8:50: metrics.cart: not a metric of this journey (declared: none)",
        ),
        (
            ("- branch: {if: bought.score <= 6 and entry.total > 100,", "- branch: {if: x > 1, event: x,"),
            "j.yaml:16:13: steps[5].branch: a branch needs either if: <condition> or event: <event name>",
        ),
        (
            ("holdout: 10\n", "holdout: 10\nexit_when: entry.cart_id == 3\n"),
            "j.yaml:6:12: entry.cart_id: exit_when is evaluated per customer",
        ),
        (
            ("holdout: 10\n", "holdout: 10\nsignal: x > 0\n"),
            "j.yaml:6:1: signal is given both here and under",
        ),
        (
            ("entry: {event: add_to_cart, key: cart_id}", "entry: {event: add_to_cart, signal: x > 1}"),
            "j.yaml:4:8: entry: an entry is an event or a signal, not both",
        ),
        (("entry: {event: add_to_cart, key: cart_id}\n", ""), "j.yaml:1:1: a journey needs an entry"),
        (("priority: 3", "priority: high"), "j.yaml:3:11: priority: expected a whole number, got str 'high'"),
        (("wait_for: {", "wait_fr: {"), "j.yaml:8:5: unknown key 'wait_fr'; did you mean 'wait_for'?"),
    ],
)
def test_mistakes_in_the_new_shapes_name_their_place(change: tuple[str, str], expected: str) -> None:
    problems = errors(BASE.replace(*change))
    assert any(p.startswith(expected) for p in problems), problems


def test_a_loop_through_a_date_wait_is_a_loop_without_a_wait() -> None:
    looping = BASE.replace(
        "  - exit\n  - id: b", "  - id: c\n    branch: {if: x > 0, then: b}\n  - id: b"
    ).replace("then: a}", "then: c}")
    assert errors(looping) == [
        "j.yaml:15:5: these steps loop without a wait: b -> step-6 -> c -> b (a wait for a date lets a "
        "past date through at once; to wait for the next one, write every: year or every: month at b)"
    ]


def test_templates_see_entry_and_wait_for_events_only_where_they_exist(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.txt").write_text("{{ entry.cart_id }} {{ bought.score }} {{ reply.x }}\n")
    journey = textwrap.dedent(
        """\
        id: t
        version: 1
        entry: {event: add_to_cart, key: cart_id}
        holdout: 0
        steps:
          - id: bought
            wait_for: {event: purchase, timeout: 1h}
          - send: {channel: sms, template: t.txt}
        """
    )
    (tmp_path / "j.yaml").write_text(journey)
    _, problems = validate_paths([tmp_path / "j.yaml"])
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'j.yaml'}:8:36: template 't.txt' line 1: undefined variable 'reply' (templates can "
        "use bought, customer, entry, journey, links, metrics)"
    ]
    (tmp_path / "j.yaml").write_text(
        journey.replace("entry: {event: add_to_cart, key: cart_id}", "signal: x > 0")
    )
    _, problems = validate_paths([tmp_path / "j.yaml"])
    assert any("entry exists only in journeys entered by an event" in str(p) for p in problems)
