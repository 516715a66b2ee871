"""The journey language: YAML files to validated journeys to compiled plans.

This package knows nothing of the database or of the runtime: it reads files and returns plain objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.language.journey_file import LoadedJourney, load_journey, load_journey_text
from orchestrator.language.models import Journey
from orchestrator.language.plan import JourneyPlan, compile_journey
from orchestrator.language.yamlio import Problem, SpecError

__all__ = [
    "Journey",
    "JourneyPlan",
    "LoadedJourney",
    "Problem",
    "SpecError",
    "compile_journey",
    "find_journey_files",
    "load_journey",
    "load_journey_text",
    "templates_root_for",
]


# Files in a journeys folder that are not journeys: the contact policy, the shared metrics and the
# tracking plan.
WORKSPACE_FILES = ("policy.yaml", "policy.yml", "metrics.yaml", "metrics.yml", "events.yaml", "events.yml")


def find_journey_files(paths: Iterable[str | Path]) -> list[Path]:
    """Journey files named directly, or found (``*.yaml``/``*.yml``) under directories, skipping
    ``templates`` folders, the contact policy, the shared metrics file and the tracking plan."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]):
                rel = candidate.relative_to(path).parts
                if "templates" in rel[:-1] or candidate.name in WORKSPACE_FILES:
                    continue
                found.append(candidate)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def templates_root_for(journey_file: Path) -> Path | None:
    """The nearest ``templates/`` folder at or above the journey file's folder."""
    for folder in [journey_file.resolve().parent, *journey_file.resolve().parents]:
        candidate = folder / "templates"
        if candidate.is_dir():
            return candidate
    return None
