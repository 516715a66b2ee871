"""A folder the daemon ingests from before each tick.

Files dropped into the inbox (``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``, events or customers) are
ingested in name order through the ordinary ingest path, and each committed chunk of events is handed to
the engine's signal state as it commits, so the next tick does not read those events back from the store.
A file is then moved to ``done/`` (its rejected rows, if any, beside it as ``NAME.rejects.jsonl``), or to
``failed/`` with a ``NAME.error`` note when it cannot be read at all. Names starting with ``.`` or ending
in ``.part`` are left alone: a writer should write under such a name and rename when complete.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from orchestrator.ingest import IngestError, IngestReport, ingest_file
from orchestrator.ingest.load import EventsCallback
from orchestrator.ingest.readers import FORMATS
from orchestrator.store import Store

log = logging.getLogger("orchestrator.inbox")

DONE, FAILED = "done", "failed"


def waiting_files(inbox: Path) -> list[Path]:
    """The files ready to ingest, in name order."""
    if not inbox.is_dir():
        return []
    return sorted(
        path
        for path in inbox.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and not path.name.endswith(".part")
        and path.suffix.lower() in FORMATS
    )


def drain_inbox(
    store: Store, inbox: Path, *, now_us: int, on_events: EventsCallback | None = None
) -> list[IngestReport]:
    """Ingest every waiting file and move it out of the way; returns a report per file ingested.
    Database errors propagate (the file stays, and is tried again at the next tick; the chunks already
    committed are in the store, and ingesting them again is what re-sending a file would do)."""
    reports = []
    for path in waiting_files(inbox):
        done = inbox / DONE
        done.mkdir(exist_ok=True)
        rejects_path = done / f"{path.name}.rejects.jsonl"
        try:
            with rejects_path.open("w", encoding="utf-8") as rejects:
                report = ingest_file(store, path, now_us=now_us, rejects=rejects, on_events=on_events)
        except IngestError as error:
            rejects_path.unlink(missing_ok=True)
            failed = inbox / FAILED
            failed.mkdir(exist_ok=True)
            shutil.move(str(path), failed / path.name)
            (failed / f"{path.name}.error").write_text(f"{error}\n", encoding="utf-8")
            log.error("inbox: %s could not be read: %s", path.name, error)
            continue
        if not report.rejected:
            rejects_path.unlink()
        shutil.move(str(path), done / path.name)
        log.info("inbox: %s: %d accepted, %d rejected", path.name, report.accepted, report.rejected)
        reports.append(report)
    return reports
