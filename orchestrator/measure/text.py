"""Plain-text rendering of a ``LiftAnalysis`` for a terminal (``orchestrator lift --format table``)."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.measure.stats import RATE, Interval, LiftAnalysis, MetricResult


def _value(kind: str) -> Callable[[float | None], str]:
    if kind == RATE:
        return lambda x: "n/a" if x is None else f"{x * 100:.2f}%"
    return lambda x: "n/a" if x is None else f"{x:.4f}"


def _lift(kind: str) -> Callable[[float | None], str]:
    if kind == RATE:
        return lambda x: "n/a" if x is None else f"{x * 100:+.2f} pts"
    return lambda x: "n/a" if x is None else f"{x:+.4f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _ci(interval: Interval | None, fmt: Callable[[float | None], str]) -> str:
    return "n/a" if interval is None else f"[{fmt(interval.low)}, {fmt(interval.high)}]"


def format_metric(metric: MetricResult, level: str, indent: str = "  ") -> list[str]:
    """Lines for one metric: a per-arm table, then each arm's lift over the control."""
    value, lift_fmt = _value(metric.kind), _lift(metric.kind)
    total_name, value_name = ("conversions", "rate") if metric.kind == RATE else ("total", "mean")
    lines = [
        f"{indent}{metric.name} ({metric.kind})",
        f"{indent}  {'arm':24s} {'n':>8s} {total_name:>12s} {value_name:>10s} {'sd':>10s}  {level} CI",
    ]
    for arm in metric.arms:
        total = f"{int(arm.total)}" if metric.kind == RATE else f"{arm.total:.2f}"
        sd = "n/a" if arm.sd is None else f"{arm.sd:.4f}"
        lines.append(
            f"{indent}  {arm.name:24s} {arm.n:8d} {total:>12s} {value(arm.mean):>10s} {sd:>10s}  "
            f"{_ci(arm.ci, value)}"
        )
    for c in metric.comparisons:
        if c.lift is None:
            lines.append(f"{indent}  {c.arm} vs {c.control}: not enough customers to compare")
            continue
        lines.append(
            f"{indent}  {c.arm} vs {c.control}: {lift_fmt(c.lift.absolute)} {level} CI "
            f"{_ci(c.lift.absolute_ci, lift_fmt)}, {_p(c.lift.p_value)}; relative {_pct(c.lift.relative)} "
            f"{_ci(c.lift.relative_ci, _pct)}"
        )
        extras = []
        if c.always_valid_ci is not None:
            extras.append(f"always-valid {_ci(c.always_valid_ci, lift_fmt)}")
        if c.mde is not None:
            extras.append(
                f"MDE at {c.mde.power:.0%} power {lift_fmt(c.mde.absolute)} ({_pct(c.mde.relative)})"
            )
        if extras:
            lines.append(f"{indent}    " + "; ".join(extras))
        if c.cuped is not None:
            cl = c.cuped.lift
            lines.append(
                f"{indent}    CUPED on {c.cuped.covariate} (variance -{c.cuped.variance_reduction:.1%}): "
                f"{lift_fmt(cl.absolute)} {_ci(cl.absolute_ci, lift_fmt)}, {_p(cl.p_value)}"
            )
    return lines


def format_analysis(analysis: LiftAnalysis, title: str = "") -> str:
    """The whole analysis as text: split check, every metric, then segments."""
    level = f"{(1 - analysis.alpha) * 100:.0f}%"
    lines = [title] if title else []
    lines.append(
        f"control: {analysis.control}; arms: " + ", ".join(f"{name} ({n})" for name, n in analysis.arms)
    )
    srm = analysis.srm
    if srm is not None:
        verdict = "SAMPLE RATIO MISMATCH, do not trust the lift" if srm.flagged else "ok"
        lines.append(f"split check against {srm.declared}: {_p(srm.p_value)} ({verdict})")
    for metric in analysis.metrics:
        lines.append("")
        lines.extend(format_metric(metric, level))
    if analysis.segments:
        lines.append("")
        lines.append(f"by {analysis.segment_column} (descriptive, no multiplicity correction):")
        for segment in analysis.segments:
            lines.append(f"  {analysis.segment_column} = {segment.value}")
            for metric in segment.analysis.metrics:
                lines.extend(format_metric(metric, level, indent="    "))
    return "\n".join(lines)
