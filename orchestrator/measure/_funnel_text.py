"""A journey version's funnel as plain aligned text, per arm (``orchestrator status JOURNEY`` and the text
lift report). Pure functions from ``JourneyFunnel`` to lines; every number is the funnel's own."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.measure._funnel import ArmFunnel, JourneyFunnel, StepFunnel


def funnel_lines(funnel: JourneyFunnel, indent: str = "") -> list[str]:
    """The funnel of one version: a table per arm (steps, then how instances finished), the check that the
    counts add up, and the notes."""
    others = ", ".join(str(v) for v in funnel.versions)
    lines = [
        f"{indent}funnel of {funnel.journey_id} version {funnel.version} (versions that ran here: {others})"
    ]
    if funnel.goal is not None:
        lines.append(f"{indent}  goal: {funnel.goal}")
    for arm in funnel.arms:
        lines.append("")
        lines.extend(arm_lines(arm, indent + "  "))
    for note in funnel.notes:
        lines.append(f"{indent}  note: {note}")
    return lines


def arm_lines(arm: ArmFunnel, indent: str = "") -> list[str]:
    """One arm: its entries, a table of its steps, a table of how it finished, and the equation."""
    head = f"{indent}{arm.arm} arm: {arm.entered} entered"
    if arm.moved_in:
        head += f", {arm.moved_in} moved in from older versions"
    head += f"; {arm.converted} converted (goal reached, in or after the journey)"
    if not arm.entered and not arm.moved_in:
        return [f"{indent}{arm.arm} arm: nobody entered"]
    lines = [head]
    rows = [
        [s.step, s.label, str(s.reached), str(s.inside), went_on(s), message_summary(s, arm.arm)]
        for s in arm.steps
    ]
    lines.extend(
        align(
            ["step", "does", "reached", "inside", "went on", "messages"],
            rows,
            "llrrll",
            indent + "  ",
        )
    )
    finished = [[e.reason, e.step or "-", str(e.n)] for e in arm.exits]
    finished.append(["still inside", "-", str(arm.inside)])
    lines.append("")
    lines.extend(align(["finished", "from step", "instances"], finished, "llr", indent + "  "))
    arrived = f"{arm.entered} entered" + (f" + {arm.moved_in} moved in" if arm.moved_in else "")
    verdict = "adds up" if arm.adds_up else "DOES NOT ADD UP"
    lines.append(f"{indent}  {arrived} = {arm.exited} finished + {arm.inside} inside: {verdict}")
    for s in arm.steps:
        if s.suppressed:
            reasons = "; ".join(f"{reason} {n}" for reason, n in s.suppressed.items())
            lines.append(f"{indent}  suppressed at {s.step}: {reasons}")
    return lines


def went_on(step: StepFunnel) -> str:
    if step.split:
        return ", ".join(f"arm {a.index + 1} ({a.percent:g}%) {a.n} -> {a.target}" for a in step.split)
    return ", ".join(f"{t} {n} -> {step.targets.get(t, '?')}" for t, n in step.taken.items()) or "-"


def message_summary(step: StepFunnel, arm: str) -> str:
    if step.kind != "send":
        return ""
    if not step.messages:
        return "none (held out)" if arm == "holdout" and step.reached else "none"
    parts = [f"sent {step.sent}", f"suppressed {sum(step.suppressed.values())}", f"failed {step.failed}"]
    if step.queued:
        parts.append(f"queued {step.queued}")
    parts.extend(f"{status} {n}" for status, n in step.other_messages.items())
    return ", ".join(parts)


def align(headers: Sequence[str], rows: Sequence[Sequence[str]], justify: str, indent: str = "") -> list[str]:
    """``rows`` under ``headers`` as aligned lines (``justify``: one ``l`` or ``r`` per column), with no
    trailing spaces."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        text = "  ".join(
            c.rjust(w) if j == "r" else c.ljust(w) for c, w, j in zip(cells, widths, justify, strict=True)
        )
        return (indent + text).rstrip()

    return [line(headers), *(line(r) for r in rows)]
