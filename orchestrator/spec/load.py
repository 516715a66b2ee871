"""Loading a journey file: YAML to a validated ``Journey`` plus its compiled plan, or every mistake at once.

Each mistake is reported as ``file:line:column: message``; for a mistake inside an expression the column
points into the expression itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.signals import lang
from orchestrator.spec.models import Branch, Goal, Journey, Send, Step
from orchestrator.spec.yamlio import Locations, Path_, Problem, SpecError, load_yaml


@dataclass(frozen=True)
class LoadedJourney:
    journey: Journey
    file: str
    locations: Locations
    source: str

    def where(self, path: Path_, offset: int | None = None, *, key: bool = False) -> tuple[int, int]:
        """Line and column of ``path`` (plus ``offset`` characters into a one-line scalar)."""
        loc = self.locations.of(path, key=key)
        column = loc.column
        if offset is not None and loc.single_line:
            column += offset + (1 if loc.style in ("'", '"') else 0)
        return loc.line, column

    def problem(self, path: Path_, message: str, offset: int | None = None, *, key: bool = False) -> Problem:
        line, column = self.where(path, offset, key=key)
        return Problem(self.file, line, column, message)


def load_journey(path: str | Path) -> LoadedJourney:
    """Read, validate and check one journey file. Raises ``SpecError`` listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(str(path), 1, 1, f"cannot read the file: {exc}")]) from None
    return load_journey_text(text, str(path))


def load_journey_text(text: str, file: str) -> LoadedJourney:
    data, locations = load_yaml(text, file)
    if not isinstance(data, dict):
        raise SpecError(
            [Problem(file, 1, 1, "a journey file must be a mapping of keys such as id, signal, steps")]
        )
    try:
        journey = Journey.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_pydantic_problems(exc, data, locations, file)) from None
    loaded = LoadedJourney(journey, file, locations, text)
    problems = check_journey(loaded)
    if problems:
        raise SpecError(problems)
    return loaded


# ---------------------------------------------------------------------------------------------- checks


def check_journey(loaded: LoadedJourney) -> list[Problem]:
    """Checks beyond the schema: expressions, metric references, step targets and cycles."""
    j = loaded.journey
    problems: list[Problem] = []
    parsed_metrics: dict[str, lang.Node] = {}
    for name, text in j.metrics.items():
        node = _parse(loaded, ("metrics", name), text, problems)
        if node is not None:
            parsed_metrics[name] = node
    problems.extend(_metric_cycles(loaded, parsed_metrics))
    _parse(loaded, ("signal",), j.signal, problems)
    if j.segment is not None:
        _parse(loaded, ("segment",), j.segment, problems)

    ids = j.step_ids()
    seen: dict[str, int] = {}
    for i, step_id in enumerate(ids):
        if step_id in ("next", "exit", "completed", "exited"):
            problems.append(
                loaded.problem(("steps", i, "id"), f"{step_id!r} is a reserved word, not a step id")
            )
        if step_id in seen:
            problems.append(loaded.problem(("steps", i, "id"), f"step id {step_id!r} is used twice"))
        seen.setdefault(step_id, i)
    for i, step in enumerate(j.steps):
        if step.branch is not None:
            _parse(loaded, ("steps", i, "branch", "if"), step.branch.condition, problems)
            for key, target in (("then", step.branch.then), ("else", step.branch.otherwise)):
                if target not in ("next", "exit") and target not in seen:
                    hint = _suggest(target, ids)
                    problems.append(
                        loaded.problem(("steps", i, "branch", key), f"no step with id {target!r}{hint}")
                    )
    if not problems:
        from orchestrator.spec.plan import instant_cycle

        cycle = instant_cycle(j)
        if cycle:
            first = ids.index(cycle[0])
            problems.append(
                loaded.problem(("steps", first), "these steps loop without a wait: " + " -> ".join(cycle))
            )
    return problems


def _parse(loaded: LoadedJourney, path: Path_, text: str, problems: list[Problem]) -> lang.Node | None:
    try:
        return lang.parse(text)
    except lang.ExpressionError as exc:
        problems.append(loaded.problem(path, exc.message, exc.offset))
        return None


def _metric_cycles(loaded: LoadedJourney, metrics: dict[str, lang.Node]) -> list[Problem]:
    problems: list[Problem] = []
    deps = {
        name: {n.parts[0] for n in lang.free_names(node) if n.parts[0] in metrics}
        for name, node in metrics.items()
    }
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*trail[trail.index(name) :], name]
            problems.append(
                loaded.problem(
                    ("metrics", cycle[0]), "metrics refer to each other in a loop: " + " -> ".join(cycle)
                )
            )
            return
        state[name] = 1
        for dep in sorted(deps[name]):
            visit(dep, [*trail, name])
        state[name] = 2

    for name in metrics:
        visit(name, [])
    return problems[:1]


# ---------------------------------------------------------------------------------------------- schema errors

_MODELS: dict[str, type[BaseModel]] = {
    "journey": Journey,
    "step": Step,
    "send": Send,
    "branch": Branch,
    "goal": Goal,
}


def _pydantic_problems(exc: ValidationError, data: Any, locations: Locations, file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[int, int, str]] = set()
    for error in exc.errors():
        path = _data_path(error["loc"], data)
        kind = error["type"]
        is_key = kind == "extra_forbidden"
        loc = locations.of(path, key=is_key)
        message = _message(error, path, data)
        marker = (loc.line, loc.column, message)
        if marker in seen:
            continue
        seen.add(marker)
        problems.append(Problem(file, loc.line, loc.column, message))
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


def _data_path(loc: Iterable[Any], data: Any) -> Path_:
    """Keep the parts of a pydantic location that are real keys or indexes in the data.

    Other parts are union member tags (``Cooldown``, ``function-after[...]``) or the names of missing keys,
    whose place is best shown by their parent.
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
    return tuple(path)


def _message(error: Any, path: Path_, data: Any) -> str:
    kind = error["type"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "the file"
    if path[:1] == ("reentry",) and kind != "extra_forbidden":
        return "reentry: expected never, always, after_exit or a mapping 'cooldown: <duration>' (e.g. 60d)"
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = _allowed_keys(path[:-1], data)
        hint = _suggest(key, allowed)
        listing = f" (expected one of: {', '.join(allowed)})" if allowed and not hint else ""
        return f"unknown key {key!r}{hint}{listing}"
    if kind == "missing":
        field = error["loc"][-1]
        return f"missing required key {field!r} in {where if path else 'the journey'}"
    if kind in ("string_type", "str_type"):
        return f"{where}: expected text, got {_show(error.get('input'))} (quote it if it is meant as text)"
    if kind == "int_type":
        return f"{where}: expected a whole number, got {_show(error.get('input'))}"
    if kind in ("float_type",):
        return f"{where}: expected a number, got {_show(error.get('input'))}"
    if kind == "bool_type":
        return f"{where}: expected true or false, got {_show(error.get('input'))}"
    if kind == "value_error":
        return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"
    return f"{where}: {error['msg']}"


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "nothing"


def _allowed_keys(path: Path_, data: Any) -> list[str]:
    """The keys accepted at ``path``, found by following the data through the models."""
    model: type[BaseModel] | None = Journey
    parts = list(path)
    while parts and model is not None:
        part = parts.pop(0)
        if model is Journey and part == "steps" and parts:
            parts.pop(0)
            model = Step
        elif model is Journey and part == "goal":
            model = Goal
        elif model is Step and part == "send":
            model = Send
        elif model is Step and part == "branch":
            model = Branch
        else:
            model = None
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
