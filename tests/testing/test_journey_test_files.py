"""Journey test files (``*.test.yaml``): a passing file, a wrong expectation with its exact message, a
malformed file next to good ones, coverage gaps, the shipped examples, and pytest collecting the files."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.testing import T0, read_test_file, run_journey_tests, write_files
from orchestrator.testing._test_files import format_offset, relative_time

ROOT = Path(__file__).resolve().parents[2]

CART = """\
id: cart
version: 1
signal: since(add_to_cart) <= 1d and since(purchase) >= since(add_to_cart)
holdout: 10
steps:
  - wait: 2h
  - id: bought
    branch:
      if: count(wishlist_add) > 0
      then: exit
  - id: reminder
    send: {channel: email, subject: "Your cart", template: reminder.txt}
goal: {event: purchase, within: 3d, revenue: amount}
"""

PASSING = """\
journey: cart
tick: 1h
run: 1d
holdout: 0
customers:
  ann: {first_name: Ann}
  bob: {first_name: Bob, consent_email: false}
  cyd: {first_name: Cyd}
events:
  - {customer: [ann, bob, cyd], event: add_to_cart, at: +0h}
  - {customer: cyd, event: wishlist_add, at: -1d}
  - {customer: ann, event: purchase, at: +5h, amount: 40}
expect:
  - {customer: ann, enters: true, arm: treatment, at: +1h}
  - {customer: ann, sent: {step: reminder, channel: email, at: +3h, contains: "Hi Ann"}}
  - {customer: ann, converted: {revenue: 40, at: +5h}}
  - {customer: ann, exits: completed}
  - {customer: bob, suppressed: {step: reminder, reason: no consent}}
  - {customer: bob, sent: false}
  - {customer: cyd, exits: {step: bought, answer: yes}}
"""


def workspace(folder: Path, tests: dict[str, str]) -> Path:
    write_files(
        folder, {"journeys/cart.yaml": CART, "templates/reminder.txt": "Hi {{ customer.first_name }}"}
    )
    write_files(folder, {f"journeys/{name}": text for name, text in tests.items()})
    return folder / "journeys"


def test_a_file_whose_expectations_hold_passes_and_covers_every_path(tmp_path: Path) -> None:
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": PASSING})])
    assert [(c.name, c.failures) for c in report.cases] == [("cart", [])]
    assert report.cases[0].ticks == 25
    assert report.gaps == [] and report.untested == []
    assert report.transitions == {"cart": (5, 5)}  # 4 transitions and the goal
    assert report.ok(require_coverage=True)


def test_a_wrong_expectation_fails_with_its_line_the_expected_and_the_found(tmp_path: Path) -> None:
    wrong = PASSING.replace('at: +3h, contains: "Hi Ann"', 'at: +2h, within: 30m, contains: "Hello Ann"')
    journeys = workspace(tmp_path, {"cart.test.yaml": wrong})
    report = run_journey_tests([journeys])
    assert report.failed == 1
    [failure] = report.cases[0].failures
    assert str(failure) == (
        f"{journeys / 'cart.test.yaml'}:15: ann: expected a message at step 'reminder' (email) at +2h ±30m "
        'containing "Hello Ann"; found: email at step \'reminder\' at +3h ("Hi Ann")'
    )
    assert not report.ok()


def test_a_held_out_customer_is_explained(tmp_path: Path) -> None:
    text = PASSING.replace("holdout: 0\n", "holdout: 100\n")
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": text})])
    messages = [f.message for f in report.cases[0].failures]
    assert messages[0] == (
        "ann: expected to enter at +1h in the treatment arm; found: entered at +1h (holdout arm) (the "
        "published holdout hash holds this id out: choose another id, or set holdout: 0)"
    )
    assert (
        "ann: expected a message at step 'reminder' (email) at +3h containing \"Hi Ann\"; found: the "
        in (messages[1])
    )
    assert "holdout arm" in messages[1]


def test_every_kind_of_failure_reads_as_expected_and_found(tmp_path: Path) -> None:
    text = PASSING.split("expect:\n")[0] + (
        "expect:\n"
        "  - {customer: bob, enters: false}\n"
        "  - {customer: ann, exits: goal}\n"
        "  - {customer: cyd, converted: true}\n"
        "  - {customer: ann, suppressed: {reason: cap}}\n"
        "  - {customer: cyd, still_in: reminder}\n"
        "  - {customer: ann, sent: {step: reminder, count: 2}}\n"
    )
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": text})])
    assert [(f.line, f.message) for f in report.cases[0].failures] == [
        (14, "bob: expected not to enter; found: entered at +1h (treatment arm)"),
        (15, "ann: expected to leave on reaching the goal; found: completed the journey at +3h"),
        (16, "cyd: expected a conversion; found: no conversion"),
        (
            17,
            "ann: expected a suppressed message for a reason containing 'cap'; found: nothing suppressed; "
            "email at step 'reminder' at +3h (\"Hi Ann\")",
        ),
        (
            18,
            "cyd: expected to be still inside at step 'reminder'; found: exited at +3h (branch bought: yes)",
        ),
        (
            19,
            "ann: expected 2 message(s) at step 'reminder'; found: 1: email at step 'reminder' at +3h "
            '("Hi Ann")',
        ),
    ]


def test_a_malformed_file_is_reported_at_its_lines_and_the_others_still_run(tmp_path: Path) -> None:
    broken = (
        "journey: cart\n"
        "run: 1d\n"
        "customers:\n"
        "  ann: {}\n"
        "expect:\n"
        "  - {customer: ann, sent: {step: reminder, chanel: email}}\n"
        "  - {customer: anne, enters: true}\n"
        "  - {customer: ann, exits: gaol}\n"
    )
    journeys = workspace(tmp_path, {"a_broken.test.yaml": broken, "cart.test.yaml": PASSING})
    report = run_journey_tests([journeys])
    assert [c.passed for c in report.cases] == [False, True]
    file = journeys / "a_broken.test.yaml"
    assert [str(f) for f in report.cases[0].failures] == [
        f"{file}:6:44: sent: unknown key 'chanel'; did you mean 'channel'?",
        f"{file}:7:16: customer 'anne' is not among the test's customers; did you mean 'ann'?",
        f"{file}:8:28: exits: 'gaol' is not one of goal, exit_when, completed; did you mean 'goal'? (for a "
        "step or a reason: exits: {step: ..., answer: yes} or exits: {reason: ...})",
    ]


def test_unknown_steps_and_journeys_are_named_with_a_suggestion(tmp_path: Path) -> None:
    text = PASSING.replace("{step: reminder, channel", "{step: remindr, channel").replace(
        "journey: cart\n", "journey: cart\nstart: 2024-05-06T09:00:00Z\n"
    )
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": text})])
    assert [f.message for f in report.cases[0].failures] == [
        "no step 'remindr' in cart; did you mean 'reminder'?"
    ]
    report = run_journey_tests(
        [workspace(tmp_path, {"cart.test.yaml": PASSING.replace("journey: cart", "journey: crt")})]
    )
    assert [f.message for f in report.cases[0].failures] == [
        "no journey 'crt' beside the test file; did you mean 'cart'?"
    ]


def test_coverage_names_the_paths_no_test_took(tmp_path: Path) -> None:
    one_path = PASSING.split("expect:\n")[0].replace(
        "  - {customer: cyd, event: wishlist_add, at: -1d}\n", ""
    )
    one_path += "expect:\n  - {customer: ann, sent: {step: reminder}}\n"
    one_path = one_path.replace("  - {customer: ann, event: purchase, at: +5h, amount: 40}\n", "")
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": one_path})])
    assert report.failed == 0
    assert [str(g) for g in report.gaps] == [
        "not covered: cart bought -> exited (yes)",
        "not covered: cart: goal purchase never reached",
    ]
    assert report.transitions == {"cart": (3, 5)}
    assert report.ok() and not report.ok(require_coverage=True)
    waived = one_path + "unreachable:\n  - {step: bought, answer: yes, why: nobody wishes}\n"
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": waived})])
    assert [str(g) for g in report.gaps] == ["not covered: cart: goal purchase never reached"]


def test_several_cases_share_the_top_level_and_keep_their_own_lines(tmp_path: Path) -> None:
    text = (
        "journey: cart\nrun: 4h\nholdout: 0\ncustomers:\n  ann: {first_name: Ann}\n"
        "events:\n  - {customer: ann, event: add_to_cart, at: +0h}\n"
        "tests:\n"
        "  - name: reminded\n"
        "    expect:\n      - {customer: ann, sent: {step: reminder}}\n"
        "  - name: wished\n"
        "    events:\n      - {customer: ann, event: wishlist_add, at: -1h}\n"
        "    expect:\n      - {customer: ann, sent: {step: reminder}}\n"
    )
    report = run_journey_tests([workspace(tmp_path, {"cart.test.yaml": text})])
    assert [(c.name, c.line, c.passed) for c in report.cases] == [
        ("reminded", 9, True),
        ("wished", 12, False),
    ]
    assert [str(f) for f in report.cases[1].failures] == [
        f"{tmp_path / 'journeys' / 'cart.test.yaml'}:16: ann: expected a message at step 'reminder'; found: "
        "no message was sent; the customer exited at +3h (branch bought: yes)"
    ]


def test_times_are_written_relative_to_the_start() -> None:
    assert relative_time("+2h", T0) == T0 + timedelta(hours=2)
    assert relative_time("-30d", T0) == T0 - timedelta(days=30)
    assert relative_time("+1d 2h30m", T0) == T0 + timedelta(days=1, hours=2, minutes=30)
    assert relative_time(0, T0) == T0
    assert relative_time("2024-05-02T09:00:00Z", T0) == T0 + timedelta(days=1)
    with pytest.raises(ValueError, match="not a time"):
        relative_time("tomorrow", T0)
    assert format_offset(T0 + timedelta(days=1, minutes=90), T0) == "+1d1h30m"
    assert format_offset(T0 - timedelta(hours=3), T0) == "-3h"


def test_the_reader_keeps_each_expectation_line(tmp_path: Path) -> None:
    journeys = workspace(tmp_path, {"cart.test.yaml": PASSING})
    [case] = read_test_file(journeys / "cart.test.yaml").cases
    assert [e.line for e in case.expectations] == list(range(14, 21))
    assert [e.kind for e in case.expectations][:3] == ["enters", "sent", "converted"]
    assert len(case.events) == 5 and case.events[0].at == T0 - timedelta(days=1)


def test_the_shipped_journeys_pass_their_tests_and_cover_every_path() -> None:
    paths = [ROOT / "examples", ROOT / "journeys", ROOT / "orchestrator" / "config" / "scaffold" / "journeys"]
    report = run_journey_tests(paths)
    assert [str(f) for c in report.cases for f in c.failures] == []
    assert report.gaps == [] and report.untested == []
    assert len(report.transitions) == 20  # 11 examples, 5 reference signals, 3 bundled, the welcome journey


def test_pytest_collects_each_case_and_shows_the_same_failure(tmp_path: Path) -> None:
    wrong = PASSING.replace("revenue: 40, at: +5h", "revenue: 45, at: +5h")
    text = "tests:\n  - name: right\n" + _indent(PASSING) + "  - name: wrong\n" + _indent(wrong)
    workspace(tmp_path, {"cart.test.yaml": text})
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "journeys"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PASSED journeys/cart.test.yaml::right" in done.stdout
    assert "FAILED journeys/cart.test.yaml::wrong" in done.stdout
    assert (
        "ann: expected a conversion at +5h with revenue 45; found: converted at +5h (revenue 40)"
        in done.stdout
    )
    assert "1 failed, 1 passed" in done.stdout


def _indent(case: str) -> str:
    return "".join(f"    {line}\n" for line in case.splitlines())
