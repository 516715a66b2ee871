"""A journey report page's guardrails: a red banner near the top for each alarm (``guardrail_banner``) and a
section with a small table, the alarms highlighted, and the rule (``guardrail_section``). Uses the page's
own styles (``banner bad``, ``call ok/bad``)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from orchestrator.measure._formats import interval_text, lift_formatter, value_formatter
from orchestrator.measure._guardrails import RULE, Guardrail

_rate = value_formatter("rate", ".4f")
_points = lift_formatter("rate", ".4f")
_ALARM = "<span class='call bad'><b>ALARM</b></span>"
_OK = "<span class='call ok'>ok</span>"


def guardrail_banner(guardrails: Sequence[Guardrail]) -> str:
    """One red banner listing every alarm; empty when none alarms."""
    alarms = [alarm for g in guardrails for alarm in g.alarms]
    if not alarms:
        return ""
    items = "".join(f"<li>{escape(a)}</li>" for a in alarms)
    figures = f"{len(alarms)} guardrail figure{'s' if len(alarms) > 1 else ''}"
    return (
        f"<div class='banner bad'><b>Guardrail alarm</b>: the treated arm does worse on {figures} (see "
        f"Guardrails below).<ul>{items}</ul></div>"
    )


def guardrail_section(guardrails: Sequence[Guardrail]) -> str:
    """The guardrails table (both arms, the difference with its interval, the state), the per-message rates
    of the treated entries, the rule and what each guardrail counts."""
    if not guardrails:
        return ""
    rows = [
        "<tr><th>guardrail</th><th>treated</th><th>held out</th><th>treated - held out</th>"
        "<th>95% interval</th><th>state</th></tr>"
    ]
    for g in guardrails:
        d = g.difference
        rows.append(
            f"<tr><td>{escape(g.name)}</td>"
            f"<td>{g.treated.count} of {g.treated.entries} ({_rate(g.treated.rate)})</td>"
            f"<td>{g.held_out.count} of {g.held_out.entries} ({_rate(g.held_out.rate)})</td>"
            f"<td>{_points(None if d is None else d.absolute)}</td>"
            f"<td>{interval_text(None if d is None else d.absolute_ci, _points)}</td>"
            f"<td>{_ALARM if g.worse else _OK}</td></tr>"
        )
    messages = [
        "<tr><th>per message (treated)</th><th>count</th><th>messages</th><th>rate</th><th>limit</th>"
        "<th>state</th></tr>"
    ]
    for g in guardrails:
        m = g.per_message
        if m is not None:
            messages.append(
                f"<tr><td>{escape(m.what)}</td><td>{m.count}</td><td>{m.messages}</td><td>{_rate(m.rate)}</td>"
                f"<td>{_rate(m.limit)} <span class='note'>({escape(m.source)})</span></td>"
                f"<td>{_ALARM if m.alarm else _OK}</td></tr>"
            )
    definitions = "".join(f"<li><b>{escape(g.name)}</b>: {escape(g.definition)}</li>" for g in guardrails)
    return (
        "<h2>Guardrails</h2><p class='note'>Share of the counted entries whose customer, within the goal "
        "window, did each; the held-out arm gets no messages.</p>"
        f"<table>{''.join(rows)}</table>"
        + (f"<table>{''.join(messages)}</table>" if len(messages) > 1 else "")
        + f"<p class='note'>Rule: {escape(RULE)}.</p><ul class='note'>{definitions}</ul>"
    )
