"""Events and customer files into the store, rejecting bad rows with reasons and keeping the rest.

``readers`` reads JSONL, CSV and Parquet into typed chunks, ``keys`` gives every event its idempotency key,
``pipeline`` stores the chunks (``ingest_file``, ``ingest_events_records``) and hands each committed chunk
of events on, ``summary`` counts what happened (``IngestReport``), ``inbox`` is the folder the daemon
drains before each tick (``Inbox``, the engine's ``Ingestor``), and ``feedback`` records what messages
bring back (opens, clicks, unsubscribes).
"""

from orchestrator.ingest.feedback import record_click, record_open, unsubscribe
from orchestrator.ingest.inbox import Inbox
from orchestrator.ingest.keys import event_keys
from orchestrator.ingest.pipeline import (
    KINDS,
    UPDATED_AT_LEEWAY_US,
    EventsCallback,
    IngestedEvents,
    ingest_events_records,
    ingest_file,
    time_range,
)
from orchestrator.ingest.readers import (
    FORMATS,
    EventBuilder,
    EventChunk,
    TimeRange,
    customer_row,
    exact_json,
    may_hold_long_integer,
    parse_ts_text,
)
from orchestrator.ingest.summary import IngestError, IngestReport, Reject

__all__ = [
    "FORMATS",
    "KINDS",
    "UPDATED_AT_LEEWAY_US",
    "EventBuilder",
    "EventChunk",
    "EventsCallback",
    "Inbox",
    "IngestError",
    "IngestReport",
    "IngestedEvents",
    "Reject",
    "TimeRange",
    "customer_row",
    "event_keys",
    "exact_json",
    "ingest_events_records",
    "ingest_file",
    "may_hold_long_integer",
    "parse_ts_text",
    "record_click",
    "record_open",
    "time_range",
    "unsubscribe",
]
