"""The split arms and the per-message table of a journey report as HTML sections (``split_section``,
``messages_section``): tables holding every figure, and a dot-whisker chart of the arms' lifts (each arm
over its holdout slice, and each arm over the first within the treated arm). Figures through the shared
formatters, so the page says what the text says."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from orchestrator.durations import format_duration
from orchestrator.measure._analysis import RATE
from orchestrator.measure._formats import (
    amount_formatters,
    axis_label,
    interval_text,
    lift_formatter,
    money_formatter,
    p_value,
    percent,
)
from orchestrator.measure._html import (
    MEAN_SPEC,
    PALETTE,
    _call_cell,
    _colours,
    _metric_section,
    _Row,
    _srm_banner,
    dot_whisker_svg,
)
from orchestrator.measure._messages import MessageStats
from orchestrator.measure._splits import CONVERSION, SplitView

_points = lift_formatter(RATE, MEAN_SPEC)


def split_section(split: SplitView, revenue: bool, currency: str | None = None) -> str:
    """One split step: the arms table, the chart of the lifts, then the A/B within the treated arm
    (revenue per entry in ``currency``)."""
    amount = money_formatter(currency)
    amounts = amount_formatters(currency, MEAN_SPEC)
    parts = [
        f"<h2>Split arms at step {escape(split.step)}</h2>",
        "<p class='note'>Intention to treat: every counted entry's arm is recomputed from the split's hash "
        "(customer id and entry instant), in the treated arm and in the holdout, whether or not it reached "
        "the split. Reached: instances the engine sent down each arm (every entry so far, all versions; "
        "held out includes the global holdout).</p>",
    ]
    head = [
        "arm",
        "share",
        "sends to",
        "entries treated / held out",
        "reached treated / held out",
        "rate treated",
        "rate holdout",
        *(["revenue/entry treated / holdout"] if revenue else []),
        "lift over the holdout slice",
        "95% interval",
        "p-value",
        "call (from the always-valid interval)",
    ]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for arm in split.arms:
        c = arm.comparison()
        lift = None if c is None else c.lift
        reached = "n/a" if arm.reached is None else f"{arm.reached[0]} / {arm.reached[1]}"
        cells = [
            escape(arm.target),
            f"{arm.percent:g}%",
            escape(arm.template or arm.send_step or "-"),
            f"{arm.treated.n} / {arm.holdout.n}",
            reached,
            percent(arm.treated.rate),
            percent(arm.holdout.rate),
            *(
                [f"{amount(arm.treated.revenue_per_customer)} / {amount(arm.holdout.revenue_per_customer)}"]
                if revenue
                else []
            ),
            _points(None if lift is None else lift.absolute),
            interval_text(None if lift is None else lift.absolute_ci, _points),
            p_value(None if lift is None else lift.p_value),
            "n/a" if c is None else _call_cell(c, _points),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    parts.append(f"<table>{''.join(rows)}</table>")
    parts.append(f"<div class='charts'>{_lift_chart(split)}</div>")
    ab = split.ab
    if ab is None:
        parts.append("<p>A/B within the treated arm: no treated entry counted yet.</p>")
        return "".join(parts)
    parts.append(
        f"<h3>A/B within the treated arm: each arm against {escape(split.control)}</h3>{_srm_banner(ab)}"
    )
    colours = _colours([name for name, _ in ab.arms])
    for metric in ab.metrics:
        if metric.name == CONVERSION:
            parts.append(_metric_section(metric, colours, f"conversion rate by arm of {split.step}"))
        else:
            parts.append(
                _metric_section(metric, colours, f"revenue per entry by arm of {split.step}", amounts)
            )
    return "".join(parts)


def _lift_chart(split: SplitView) -> str:
    """Conversion-rate lifts with their intervals (and the always-valid ones behind): each arm over its
    holdout slice, then each arm over the first within the treated arm."""
    found = [(f"{arm.target} vs holdout", i, arm.comparison()) for i, arm in enumerate(split.arms)]
    found += [
        (f"{arm.target} vs {split.control}", i, split.ab_comparison(arm.target))
        for i, arm in enumerate(split.arms)
        if i > 0
    ]
    rows = [
        _Row(label, c.lift.absolute, c.lift.absolute_ci, c.always_valid_ci, PALETTE[(i + 1) % len(PALETTE)])
        for label, i, c in found
        if c is not None and c.lift is not None
    ]
    title = f"conversion rate lift per arm of {split.step} (95% and always-valid intervals)"
    # A difference of two rates lies between -100 and +100 points.
    return dot_whisker_svg(
        title, rows, _points, zero_line=True, axis_label=axis_label(RATE, signed=True), limits=(-1.0, 1.0)
    )


def messages_section(messages: Sequence[MessageStats]) -> str:
    """The per-message table: per send step the ledger's outcomes, opens, clicks, opt-outs and the
    recipients' conversion within the window after the send."""
    if not messages:
        return ""
    window = format_duration(messages[0].window)
    head = ["step", "channel", "template", "sent", "failed", "suppressed", "queued", "opened", "clicked"]
    head += ["unsubscribed", f"converted within {window} of the send"]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for m in messages:
        cells = [
            escape(m.step),
            escape(", ".join(m.channels) or "-"),
            escape(m.template or "-"),
            str(m.sent),
            str(m.failed),
            str(m.suppressed),
            str(m.queued),
            f"{m.opened} ({percent(m.open_rate)})",
            f"{m.clicked} ({percent(m.click_rate)})",
            f"{m.unsubscribed} ({percent(m.unsubscribe_rate)})",
            "n/a" if m.converted is None else f"{m.converted} / {m.matured} ({percent(m.conversion_rate)})",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (
        "<h2>Messages</h2><p class='note'>Treated entries only (held-out entries get no message). Opened, "
        "clicked and unsubscribed are of the messages sent (opens and clicks from the tracking links, "
        f"opt-outs through a link on the message's channel within {window} after it); converted: of "
        "the messages sent whose window has closed, those whose entry converted within the window after "
        f"the send{'' if messages[0].converted is not None else ' (no goal, so no conversions)'}.</p>"
        f"<table>{''.join(rows)}</table>"
    )
