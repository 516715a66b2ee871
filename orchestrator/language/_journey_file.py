"""Loading a journey file: YAML to a validated ``Journey`` plus its compiled plan, or every mistake at once.

Each mistake is reported as ``file:line:column: message``; for a mistake inside an expression the column
points into the expression itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from orchestrator.language._models import Journey
from orchestrator.language._plan import JourneyPlan, compile_journey, instance_roots
from orchestrator.language._yamlio import (
    Locations,
    Path_,
    Problem,
    SpecError,
    data_path,
    dotted,
    load_yaml,
    read_text,
)
from orchestrator.signals import _lang as lang


@dataclass(frozen=True)
class LoadedJourney:
    journey: Journey
    file: str
    locations: Locations
    source: str

    def where(self, path: Path_, offset: int | None = None, *, key: bool = False) -> tuple[int, int]:
        """Line and column of ``path`` (plus ``offset`` characters into its scalar's text)."""
        loc = self.locations.of(path, key=key)
        column = loc.column
        if offset is not None and loc.single_line:
            column += offset + (1 if loc.style in ("'", '"') else 0)
        elif offset is not None:
            return _inside_lines(self.source.splitlines(), loc.line, loc.column, loc.style, offset)
        return loc.line, column

    def problem(self, path: Path_, message: str, offset: int | None = None, *, key: bool = False) -> Problem:
        line, column = self.where(path, offset, key=key)
        return Problem(self.file, line, column, message)


def _inside_lines(
    lines: list[str], line: int, column: int, style: str | None, offset: int
) -> tuple[int, int]:
    """Line and column of the character ``offset`` into a scalar written over several lines, which starts
    at ``line``/``column`` (1-based). Each line break of a block (``|``, ``>``) or plain scalar stands for
    one character of the text (a newline, or the space folding makes of it), so the text is walked line
    by line; a blank line (which folding turns into something else) stops the walk at the scalar's start.
    """
    if style in ("|", ">"):
        first = line  # the content starts on the line after the indicator
        body = lines[first:]
        indent = len(body[0]) - len(body[0].lstrip()) if body else 0
        pieces = [(first + 1 + i, indent + 1, text[indent:]) for i, text in enumerate(body)]
    else:
        skip = 1 if style in ("'", '"') else 0
        head = lines[line - 1][column - 1 + skip :] if line - 1 < len(lines) else ""
        pieces = [(line, column + skip, head)]
        for i, text in enumerate(lines[line:]):
            stripped = text.lstrip()
            pieces.append((line + 1 + i, len(text) - len(stripped) + 1, stripped))
    remaining = offset
    for number, start, text in pieces:
        if not text.strip():
            break
        if remaining <= len(text):
            return number, start + remaining
        remaining -= len(text) + 1
    return line, column


def load_journey(path: str | Path) -> LoadedJourney:
    """Read, validate and check one journey file. Raises ``SpecError`` listing every problem found."""
    path = Path(path)
    return load_journey_text(read_text(path), str(path))


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

RESERVED_STEP_IDS = frozenset(
    {"next", "exit", "completed", "exited", "converted", "entry", "customer", "metrics", "journey"}
)


def check_journey(loaded: LoadedJourney) -> list[Problem]:
    """Checks beyond the schema: the entry, expressions, names, step targets, migrations and loops."""
    j = loaded.journey
    problems: list[Problem] = []
    parsed_metrics: dict[str, lang.Node] = {}
    for name, text in j.metrics.items():
        node = _parse(loaded, ("metrics", name), text, problems)
        if node is not None:
            parsed_metrics[name] = node
            _check_names(loaded, ("metrics", name), node, set(), "a metric", problems)
    problems.extend(_metric_cycles(loaded, parsed_metrics))
    if not _check_entry(loaded, problems):
        return problems
    if j.exit_when is not None:
        node = _parse(loaded, ("exit_when",), j.exit_when, problems)
        if node is not None:
            _check_names(loaded, ("exit_when",), node, set(), "exit_when", problems)

    ids = j.step_ids()
    seen: dict[str, int] = {}
    for i, step_id in enumerate(ids):
        if step_id in RESERVED_STEP_IDS:
            problems.append(
                loaded.problem(("steps", i, "id"), f"{step_id!r} is a reserved word, not a step id")
            )
        if step_id in seen:
            problems.append(loaded.problem(("steps", i, "id"), f"step id {step_id!r} is used twice"))
        seen.setdefault(step_id, i)
    event_entry = j.effective_entry.event is not None
    roots = instance_roots(j)

    def target(path: Path_, value: str, *, allow_next: bool = True) -> None:
        if value == "exit" or (allow_next and value == "next") or value in seen:
            return
        hint = _suggest(value, ids)
        problems.append(loaded.problem(path, f"no step with id {value!r}{hint}"))

    for i, step in enumerate(j.steps):
        here: Path_ = ("steps", i)
        if step.branch is not None:
            b = step.branch
            if b.condition is not None:
                node = _parse(loaded, (*here, "branch", "if"), b.condition, problems)
                if node is not None:
                    _check_names(loaded, (*here, "branch", "if"), node, roots, "a branch", problems)
            _check_match(loaded, (*here, "branch", "match"), b.match, event_entry, problems)
            target((*here, "branch", "then"), b.then)
            target((*here, "branch", "else"), b.otherwise)
        elif step.wait_for is not None:
            w = step.wait_for
            _check_match(loaded, (*here, "wait_for", "match"), w.match, event_entry, problems)
            target((*here, "wait_for", "then"), w.then)
            target((*here, "wait_for", "else"), w.otherwise)
        elif step.split is not None:
            for key in step.split:
                target((*here, "split", key), key)
        elif step.wait_until is not None and step.wait_until.attribute is not None:
            target((*here, "wait_until", "missing"), step.wait_until.missing)
    if j.goal is not None:
        _check_match(loaded, ("goal", "match"), j.goal.match, event_entry, problems)
        if j.goal.signal is not None:
            node = _parse(loaded, ("goal", "signal"), j.goal.signal, problems)
            if node is not None:
                _check_names(loaded, ("goal", "signal"), node, set(), "the goal", problems)
    _check_migrations(loaded, seen, problems)
    if not problems:
        from orchestrator.language._plan import instant_cycle

        cycle = instant_cycle(j)
        if cycle:
            first = ids.index(cycle[0])
            steps = dict(zip(ids, j.steps, strict=True))
            dated = [s for s in cycle if s in steps and steps[s].wait_until is not None]
            hint = (
                f" (a wait for a date lets a past date through at once; to wait for the next one, write "
                f"every: year or every: month at {dated[0]})"
                if dated
                else ""
            )
            problems.append(
                loaded.problem(
                    ("steps", first), "these steps loop without a wait: " + " -> ".join(cycle) + hint
                )
            )
    return problems


def _check_entry(loaded: LoadedJourney, problems: list[Problem]) -> bool:
    """Check the entry's expressions; False when the journey has no entry at all."""
    j = loaded.journey
    if j.entry is not None:
        for key in ("signal", "segment"):
            if getattr(j, key) is not None:
                problems.append(
                    loaded.problem(
                        (key,),
                        f"{key} is given both here and under entry:; keep one (entry: {{{key}: ...}})",
                        key=True,
                    )
                )
        base: Path_ = ("entry",)
    elif j.signal is None and j.segment is None:
        problems.append(
            Problem(
                loaded.file,
                1,
                1,
                "a journey needs an entry: a signal (signal: ...), a segment (entry: {segment: ...}) or an "
                "event (entry: {event: ..., key: ...})",
            )
        )
        return False
    else:
        base = ()
    entry = j.effective_entry
    for key in ("signal", "segment"):
        text = getattr(entry, key)
        if text is not None:
            node = _parse(loaded, (*base, key), text, problems)
            if node is not None:
                _check_names(loaded, (*base, key), node, set(), f"the {key}", problems)
    return True


def _check_names(
    loaded: LoadedJourney, path: Path_, node: lang.Node, roots: set[str], what: str, problems: list[Problem]
) -> None:
    """Dotted names read outside aggregates: ``entry.x`` or ``<wait_for id>.x`` where allowed (``roots``,
    branch conditions only), never an event property."""
    for name in lang.free_names(node):
        if len(name.parts) < 2:
            continue
        root = name.parts[0]
        if root in roots and len(name.parts) == 2:
            continue
        if root == "entry":
            if loaded.journey.effective_entry.event is None:
                message = f"{name.dotted}: entry.<property> exists only in journeys entered by an event"
            else:
                message = (
                    f"{name.dotted}: {what} is evaluated per customer; entry.<property> can be read "
                    "in branch conditions and templates"
                )
        elif root in roots:
            message = f"{name.dotted}: {what} is evaluated per customer; read {root}.<property> in a branch"
        else:
            message = (
                f"{name.dotted} is an event property; read it inside an aggregate, e.g. "
                f"max({name.dotted}, within=30d)"
            )
        problems.append(loaded.problem(path, message, name.pos))


def _check_match(
    loaded: LoadedJourney,
    path: Path_,
    match: dict[str, Any] | None,
    event_entry: bool,
    problems: list[Problem],
) -> None:
    for prop, value in (match or {}).items():
        if isinstance(value, str) and value.startswith("metrics."):
            name = value[len("metrics.") :]
            if name not in loaded.journey.metrics:
                declared = ", ".join(sorted(loaded.journey.metrics)) or "none"
                problems.append(
                    loaded.problem(
                        (*path, prop), f"{value}: not a metric of this journey (declared: {declared})"
                    )
                )
            continue
        if not (isinstance(value, str) and value.startswith("entry.")):
            continue
        if not event_entry:
            problems.append(
                loaded.problem(
                    (*path, prop), f"{value}: entry.<property> exists only in journeys entered by an event"
                )
            )
        elif not value[len("entry.") :].strip():
            problems.append(loaded.problem((*path, prop), "write entry.<property>, e.g. entry.cart_id"))


def migration_path(loaded: LoadedJourney, index: int) -> Path_:
    """Where the ``index``-th migration is: ``migrate`` may be one mapping or a list of them."""
    return ("migrate", index) if ("migrate", index) in loaded.locations.values else ("migrate",)


def _check_migrations(loaded: LoadedJourney, steps: dict[str, int], problems: list[Problem]) -> None:
    j = loaded.journey
    versions: set[int] = set()
    for i, migration in enumerate(j.migrate):
        path = migration_path(loaded, i)
        if migration.from_version >= j.version:
            problems.append(
                loaded.problem(
                    (*path, "from_version"),
                    f"migrate can only move instances of versions older than {j.version}",
                )
            )
        if migration.from_version in versions:
            problems.append(
                loaded.problem((*path, "from_version"), f"version {migration.from_version} is listed twice")
            )
        versions.add(migration.from_version)
        for old, new in migration.states.items():
            if new != "exit" and new not in steps:
                hint = _suggest(new, list(steps))
                problems.append(
                    loaded.problem(
                        (*path, "states", old),
                        f"no step with id {new!r} in version {j.version}{hint} (targets: step ids or exit)",
                    )
                )


def compile_loaded(loaded: LoadedJourney) -> JourneyPlan:
    """The plan of a checked journey, knowing where its migrations are written."""
    places = {}
    for i, migration in enumerate(loaded.journey.migrate):
        path = migration_path(loaded, i)
        where = {old: loaded.where((*path, "states", old), key=True) for old in migration.states}
        places[i] = (loaded.where((*path, "from_version")), where)
    return compile_journey(loaded.journey, loaded.file, places)


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


def _pydantic_problems(exc: ValidationError, data: Any, locations: Locations, file: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[int, int, str]] = set()
    for error in exc.errors():
        path = data_path(error["loc"], data)
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


def _message(error: Any, path: Path_, data: Any) -> str:
    kind = error["type"]
    where = dotted(path)
    if path[:1] == ("reentry",) and kind != "extra_forbidden":
        return "reentry: expected never, always, after_exit or a mapping 'cooldown: <duration>' (e.g. 60d)"
    if "match" in path[:-1] and kind != "extra_forbidden":
        return f"{where}: expected entry.<property>, metrics.<name>, or a text or number to match"
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
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        limit = error.get("ctx", {})
        words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
        bound = ", ".join(f"{words.get(k, k)} {v}" for k, v in limit.items())
        return f"{where}: {_show(error.get('input'))} is out of range ({bound})"
    if kind == "value_error":
        return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"
    return f"{where}: {error['msg']}"


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "nothing"


def _allowed_keys(path: Path_, data: Any) -> list[str]:
    """The keys accepted at ``path``, found by following the path through the models' fields."""
    model: type[BaseModel] | None = Journey
    parts = list(path)
    while parts and model is not None:
        part = parts.pop(0)
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        found = fields.get(str(part))
        if found is None:
            return []
        model, parts = _model_inside(found.annotation, parts)
    if model is None or parts:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_inside(annotation: Any, parts: list[Any]) -> tuple[type[BaseModel] | None, list[Any]]:
    """The model a field's value is (or holds), consuming the list indexes and mapping keys on the way."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, parts
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _model_inside(args[0], parts)
    if origin is list:
        return _model_inside(args[0], parts[1:] if parts and isinstance(parts[0], int) else parts)
    if origin is dict:
        return _model_inside(args[1], parts[1:]) if parts else (None, parts)
    if origin in (Union, UnionType):
        for arg in args:
            model, rest = _model_inside(arg, parts)
            if model is not None:
                return model, rest
    return None, parts


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
