"""``orchestrator test``: the shipped examples pass, a wrong expectation fails with its file, line, expected
and found, coverage gaps fail under --require-coverage, JSON output, and bad usage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def welcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace made by ``orchestrator init``, with its welcome journey's test file."""
    assert main(["init", str(tmp_path / "shop")]) == 0
    capsys.readouterr()
    return tmp_path / "shop"


def test_the_examples_pass_with_every_path_covered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "test", str(ROOT / "examples"), "--require-coverage")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[-1].startswith("18 passed, 0 failed in ")  # 10 example files (birthday: 4), 5 reference
    assert "coverage: nps_loop: 14 of 14 paths taken" in lines
    assert not [line for line in lines if line.startswith(("FAIL", "not covered", "no tests"))]


def test_a_deliberately_wrong_expectation_fails_with_a_useful_message(
    welcome: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(welcome)
    test_file = welcome / "journeys" / "welcome.test.yaml"
    text = test_file.read_text()
    test_file.write_text(
        text.replace('at: +3d, contains: "ships free"', 'at: +2d, within: 6h, contains: "20% off"')
    )
    code, out, _ = run(capsys, "test")
    assert code == 1
    assert out.splitlines()[1] == (
        "      journeys/welcome.test.yaml:19: ada: expected a message at step 'nudge' at +2d ±6h containing "
        '"20% off"; found: email at step \'hello\' at +0h ("Hi Ada, Thanks for signing up. Everyt..."); '
        "email at step 'nudge' at +3d (\"Hi Ada, Your first order ships free t...\")"
    )
    assert out.splitlines()[0].startswith("FAIL  journeys/welcome.test.yaml:1  welcome  (9 ticks, ")
    assert out.splitlines()[-1].startswith("0 passed, 1 failed in ")


def test_coverage_gaps_fail_only_when_required(welcome: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test_file = welcome / "journeys" / "welcome.test.yaml"
    text = test_file.read_text()
    test_file.write_text(
        text.replace("  - {customer: ben, event: purchase, at: +1d, amount: 25.0}\n", "").replace(
            "  - {customer: ben, converted: {revenue: 25.0, at: +1d}}\n  - {customer: ben, exits: goal}\n", ""
        )
    )
    journeys = str(welcome / "journeys")
    code, out, _ = run(capsys, "test", journeys)
    assert code == 0
    assert "not covered: welcome: goal purchase never reached" in out.splitlines()
    assert out.splitlines()[-1].startswith("1 passed, 0 failed, 1 coverage gap(s) in ")
    code, out, _ = run(capsys, "test", journeys, "--require-coverage", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["passed"] == 1 and report["failed"] == 0
    assert report["not_covered"] == ["welcome: goal purchase never reached"]
    assert report["coverage"] == {"welcome": {"covered": 4, "total": 5}}


def test_a_journey_without_tests_is_a_gap(welcome: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "examples" / "reference" / "r1_recency.yaml", welcome / "journeys" / "r1.yaml")
    (welcome / "templates" / "reference").mkdir()
    (welcome / "templates" / "reference" / "notice.txt").write_text("Hello\n")
    code, out, _ = run(capsys, "test", str(welcome / "journeys"), "--require-coverage")
    assert code == 1 and "no tests: r1_recency" in out.splitlines()


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "test", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere: no such file or folder" in err
    code, _, err = run(capsys, "test", str(tmp_path))
    assert code == 2 and "no journey test files (*.test.yaml) found in" in err
    journey = tmp_path / "x.yaml"
    journey.write_text("id: x\n")
    code, _, err = run(capsys, "test", str(journey))
    assert code == 2 and "is not a journey test file (*.test.yaml)" in err
