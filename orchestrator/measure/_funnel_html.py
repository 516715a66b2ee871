"""A journey's per-step funnel as an HTML section of the lift report page: per version, per arm, a table
of its steps and a table of how its instances finished, written from the same figures as the text."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from orchestrator.measure._funnel import ArmFunnel, JourneyFunnel
from orchestrator.measure._funnel_text import message_summary, went_on

_L = " style='text-align:left'"  # a text column (the page's tables align figures right)


def funnel_section(funnels: Sequence[JourneyFunnel]) -> str:
    """The section (empty when the journey has no funnel): the latest version first."""
    if not funnels:
        return ""
    parts = [
        "<h2>Per-step funnel</h2>",
        "<p class='note'>Counted as steps happen. Reached: arrivals at a step; inside: there now. In each "
        "arm entered + moved in = finished + still inside.</p>",
    ]
    for funnel in reversed(funnels):
        parts.append(f"<h3>Version {funnel.version}</h3>")
        if funnel.goal is not None:
            parts.append(f"<p class='meta'>Goal: {escape(funnel.goal)}.</p>")
        for note in funnel.notes:
            parts.append(f"<div class='banner warn'>{escape(note)}</div>")
        for arm in funnel.arms:
            parts.append(_arm(arm))
    return "".join(parts)


def _arm(arm: ArmFunnel) -> str:
    if not arm.entered and not arm.moved_in:
        return f"<p class='meta'>{escape(arm.arm)} arm: nobody entered.</p>"
    moved = f", {arm.moved_in} moved in from older versions" if arm.moved_in else ""
    verdict = "adds up" if arm.adds_up else "does not add up"
    out = [
        f"<p class='meta'><b>{escape(arm.arm)}</b> arm: {arm.entered} entered{moved}; {arm.converted} "
        f"converted (goal reached, in or after the journey); {arm.exited} finished, {arm.inside} still "
        f"inside ({verdict}).</p>",
        f"<table><tr><th>step</th><th{_L}>does</th><th>reached</th><th>inside</th><th{_L}>went on</th>"
        f"<th{_L}>messages</th></tr>",
    ]
    for s in arm.steps:
        messages = message_summary(s, arm.arm)
        if s.suppressed:
            messages += " (suppressed: " + "; ".join(f"{r} {n}" for r, n in s.suppressed.items()) + ")"
        out.append(
            f"<tr><td>{escape(s.step)}</td><td{_L}>{escape(s.label)}</td><td>{s.reached}</td>"
            f"<td>{s.inside}</td><td{_L}>{escape(went_on(s))}</td><td{_L}>{escape(messages)}</td></tr>"
        )
    out.append(f"</table><table><tr><th>finished</th><th{_L}>from step</th><th>instances</th></tr>")
    for e in arm.exits:
        out.append(f"<tr><td>{escape(e.reason)}</td><td{_L}>{escape(e.step or '-')}</td><td>{e.n}</td></tr>")
    out.append(f"<tr><td>still inside</td><td{_L}>-</td><td>{arm.inside}</td></tr></table>")
    return "".join(out)
