"""Snapshots of the signal state's event log, so that a restart reads only the events that came after.

The signal state (``engine._signal_state``) keeps every event the journeys read in memory, as the columns
of an ``EventLog``; rebuilding it from the store at start-up reads all history (tens of seconds at a million
customers). A ``StateFile`` writes the log to one file at intervals and at shutdown, and at start-up loads
it and lets the state read only the events with ids above the snapshot's last one: the same rule the state
uses between ticks (ids are given in commit order on both backends, see ``store.insert_new_events``), so
an event committed after the snapshot was taken is read, however late its id was handed out.

What a snapshot holds and how it is checked:

- the log's arrays, one by one, by name, dtype and shape (every array field of every segment, whatever
  the ``Segment`` dataclass holds), the log's value dictionaries as JSON, its event type names, the number
  of customer slots and the last event id it includes. No pickle: reading a snapshot runs no code;
- a digest of what it was built for: the format version, the store's schema revision and the layout of
  the log (the dtype of each segment field and the log's attributes, as this version of the code makes
  them for the snapshot's properties), so a change of layout makes an old snapshot stale, never misread;
- the event properties the log keeps (numeric and categorical): the journeys being loaded may read those
  or fewer (a journey edit that reads the same properties keeps the snapshot usable); one more makes it
  stale;
- a fingerprint of a few of the store's events up to the last id, so a snapshot of another store (a store
  made again at the same path, or restored from a backup) is stale;
- a CRC-32 of the header and one of the payload: a truncated file or a flipped byte is corrupt.

A missing, corrupt or stale snapshot is logged in one line saying why, and the state is rebuilt from the
store (then a new snapshot is written at the next tick).

Writing never holds up a tick: the tick takes a *view* of the log (the list of its segments and their
arrays, which the log never changes in place once they are in it, a copy of its dictionaries' value lists
and its counters: cheap), and a background thread serialises the view, checksums it, writes it to
``<path>.tmp``, fsyncs it and renames it over ``<path>`` (then fsyncs the folder). One write at a time: a
write falling due while another is running waits for the next tick. At shutdown the write in progress is
waited for and a last one is written if the log moved on; a process killed mid-write leaves a temporary
file that is ignored (and overwritten by the next write) and the previous snapshot intact.

One process per snapshot path: the file ``<path>.lock`` is locked while a process uses the path, and a
second process finding it locked keeps no snapshot (one line says so).

File layout: ``MAGIC`` (16 bytes), the format version (u32), the payload (every array's bytes, one after
the other), the header (JSON: the arrays' names, dtypes, shapes, offsets, the digest, counters, the
payload's CRC), then a trailer: the header's length (u64), its CRC (u32) and ``END``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from orchestrator._files import fsync_folder
from orchestrator.errors import InvalidInputError
from orchestrator.signals import EventFrame, EventLog
from orchestrator.signals._log import Segment
from orchestrator.store import Connection, events_fingerprint, schema_version

log = logging.getLogger("orchestrator.snapshot")

#: 2: customer keys int32, type and value codes int16 and exact number columns float32 in the log (format 1:
#: int64, int32 and float64); an older snapshot is stale, and the state rebuilt from the store (said so).
FORMAT = 2
MAGIC = b"ORCHESTRATOR-SIG"
END = b"END\n"
_START = struct.Struct("<16sI")  # magic, format version
_TRAILER = struct.Struct("<QI4s")  # header length, header CRC-32, END
_CHUNK = 64 << 20  # bytes read or written (and checksummed) at a time
DEFAULT_EVERY_SECONDS = 600.0
#: The attributes of an ``EventLog`` a snapshot carries (written, or derived when read): a log with any
#: other is not written, as its snapshot would lose something.
LOG_ATTRIBUTES = frozenset(
    {
        "numeric",
        "categorical",
        "type_names",
        "_type_codes",
        "values",
        "_dictionaries",
        "segments",
        "fresh",
        "n_customers",
        "last_id",
    }
)


class _Unusable(InvalidInputError):
    """A snapshot that cannot be used (internal: the state is then read from the store); ``kind`` is
    ``corrupt`` or ``stale``, the message says why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


@dataclass(frozen=True)
class SnapshotSettings:
    """Where the signal state's snapshot is kept and how often it is written while the engine runs."""

    path: Path
    every_seconds: float = DEFAULT_EVERY_SECONDS


@dataclass(frozen=True)
class Written:
    """What the last write did: the events and last id it holds, its size and how long it took (the view
    on the tick's thread, and the whole write)."""

    events: int
    last_id: int
    bytes: int
    view_seconds: float
    seconds: float


@dataclass(frozen=True)
class Loaded:
    """What a load read: the events and last id the snapshot holds, its size and the seconds it took."""

    events: int
    last_id: int
    bytes: int
    seconds: float


@dataclass
class _View:
    """What a write serialises: the log as it was when the view was taken (its arrays are shared)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    type_names: list[str]
    values: dict[str, list[Any]]
    segments: list[dict[str, Any]]
    n_customers: int
    last_id: int
    fingerprint: str
    mark: tuple[Any, ...]  # what the snapshot holds once written (``StateFile._mark``)
    view_seconds: float = 0.0
    events: int = field(default=0)


# ---------------------------------------------------------------------------------------------- layout


def layout(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> dict[str, Any]:
    """How this version of the code lays out a log keeping these properties: the dtype of each field of
    a segment (a mapping of property to dtype for the fields that hold one array per property) and the
    log's attribute names. Worked out on a log of one event, so any change to either is seen."""
    probe = EventLog(numeric, categorical)
    probe.append_frame(
        EventFrame(
            customer=np.zeros(1, np.int64),
            ts=np.zeros(1, np.int64),
            type=np.zeros(1, np.int32),
            type_names=["probe"],
            n_customers=1,
            properties={},
        ),
        1,
    )
    fields: dict[str, Any] = {}
    for name, value in _segment_fields(probe.segments[0]):
        if isinstance(value, np.ndarray):
            fields[name] = value.dtype.str
        elif isinstance(value, dict):
            fields[name] = {key: array.dtype.str for key, array in sorted(value.items())}
        else:
            fields[name] = None
    return {"segment": fields, "log": sorted(vars(probe))}


def digest(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> str:
    """What a snapshot keeping these properties is built for, as this version of the code would write it:
    the format, the store's schema revision and the layout."""
    built_for = {"format": FORMAT, "schema": schema_version(), "layout": layout(numeric, categorical)}
    return hashlib.sha256(orjson.dumps(built_for, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _segment_fields(segment: Segment) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(segment):
        yield f.name, getattr(segment, f.name)


# ---------------------------------------------------------------------------------------------- writing


def take_view(event_log: EventLog, fingerprint: str) -> _View:
    """The log as it is now, cheaply: references to its segments' arrays (never changed in place once in
    the log), copies of its dictionaries' value lists (which only grow) and of its counters."""
    started = time.perf_counter()
    unknown = set(vars(event_log)) - LOG_ATTRIBUTES
    if unknown:
        raise TypeError(f"the event log holds {', '.join(sorted(unknown))}, which a snapshot does not keep")
    segments = []
    for segment in event_log.segments:
        fields = {}
        for name, value in _segment_fields(segment):
            if isinstance(value, dict):
                value = dict(value)
            elif value is not None and not isinstance(value, np.ndarray):
                raise TypeError(
                    f"a segment's {name} is a {type(value).__name__}, which a snapshot cannot keep"
                )
            fields[name] = value
        segments.append(fields)
    view = _View(
        numeric=tuple(event_log.numeric),
        categorical=tuple(event_log.categorical),
        type_names=list(event_log.type_names),
        values={prop: list(values) for prop, values in event_log.values.items()},
        segments=segments,
        n_customers=int(event_log.n_customers),
        last_id=int(event_log.last_id),
        fingerprint=fingerprint,
        mark=StateFile._mark(event_log),
        events=sum(len(s) for s in event_log.segments),
    )
    view.view_seconds = time.perf_counter() - started
    return view


def write_snapshot(view: _View, path: Path) -> int:
    """Write ``view`` to ``path`` atomically (a temporary file, fsynced, renamed over it, the folder
    fsynced); returns the file's size."""
    values = orjson.dumps(view.values)
    if orjson.loads(values) != view.values:
        raise ValueError("the log holds values that JSON does not carry exactly")
    arrays: list[tuple[dict[str, Any], np.ndarray]] = []
    for index, fields in enumerate(view.segments):
        for name, value in fields.items():
            if isinstance(value, np.ndarray):
                arrays.append(({"segment": index, "field": name}, value))
            elif isinstance(value, dict):
                for key, array in sorted(value.items()):
                    arrays.append(({"segment": index, "field": name, "key": key}, array))
    arrays.append(({"field": "values"}, np.frombuffer(values, np.uint8)))
    temporary = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = _write_file(temporary, arrays, view)
    except BaseException:
        with contextlib.suppress(OSError):  # a disk that filled up: give the space back
            temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    fsync_folder(path.parent)
    return size


def _write_file(temporary: Path, arrays: list[tuple[dict[str, Any], np.ndarray]], view: _View) -> int:
    entries = []
    crc = 0
    offset = 0
    # Owner-only, like the outbox's files: the snapshot holds every customer's events and their properties.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(temporary, flags, 0o600), "wb") as out:
        out.write(_START.pack(MAGIC, FORMAT))
        for entry, array in arrays:
            data = np.ascontiguousarray(array)
            entries.append({**entry, "dtype": data.dtype.str, "shape": list(data.shape), "offset": offset})
            raw = _bytes(data)
            for start in range(0, len(raw), _CHUNK):
                chunk = raw[start : start + _CHUNK]
                crc = zlib.crc32(chunk, crc)
                out.write(chunk)
            offset += data.nbytes
        header = orjson.dumps(
            {
                "format": FORMAT,
                "digest": digest(view.numeric, view.categorical),
                "numeric": list(view.numeric),
                "categorical": list(view.categorical),
                "type_names": view.type_names,
                "n_customers": view.n_customers,
                "last_id": view.last_id,
                "events": view.events,
                "segments": len(view.segments),
                "store": view.fingerprint,
                "arrays": entries,
                "payload_bytes": offset,
                "payload_crc32": crc,
            }
        )
        out.write(header)
        out.write(_TRAILER.pack(len(header), zlib.crc32(header), END))
        out.flush()
        os.fsync(out.fileno())
        return out.tell()


def _bytes(array: np.ndarray) -> memoryview:
    """A C-contiguous array's memory as bytes (no copy)."""
    return array.reshape(-1).view(np.uint8).data if array.size else memoryview(bytearray())


# ---------------------------------------------------------------------------------------------- reading


def read_header(path: Path) -> dict[str, Any]:
    """The header of the snapshot at ``path``, checked (magic, format, trailer, CRC); ``_Unusable``
    otherwise, ``FileNotFoundError`` when there is none."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        return _header(f, size)


def _header(f: IO[bytes], size: int) -> dict[str, Any]:
    if size < _START.size + _TRAILER.size:
        raise _Unusable("corrupt", f"it is truncated ({size} bytes)")
    magic, version = _START.unpack(f.read(_START.size))
    if magic != MAGIC:
        raise _Unusable("corrupt", "it is not a signal state snapshot")
    if version != FORMAT:
        raise _Unusable("stale", f"it was written in format {version}; this version reads {FORMAT}")
    f.seek(size - _TRAILER.size)
    length, header_crc, end = _TRAILER.unpack(f.read(_TRAILER.size))
    if end != END or length > size - _START.size - _TRAILER.size:
        raise _Unusable("corrupt", "it is truncated or damaged (no trailer)")
    f.seek(size - _TRAILER.size - length)
    header = f.read(length)
    if zlib.crc32(header) != header_crc:
        raise _Unusable("corrupt", "its header fails its checksum")
    found: dict[str, Any] = orjson.loads(header)
    if _START.size + int(found["payload_bytes"]) + length + _TRAILER.size != size:
        raise _Unusable("corrupt", "it is truncated or damaged (its size does not add up)")
    return found


def read_snapshot(
    path: Path,
    numeric: set[str],
    categorical: set[str],
    fingerprint: Callable[[int], str],
) -> EventLog:
    """The log the snapshot at ``path`` holds, for journeys reading ``numeric`` and ``categorical``
    properties; ``fingerprint(last_id)`` is the store's (``store.events_fingerprint``). Raises
    ``_Unusable`` (corrupt or stale, and why), ``FileNotFoundError`` when there is none."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = _header(f, size)
        kept_numeric, kept_categorical = tuple(header["numeric"]), tuple(header["categorical"])
        if header["digest"] != digest(kept_numeric, kept_categorical):
            raise _Unusable(
                "stale", "it was built for another store schema or another layout of the signal state"
            )
        lacking = sorted((numeric - set(kept_numeric)) | (categorical - set(kept_categorical)))
        if lacking:
            raise _Unusable(
                "stale", f"the journeys read event properties it does not keep ({', '.join(lacking)})"
            )
        last_id = int(header["last_id"])
        if fingerprint(last_id) != header["store"]:
            raise _Unusable(
                "stale", f"the store does not hold the events it was built from (ids up to {last_id})"
            )
        f.seek(_START.size)
        crc = 0
        arrays: list[tuple[dict[str, Any], np.ndarray]] = []
        for entry in header["arrays"]:
            array = np.empty(tuple(entry["shape"]), np.dtype(entry["dtype"]))
            raw = _bytes(array)
            for start in range(0, len(raw), _CHUNK):
                chunk = raw[start : start + _CHUNK]
                if f.readinto(chunk) != len(chunk):
                    raise _Unusable("corrupt", "it is truncated")
                crc = zlib.crc32(chunk, crc)
            arrays.append((entry, array))
        if crc != header["payload_crc32"]:
            raise _Unusable("corrupt", "its data fails its checksum")
    return _log_of(header, arrays)


def _log_of(header: Mapping[str, Any], arrays: list[tuple[dict[str, Any], np.ndarray]]) -> EventLog:
    out = EventLog(header["numeric"], header["categorical"])
    segments: list[dict[str, Any]] = [{} for _ in range(int(header["segments"]))]
    values: dict[str, list[Any]] = {}
    for entry, array in arrays:
        if entry["field"] == "values":
            values = orjson.loads(array.tobytes())
            continue
        array.flags.writeable = False  # as the log's own segments (``signals._log``)
        fields = segments[int(entry["segment"])]
        if "key" in entry:
            fields.setdefault(entry["field"], {})[entry["key"]] = array
        else:
            fields[entry["field"]] = array
    out.type_names = list(header["type_names"])
    out._type_codes = {name: code for code, name in enumerate(out.type_names)}
    out.values = {prop: list(values.get(prop, [])) for prop in out.categorical}
    out._dictionaries = {prop: {v: i for i, v in enumerate(vs)} for prop, vs in out.values.items()}
    out.segments = [Segment(**fields) for fields in segments]  # a field left out (no array) takes its default
    out.fresh = []  # the aggregates of a state loaded from a snapshot start from the whole log
    out.n_customers = int(header["n_customers"])
    out.last_id = int(header["last_id"])
    return out


# ---------------------------------------------------------------------------------------------- the file


class StateFile:
    """The snapshot of one engine's signal state: loaded once at start-up, written in the background at
    intervals (``save_if_due`` at each tick) and at shutdown (``save``)."""

    def __init__(
        self, settings: SnapshotSettings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = settings.path
        self.every_seconds = settings.every_seconds
        self._monotonic = monotonic
        self._due = monotonic() + settings.every_seconds
        self._saved: tuple[Any, ...] | None = None  # what the snapshot on disk holds (see ``_mark``)
        self._thread: threading.Thread | None = None
        self._lock_file: IO[bytes] | None = None
        self._usable: bool | None = None  # None: the path's lock not tried yet
        self._failing: str | None = None  # the last write failure logged
        self.loaded: Loaded | None = None
        self.written: Written | None = None

    # -- the path's lock

    def _claim(self) -> bool:
        """Lock ``<path>.lock`` for this process (once); False when another process holds it."""
        if self._usable is None:
            self._usable = False
            try:
                import fcntl
            except ImportError:  # no advisory locks here: the snapshot is used unguarded
                self._usable = True
                return True
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self.path.with_name(self.path.name + ".lock"), "ab")  # noqa: SIM115
            except OSError as exc:
                log.warning("signal state snapshot %s cannot be used: %s", self.path, exc)
                return False
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                log.warning(
                    "signal state snapshot %s is used by another process: this one keeps no snapshot "
                    "(give each worker its own snapshot.path)",
                    self.path,
                )
                return False
            self._lock_file = handle
            self._usable = True
        return self._usable

    def close(self) -> None:
        """Wait for a write in progress, then let the path go."""
        self.wait()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
            self._usable = None

    # -- loading

    def load(self, conn: Connection, numeric: set[str], categorical: set[str]) -> EventLog | None:
        """The log of the snapshot, when there is a usable one; otherwise None, and one log line saying
        why (the state is then rebuilt from the store, and a snapshot written at the next tick)."""
        if not self._claim():
            return None
        started = time.perf_counter()
        with contextlib.suppress(OSError):
            self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)  # a write cut short
        try:
            event_log = read_snapshot(self.path, numeric, categorical, lambda i: events_fingerprint(conn, i))
            size = self.path.stat().st_size
        except FileNotFoundError:
            log.info("no signal state snapshot at %s: reading every event from the store", self.path)
        except _Unusable as exc:
            log.warning(
                "signal state snapshot %s is %s: %s; reading every event from the store",
                self.path,
                exc.kind,
                exc,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "signal state snapshot %s is corrupt: it cannot be read (%s); reading every event from "
                "the store",
                self.path,
                type(exc).__name__,
            )
        else:
            events = len(event_log)
            self.loaded = Loaded(events, event_log.last_id, size, time.perf_counter() - started)
            self._saved = self._mark(event_log)
            log.info(
                "signal state loaded from %s: %d events up to id %d in %.2fs; reading newer events from "
                "the store",
                self.path,
                events,
                event_log.last_id,
                self.loaded.seconds,
            )
            return event_log
        self._due = self._monotonic()  # no usable snapshot: write one at the next tick
        return None

    # -- writing

    @staticmethod
    def _mark(event_log: EventLog) -> tuple[Any, ...]:
        return (event_log.last_id, event_log.numeric, event_log.categorical, len(event_log.type_names))

    def _news(self, event_log: EventLog) -> bool:
        """Whether the log holds something the snapshot on disk does not (an empty log is not kept)."""
        return event_log.last_id > 0 and self._mark(event_log) != self._saved

    def save_if_due(self, event_log: EventLog, conn: Connection) -> bool:
        """Start a background write of the log when one is due, none is running and the log holds more
        than the snapshot on disk; whether one was started. The tick pays only for the view."""
        if self._monotonic() < self._due or self.writing or not self._news(event_log):
            return False
        if not self._claim():
            return False
        view = self._view(event_log, conn)
        if view is None:
            return False
        self._due = self._monotonic() + self.every_seconds
        self._thread = threading.Thread(
            target=self._write, args=(view,), name="signal-state-snapshot", daemon=True
        )
        self._thread.start()
        return True

    def save(self, event_log: EventLog, conn: Connection) -> bool:
        """At shutdown: wait for a write in progress, then write the log in this thread if it holds more
        than the snapshot on disk; whether it was written."""
        self.wait()
        if not self._news(event_log) or not self._claim():
            return False
        view = self._view(event_log, conn)
        return view is not None and self._write(view)

    @property
    def writing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Until the write in progress (if any) is done."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def _view(self, event_log: EventLog, conn: Connection) -> _View | None:
        try:
            return take_view(event_log, events_fingerprint(conn, event_log.last_id))
        except TypeError as exc:
            self._failed(str(exc))
            return None

    def _write(self, view: _View) -> bool:
        started = time.perf_counter()
        try:
            size = write_snapshot(view, self.path)
        except (OSError, ValueError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        seconds = time.perf_counter() - started
        self._saved = view.mark
        self._failing = None
        self.written = Written(view.events, view.last_id, size, view.view_seconds, seconds)
        log.info(
            "signal state snapshot written to %s: %d events up to id %d, %.1f MB in %.2fs",
            self.path,
            view.events,
            view.last_id,
            size / 1e6,
            seconds,
        )
        return True

    def _failed(self, why: str) -> None:
        if why != self._failing:
            log.warning("the signal state snapshot %s was not written: %s", self.path, why)
            self._failing = why
