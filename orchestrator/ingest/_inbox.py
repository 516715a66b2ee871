"""A folder the daemon ingests from before each tick.

Files dropped into the inbox (``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``) are ingested through the
ordinary ingest path, and each committed chunk of events is handed to the engine's signal state as it
commits, so the next tick does not read those events back from the store. ``Inbox`` is the folder as the
daemon's ``Ingestor`` (``orchestrator.engine._handover``): the command line hands it to the daemon.

What a file holds is never guessed from its first record:

- a file in ``customers/`` or ``events/`` holds that kind;
- a file at the top level named ``NAME.customers.EXT`` or ``NAME.events.EXT`` (or just ``customers.EXT``,
  ``events.EXT``) holds that kind;
- any other top-level file is taken by its content as a whole, as ``orchestrator ingest`` does without
  ``--kind`` (an ``event`` column in a CSV header or Parquet schema; in JSONL, records with an ``event``
  field); a JSONL file that mixes both kinds of record cannot be decided and fails.

Files are taken ``customers/`` first, then ``events/``, then the top level, each in name order. A file is
then moved to ``done/`` (its rejected rows, if any, beside it as ``NAME.rejects.jsonl``), or, when it
cannot be read (an unknown kind, a missing column, a corrupt file, any error reading it), to ``failed/``
with a ``NAME.error`` note saying why and how many of its events were stored before the error; the other
files, the tick and dispatch go on. A file from a sub-folder keeps it under ``done/`` and ``failed/``
(``done/events/NAME``). A database error stops the drain and leaves the file where it is for the next
tick: its events that were stored already are duplicates then, and are not stored twice. Names starting
with ``.`` or ending in ``.part`` are left alone: a writer should write under such a name and rename when
complete.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from orchestrator.ingest._pipeline import KINDS, EventsCallback, IngestedEvents, ingest_file
from orchestrator.ingest._readers import FORMATS
from orchestrator.ingest._summary import IngestReport
from orchestrator.store import Store, is_database_error

log = logging.getLogger("orchestrator.inbox")

DONE, FAILED = "done", "failed"
#: Sub-folders whose files hold one kind, in the order they are drained (customers before their events).
KIND_FOLDERS = ("customers", "events")


def _ready(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and not path.name.endswith(".part")
        and path.suffix.lower() in FORMATS
    )


def waiting_files(inbox: Path) -> list[Path]:
    """The files ready to ingest: those of ``customers/``, then ``events/``, then the top level, each in
    name order."""
    if not inbox.is_dir():
        return []
    folders = [inbox / name for name in KIND_FOLDERS] + [inbox]
    return [
        path for folder in folders if folder.is_dir() for path in sorted(folder.iterdir()) if _ready(path)
    ]


def file_kind(inbox: Path, path: Path) -> str | None:
    """The kind of an inbox file from its folder or its name, or None when only its content can tell."""
    if path.parent != inbox and path.parent.name in KINDS:
        return path.parent.name
    stem = Path(path.stem)  # "batch.events" of "batch.events.jsonl"
    for name in KINDS:
        if stem.name == name or stem.suffix == f".{name}":
            return name
    return None


def drain_inbox(
    store: Store, inbox: Path, *, now_us: int, on_events: EventsCallback | None = None
) -> list[IngestReport]:
    """Ingest every waiting file and move it out of the way; returns a report per file ingested.
    A file that cannot be read goes to ``failed/`` and the others go on. Database errors propagate (the
    file stays, and is tried again at the next tick; its events already stored are not stored twice)."""
    reports = []
    for path in waiting_files(inbox):
        where = path.relative_to(inbox).parent  # "." or "events"
        done = inbox / DONE / where
        done.mkdir(parents=True, exist_ok=True)
        rejects_path = done / f"{path.name}.rejects.jsonl"
        stored: list[int] = []

        def count(events: IngestedEvents, handed: list[int] = stored) -> object:
            handed.append(events.last_id - events.first_id + 1)
            return None if on_events is None else on_events(events)

        try:
            with rejects_path.open("w", encoding="utf-8") as rejects:
                report = ingest_file(
                    store, path, file_kind(inbox, path), now_us=now_us, rejects=rejects, on_events=count
                )
        except Exception as error:
            rejects_path.unlink(missing_ok=True)
            if is_database_error(error):
                raise
            _fail(inbox, path, where, _reason(error), sum(stored))
            continue
        if not report.rejected:
            rejects_path.unlink()
        shutil.move(str(path), done / path.name)
        log.info(
            "inbox: %s: %d accepted, %d rejected, %d duplicates",
            path.relative_to(inbox),
            report.accepted,
            report.rejected,
            report.duplicates,
        )
        reports.append(report)
    return reports


@dataclass(frozen=True)
class Inbox:
    """The inbox folder, drained before each daemon tick (created first when missing)."""

    folder: Path

    @property
    def source(self) -> str:
        return str(self.folder)

    def drain(self, store: Store, now_us: int, on_events: EventsCallback) -> list[IngestReport]:
        """``drain_inbox`` of the folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return drain_inbox(store, self.folder, now_us=now_us, on_events=on_events)


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())  # one line
    if not text:
        return type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _fail(inbox: Path, path: Path, where: Path, reason: str, stored: int) -> None:
    failed = inbox / FAILED / where
    failed.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), failed / path.name)
    note = f"{reason}\n"
    if stored:
        note += (
            f"{stored} events of this file were stored before the error; ingesting this same file again "
            "does not store them twice (a corrected copy would, unless its events carry their own ids)\n"
        )
    (failed / f"{path.name}.error").write_text(note, encoding="utf-8")
    log.error("inbox: %s could not be read: %s", path.relative_to(inbox), reason)
