"""The simulated shop of ``orchestrator.demo._timing``, small: with customers who read at their own hours
and prefer a channel (declared before the policy), the engine's report shows best time beating the share
sent at once, and best channel beating one fixed channel, with intervals above zero; the same shop without
that structure shows no gain (the intervals cover zero)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.demo._timing import ResponseModel, simulate_send_channel, simulate_send_time


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
