"""Each package's public surface is pinned here: a change to one is a deliberate edit of this file.

Every package under ``orchestrator/`` has an ``__init__.py`` with a docstring saying what it holds and an
``__all__`` naming what other packages (and users) may import from it; every name listed exists.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PUBLIC: dict[str, list[str]] = {
    "orchestrator": ["__version__"],
    "orchestrator.channels": [
        "AT_MOST_ONCE", "Adapter", "ApnsAdapter", "ApnsSettings", "Backoff", "CHANNELS", "ChannelLanes",
        "ChannelRouter", "DeliveryMode", "DeliveryOutcome", "DeliveryResult", "DeliveryStatus",
        "EmailSettings", "FcmAdapter", "FcmSettings", "HttpPushAdapter", "HttpSmsAdapter", "JsonSmsAdapter",
        "JsonSmsSettings", "Keyring", "MemoryAdapter", "MessageLinks", "NoAdapterError", "OutboxAdapter",
        "OutgoingMessage", "PreparedContext", "ProviderLimits", "ProviderSetupError", "PushRules",
        "RateLimiter", "SmsRules", "SmtpAdapter", "SmtpSettings", "TemplateError", "TemplateRenderer",
        "TrackingLinks", "TwilioSmsSettings", "UnsubscribeLinks", "WebhookAdapter", "WebhookEndpoint",
        "build_router", "count_segments", "message_links", "parse_delivery_modes",
    ],
    "orchestrator.channels.templates": ["PreparedContext", "TemplateError", "TemplateRenderer"],
    "orchestrator.cli": ["DEFAULT_JOURNEYS", "DEFAULT_OUTBOX", "main", "print_json", "run_guarded"],
    "orchestrator.config": [
        "AnyChannel", "ApiKey", "ApnsChannel", "CHANNEL_NAMES", "CONFIG_FILE", "ConfigError", "ConfigFile",
        "FcmChannel", "HttpSmsChannel", "HttpWebhookChannel", "OutboxChannel", "Secret", "Sender",
        "SmtpChannel", "TwilioChannel", "Unsubscribe", "Webhook", "WorkspaceConfig", "WorkspaceExists",
        "effective", "effective_yaml", "find_config", "init_workspace", "load_config", "mask_url",
        "routes_of", "unsubscribe_missing",
    ],
    "orchestrator.demo": ["run_demo"],
    "orchestrator.engine": [
        "AttemptLog", "ClockBehind", "CommittedEvents", "DaemonSettings", "Engine", "EventsHandler",
        "IngestCount", "Ingestor", "PreviewError", "Routes", "TickReport", "Workspace", "WorkspaceFiles",
        "crash_test_provider", "engine_health", "failure_text", "judge_health", "load_frames",
        "load_workspace", "message_row", "migration_problems", "missing_customer_attributes", "send_test",
        "serve", "signal_matches", "store_problems", "stored_attributes", "unsubscribe_warnings",
        "validate_paths",
    ],
    "orchestrator.http": [
        "MAX_EVENT_BYTES", "MAX_REQUEST_BYTES", "RunningServer", "create_app", "listen_address", "serve",
        "start_in_thread",
    ],
    "orchestrator.ingest": [
        "EventBuilder", "EventChunk", "EventsCallback", "FORMATS", "Inbox", "IngestError", "IngestReport",
        "IngestedEvents", "KINDS", "Reject", "TimeRange", "UPDATED_AT_LEEWAY_US", "customer_row",
        "event_keys", "exact_json", "ingest_events_records", "ingest_file", "may_hold_long_integer",
        "parse_ts_text", "record_click", "record_open", "time_range", "unsubscribe",
    ],
    "orchestrator.language": [
        "ADDRESS_FIELD", "CHANNELS", "CONSENT_CHANNELS", "Channel", "Consent", "ConsentChannel",
        "ContactPolicy", "Cooldown", "ENGINE_EVENTS", "ENTRY", "EventCatalog", "Journey", "JourneyPlan",
        "KnownNames", "LoadedJourney", "Locations", "MatchTerm", "NO_STATE", "Path_", "Problem", "Send",
        "SharedMetrics", "SpecError", "StepPlan", "TemplateSource", "WORKSPACE_FILES", "catalog_for",
        "catalog_names", "check_templates", "compile_journey", "compile_loaded", "digest_with", "dotted",
        "find_journey_files", "instance_reads", "journey_problems", "load_journey", "load_journey_text",
        "load_shared_metrics_text", "load_yaml", "merged_metrics", "metric_typos", "policy_for",
        "read_text", "references", "schema_problems", "shared_metric_typos", "shared_metrics_file",
        "split_trigger", "template_problems", "template_reads", "templates_root_for", "unknown_names",
    ],
    "orchestrator.measure": [
        "DEFAULT_SEQUENTIAL_TAU", "analyze", "export_entries", "format_analysis", "format_table",
        "journey_report", "render_analysis_html", "render_journey_html", "report_text",
    ],
    "orchestrator.signals": [
        "AggregateCache", "Call", "Categorical", "CustomerFrame", "Evaluator", "EventFrame", "EventLog",
        "ExpressionError", "IncrementalAggregates", "IncrementalConditions", "Node", "Property",
        "column_from_values", "free_names", "lang", "parse", "property_uses", "to_python",
    ],
    "orchestrator.store": ["DEFAULT_URL", "SchemaError", "Store", "database_url", "open_store", "sqlite_url"],
}  # fmt: skip


def _packages() -> list[str]:
    found = sorted((ROOT / "orchestrator").rglob("__init__.py"))
    return [".".join(path.parent.relative_to(ROOT).parts) for path in found]


def test_every_package_is_pinned() -> None:
    assert _packages() == sorted(PUBLIC)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_the_pinned_ones(package: str) -> None:
    module = importlib.import_module(package)
    assert (module.__doc__ or "").strip(), f"{package} has no docstring"
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{package}.__all__ names something twice"
    assert sorted(exported) == sorted(PUBLIC[package])


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_exists(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
