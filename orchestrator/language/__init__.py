"""The journey language: YAML files to validated journeys to compiled plans.

This package knows nothing of the database or of the runtime: it reads files and returns plain objects.

``_yamlio`` reads YAML with the line and column of every value (``Problem``, ``SpecError``), ``_models`` the
typed journey, ``_journey_file`` loads and checks one journey file, ``_plan`` compiles it into the plan the
engine runs, ``_machine`` is its state machine, which also draws the diagram (``_svg`` the SVG image),
``_channels`` names the message channels, ``_policy_file`` is the contact policy
(``policy.yaml``), ``_shared_metrics`` the workspace's shared metrics (``metrics.yaml``), ``_tracking_plan``
the event catalog (``events.yaml``), ``_references`` and ``_templates_check`` check the names a journey and
its templates use, and ``_schema_errors`` words pydantic's errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.language import _references as references
from orchestrator.language._channels import ADDRESS_FIELD, CHANNELS, CONSENT_CHANNELS, Channel, ConsentChannel
from orchestrator.language._journey_file import LoadedJourney, compile_loaded, load_journey, load_journey_text
from orchestrator.language._machine import DiagramCounts, step_words, transition_words, until_words
from orchestrator.language._models import Cooldown, Journey, Send
from orchestrator.language._plan import (
    ENTRY,
    NO_STATE,
    JourneyPlan,
    MatchTerm,
    StepKind,
    StepPlan,
    compile_journey,
    digest_with,
    split_trigger,
)
from orchestrator.language._policy_file import Consent, ContactPolicy, policy_for
from orchestrator.language._references import (
    KnownNames,
    catalog_names,
    metric_typos,
    shared_metric_typos,
    template_problems,
    unknown_names,
)
from orchestrator.language._schema_errors import schema_problems
from orchestrator.language._shared_metrics import (
    SharedMetrics,
    journey_problems,
    load_shared_metrics_text,
    merged_metrics,
    shared_metrics_file,
)
from orchestrator.language._templates_check import (
    TemplateSource,
    check_templates,
    instance_reads,
    template_reads,
)
from orchestrator.language._tracking_plan import ENGINE_EVENTS, EventCatalog, catalog_for
from orchestrator.language._yamlio import Locations, Path_, Problem, SpecError, dotted, load_yaml, read_text

__all__ = [
    "ADDRESS_FIELD",
    "CHANNELS",
    "CONSENT_CHANNELS",
    "ENGINE_EVENTS",
    "ENTRY",
    "NO_STATE",
    "TEST_FILE_SUFFIXES",
    "WORKSPACE_FILES",
    "Channel",
    "Consent",
    "ConsentChannel",
    "ContactPolicy",
    "Cooldown",
    "DiagramCounts",
    "EventCatalog",
    "Journey",
    "JourneyPlan",
    "KnownNames",
    "LoadedJourney",
    "Locations",
    "MatchTerm",
    "Path_",
    "Problem",
    "Send",
    "SharedMetrics",
    "SpecError",
    "StepKind",
    "StepPlan",
    "TemplateSource",
    "catalog_for",
    "catalog_names",
    "check_templates",
    "compile_journey",
    "compile_loaded",
    "digest_with",
    "dotted",
    "find_journey_files",
    "instance_reads",
    "journey_problems",
    "load_journey",
    "load_journey_text",
    "load_shared_metrics_text",
    "load_yaml",
    "merged_metrics",
    "metric_typos",
    "policy_for",
    "read_text",
    "references",
    "schema_problems",
    "shared_metric_typos",
    "shared_metrics_file",
    "split_trigger",
    "step_words",
    "template_problems",
    "template_reads",
    "templates_root_for",
    "transition_words",
    "unknown_names",
    "until_words",
]


# Files in a journeys folder that are not journeys: the contact policy, the shared metrics and the
# tracking plan.
WORKSPACE_FILES = ("policy.yaml", "policy.yml", "metrics.yaml", "metrics.yml", "events.yaml", "events.yml")
#: Journey test files (``orchestrator test``) sit beside the journeys and are not journeys.
TEST_FILE_SUFFIXES = (".test.yaml", ".test.yml")


def find_journey_files(paths: Iterable[str | Path]) -> list[Path]:
    """Journey files named directly, or found (``*.yaml``/``*.yml``) under directories, skipping
    ``templates`` folders, the contact policy, the shared metrics file, the tracking plan and journey test
    files (``*.test.yaml``)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]):
                rel = candidate.relative_to(path).parts
                skipped = candidate.name in WORKSPACE_FILES or candidate.name.endswith(TEST_FILE_SUFFIXES)
                if "templates" in rel[:-1] or skipped:
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
