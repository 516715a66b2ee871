"""The engine: one tick (evaluate, enter, advance, convert, dispatch) over a workspace, and the daemon.

``workspace`` loads and checks the journeys, templates and policy an engine runs; ``tick`` holds the
``Engine`` and its tick; per stage: ``signal_state`` and ``customer_state`` (what is kept between ticks),
``snapshot`` (the columns a tick reads from the store), ``entry`` (entering journeys, with the holdout of
``orchestrator.holdout``), ``stepping`` (advancing instances as sets), ``conditions`` and ``matching``
(branches and waits), ``localtime`` (customers' calendars), ``contact_policy`` (caps, quiet hours, consent,
exclusions), ``render`` and ``dispatch`` (messages to the channels' adapters, after commit). Around it:
``daemon`` (the schedule and its log lines), ``reload`` (the workspace reloaded while running), ``workers``
(several processes on PostgreSQL), ``stopwatch`` (the tick's timings), ``health``, ``preview`` (``preview``
and ``send-test``), ``validation`` (the checks that need the store) and ``template_data``. What every face
shows of the engine lives here once: ``explain`` (what happened to one customer, and why), ``plan_report``
and ``status`` (what ``plan`` and ``status`` report). ``handover`` states what the engine takes from
ingest (the inbox, events committed in this process): the engine never imports ``orchestrator.ingest``.

The names below are imported when first used (PEP 562), so importing one module of the engine does not
load the daemon's scheduler or the channels' providers. A name exported here must not also be the name
of one of the package's modules (importing the module would rebind it): the functions ``explain`` and
``plan_report`` are imported from their modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.engine.daemon import AttemptLog, DaemonSettings, crash_test_provider, serve
    from orchestrator.engine.explain import UnknownCustomer, iso
    from orchestrator.engine.handover import CommittedEvents, EventsHandler, IngestCount, Ingestor
    from orchestrator.engine.health import engine_health, judge_health
    from orchestrator.engine.preview import PreviewError, render_step, send_step, send_test
    from orchestrator.engine.reload import WorkspaceFiles
    from orchestrator.engine.snapshot import load_frames, signal_matches
    from orchestrator.engine.status import status_report
    from orchestrator.engine.template_data import missing_customer_attributes, stored_attributes
    from orchestrator.engine.tick import ClockBehind, Engine, TickReport, failure_text, migration_problems
    from orchestrator.engine.validation import store_problems
    from orchestrator.engine.workspace import (
        Routes,
        Workspace,
        load_workspace,
        unsubscribe_warnings,
        validate_paths,
    )

_EXPORTS: dict[str, str] = {
    "AttemptLog": "orchestrator.engine.daemon",
    "ClockBehind": "orchestrator.engine.tick",
    "CommittedEvents": "orchestrator.engine.handover",
    "DaemonSettings": "orchestrator.engine.daemon",
    "Engine": "orchestrator.engine.tick",
    "EventsHandler": "orchestrator.engine.handover",
    "IngestCount": "orchestrator.engine.handover",
    "Ingestor": "orchestrator.engine.handover",
    "PreviewError": "orchestrator.engine.preview",
    "Routes": "orchestrator.engine.workspace",
    "TickReport": "orchestrator.engine.tick",
    "UnknownCustomer": "orchestrator.engine.explain",
    "Workspace": "orchestrator.engine.workspace",
    "WorkspaceFiles": "orchestrator.engine.reload",
    "crash_test_provider": "orchestrator.engine.daemon",
    "engine_health": "orchestrator.engine.health",
    "failure_text": "orchestrator.engine.tick",
    "iso": "orchestrator.engine.explain",
    "judge_health": "orchestrator.engine.health",
    "load_frames": "orchestrator.engine.snapshot",
    "load_workspace": "orchestrator.engine.workspace",
    "migration_problems": "orchestrator.engine.tick",
    "missing_customer_attributes": "orchestrator.engine.template_data",
    "render_step": "orchestrator.engine.preview",
    "send_step": "orchestrator.engine.preview",
    "send_test": "orchestrator.engine.preview",
    "serve": "orchestrator.engine.daemon",
    "signal_matches": "orchestrator.engine.snapshot",
    "status_report": "orchestrator.engine.status",
    "store_problems": "orchestrator.engine.validation",
    "stored_attributes": "orchestrator.engine.template_data",
    "unsubscribe_warnings": "orchestrator.engine.workspace",
    "validate_paths": "orchestrator.engine.workspace",
}

__all__ = [
    "AttemptLog",
    "ClockBehind",
    "CommittedEvents",
    "DaemonSettings",
    "Engine",
    "EventsHandler",
    "IngestCount",
    "Ingestor",
    "PreviewError",
    "Routes",
    "TickReport",
    "UnknownCustomer",
    "Workspace",
    "WorkspaceFiles",
    "crash_test_provider",
    "engine_health",
    "failure_text",
    "iso",
    "judge_health",
    "load_frames",
    "load_workspace",
    "migration_problems",
    "missing_customer_attributes",
    "render_step",
    "send_step",
    "send_test",
    "serve",
    "signal_matches",
    "status_report",
    "store_problems",
    "stored_attributes",
    "unsubscribe_warnings",
    "validate_paths",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
