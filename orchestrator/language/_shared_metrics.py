"""Metrics declared once for every journey of a workspace: ``journeys/metrics.yaml``.

::

    metrics:
      quiet_days: 30
      days_quiet: recency(session_start, email_click, purchase)
      tier: lifecycle_tier(days_quiet, frequency(session_start, purchase, within=30d))
      r: quintile(-recency(purchase))
      f: quintile(frequency(purchase, within=365d))
      rfm: rfm_segment(r, f)

A journey reads a shared metric exactly like one of its own, in its signal, segment, metrics, branches and
templates (``segment: tier in ["at_risk", "lapsed"]``). Thresholds and tiers are thus declared once and
read everywhere.

Rules, each broken rule reported as ``file:line:column: message``:

- the file is a mapping with one key, ``metrics``, itself a mapping of names to expressions (or plain
  numbers, for thresholds); names are letters, digits and ``_``, starting with a letter;
- expressions are parsed when the file is loaded; a mistake points at its column inside the expression;
- shared metrics may read each other, but not in a loop; any other name is a customer attribute;
- a journey may not declare a metric under a shared metric's name (no silent override: a threshold
  declared once must mean one thing), nor under a name that a shared metric reads as a customer
  attribute (it would change what the shared metric computes for that journey).

This module parses and checks; wiring the metrics into plans and workspaces is the caller's job
(``merged_metrics`` gives the one name-to-expression mapping an ``Evaluator`` takes).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.language._journey_file import LoadedJourney
from orchestrator.language._yamlio import Locations, Path_, Problem, SpecError, load_yaml, read_text
from orchestrator.signals import _lang as lang

SHARED_METRICS_FILES = ("metrics.yaml", "metrics.yml")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


@dataclass(frozen=True)
class SharedMetrics:
    """The parsed shared metrics of one file, and where each was declared."""

    file: str
    metrics: dict[str, lang.Node]
    texts: dict[str, str]
    locations: Locations

    def where(self, name: str) -> str:
        """``file:line:column`` of a metric's name, for messages."""
        loc = self.locations.of(("metrics", name), key=True)
        return f"{self.file}:{loc.line}:{loc.column}"

    def attributes_read(self) -> dict[str, str]:
        """Names the shared metrics read as customer attributes -> the first metric that reads each."""
        out: dict[str, str] = {}
        for metric, node in self.metrics.items():
            for name in lang.free_names(node):
                if name.parts[0] not in self.metrics:
                    out.setdefault(name.parts[0], metric)
        return out


def shared_metrics_file(folder: str | Path) -> Path | None:
    """The shared metrics file of a journeys folder (``metrics.yaml`` or ``metrics.yml``), if any."""
    folder = Path(folder)
    for name in SHARED_METRICS_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def load_shared_metrics(path: str | Path) -> SharedMetrics:
    """Read and check a shared metrics file; raise ``SpecError`` listing every problem found."""
    path = Path(path)
    return load_shared_metrics_text(read_text(path), str(path))


def load_shared_metrics_text(text: str, file: str) -> SharedMetrics:
    data, locations = load_yaml(text, file)

    def problem(path: Path_, message: str, offset: int | None = None, *, key: bool = False) -> Problem:
        loc = locations.of(path, key=key)
        column = loc.column
        if offset is not None and loc.single_line:
            column += offset + (1 if loc.style in ("'", '"') else 0)
        return Problem(file, loc.line, column, message)

    if not isinstance(data, dict):
        raise SpecError([problem((), "a shared metrics file is a mapping with one key, metrics")])
    problems: list[Problem] = []
    for key in data:
        if key != "metrics":
            close = difflib.get_close_matches(str(key), ["metrics"], n=1, cutoff=0.6)
            hint = "; did you mean 'metrics'?" if close else " (the only key is metrics)"
            problems.append(problem((key,), f"unknown key {key!r}{hint}", key=True))
    raw = data.get("metrics")
    if "metrics" not in data:
        problems.append(problem((), "missing required key 'metrics'"))
        raw = {}
    elif not isinstance(raw, dict):
        problems.append(problem(("metrics",), "metrics: expected a mapping of names to expressions"))
        raw = {}

    parsed: dict[str, lang.Node] = {}
    texts: dict[str, str] = {}
    for name, value in raw.items():
        where = ("metrics", name)
        if not _NAME.match(name) or name in _KEYWORDS:
            problems.append(
                problem(
                    where,
                    f"{name!r} cannot be a metric name: use letters, digits and _, starting with a letter",
                    key=True,
                )
            )
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = repr(value)  # a plain number: a threshold declared once
        if not isinstance(value, str) or not value.strip():
            problems.append(
                problem(where, f"metrics.{name}: expected an expression (text) or a number, got {value!r}")
            )
            continue
        try:
            parsed[name] = lang.parse(value)
            texts[name] = value
        except lang.ExpressionError as exc:
            problems.append(problem(where, exc.message, exc.offset))
    problems.extend(_cycles(parsed, lambda name, message: problem(("metrics", name), message)))
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.line, p.column)))
    return SharedMetrics(file, parsed, texts, locations)


def _cycles(metrics: Mapping[str, lang.Node], problem: Callable[[str, str], Problem]) -> list[Problem]:
    deps = {
        name: sorted({n.parts[0] for n in lang.free_names(node) if n.parts[0] in metrics})
        for name, node in metrics.items()
    }
    state: dict[str, int] = {}
    found: list[Problem] = []

    def visit(name: str, trail: list[str]) -> None:
        if found or state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*trail[trail.index(name) :], name]
            found.append(problem(cycle[0], "metrics refer to each other in a loop: " + " -> ".join(cycle)))
            return
        state[name] = 1
        for dep in deps[name]:
            visit(dep, [*trail, name])
        state[name] = 2

    for name in metrics:
        visit(name, [])
    return found


def journey_problems(shared: SharedMetrics, loaded: LoadedJourney) -> list[Problem]:
    """What is wrong with a journey's own metrics given the shared ones (reported in the journey file)."""
    problems: list[Problem] = []
    reads = shared.attributes_read()
    for name in loaded.journey.metrics:
        if name in shared.metrics:
            problems.append(
                loaded.problem(
                    ("metrics", name),
                    f"metric {name!r} is already a shared metric ({shared.where(name)}); use that one, "
                    "or give this metric another name",
                    key=True,
                )
            )
        elif name in reads:
            problems.append(
                loaded.problem(
                    ("metrics", name),
                    f"metric {name!r} would change the shared metric {reads[name]!r} "
                    f"({shared.where(reads[name])}), which reads {name} as a customer attribute; "
                    "give this metric another name",
                    key=True,
                )
            )
    return problems


def merged_metrics(
    shared: SharedMetrics | None, journey_metrics: Mapping[str, lang.Node]
) -> dict[str, lang.Node]:
    """The shared metrics followed by the journey's own, as one mapping for an ``Evaluator``.

    Raises ``ValueError`` on a name clash (``journey_problems`` reports those with file and line first).
    """
    if shared is None:
        return dict(journey_metrics)
    clash = sorted(set(journey_metrics) & (set(shared.metrics) | set(shared.attributes_read())))
    if clash:
        raise ValueError(
            f"journey metrics clash with the shared metrics of {shared.file}: {', '.join(clash)}"
        )
    return {**shared.metrics, **journey_metrics}
