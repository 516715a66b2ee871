"""Each package's public surface is pinned here: a change to one is a deliberate edit of this file.

Every package under ``orchestrator/`` has an ``__init__.py`` with a docstring saying what it holds and an
``__all__`` naming what other packages (and users) may import from it; every name listed exists.
"""

from __future__ import annotations

import importlib
import inspect
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
        "RateLimiter", "SmsRules", "SmtpAdapter", "SmtpSettings", "SpooledMessage", "TemplateError",
        "TemplateRenderer", "TrackingLinks", "TwilioSmsSettings", "UnsubscribeLinks", "WebhookAdapter",
        "WebhookEndpoint", "build_router", "count_segments", "message_links", "parse_delivery_modes",
        "read_spool", "spooled_messages", "unpack_spools",
    ],
    "orchestrator.channels.templates": ["PreparedContext", "TemplateError", "TemplateRenderer"],
    "orchestrator.cli": [
        "DEFAULT_JOURNEYS", "DEFAULT_OUTBOX", "EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "main", "print_json",
        "run_guarded",
    ],
    "orchestrator.config": [
        "AnyChannel", "ApiKey", "ApnsChannel", "CHANNEL_NAMES", "CONFIG_FILE", "ConfigError", "ConfigFile",
        "Console", "FcmChannel", "HttpSmsChannel", "HttpWebhookChannel", "OutboxChannel", "Secret", "Sender",
        "SmtpChannel", "TwilioChannel", "Unsubscribe", "Webhook", "WorkspaceConfig", "WorkspaceExists",
        "effective", "effective_yaml", "find_config", "init_workspace", "load_config", "mask_url",
        "routes_of", "unsubscribe_missing",
    ],
    "orchestrator.demo": ["run_demo"],
    "orchestrator.engine": [
        "AttemptLog", "Audience", "ClockBehind", "CommittedEvents", "DaemonSettings", "Engine",
        "EventsHandler", "IngestCount", "Ingestor", "PreviewError", "Routes", "SnapshotSettings",
        "TickReport", "UnknownCustomer",
        "UnknownJourney", "Workspace", "WorkspaceFiles", "audience", "crash_test_provider", "engine_health",
        "explain", "failure_text", "iso",
        "judge_health", "load_frames", "load_workspace", "migration_problems",
        "missing_customer_attributes", "plan_report", "prediction_fits", "render_step", "send_step",
        "send_test", "serve",
        "signal_matches", "status_report", "store_problems", "stored_attributes", "unsubscribe_warnings",
        "validate_paths",
        # the console's views of the journeys
        "JourneyDetail", "JourneyOverview", "JourneysOverview", "JourneyNotRun", "journey_detail",
        "journey_plan", "journeys_overview",
        # backtests
        "BacktestRun", "PastEvents", "backtest", "tick_instants",
        # the weekly report
        "WeeklySchedule", "due_instant", "report_message", "send_weekly_report",
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
        "PastEventsRead", "read_events",
    ],
    "orchestrator.language": [
        "ADDRESS_FIELD", "CHANNELS", "CONSENT_CHANNELS", "Channel", "Consent", "ConsentChannel",
        "ContactPolicy", "Cooldown", "DiagramCounts", "ENGINE_EVENTS", "ENTRY", "EventCatalog", "Journey",
        "JourneyPlan", "KnownNames", "LoadedJourney", "Locations", "MatchTerm", "NO_STATE", "Path_",
        "Problem", "Send",
        "SharedMetrics", "SpecError", "StepKind", "StepPlan", "TEST_FILE_SUFFIXES", "TemplateSource",
        "WORKSPACE_FILES",
        "catalog_for", "catalog_names", "check_templates", "compile_journey", "compile_loaded",
        "digest_with", "dotted", "find_journey_files", "instance_reads", "journey_problems", "load_journey",
        "load_journey_text", "load_shared_metrics_text", "load_yaml", "merged_metrics", "metric_typos",
        "policy_for", "read_text", "references", "schema_problems", "shared_metric_typos",
        "shared_metrics_file", "split_trigger", "step_words", "template_problems", "template_reads",
        "templates_root_for", "transition_words", "unknown_names", "until_words",
    ],
    "orchestrator.measure": [
        "DEFAULT_SEQUENTIAL_TAU", "InputError", "analyze", "export_entries", "format_analysis",
        "format_table", "journey_report", "read_experiment", "render_analysis_html", "render_journey_html",
        "report_text",
        "BacktestReport", "BacktestSection", "backtest_heading", "backtest_html", "backtest_report",
        "backtest_sections", "compare_backtests", "comparison_html", "comparison_sections",
        # the per-step funnel
        "JourneyFunnel", "export_funnel", "funnel_lines", "journey_funnel", "journey_funnels",
        # every journey side by side
        "Portfolio", "portfolio", "portfolio_lines",
        # the program's lift (the global holdout against everyone else) and the portfolio page
        "ProgramLift", "program_lift", "render_portfolio_html",
        # the weekly report
        "WeeklyEmail", "WeeklyReport", "weekly_email", "weekly_html", "weekly_report",
        # engagement analytics
        "Analytics", "AnalyticsSettings", "analytics_heading", "analytics_html", "analytics_sections",
        "engagement_analytics", "export_analytics",
        # the uplift view
        "UpliftResult", "UpliftSetupError", "UpliftView", "auuc", "qini_coefficient", "uplift_estimate",
        "uplift_lines",
    ],
    "orchestrator.predict": [
        "UNIT_DAYS", "BetaGeo", "FitReport", "Fitted", "GammaGamma", "HoldoutCheck", "NotEnoughHistory",
        "PredictSetupError", "PurchaseSummary", "fit_history", "fit_models", "purchase_summary", "summarize",
        "save_fit",
        # every customer's predictions now
        "NoFitKept", "Scores", "export_scores", "score_customers",
    ],
    "orchestrator.signals": [
        "AggregateCache", "Call", "Categorical", "CustomerFrame", "Evaluator", "EventFrame", "EventLog",
        "ExpressionError", "IncrementalAggregates", "IncrementalConditions", "Node", "Property",
        "column_from_values", "free_names", "lang", "parse", "property_uses", "to_python",
        "DAY_US", "UNIT_DAYS", "BetaGeo", "Fit", "GammaGamma", "day_summary", "fit_for", "transaction_days",
    ],
    "orchestrator.store": [
        "Backlog", "Connection", "CustomerContact", "CustomerConversion", "CustomerInstance",
        "CustomerMessage", "CustomerValues", "DEFAULT_URL", "DueInstances", "DueMessage", "EntryEvents",
        "EntryHistory", "EntryOutcomes", "EventColumns", "Holding", "JourneyFailure", "MessageOutcome",
        "OpenInstances", "RECORD_TIME", "Retirement", "SchemaError", "SeenNames", "SentMessage",
        "StateCount", "Store", "StoreHeld", "StoredTick", "StoredVersion", "SuppressedAddress",
        "TextColumn", "TimedEvents", "TrackedMessage", "VersionSource", "active_instances",
        "active_versions", "address_suppressions", "checkpoint_wal", "customer_attribute_names",
        "customer_contact", "customer_conversions", "customer_export", "customer_ids", "customer_instances",
        "customer_key", "join_partitions", "owned_clause",
        "customer_keys_by_id", "customer_messages", "customer_records", "customers_sent_since",
        "database_url", "describe_database_error", "due_counts", "due_instances", "due_messages",
        "ensure_customer_keys",
        "entry_cursor", "entry_cursors", "entry_events", "entry_history", "entry_outcomes", "event_source",
        "event_type_id",
        "event_type_ids", "events_between", "events_fingerprint", "failed_journeys", "finish_instances",
        "finish_steps",
        "first_sent_messages", "hold", "holdout_assignments", "insert_assignments", "insert_conversions",
        "insert_instances", "insert_messages", "insert_new_events", "instance_data", "is_database_error",
        "journey_ids", "last_tick", "last_tick_id", "latest_instance_data", "latest_tick_us",
        "latest_version_source", "leases", "lift_retirement", "load_customer_values", "load_events",
        "load_new_events", "mark_in_flight", "marketing_sends_since", "max_event_id", "max_key",
        "max_revision", "max_tick_us",
        "message_counts", "message_outcomes", "migrate_instances", "migration_applied", "move_instances",
        "open_store", "outbox_backlog", "ping", "queue_messages", "read_customer_values", "recent_sends",
        "recent_tick_instants", "record_health", "record_ingest_batch", "record_migration",
        "record_opt_out", "record_outcomes", "record_test_send", "record_tick", "record_tracked_event",
        "register_version", "retire_journey", "retirement", "seen_names", "set_entry_cursor",
        "sent_by_journey", "set_instance_data", "settle_in_flight", "signal_members", "in_memory",
        "schema_version", "sqlite_file", "sqlite_url", "state_counts",
        "stored_version", "stored_versions", "suppress_addresses", "suppressed_addresses",
        "suppressed_customer_keys", "ticks_after",
        "tracked_message", "tune_writer_connection", "unconverted_instances", "update_signal_members",
        "upsert_customers",
        # readback: whole-table reads for tests (orchestrator.testing)
        "ConversionRow", "InstanceRow", "LedgerRow", "SuppressionRow", "conversion_rows", "instance_rows",
        "ledger_rows", "query_rows", "suppression_rows",
        # overview: the console's summaries of the journeys
        "LedgerEntry", "entries_since", "latest_ledger_rows", "latest_versions", "retired_versions",
        # backtests: what a report reads from its scratch store, the reports kept, a store's past
        "ConversionCount", "EntryCount", "LedgerCount", "OutcomeCount", "SavedReport", "StoredHistory",
        "conversions_per_arm", "customer_count", "customer_rows", "customers_in_journeys", "entries_by_day",
        "instance_outcomes", "journey_overlap", "ledger_by_day", "save_backtest", "saved_backtest",
        "saved_backtests", "sent_per_customer_week", "stored_history",
        # conversions looked for where they can happen (the goal's new events, the new instances)
        "goal_event_customers", "max_instance_id", "open_scratch_store",
        # the instant each instance passed its first send step (goal windows from the first send)
        "mark_first_sends",
        # the per-step funnel's counts
        "ArmConversions", "BEFORE_COUNTING", "ENTRY_TRIGGER", "EXIT_WHEN", "FunnelCount", "MIGRATED", "MOVED",
        "RETIRED", "StepMessages", "add_funnel_counts", "conversion_counts", "funnel_counts",
        "step_message_counts",
        "StoredFit", "latest_prediction_fits", "save_prediction_fit",
        # the weekly report's weeks, claimed before sending
        "ReportClaim", "ReportSendRow", "claim_report_send", "report_send", "report_sends",
        "update_report_send",
        # what send steps that choose per customer (best time) chose
        "JourneyChoices", "SendChoiceRow", "chosen_visits", "customer_send_choices", "journey_send_choices",
        "record_send_choices",
        # each message of a journey with its opens, clicks and opt-outs (the report's per-message table)
        "JourneyMessages", "journey_messages",
        # the program's lift: the first tick, the global-holdout percents recorded, who entered a journey
        "entered_customer_keys", "first_tick_us", "global_layer_percents", "treated_customer_keys",
        # what a journey's guardrails read (opt-outs, complaints, bounces, messages handed over)
        "MessageOutcomes", "Moments", "journey_bounces", "journey_customer_events",
        "journey_message_outcomes", "journey_opt_outs",
        # customers hashed into partitions, each owned by one worker through a lease
        "DEFAULT_PARTITIONS", "Ownership", "PartitionCountError", "balance_partitions", "ensure_partitions",
        "partition_of", "partition_owners", "partitions_still_held", "release_partitions",
    ],
    "orchestrator.store.migrations": ["FOLDER"],
    "orchestrator.store.migrations.versions": [],
    "orchestrator.testing": [
        "CONSENTED", "CaseResult", "CoverageGap", "Instance", "JourneyTestRunner", "MemoryAdapter",
        "PostgresServer", "SimClock", "T0", "TestCase", "TestFailure", "TestFile", "TestRunReport", "World",
        "at", "customer", "duration", "event", "find_test_files", "phone_for", "postgres_bin",
        "read_test_file", "run_journey_tests", "write_files",
    ],
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


# Internal modules a package exports as namespaces under a public name (``lang.parse``,
# ``references.unknown_names``).
MODULES = {
    "orchestrator.language": {"references"},
    "orchestrator.signals": {"lang"},
    "orchestrator.store": {"leases"},
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_no_public_name_is_shadowed_by_a_module(package: str) -> None:
    # Importing a submodule binds its name on the package, over a name the package exports lazily.
    module = importlib.import_module(package)
    folder = Path(module.__file__ or "").parent
    submodules = {path.stem for path in folder.glob("*.py")}
    submodules |= {path.parent.name for path in folder.glob("*/__init__.py")}
    assert set(module.__all__) & submodules == set()


@pytest.mark.parametrize("package", sorted(MODULES))
def test_namespace_exports_are_internal_modules(package: str) -> None:
    module = importlib.import_module(package)
    for name in MODULES[package]:
        assert inspect.ismodule(getattr(module, name))
        assert getattr(module, name).__name__ == f"{package}._{name}"
