"""The one face of the journey store the engine, command line, measurement, tests and benchmarks use
(``from orchestrator.store import journeys as sj``); the functions live in modules by what they read and
write together:

- ``versions``: registered journey versions and the migrations between them;
- ``entries``: signal memberships, entry history, entry cursors and the events they read;
- ``assignments``: holdout assignments, decided once at entry;
- ``instances``: instances created, read when due, moved between steps and finished;
- ``conversions``: instances not yet converted, and conversion rows;
- ``ledger``: the message ledger, queued with the steps, read and updated by dispatch, and suppressions;
- ``status``: read-only counts for the status command and the daemon;
- ``bulk``: the row and column helpers they share.

Every function takes a Connection that is already inside the caller's transaction, so a tick can write
state changes, ledger rows and conversions atomically. Reads return numpy columns; writes take columns
and run as one executemany (through the DBAPI cursor on SQLite, which binds rows in C) or one set-based
UPDATE each. Nothing here loops over customers with a query.
"""

from __future__ import annotations

from orchestrator.store.assignments import holdout_assignments, insert_assignments
from orchestrator.store.bulk import CHUNK
from orchestrator.store.conversions import OpenInstances, insert_conversions, unconverted_instances
from orchestrator.store.entry_state import (
    EntryEvents,
    EntryHistory,
    entry_cursor,
    entry_events,
    entry_history,
    event_type_id,
    max_event_id,
    set_entry_cursor,
    signal_members,
    update_signal_members,
)
from orchestrator.store.instances import (
    DueInstances,
    active_instances,
    due_instances,
    finish_instances,
    finish_steps,
    insert_instances,
    instance_data,
    move_instances,
    set_instance_data,
)
from orchestrator.store.ledger import (
    MESSAGE_COLUMNS,
    DueMessage,
    cancel_queued,
    due_messages,
    insert_messages,
    mark_in_flight,
    queue_messages,
    recent_sends,
    record_outcomes,
    settle_in_flight,
    suppress_addresses,
    suppressed_addresses,
)
from orchestrator.store.retired import Retirement, lift_retirement, retire_journey, retirement
from orchestrator.store.status import (
    Backlog,
    StateCount,
    due_counts,
    last_tick,
    latest_tick_us,
    outbox_backlog,
    recent_tick_instants,
    state_counts,
)
from orchestrator.store.versions import (
    StoredVersion,
    active_versions,
    migrate_instances,
    migration_applied,
    record_migration,
    register_version,
    stored_version,
    stored_versions,
)

__all__ = [
    "CHUNK",
    "MESSAGE_COLUMNS",
    "Backlog",
    "DueInstances",
    "DueMessage",
    "EntryEvents",
    "EntryHistory",
    "OpenInstances",
    "Retirement",
    "StateCount",
    "StoredVersion",
    "active_instances",
    "active_versions",
    "cancel_queued",
    "due_counts",
    "due_instances",
    "due_messages",
    "entry_cursor",
    "entry_events",
    "entry_history",
    "event_type_id",
    "finish_instances",
    "finish_steps",
    "holdout_assignments",
    "insert_assignments",
    "insert_conversions",
    "insert_instances",
    "insert_messages",
    "instance_data",
    "last_tick",
    "latest_tick_us",
    "lift_retirement",
    "mark_in_flight",
    "max_event_id",
    "migrate_instances",
    "migration_applied",
    "move_instances",
    "outbox_backlog",
    "queue_messages",
    "recent_sends",
    "recent_tick_instants",
    "record_migration",
    "record_outcomes",
    "register_version",
    "retire_journey",
    "retirement",
    "set_entry_cursor",
    "set_instance_data",
    "settle_in_flight",
    "signal_members",
    "state_counts",
    "stored_version",
    "stored_versions",
    "suppress_addresses",
    "suppressed_addresses",
    "unconverted_instances",
    "update_signal_members",
]
