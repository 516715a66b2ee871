"""A journey report's guardrails as text: the section (``guardrail_lines``) and the warning lines near the
top of the report (``guardrail_alarm_lines``), so an alarm is not missed."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.measure._formats import interval_text, lift_formatter, value_formatter
from orchestrator.measure._guardrails import RULE, Guardrail

_rate = value_formatter("rate", ".4f")
_points = lift_formatter("rate", ".4f")


def guardrail_alarm_lines(guardrails: Sequence[Guardrail], indent: str = "  ") -> list[str]:
    """One ``GUARDRAIL ALARM`` line per alarm, with its rule; nothing when none alarms."""
    return [f"{indent}GUARDRAIL ALARM: {alarm}" for g in guardrails for alarm in g.alarms]


def guardrail_lines(guardrails: Sequence[Guardrail], indent: str = "  ") -> list[str]:
    """The guardrails section: per guardrail both arms, the difference with its interval and the state,
    then the per-message rates of the treated entries and the rule."""
    if not guardrails:
        return []
    head = ("guardrail", "treated", "held out", "treated - held out (95% CI)", "")
    rows = []
    for g in guardrails:
        d = g.difference
        rows.append(
            (
                g.name,
                f"{g.treated.count} of {g.treated.entries} ({_rate(g.treated.rate)})",
                f"{g.held_out.count} of {g.held_out.entries} ({_rate(g.held_out.rate)})",
                "n/a (fewer than 2 entries in an arm)"
                if d is None
                else f"{_points(d.absolute)} ({interval_text(d.absolute_ci, _points)})",
                "ALARM" if g.worse else "ok",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [f"{indent}Guardrails (share of the counted entries, within the goal window):"]
    for row in (head, *rows):
        lines.append(f"{indent}  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for g in guardrails:
        m = g.per_message
        if m is None:
            continue
        state = "ALARM" if m.alarm else "ok"
        lines.append(
            f"{indent}  {m.what} (treated): {m.count} of {m.messages} ({_rate(m.rate)}), limit "
            f"{_rate(m.limit)} ({m.source}): {state}"
        )
    lines.append(f"{indent}  rule: {RULE}")
    lines.append(f"{indent}  what counts:")
    lines.extend(f"{indent}    {g.name}: {g.definition}" for g in guardrails)
    return lines
