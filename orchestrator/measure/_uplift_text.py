"""The uplift view as plain aligned text (``orchestrator lift --uplift`` and ``orchestrator report
--uplift``). Pure functions from ``UpliftView`` to lines; the HTML page writes the same figures with the same
formatters (``uplift_figures``), so text and page cannot disagree."""

from __future__ import annotations

from orchestrator.measure._analysis import RATE
from orchestrator.measure._formats import lift_formatter, percent, value_formatter
from orchestrator.measure._uplift import (
    LEARNER_WORDS,
    MODEL_ESTIMATE,
    QUADRANT_WORDS,
    FeatureInfo,
    UpliftResult,
    UpliftView,
)

_rate = value_formatter(RATE, ".4f")
_points = lift_formatter(RATE, ".4f")
CURVE_STEP = 10
"""The text and the page's table show the curve every 10% of the rows targeted."""


def coefficient(x: float | None) -> str:
    """A Qini coefficient or AUUC: four decimals, ``n/a`` when undefined."""
    return "n/a" if x is None else f"{x:.4f}"


def feature_words(feature: FeatureInfo) -> str:
    """``history (number)``, ``channel (text, 3 values)``, ``plan (text, 1 value: left out)``."""
    detail = feature.kind
    if feature.levels is not None:
        detail += f", {feature.levels} value{'s' if feature.levels != 1 else ''}"
    if feature.missing:
        detail += f", {feature.missing} missing"
    if not feature.used:
        detail += ": left out, a single value"
    return f"{feature.name} ({detail})"


def heading(result: UpliftResult) -> str:
    return f"{result.metric}: {result.treatment} vs {result.control}"


def summary_words(result: UpliftResult) -> list[str]:
    """The lines that describe how the estimate was made (shared with the page)."""
    used = sum(f.used for f in result.features)
    return [
        f"{result.treated_n} {result.treatment} / {result.control_n} {result.control} rows; observed rates "
        f"{_rate(result.treated_rate)} / {_rate(result.control_rate)}",
        f"learner: {LEARNER_WORDS[result.learner]}; every row scored out of fold ({result.folds}-fold "
        "cross-fitting)",
        f"features ({used} used, {result.encoded_columns} model columns): "
        + ", ".join(feature_words(f) for f in result.features),
    ]


def figure_words(result: UpliftResult) -> str:
    return (
        f"Qini coefficient {coefficient(result.qini)}, AUUC {coefficient(result.auuc)} "
        "(1 = the best possible ordering, 0 = no better than random)"
    )


def curve_rows(result: UpliftResult) -> list[list[str]]:
    """The curve every ``CURVE_STEP``%: share targeted, rows, incremental outcomes, the random line."""
    return [
        [f"{p.share:.0%}", f"{p.targeted:.0f}", f"{p.qini:+.1f}", f"{p.random:+.1f}"]
        for i, p in enumerate(result.curve)
        if i % CURVE_STEP == 0
    ]


def quadrant_rows(result: UpliftResult) -> list[list[str]]:
    """Per quadrant: name, rule, rows, share, observed rate per arm (n), observed difference, predicted."""
    return [
        [
            q.name,
            QUADRANT_WORDS[q.name],
            str(q.n),
            percent(q.share),
            f"{_rate(q.treated_rate)} ({q.treated_n})",
            f"{_rate(q.control_rate)} ({q.control_n})",
            _points(q.observed_difference),
            _points(q.predicted_uplift),
        ]
        for q in result.quadrants
    ]


def quadrant_rule(result: UpliftResult) -> str:
    return (
        f"a customer is predicted to respond when the predicted {result.metric} rate (with, or without the "
        f"message) is at least {_rate(result.threshold)}, the observed rate of both arms together"
    )


def _table(rows: list[list[str]], headers: list[str], indent: str, left: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    out = []
    for row in [headers, *rows]:
        cells = [
            f"{cell:<{width}s}" if i < left else f"{cell:>{width}s}"
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def result_lines(result: UpliftResult, indent: str = "  ") -> list[str]:
    lines = [f"{indent}{heading(result)}"]
    lines += [f"{indent}  {line}" for line in summary_words(result)]
    lines.append(f"{indent}  {figure_words(result)}")
    lines.append(
        f"{indent}  Qini curve: incremental {result.metric} among the top share by predicted uplift "
        "(observed in the rows, out of fold)"
    )
    lines += _table(curve_rows(result), ["targeted", "rows", "incremental", "random"], indent + "    ")
    lines.append(f"{indent}  quadrants: {quadrant_rule(result)}")
    headers = ["quadrant", "rows", "share", "treated rate (n)", "control rate (n)", "observed", "predicted"]
    rows = [[r[0], *r[2:]] for r in quadrant_rows(result)]
    lines += _table(rows, headers, indent + "    ")
    return lines


def uplift_lines(view: UpliftView, indent: str = "") -> list[str]:
    """The whole view: a heading that says it is a model estimate, every result, then the notes."""
    lines = [f"{indent}uplift: who the message moves ({MODEL_ESTIMATE})"]
    for result in view.results:
        lines.append("")
        lines += result_lines(result, indent + "  ")
    for note in view.notes:
        lines.append(f"{indent}  note: {note}")
    return lines
