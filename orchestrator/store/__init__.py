"""The store: the tables and every statement that reads or writes them. It is the only package that speaks
SQL; the engine, ingest, measurement, the command line and the HTTP service import the names below
(``from orchestrator.store import Store, due_instances``), never a module of the store nor SQLAlchemy.

The modules hold, by what they read and write together:

- ``_db``: opening a store (``open_store``, ``Store``);
- ``_schema`` and ``migrations/``: the schema's history as Alembic migrations, applied on open;
- ``_tables``: the table declarations;
- ``_versions``: registered journey versions and the migrations between them;
- ``_entry_state``: signal memberships, entry history, entry cursors and the events entry reads;
- ``_assignments``: holdout assignments, decided once at entry;
- ``_instances``: instances created, read when due, moved between steps and finished;
- ``_conversions``: instances not yet converted, conversion rows, and each entry's outcome for reports;
- ``_ledger``: the message ledger, queued with the steps, read and updated by dispatch, and suppressions;
- ``_message_outcomes``: each message of a journey with its opens, clicks and opt-outs, for reports;
- ``_retired``: retired journeys;
- ``_status``: read-only counts for the status command and the daemon;
- ``_overview``: read-only summaries of the journeys for the console (versions, entries, latest sends);
- ``_health``: journeys marked failed;
- ``_ticks``: one row per tick, with its timings and counts;
- ``_metrics``: cheap reads for a metrics scrape;
- ``_customers``: customer records, keys, attributes and consents;
- ``_events``: events written in bulk and read back as columns, event types and sources;
- ``_catalog``: the names the store has seen (event types, properties, customer attributes);
- ``_failures``: database errors as one line for people;
- ``_feedback``: opt-outs, opens and clicks told back through message links;
- ``_guardrails``: what a journey's guardrails read (opt-outs, complaints, bounces, messages handed over);
- ``_backtests``: the grouped counts a backtest report reads, and the reports kept (``backtest_reports``);
- ``_program``: what the program's lift reads beside the events (the first tick, the global-holdout
  percents recorded, who entered a journey in a period, who was ever treated);
- ``_predictions``: the fits of the churn and lifetime-value models kept (``prediction_fits``);
- ``_reports``: the scheduled reports the daemon sends, claimed before sending (``report_sends``);
- ``_send_choices``: what send steps that choose per customer (best time) chose, and why (``send_choices``);
- ``_batches``: one row of counts per ingest;
- ``_wal``: SQLite's write-ahead log for a writer that commits often (checkpoints, the writer's settings);
- ``_leases``: how several workers share a PostgreSQL store (advisory locks, leased claims);
- ``_partitions``: customers hashed into partitions, each owned by one worker through a lease;
- ``_holder``: the one engine process of a SQLite store;
- ``_audience``: whole-base reads for audience estimates (recent marketing sends, suppressed customers);
- ``_readback``: whole-table reads of instances, ledger, conversions and suppressions, for tests;
- ``_bulk``: the row and column helpers the modules share.

Every function takes a Connection that is already inside the caller's transaction, so a tick can write
state changes, ledger rows and conversions atomically. Reads return numpy columns or named rows; writes
take columns and run as one executemany (through the DBAPI cursor on SQLite, which binds rows in C) or one
set-based statement each. Nothing here loops over customers with a query.
"""

from __future__ import annotations

from sqlalchemy import Connection

from orchestrator.store import _leases as leases
from orchestrator.store._assignments import holdout_assignments, insert_assignments
from orchestrator.store._audience import marketing_sends_since, suppressed_customer_keys
from orchestrator.store._backtests import (
    ConversionCount,
    EntryCount,
    LedgerCount,
    OutcomeCount,
    SavedReport,
    StoredHistory,
    conversions_per_arm,
    customer_count,
    customer_rows,
    customers_in_journeys,
    entries_by_day,
    instance_outcomes,
    journey_overlap,
    ledger_by_day,
    save_backtest,
    saved_backtest,
    saved_backtests,
    sent_per_customer_week,
    stored_history,
)
from orchestrator.store._batches import record_ingest_batch
from orchestrator.store._catalog import SeenNames, customer_attribute_names, seen_names
from orchestrator.store._conversions import (
    CustomerConversion,
    EntryOutcomes,
    OpenInstances,
    customer_conversions,
    entry_outcomes,
    goal_event_customers,
    insert_conversions,
    max_instance_id,
    unconverted_instances,
)
from orchestrator.store._customers import (
    RECORD_TIME,
    CustomerContact,
    CustomerValues,
    customer_contact,
    customer_ids,
    customer_key,
    customer_keys_by_id,
    customer_records,
    ensure_customer_keys,
    load_customer_values,
    max_key,
    max_revision,
    read_customer_values,
    upsert_customers,
)
from orchestrator.store._db import (
    DEFAULT_URL,
    SchemaError,
    Store,
    database_url,
    in_memory,
    is_database_error,
    open_scratch_store,
    open_store,
    schema_version,
    sqlite_file,
    sqlite_url,
)
from orchestrator.store._entry_state import (
    EntryEvents,
    EntryHistory,
    entry_cursor,
    entry_cursors,
    entry_events,
    entry_history,
    event_type_id,
    max_event_id,
    set_entry_cursor,
    signal_members,
    update_signal_members,
)
from orchestrator.store._events import (
    EventColumns,
    TextColumn,
    TimedEvents,
    event_source,
    event_type_ids,
    events_between,
    events_fingerprint,
    insert_new_events,
    load_events,
    load_new_events,
)
from orchestrator.store._failures import describe_database_error
from orchestrator.store._feedback import TrackedMessage, record_opt_out, record_tracked_event, tracked_message
from orchestrator.store._funnel import (
    BEFORE_COUNTING,
    ENTRY_TRIGGER,
    EXIT_WHEN,
    MIGRATED,
    MOVED,
    RETIRED,
    ArmConversions,
    FunnelCount,
    StepMessages,
    add_funnel_counts,
    conversion_counts,
    funnel_counts,
    step_message_counts,
)
from orchestrator.store._guardrails import (
    MessageOutcomes,
    Moments,
    journey_bounces,
    journey_customer_events,
    journey_message_outcomes,
    journey_opt_outs,
)
from orchestrator.store._health import JourneyFailure, failed_journeys, record_health
from orchestrator.store._holder import Holding, StoreHeld, hold
from orchestrator.store._instances import (
    CustomerInstance,
    DueInstances,
    active_instances,
    customer_instances,
    due_instances,
    finish_instances,
    finish_steps,
    insert_instances,
    instance_data,
    latest_instance_data,
    mark_first_sends,
    move_instances,
    set_instance_data,
)
from orchestrator.store._ledger import (
    CustomerMessage,
    DueMessage,
    MessageOutcome,
    SentMessage,
    SuppressedAddress,
    address_suppressions,
    customer_messages,
    customers_sent_since,
    due_messages,
    first_sent_messages,
    insert_messages,
    mark_in_flight,
    message_outcomes,
    queue_messages,
    recent_sends,
    record_outcomes,
    record_test_send,
    settle_in_flight,
    suppress_addresses,
    suppressed_addresses,
)
from orchestrator.store._message_outcomes import JourneyMessages, journey_messages
from orchestrator.store._metrics import (
    StoredTick,
    last_tick_id,
    message_counts,
    ping,
    sent_by_journey,
    ticks_after,
)
from orchestrator.store._overview import (
    LedgerEntry,
    entries_since,
    latest_ledger_rows,
    latest_versions,
    retired_versions,
)
from orchestrator.store._partitions import (
    DEFAULT_PARTITIONS,
    Ownership,
    PartitionCountError,
    balance_partitions,
    ensure_partitions,
    join_partitions,
    owned_clause,
    partition_of,
    partition_owners,
    partitions_still_held,
    release_partitions,
)
from orchestrator.store._predictions import StoredFit, latest_prediction_fits, save_prediction_fit
from orchestrator.store._privacy import customer_export
from orchestrator.store._program import (
    entered_customer_keys,
    first_tick_us,
    global_layer_percents,
    treated_customer_keys,
)
from orchestrator.store._readback import (
    ConversionRow,
    InstanceRow,
    LedgerRow,
    SuppressionRow,
    conversion_rows,
    instance_rows,
    ledger_rows,
    query_rows,
    suppression_rows,
)
from orchestrator.store._reports import (
    ReportClaim,
    ReportSendRow,
    claim_report_send,
    report_send,
    report_sends,
    update_report_send,
)
from orchestrator.store._retired import Retirement, lift_retirement, retire_journey, retirement
from orchestrator.store._send_choices import (
    JourneyChoices,
    SendChoiceRow,
    chosen_visits,
    customer_send_choices,
    journey_send_choices,
    record_send_choices,
)
from orchestrator.store._status import (
    Backlog,
    StateCount,
    due_counts,
    last_tick,
    latest_tick_us,
    max_tick_us,
    outbox_backlog,
    recent_tick_instants,
    state_counts,
)
from orchestrator.store._ticks import record_tick
from orchestrator.store._versions import (
    StoredVersion,
    VersionSource,
    active_versions,
    journey_ids,
    latest_version_source,
    migrate_instances,
    migration_applied,
    record_migration,
    register_version,
    stored_version,
    stored_versions,
)
from orchestrator.store._wal import checkpoint_wal, tune_writer_connection

__all__ = [
    "BEFORE_COUNTING",
    "DEFAULT_PARTITIONS",
    "DEFAULT_URL",
    "ENTRY_TRIGGER",
    "EXIT_WHEN",
    "MIGRATED",
    "MOVED",
    "RECORD_TIME",
    "RETIRED",
    "ArmConversions",
    "Backlog",
    "Connection",
    "ConversionCount",
    "ConversionRow",
    "CustomerContact",
    "CustomerConversion",
    "CustomerInstance",
    "CustomerMessage",
    "CustomerValues",
    "DueInstances",
    "DueMessage",
    "EntryCount",
    "EntryEvents",
    "EntryHistory",
    "EntryOutcomes",
    "EventColumns",
    "FunnelCount",
    "Holding",
    "InstanceRow",
    "JourneyChoices",
    "JourneyFailure",
    "JourneyMessages",
    "LedgerCount",
    "LedgerEntry",
    "LedgerRow",
    "MessageOutcome",
    "MessageOutcomes",
    "Moments",
    "OpenInstances",
    "OutcomeCount",
    "Ownership",
    "PartitionCountError",
    "ReportClaim",
    "ReportSendRow",
    "Retirement",
    "SavedReport",
    "SchemaError",
    "SeenNames",
    "SendChoiceRow",
    "SentMessage",
    "StateCount",
    "StepMessages",
    "Store",
    "StoreHeld",
    "StoredFit",
    "StoredHistory",
    "StoredTick",
    "StoredVersion",
    "SuppressedAddress",
    "SuppressionRow",
    "TextColumn",
    "TimedEvents",
    "TrackedMessage",
    "VersionSource",
    "active_instances",
    "active_versions",
    "add_funnel_counts",
    "address_suppressions",
    "balance_partitions",
    "checkpoint_wal",
    "chosen_visits",
    "claim_report_send",
    "conversion_counts",
    "conversion_rows",
    "conversions_per_arm",
    "customer_attribute_names",
    "customer_contact",
    "customer_conversions",
    "customer_count",
    "customer_export",
    "customer_ids",
    "customer_instances",
    "customer_key",
    "customer_keys_by_id",
    "customer_messages",
    "customer_records",
    "customer_rows",
    "customer_send_choices",
    "customers_in_journeys",
    "customers_sent_since",
    "database_url",
    "describe_database_error",
    "due_counts",
    "due_instances",
    "due_messages",
    "ensure_customer_keys",
    "ensure_partitions",
    "entered_customer_keys",
    "entries_by_day",
    "entries_since",
    "entry_cursor",
    "entry_cursors",
    "entry_events",
    "entry_history",
    "entry_outcomes",
    "event_source",
    "event_type_id",
    "event_type_ids",
    "events_between",
    "events_fingerprint",
    "failed_journeys",
    "finish_instances",
    "finish_steps",
    "first_sent_messages",
    "first_tick_us",
    "funnel_counts",
    "global_layer_percents",
    "goal_event_customers",
    "hold",
    "holdout_assignments",
    "in_memory",
    "insert_assignments",
    "insert_conversions",
    "insert_instances",
    "insert_messages",
    "insert_new_events",
    "instance_data",
    "instance_outcomes",
    "instance_rows",
    "is_database_error",
    "join_partitions",
    "journey_bounces",
    "journey_customer_events",
    "journey_ids",
    "journey_message_outcomes",
    "journey_messages",
    "journey_opt_outs",
    "journey_overlap",
    "journey_send_choices",
    "last_tick",
    "last_tick_id",
    "latest_instance_data",
    "latest_ledger_rows",
    "latest_prediction_fits",
    "latest_tick_us",
    "latest_version_source",
    "latest_versions",
    "leases",
    "ledger_by_day",
    "ledger_rows",
    "lift_retirement",
    "load_customer_values",
    "load_events",
    "load_new_events",
    "mark_first_sends",
    "mark_in_flight",
    "marketing_sends_since",
    "max_event_id",
    "max_instance_id",
    "max_key",
    "max_revision",
    "max_tick_us",
    "message_counts",
    "message_outcomes",
    "migrate_instances",
    "migration_applied",
    "move_instances",
    "open_scratch_store",
    "open_store",
    "outbox_backlog",
    "owned_clause",
    "partition_of",
    "partition_owners",
    "partitions_still_held",
    "ping",
    "query_rows",
    "queue_messages",
    "read_customer_values",
    "recent_sends",
    "recent_tick_instants",
    "record_health",
    "record_ingest_batch",
    "record_migration",
    "record_opt_out",
    "record_outcomes",
    "record_send_choices",
    "record_test_send",
    "record_tick",
    "record_tracked_event",
    "register_version",
    "release_partitions",
    "report_send",
    "report_sends",
    "retire_journey",
    "retired_versions",
    "retirement",
    "save_backtest",
    "save_prediction_fit",
    "saved_backtest",
    "saved_backtests",
    "schema_version",
    "seen_names",
    "sent_by_journey",
    "sent_per_customer_week",
    "set_entry_cursor",
    "set_instance_data",
    "settle_in_flight",
    "signal_members",
    "sqlite_file",
    "sqlite_url",
    "state_counts",
    "step_message_counts",
    "stored_history",
    "stored_version",
    "stored_versions",
    "suppress_addresses",
    "suppressed_addresses",
    "suppressed_customer_keys",
    "suppression_rows",
    "ticks_after",
    "tracked_message",
    "treated_customer_keys",
    "tune_writer_connection",
    "unconverted_instances",
    "update_report_send",
    "update_signal_members",
    "upsert_customers",
]
