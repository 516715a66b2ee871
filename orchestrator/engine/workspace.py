"""The journeys and templates an engine runs, loaded and checked as a whole.

A workspace is built from journey files (or folders of them). Every journey is validated, its templates
checked against the context the engine provides, and compiled into a plan; all problems of all files are
reported together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.channels.templates import TemplateRenderer
from orchestrator.spec import (
    JourneyPlan,
    LoadedJourney,
    Problem,
    SpecError,
    find_journey_files,
    load_journey,
    load_journey_text,
    templates_root_for,
)
from orchestrator.spec.load import compile_loaded
from orchestrator.spec.templates_check import TemplateSource, check_templates, instance_reads


@dataclass
class Workspace:
    plans: list[JourneyPlan] = field(default_factory=list)
    renderers: dict[str, TemplateRenderer] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def plan(self, journey_id: str) -> JourneyPlan:
        for plan in self.plans:
            if plan.id == journey_id:
                return plan
        known = ", ".join(p.id for p in self.plans) or "none"
        raise KeyError(f"no journey {journey_id!r} (loaded: {known})")

    def renderer(self, journey_id: str) -> TemplateRenderer:
        return self.renderers[journey_id]


def _check_file(
    path: Path, templates: Path | None
) -> tuple[LoadedJourney | None, TemplateRenderer | None, list[Problem]]:
    try:
        loaded = load_journey(path)
    except SpecError as exc:
        return None, None, exc.problems
    root = templates or templates_root_for(path)
    if root is None:
        sends = [i for i, s in enumerate(loaded.journey.steps) if s.send is not None]
        if sends:
            return (
                loaded,
                None,
                [
                    loaded.problem(
                        ("steps", sends[0], "send"),
                        "no templates/ folder found next to or above this journey",
                    )
                ],
            )
        root = path.parent
    renderer = TemplateRenderer(root)
    return loaded, renderer, check_templates(loaded, renderer)


def validate_paths(
    paths: Iterable[str | Path], templates: Path | None = None
) -> tuple[list[Path], list[Problem]]:
    """Check every journey file under ``paths``; returns the files and all problems found."""
    files = find_journey_files(paths)
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for path in files:
        if not path.exists():
            problems.append(Problem(str(path), 1, 1, "no such file or folder"))
            continue
        loaded, _, found = _check_file(path, templates)
        problems.extend(found)
        if loaded is not None:
            other = seen.setdefault(loaded.journey.id, path)
            if other != path:
                line, col = loaded.where(("id",))
                problems.append(
                    Problem(str(path), line, col, f"journey id {loaded.journey.id!r} is also used by {other}")
                )
    return files, problems


def load_workspace(paths: Iterable[str | Path], templates: Path | None = None) -> Workspace:
    """Load and compile every journey under ``paths``; raise ``SpecError`` listing all problems."""
    files = find_journey_files(paths)
    workspace = Workspace()
    problems: list[Problem] = []
    for path in files:
        loaded, renderer, found = _check_file(path, templates)
        problems.extend(found)
        if loaded is None or renderer is None or found:
            continue
        if any(p.id == loaded.journey.id for p in workspace.plans):
            line, col = loaded.where(("id",))
            problems.append(Problem(str(path), line, col, f"journey id {loaded.journey.id!r} is used twice"))
            continue
        workspace.plans.append(_compile(loaded, renderer))
        workspace.renderers[loaded.journey.id] = renderer
        workspace.sources[loaded.journey.id] = loaded.source
    if problems:
        raise SpecError(problems)
    return workspace


def _compile(loaded: LoadedJourney, templates: TemplateSource | None) -> JourneyPlan:
    """The plan, keeping also the properties of ``wait_for`` events that the templates read."""
    plan = compile_loaded(loaded)
    if templates is not None:
        for root, props in instance_reads(loaded, templates).items():
            plan.captures.setdefault(root, set()).update(props)
    return plan


def plan_from_source(source: str, file: str, templates: TemplateSource | None = None) -> JourneyPlan:
    """Rebuild the plan of a stored journey version (instances finish on the version they entered)."""
    return _compile(load_journey_text(source, file), templates)
