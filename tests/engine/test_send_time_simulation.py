"""The simulated shop of ``orchestrator.demo._timing``, small: with customers who read at their own hours
and prefer a channel (declared before the policy), the engine's report shows best time beating the share
sent at once, and best channel beating one fixed channel, with intervals above zero; the same shop without
that structure shows no gain (the intervals cover zero)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.demo._timing import ResponseModel, simulate_send_channel, simulate_send_time
from orchestrator.store import sqlite_url


@pytest.mark.parametrize("structured", [True, False])
def test_best_time_beats_sending_at_once_only_when_customers_read_at_their_own_hours(
    tmp_path: Path, structured: bool
) -> None:
    run = simulate_send_time(tmp_path, 1000, seed=1, model=ResponseModel(structured=structured))
    (policy,) = run.report.send_policies
    assert policy.step == "offer" and policy.compare_percent == 50
    comparison = policy.comparison()
    assert comparison is not None and comparison.lift is not None
    assert (comparison.arm, comparison.control) == ("best_time", "immediate")
    interval = comparison.lift.absolute_ci
    assert interval is not None
    # Both policies got about half of the treated entries (the hash), and the split check agrees.
    assert abs(run.sent["best_time"] - run.sent["immediate"]) < 0.15 * sum(run.sent.values())
    assert policy.analysis.srm is not None and not policy.analysis.srm.flagged
    if structured:
        # The engine found the reading windows: most best-time messages arrived in them.
        assert run.in_window["best_time"] > 0.8 * run.sent["best_time"]
        assert run.in_window["immediate"] < 0.2 * run.sent["immediate"]
        assert interval.low > 0
    else:
        assert interval.low < 0 < interval.high


@pytest.mark.parametrize("structured", [True, False])
def test_best_channel_beats_one_fixed_channel_only_when_customers_prefer_a_channel(
    tmp_path: Path, structured: bool
) -> None:
    run = simulate_send_channel(tmp_path, 1000, seed=1, model=ResponseModel(structured=structured))
    (policy,) = run.report.send_policies
    assert (policy.step, policy.choice, policy.control) == ("offer", "channel", "fixed:email")
    comparison = policy.comparison()
    assert comparison is not None and comparison.lift is not None
    assert comparison.arm == "best_channel"
    interval = comparison.lift.absolute_ci
    assert interval is not None
    assert policy.analysis.srm is not None and not policy.analysis.srm.flagged
    if structured:
        # More best-channel messages went on the customer's preferred channel than fixed ones (email is
        # preferred by 40%).
        share_best = run.in_window["best_channel"] / run.sent["best_channel"]
        share_fixed = run.in_window["fixed:email"] / run.sent["fixed:email"]
        assert share_best > share_fixed + 0.15
        assert interval.low > 0
    else:
        assert interval.low < 0 < interval.high


def test_the_report_command_shows_the_send_policy_in_text_json_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulate_send_time(tmp_path, 300, seed=2, model=ResponseModel())
    db = sqlite_url(tmp_path / "send_time.db")
    assert main(["report", "send_time", "--db", db, "--format", "json"]) == 0
    (policy,) = json.loads(capsys.readouterr().out)["send_policy"]
    assert (policy["step"], policy["choice"], policy["control"], policy["compare_percent"]) == (
        "offer",
        "time",
        "immediate",
        50,
    )
    (metric,) = policy["metrics"]
    counts = {arm["name"]: arm["n"] for arm in metric["arms"]}
    assert set(counts) == {"best_time", "immediate"} and sum(counts.values()) > 200
    (comparison,) = metric["comparisons"]
    assert comparison["arm"] == "best_time" and len(comparison["absolute_ci"]) == 2
    assert main(["report", "send_time", "--db", db]) == 0
    text = capsys.readouterr().out
    assert "Send policy at step offer (treated entries counted; 50% sent at once for comparison):" in text
    assert "best_time vs immediate:" in text
    assert main(["report", "send_time", "--db", db, "--format", "html"]) == 0
    assert "<h2>Send policy at step offer</h2>" in capsys.readouterr().out
