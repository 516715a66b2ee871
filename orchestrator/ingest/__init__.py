"""Events and customer files into the store, rejecting bad rows with reasons and keeping the rest.

``_readers`` reads JSONL, CSV and Parquet into typed chunks, ``_keys`` gives every event its idempotency key,
``_pipeline`` stores the chunks (``ingest_file``, ``ingest_events_records``) and hands each committed chunk
of events on, ``_summary`` counts what happened (``IngestReport``), ``_inbox`` is the folder the daemon
drains before each tick (``Inbox``, the engine's ``Ingestor``), ``_feedback`` records what messages
bring back (opens, clicks, unsubscribes), and ``_replay`` reads event files whole for a backtest
(``read_events``), without storing them.
"""

from orchestrator.ingest._feedback import record_click, record_open, unsubscribe
from orchestrator.ingest._inbox import Inbox
from orchestrator.ingest._keys import event_keys
from orchestrator.ingest._pipeline import (
    KINDS,
    UPDATED_AT_LEEWAY_US,
    EventsCallback,
    IngestedEvents,
    ingest_events_records,
    ingest_file,
    time_range,
)
from orchestrator.ingest._readers import (
    FORMATS,
    EventBuilder,
    EventChunk,
    TimeRange,
    customer_row,
    exact_json,
    may_hold_long_integer,
    parse_ts_text,
)
from orchestrator.ingest._replay import PastEventsRead, read_events
from orchestrator.ingest._summary import IngestError, IngestReport, Reject

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
    "PastEventsRead",
    "Reject",
    "TimeRange",
    "customer_row",
    "event_keys",
    "exact_json",
    "ingest_events_records",
    "ingest_file",
    "may_hold_long_integer",
    "parse_ts_text",
    "read_events",
    "record_click",
    "record_open",
    "time_range",
    "unsubscribe",
]
