"""The split arms and the per-message table of a journey report as plain text (``split_lines``,
``message_lines``). Pure functions from the report's parts to lines; figures through the shared
formatters, so text and HTML agree."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.durations import format_duration
from orchestrator.measure._formats import interval_text, lift_formatter, money_formatter, p_clause, percent
from orchestrator.measure._funnel_text import align
from orchestrator.measure._messages import MessageStats
from orchestrator.measure._splits import CONVERSION, REVENUE, SplitView
from orchestrator.measure._text import call_text, format_metric

_points = lift_formatter("rate", ".4f")


def split_lines(
    split: SplitView, revenue: bool, currency: str | None = None, indent: str = "  "
) -> list[str]:
    """One split step: a table of its arms (assigned and reached per arm, conversion treated and of the
    holdout slice, the lift over the slice and its call), then the A/B within the treated arm; revenue per
    entry (in ``currency``) when the goal has a revenue property."""
    amount = money_formatter(currency)
    signed_amount = money_formatter(currency, signed=True)
    lines = [
        f"Split arms at step {split.step} (intention to treat: every counted entry's arm recomputed from the "
        "split's hash, treated and held out):"
    ]
    headers = ["arm", "share", "sends to", "entries t/h", "reached t/h", "rate treated", "rate holdout"]
    headers += ["lift vs holdout (95% CI)", "call"]
    if revenue:
        headers.insert(7, "revenue/entry t/h")
    rows = []
    for arm in split.arms:
        c = arm.comparison()
        lift = None if c is None else c.lift
        rows.append(
            [
                arm.target,
                f"{arm.percent:g}%",
                arm.template or arm.send_step or "-",
                f"{arm.treated.n}/{arm.holdout.n}",
                "n/a" if arm.reached is None else f"{arm.reached[0]}/{arm.reached[1]}",
                percent(arm.treated.rate),
                percent(arm.holdout.rate),
                "n/a"
                if lift is None
                else f"{_points(lift.absolute)} ({interval_text(lift.absolute_ci, _points)})",
                "n/a" if c is None or c.verdict is None else c.verdict.call,
            ]
        )
        if revenue:
            per_entry = (arm.treated.revenue_per_customer, arm.holdout.revenue_per_customer)
            rows[-1].insert(7, "/".join(amount(v) for v in per_entry))
    lines.extend(align(headers, rows, "lrlrrrr" + ("r" if revenue else "") + "ll", indent))
    lines.append(
        f"{indent}reached: instances the engine sent down each arm (every entry so far, counted or not, all "
        "versions; held out includes the global holdout)"
    )
    for arm in split.arms:
        c = arm.comparison()
        if c is not None and c.verdict is not None and c.verdict.warnings:
            lines.append(f"{indent}{arm.target} vs its holdout slice: {'; '.join(c.verdict.warnings)}")
    for note in split.notes:
        lines.append(f"{indent}note: {note}")
    ab = split.ab
    if ab is None:
        lines.append(f"{indent}A/B within the treated arm: no treated entry counted yet")
        return lines
    level = f"{(1 - ab.alpha) * 100:.0f}%"
    lines.append(f"{indent}A/B within the treated arm (each arm against {split.control}):")
    srm = ab.srm
    if srm is not None:
        verdict = "SAMPLE RATIO MISMATCH, do not trust the A/B" if srm.flagged else "ok"
        lines.append(f"{indent}  split check against {srm.declared}: {p_clause(srm.p_value)} ({verdict})")
    lines.extend(format_metric(ab.metric(CONVERSION), level, indent + "  "))
    if revenue:
        metric = ab.metric(REVENUE)
        means = ", ".join(f"{arm.name} {amount(arm.mean)}" for arm in metric.arms)
        lines.append(f"{indent}  revenue per entry: {means}")
        for c in metric.comparisons:
            if c.lift is None:
                lines.append(f"{indent}  {c.arm} vs {c.control}: not enough customers to compare")
                continue
            lines.append(
                f"{indent}  {c.arm} vs {c.control}: {signed_amount(c.lift.absolute)} {level} CI "
                f"{interval_text(c.lift.absolute_ci, signed_amount, '[{low}, {high}]')}, "
                f"{p_clause(c.lift.p_value)}; always-valid "
                f"{interval_text(c.always_valid_ci, signed_amount, '[{low}, {high}]')}"
            )
            if c.verdict is not None:
                lines.append(f"{indent}    call: {call_text(c.verdict, signed_amount)}")
    return lines


def message_lines(messages: Sequence[MessageStats], indent: str = "  ") -> list[str]:
    """The per-message table: per send step the ledger's outcomes, opens, clicks, opt-outs and the
    recipients' conversion within the window after the send."""
    if not messages:
        return []
    window = messages[0].window

    within = format_duration(window)
    converted = (
        f"converted: entries converted within {within} after the send, of the sends whose window has closed"
        if messages[0].converted is not None
        else f"no goal, so no conversions; unsubscribed: within {within} after the send"
    )
    head = "treated entries only; opened, clicked, unsubscribed: of the messages sent"
    lines = [f"Messages ({head}; {converted}):"]
    headers = ["step", "channel", "template", "sent", "failed", "suppressed", "queued", "opened", "clicked"]
    headers += ["unsubscribed", "converted"]
    rows = []
    for m in messages:
        rows.append(
            [
                m.step,
                ",".join(m.channels) or "-",
                m.template or "-",
                str(m.sent),
                str(m.failed),
                str(m.suppressed),
                str(m.queued),
                f"{m.opened} ({percent(m.open_rate)})",
                f"{m.clicked} ({percent(m.click_rate)})",
                f"{m.unsubscribed} ({percent(m.unsubscribe_rate)})",
                "n/a" if m.converted is None else f"{m.converted}/{m.matured} ({percent(m.conversion_rate)})",
            ]
        )
    lines.extend(align(headers, rows, "lllrrrrrrrr", indent))
    for m in messages:
        if m.other:
            others = ", ".join(f"{n} {status}" for status, n in sorted(m.other.items()))
            lines.append(f"{indent}{m.step}: also {others}")
    return lines
