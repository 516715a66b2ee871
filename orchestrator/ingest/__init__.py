"""Events and customer files into the store, rejecting bad rows with reasons and keeping the rest."""

from orchestrator.ingest.pipeline import IngestedEvents, ingest_events_records, ingest_file
from orchestrator.ingest.summary import IngestError, IngestReport, Reject

__all__ = [
    "IngestError",
    "IngestReport",
    "IngestedEvents",
    "Reject",
    "ingest_events_records",
    "ingest_file",
]
