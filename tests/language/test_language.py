"""The journey language: YAML traps, schema errors with locations, expression errors, plans."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from orchestrator.language import SpecError, compile_journey, load_journey_text
from orchestrator.language._plan import NO_STATE, TRIGGERS
from orchestrator.language._yamlio import load_yaml

GOOD = """\
id: demo
version: 1
metrics:
  recent: count(session_start, within=14d)
signal: recent == 0
holdout: 10
steps:
  - id: hello
    send: {channel: email, subject: "Hi", template: a.txt}
  - wait: 2d
  - id: check
    branch:
      if: since(session_start) < 2d
      then: exit
  - send: {channel: sms, template: b.txt}
goal: {event: purchase, within: 7d, revenue: amount}
reentry: {cooldown: 30d}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_journey_text(textwrap.dedent(text), "j.yaml")
    return [str(p) for p in info.value.problems]


def test_yaml_11_traps_keep_their_meaning() -> None:
    data, _ = load_yaml("country: NO\nanswer: no\ntime: 12:30\nzip: 010\nflag: yes\nok: true\n", "x.yaml")
    assert data == {"country": "NO", "answer": "no", "time": "12:30", "zip": 10, "flag": "yes", "ok": True}


def test_locations_are_recorded_for_keys_and_values() -> None:
    _, locs = load_yaml("a:\n  b: [1, 2]\n  c: 'x'\n", "x.yaml")
    assert (locs.values[("a", "b", 1)].line, locs.values[("a", "b", 1)].column) == (2, 10)
    assert (locs.keys[("a", "c")].line, locs.keys[("a", "c")].column) == (3, 3)
    assert locs.values[("a", "c")].style == "'"


def test_good_journey_compiles_to_a_transition_table() -> None:
    loaded = load_journey_text(GOOD, "j.yaml")
    plan = compile_journey(loaded.journey, "j.yaml")
    assert plan.states == ["hello", "step-2", "check", "step-4", "completed", "exited", "converted"]
    nxt, yes, no, goal = (TRIGGERS.index(t) for t in ("next", "yes", "no", "goal"))
    assert plan.table[plan.code("hello"), nxt] == plan.code("step-2")
    assert plan.table[plan.code("check"), yes] == plan.code("exited")
    assert plan.table[plan.code("check"), no] == plan.code("step-4")
    assert plan.table[plan.code("step-4"), nxt] == plan.code("completed")
    assert plan.table[plan.code("hello"), yes] == NO_STATE
    assert np.all(plan.table[: len(plan.steps), goal] == plan.code("converted"))
    assert plan.steps[1].wait_us == 2 * 86400 * 1_000_000
    assert plan.reentry_cooldown_us() == 30 * 86400 * 1_000_000


def test_digest_ignores_comments_and_layout_but_not_meaning() -> None:
    a = compile_journey(load_journey_text(GOOD, "j.yaml").journey)
    b = compile_journey(
        load_journey_text("# a comment\n" + GOOD.replace("holdout: 10", "holdout:   10"), "j.yaml").journey
    )
    c = compile_journey(load_journey_text(GOOD.replace("holdout: 10", "holdout: 20"), "j.yaml").journey)
    assert a.digest == b.digest != c.digest


def test_typo_key_names_line_column_and_suggestion() -> None:
    problems = errors(GOOD.replace("- send: {channel: sms", "- sned: {channel: sms"))
    assert problems == ["j.yaml:15:5: unknown key 'sned'; did you mean 'send'?"]


def test_wrong_type_names_line_and_column() -> None:
    problems = errors(GOOD.replace("template: b.txt", "template: 12"))
    assert len(problems) == 1
    assert problems[0].startswith("j.yaml:15:36: steps[3].send.template: expected text, got int 12")


def test_bool_field_refuses_yaml11_yes() -> None:
    problems = errors(GOOD.replace("revenue: amount}", "revenue: amount, exit: yes}"))
    assert problems[0].startswith("j.yaml:16:60:") and "expected true or false" in problems[0]


def test_duration_needs_a_unit() -> None:
    problems = errors(GOOD.replace("wait: 2d", "wait: 2"))
    assert problems[0].startswith("j.yaml:10:11:") and "not a duration" in problems[0]


def test_missing_key_and_duplicate_key() -> None:
    assert any("missing required key 'holdout'" in p for p in errors(GOOD.replace("holdout: 10\n", "")))
    problems = errors(GOOD.replace("holdout: 10\n", "holdout: 10\nholdout: 5\n"))
    assert problems == ["j.yaml:7:1: duplicate key 'holdout' (first at line 6)"]


def test_expression_error_points_into_the_expression() -> None:
    problems = errors(GOOD.replace("signal: recent == 0", 'signal: "recent == 0 and cnt(x) > 1"'))
    # the value starts at column 9, the quote adds one, cnt( is at offset 16 of the expression
    assert problems == ["j.yaml:5:26: unknown function cnt(); did you mean count()?"]


def test_unknown_branch_target_and_instant_loop() -> None:
    assert any("no step with id 'nowhere'" in p for p in errors(GOOD.replace("then: exit", "then: nowhere")))
    looping = GOOD.replace("then: exit", "then: hello").replace("  - wait: 2d\n", "")
    assert any("loop without a wait: hello -> check -> hello" in p for p in errors(looping))


def test_metric_cycle_is_reported() -> None:
    text = GOOD.replace("  recent: count(session_start, within=14d)", "  recent: other + 1\n  other: recent")
    assert any("metrics refer to each other in a loop" in p for p in errors(text))


def test_send_fields_must_fit_the_channel() -> None:
    problems = errors(
        GOOD.replace('{channel: email, subject: "Hi", template: a.txt}', "{channel: email, template: a.txt}")
    )
    assert any("an email needs a subject" in p for p in problems)
    problems = errors(
        GOOD.replace("{channel: sms, template: b.txt}", '{channel: sms, template: b.txt, subject: "x"}')
    )
    assert any("subject and html are for email" in p for p in problems)


def test_bad_reentry_gets_one_clear_message() -> None:
    problems = errors(GOOD.replace("reentry: {cooldown: 30d}", "reentry: no"))
    assert problems == [
        "j.yaml:17:10: reentry: expected never, always, after_exit or a mapping "
        "'cooldown: <duration>' (e.g. 60d)"
    ]


def test_yaml_syntax_error_has_location() -> None:
    problems = errors("id: x\nsteps: [a, b\n")
    assert problems[0].startswith("j.yaml:3:1: YAML syntax")


def test_custom_tags_are_refused() -> None:
    problems = errors(GOOD.replace("id: demo", "id: !!python/object:os.system demo"))
    assert "tag tag:yaml.org,2002:python/object:os.system is not allowed" in problems[0]


def test_bundled_journeys_and_examples_validate() -> None:
    from orchestrator.engine._workspace import validate_paths

    root = Path(__file__).resolve().parents[2]
    files, problems = validate_paths([root / "journeys", root / "examples"])
    assert len(files) >= 8
    assert problems == []


@pytest.mark.parametrize(
    ("signal", "where"),
    [
        # A folded block: the mistake is on the block's second line, after its four spaces of indent.
        (">-\n    recent == 0\n    and count(purchase, within=this_wek) == 0", "7:32"),
        # A literal block keeps a deeper indent as part of the text.
        ("|\n    recent == 0 and\n      count(purchase, within=this_wek) == 0", "7:30"),
        # A plain scalar continued on the next line.
        ("recent == 0\n    and count(purchase, within=this_wek) == 0", "6:32"),
        # A quoted one.
        ('"recent == 0\n    and count(purchase, within=this_wek) == 0"', "6:32"),
    ],
)
def test_expression_errors_point_inside_multi_line_expressions(signal: str, where: str) -> None:
    text = GOOD.replace("signal: recent == 0", f"signal: {signal}")
    problems = errors(text)
    assert len(problems) == 1 and problems[0].startswith(f"j.yaml:{where}: within= takes"), problems
    line, column = (int(x) for x in where.split(":"))
    assert text.splitlines()[line - 1][column - 1 :].startswith("this_wek")
