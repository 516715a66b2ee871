"""The report charts' axes fit their data (``measure._svg``): the estimates and 95% intervals always show,
within the range the figure can take; wide always-valid intervals are cut at the edge, and said to be."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from orchestrator.measure._formats import axis_label, lift_formatter
from orchestrator.measure._html import _Row, dot_whisker_svg, timeline_svg
from orchestrator.measure._numbers import Interval
from orchestrator.measure._svg import decimals, fit_axis, tick_label
from orchestrator.measure._timeline import TimelinePoint


def test_the_axis_holds_the_core_values_inside_the_limits() -> None:
    axis = fit_axis([0.02, 0.05, 0.31], limits=(0.0, 1.0))
    assert axis.low <= 0.02 and axis.high >= 0.31
    assert axis.low >= 0.0 and axis.high <= 1.0
    # Round ticks inside the axis, evenly spaced.
    assert all(axis.low <= t <= axis.high for t in axis.ticks)
    gaps = {round(b - a, 12) for a, b in itertools.pairwise(axis.ticks)}
    assert gaps == {round(axis.step, 12)}


def test_a_wide_interval_is_cut_at_one_core_span_beyond_the_core() -> None:
    core = [0.10, 0.20, 0.30]  # span 0.2
    axis = fit_axis(core, [-3.0, 4.0], include_zero=True)  # always-valid, far beyond
    assert axis.clipped
    # Zero joins the core: span 0.3, so the wide values reach to -0.3 and +0.6, then 8% padding.
    assert axis.low == pytest.approx(-0.3 - 0.9 * 0.08)
    assert axis.high == pytest.approx(0.6 + 0.9 * 0.08)
    assert axis.cut(-3.0) and axis.cut(4.0) and not axis.cut(0.25)
    near = fit_axis(core, [0.05, 0.35])
    assert not near.clipped and near.low < 0.05 and near.high > 0.35


def test_limits_cut_even_the_core_and_the_padding() -> None:
    # A rate difference cannot pass +-100 points, whatever an interval says.
    axis = fit_axis([0.5, 0.9, 1.3], limits=(-1.0, 1.0))
    assert axis.high == 1.0
    axis = fit_axis([0.0, 0.0], limits=(0.0, 1.0))
    assert axis.low == 0.0 and axis.high > 0.0
    empty = fit_axis([], limits=(-100.0, 100.0))
    assert math.isfinite(empty.low) and math.isfinite(empty.high) and empty.high > empty.low


def test_tick_labels_carry_the_decimals_their_step_needs() -> None:
    assert decimals(20) == 0 and decimals(2.5) == 1 and decimals(0.25) == 2
    assert tick_label(0.2, 0.2, scale=100, signed=True, suffix=" pts") == "+20 pts"
    assert tick_label(0.0, 0.2, scale=100, signed=True, suffix=" pts") == "0 pts"
    assert tick_label(0.025, 0.025, scale=100, suffix="%") == "2.5%"
    assert tick_label(1000, 250) == "1,000"
    assert axis_label("rate", signed=True)(-0.4, 0.2) == "-40 pts"


def _tick_values(svg: str, suffix: str) -> list[float]:
    return [float(v) for v in re.findall(r">([+-]?[\d.]+)" + re.escape(suffix) + "<", svg)]


def test_a_lift_chart_shows_its_interval_and_cuts_the_always_valid_bar() -> None:
    row = _Row("treatment", 0.28, Interval(0.02, 0.38), Interval(-0.9, 2.0), "#2563eb")
    svg = dot_whisker_svg(
        "lift", [row], lift_formatter("rate", ".4f"), zero_line=True,
        axis_label=axis_label("rate", signed=True), limits=(-1.0, 1.0),
    )  # fmt: skip
    ticks = _tick_values(svg, " pts")
    assert ticks and min(ticks) <= 2 and max(ticks) >= 30  # the 95% interval lies within the ticks' range
    assert max(ticks) <= 100  # never past +100 points
    assert "cut at the edge" in svg
    plain = dot_whisker_svg(
        "lift", [_Row("t", 0.28, Interval(0.02, 0.38), Interval(-0.05, 0.5), "#000")],
        lift_formatter("rate", ".4f"), zero_line=True, limits=(-1.0, 1.0),
    )  # fmt: skip
    assert "cut at the edge" not in plain


def test_the_timeline_fits_the_estimates_not_the_first_days_wide_band() -> None:
    points = [
        TimelinePoint(
            day=f"2024-03-{d:02d}", n_treatment=50 * d, n_holdout=5 * d, rate_treatment=0.1,
            rate_holdout=0.05, absolute=0.05,
            ci=Interval(0.0, 0.1), always_valid_ci=Interval(-0.5 / d, 0.6 / d),
        )
        for d in range(1, 15)
    ]  # fmt: skip
    svg = timeline_svg(points, "lift")
    ticks = _tick_values(svg, " pts")
    # The core spans 0 to 10 points: the axis reaches at most one core span (10 points) beyond it.
    assert max(ticks) <= 20 and min(ticks) >= -10
    assert "cut at the chart's edge" in svg
    # Date labels stand apart: no two label x positions closer than 80 px.
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="\w+">2024-03-\d\d<', svg)]
    assert len(xs) >= 4 and all(b - a >= 80 for a, b in itertools.pairwise(xs))
    assert "2024-03-14" in svg  # the last day is always labelled
