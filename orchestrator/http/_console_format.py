"""How the console writes what the core computed: instants, counts, rates, the lift summary of a journey's
report. Formatting only; every figure comes from the engine, measure or store functions."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from orchestrator.clock import parse_instant


def when(value: str | None) -> str:
    """An ISO-8601 instant as ``2024-03-21 20:00 UTC`` (seconds shown when not zero); ``-`` for None."""
    if not value:
        return "-"
    try:
        moment: datetime = parse_instant(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")
    return f"{text} UTC"


def count(value: int | float | None) -> str:
    """A count with thousands separators; ``-`` for None."""
    if value is None:
        return "-"
    return f"{int(value):,}"


def rate(value: float | None, signed: bool = False) -> str:
    """A proportion as a percentage with one decimal (``+`` shown when ``signed``); ``-`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def p_value(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def lift_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the journey page shows of a lift report (``JourneyReport.to_dict()``): the goal, the entries
    counted, each arm's conversion rate, and the conversion-rate lift of treatment over holdout with its
    interval and p-value (None when there is no goal or no comparison yet)."""
    out: dict[str, Any] = {
        "goal": report.get("goal"),
        "entries": report.get("entries", 0),
        "matured": report.get("matured_entries", 0),
        "still_in_window": report.get("still_in_window", 0),
        "left_before_first_send": report.get("left_before_first_send", 0),
        "warnings": report.get("warnings", []),
        "arms": [],
        "lift": None,
    }
    lift = report.get("lift")
    if not lift:
        return out
    out["arms"] = [
        {"name": a["name"], "n": a["n"], "conversions": a["conversions"], "rate": a["rate"]}
        for a in lift["arms"]
    ]
    alpha = float(lift.get("alpha", 0.05))
    for metric in lift.get("metrics", []):
        if metric["name"] != "conversion" or not metric.get("comparisons"):
            continue
        c = metric["comparisons"][0]
        interval = c.get("absolute_ci") or {}
        verdict = c.get("verdict") or {}
        p = c.get("p_value")
        out["lift"] = {
            "arm": c["arm"],
            "control": c["control"],
            "absolute": c.get("absolute"),
            "low": interval.get("low"),
            "high": interval.get("high"),
            "relative": c.get("relative"),
            "p_value": p,
            "confidence": f"{(1 - alpha) * 100:g}%",
            # The report's call (read off the always-valid interval), never a p-value beside it.
            "call": verdict.get("call"),
            "reason": verdict.get("reason"),
        }
    return out
