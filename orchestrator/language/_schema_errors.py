"""A model's validation errors as ``file:line:column`` problems, for the YAML files checked against a
pydantic model (the contact policy, the workspace config).

Each error is placed at the value (or, for an unknown key, the key) it is about, through the document's
``Locations``; an unknown key names the closest key the model accepts there (``did you mean 'host'?``),
found by following the error's location through the model's fields, containers and tagged unions; a
message never repeats the value (it may be a secret).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.language._yamlio import Locations, Problem, data_path, dotted


def schema_problems(
    exc: ValidationError,
    data: Any,
    locations: Locations,
    file: str,
    model: type[BaseModel],
    whole: str = "the file",
    *,
    tag: str = "provider",
) -> list[Problem]:
    """The problems of ``exc`` (``model`` validating ``data`` read from ``file``), sorted by place.
    ``whole`` names the document in messages about its top level; ``tag`` is the key of tagged unions."""
    problems: list[Problem] = []
    for error in exc.errors():
        path = data_path(error["loc"], data)
        kind = error["type"]
        loc = locations.of(path, key=kind == "extra_forbidden")
        where = dotted(path, whole)
        if kind == "extra_forbidden":
            known = known_keys(model, error["loc"][:-1], tag)
            close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6) if path else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if not close and known:
                hint = f"; known keys: {', '.join(known)}"
            message = f"unknown key {path[-1]!r}{hint}" if path else "unknown key"
            message = f"{dotted(path[:-1], whole)}: {message}" if len(path) > 1 else message
        elif kind == "missing":
            message = f"missing required key {error['loc'][-1]!r} in {where}"
        elif kind == "union_tag_invalid":
            message = f"{where}: unknown {tag}; expected one of {error['ctx']['expected_tags']}"
        elif kind == "union_tag_not_found":
            message = f"{where}: say which {tag}, e.g. {tag}: ..."
        elif kind in ("literal_error", "enum"):
            message = f"{where}: {error['msg']}"
        else:
            message = f"{where}: {str(error['msg']).removeprefix('Value error, ')}"
        problems.append(Problem(file, loc.line, loc.column, message))
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


def known_keys(model: type[BaseModel], loc: tuple[Any, ...], tag: str = "provider") -> list[str]:
    """The keys the model at pydantic location ``loc`` accepts (following union tags and containers)."""
    current: Any = model
    for part in loc:
        current = _step(current, part, tag)
        if current is None:
            return []
    models = [m for m in _members(current) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) != 1:
        return []
    return [info.alias or name for name, info in models[0].model_fields.items()]


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _step(annotation: Any, part: Any, tag: str) -> Any:
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        if origin is list and isinstance(part, int):
            return typing.get_args(member)[0]
        if origin is dict:
            return typing.get_args(member)[1]
    # A union tag (``smtp``): the member whose tag literal it is.
    for member in _members(annotation):
        fields = member.model_fields if isinstance(member, type) and issubclass(member, BaseModel) else {}
        if tag in fields and part in typing.get_args(fields[tag].annotation):
            return member
    return None
