"""The engine: one tick (evaluate, enter, advance, convert, dispatch) over a workspace, and the daemon.

Import from the package; its modules (named with a leading underscore) are internal. ``_workspace``
loads and checks the journeys, templates and policy an engine runs; ``_tick`` holds the ``Engine`` and
its tick; per stage: ``_signal_state`` and ``_customer_state`` (what is kept between ticks), ``_snapshot``
(the columns a tick reads from the store), ``_entry`` (entering journeys and the re-entry cooldown, with
the holdout of ``orchestrator.holdout``), ``_stepping`` (advancing instances as sets), ``_conditions``
and ``_matching`` (branches and waits), ``_localtime`` (customers' calendars), ``_contact_policy``
(quiet hours, caps, consent, exclusions), ``_render`` and ``_dispatch`` (messages to the channels'
adapters, after commit). Around it: ``_daemon`` (the schedule and its log lines), ``_reload`` (the
workspace reloaded while running), ``_workers`` (several processes on PostgreSQL), ``_stopwatch`` (the
tick's timings), ``_health``, ``_preview`` (what ``preview`` shows and ``send-test`` sends),
``_validation`` (the checks that need the store), ``_state_snapshot`` (the signal state written to a file
and loaded at start-up, so a restart reads only newer events), ``_weekly`` (the weekly report the daemon
emails, once a week), ``_template_data`` and ``_backtest`` (past events
replayed through the journeys on a simulated clock in a scratch store). What every face shows of the
engine lives here once: ``explain`` (what happened to one customer, and why, worded by ``_reasons``),
``audience`` (who a journey would reach now: ``_audience``, with ``_first_send`` and
``_audience_policy``), ``plan_report`` and ``status_report`` (what ``plan`` and ``status`` report),
``journeys_overview`` and ``journey_detail`` (``_overview``: the journeys and one journey, as the console
shows them). ``_handover`` states what the engine takes from ingest (the inbox, events committed in this
process): the engine never imports ``orchestrator.ingest``.

The names below are imported when first used (PEP 562), so importing one module of the engine does not
load the daemon's scheduler or the channels' providers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator._lazy import lazy_exports

if TYPE_CHECKING:
    from orchestrator.engine._audience import Audience, UnknownJourney, audience
    from orchestrator.engine._backtest import BacktestRun, PastEvents, backtest, tick_instants
    from orchestrator.engine._daemon import AttemptLog, DaemonSettings, crash_test_provider, serve
    from orchestrator.engine._explain import UnknownCustomer, explain, iso
    from orchestrator.engine._handover import CommittedEvents, EventsHandler, IngestCount, Ingestor
    from orchestrator.engine._health import engine_health, judge_health
    from orchestrator.engine._overview import (
        JourneyDetail,
        JourneyNotRun,
        JourneyOverview,
        JourneysOverview,
        journey_detail,
        journey_plan,
        journeys_overview,
    )
    from orchestrator.engine._plan_report import plan_report
    from orchestrator.engine._preview import PreviewError, render_step, send_step, send_test
    from orchestrator.engine._reload import WorkspaceFiles
    from orchestrator.engine._signal_state import prediction_fits
    from orchestrator.engine._snapshot import load_frames, signal_matches
    from orchestrator.engine._state_snapshot import SnapshotSettings
    from orchestrator.engine._status import status_report
    from orchestrator.engine._template_data import missing_customer_attributes, stored_attributes
    from orchestrator.engine._tick import ClockBehind, Engine, TickReport, failure_text, migration_problems
    from orchestrator.engine._validation import store_problems
    from orchestrator.engine._weekly import WeeklySchedule, due_instant, report_message, send_weekly_report
    from orchestrator.engine._workspace import (
        Routes,
        Workspace,
        load_workspace,
        unsubscribe_warnings,
        validate_paths,
    )

_EXPORTS: dict[str, str] = {
    "WeeklySchedule": "orchestrator.engine._weekly",
    "due_instant": "orchestrator.engine._weekly",
    "report_message": "orchestrator.engine._weekly",
    "send_weekly_report": "orchestrator.engine._weekly",
    "BacktestRun": "orchestrator.engine._backtest",
    "PastEvents": "orchestrator.engine._backtest",
    "backtest": "orchestrator.engine._backtest",
    "tick_instants": "orchestrator.engine._backtest",
    "Audience": "orchestrator.engine._audience",
    "UnknownJourney": "orchestrator.engine._audience",
    "audience": "orchestrator.engine._audience",
    "AttemptLog": "orchestrator.engine._daemon",
    "ClockBehind": "orchestrator.engine._tick",
    "CommittedEvents": "orchestrator.engine._handover",
    "DaemonSettings": "orchestrator.engine._daemon",
    "SnapshotSettings": "orchestrator.engine._state_snapshot",
    "Engine": "orchestrator.engine._tick",
    "EventsHandler": "orchestrator.engine._handover",
    "IngestCount": "orchestrator.engine._handover",
    "Ingestor": "orchestrator.engine._handover",
    "JourneyDetail": "orchestrator.engine._overview",
    "JourneyOverview": "orchestrator.engine._overview",
    "JourneysOverview": "orchestrator.engine._overview",
    "PreviewError": "orchestrator.engine._preview",
    "Routes": "orchestrator.engine._workspace",
    "TickReport": "orchestrator.engine._tick",
    "UnknownCustomer": "orchestrator.engine._explain",
    "JourneyNotRun": "orchestrator.engine._overview",
    "Workspace": "orchestrator.engine._workspace",
    "WorkspaceFiles": "orchestrator.engine._reload",
    "crash_test_provider": "orchestrator.engine._daemon",
    "engine_health": "orchestrator.engine._health",
    "failure_text": "orchestrator.engine._tick",
    "iso": "orchestrator.engine._explain",
    "explain": "orchestrator.engine._explain",
    "plan_report": "orchestrator.engine._plan_report",
    "journey_detail": "orchestrator.engine._overview",
    "journey_plan": "orchestrator.engine._overview",
    "journeys_overview": "orchestrator.engine._overview",
    "judge_health": "orchestrator.engine._health",
    "load_frames": "orchestrator.engine._snapshot",
    "load_workspace": "orchestrator.engine._workspace",
    "migration_problems": "orchestrator.engine._tick",
    "missing_customer_attributes": "orchestrator.engine._template_data",
    "prediction_fits": "orchestrator.engine._signal_state",
    "render_step": "orchestrator.engine._preview",
    "send_step": "orchestrator.engine._preview",
    "send_test": "orchestrator.engine._preview",
    "serve": "orchestrator.engine._daemon",
    "signal_matches": "orchestrator.engine._snapshot",
    "status_report": "orchestrator.engine._status",
    "store_problems": "orchestrator.engine._validation",
    "stored_attributes": "orchestrator.engine._template_data",
    "unsubscribe_warnings": "orchestrator.engine._workspace",
    "validate_paths": "orchestrator.engine._workspace",
}

__all__ = [
    "AttemptLog",
    "Audience",
    "BacktestRun",
    "ClockBehind",
    "CommittedEvents",
    "DaemonSettings",
    "Engine",
    "EventsHandler",
    "IngestCount",
    "Ingestor",
    "JourneyDetail",
    "JourneyNotRun",
    "JourneyOverview",
    "JourneysOverview",
    "PastEvents",
    "PreviewError",
    "Routes",
    "SnapshotSettings",
    "TickReport",
    "UnknownCustomer",
    "UnknownJourney",
    "WeeklySchedule",
    "Workspace",
    "WorkspaceFiles",
    "audience",
    "backtest",
    "crash_test_provider",
    "due_instant",
    "engine_health",
    "explain",
    "failure_text",
    "iso",
    "journey_detail",
    "journey_plan",
    "journeys_overview",
    "judge_health",
    "load_frames",
    "load_workspace",
    "migration_problems",
    "missing_customer_attributes",
    "plan_report",
    "prediction_fits",
    "render_step",
    "report_message",
    "send_step",
    "send_test",
    "send_weekly_report",
    "serve",
    "signal_matches",
    "status_report",
    "store_problems",
    "stored_attributes",
    "tick_instants",
    "unsubscribe_warnings",
    "validate_paths",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
