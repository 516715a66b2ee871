"""Reading and validating input files into chunks of columns ready for the store.

Readers never touch the database: they turn JSONL, CSV, Parquet or in-memory records into ``EventChunk`` /
``CustomerChunk`` objects of at most ``chunk_rows`` accepted rows, each carrying the rows it rejected
(``Reject``: line, reason category, detail). A bad row never stops a file; a bad file (unknown format,
missing required column) raises ``IngestError`` before anything is read.

Validation of an event: ``customer_id`` a non-empty string or an integer (stored as its decimal string),
``event`` a non-empty string, ``ts`` an ISO-8601 instant with a time zone (or, for Parquet, a timestamp
column with a time zone; for in-memory records also an aware ``datetime``), ``properties`` absent, null or
an object. Checks run in that order and the first failure is the reason reported. Besides: a control
character (or a line or paragraph separator) in ``customer_id``, the event name or a property name, an
integer beyond 64 bits, and a ``ts`` outside the accepted range (``TimeRange``: by default 1970-01-01 to
one day after the ingest's "now") reject the row. Reject details never repeat a customer's id.

An event's own id (``message_id``, ``messageId`` or ``event_id``: a top-level field, or a column) is
carried with it for its key (see ``ingest._keys``) and is not a property.

A file reader given a ``ReadPosition`` lets its caller ask, between chunks, how far through the file it
is (for a progress bar); nothing is counted per row.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.clock import from_us, to_us
from orchestrator.ingest._keys import ID_FIELDS
from orchestrator.ingest._summary import IngestError, Reject
from orchestrator.language import CONSENT_CHANNELS
from orchestrator.store import RECORD_TIME

#: Rows per chunk, and so per transaction of an ingest: large enough that what each transaction pays
#: whatever its size (its commit, the pages of the customers' id index it rewrites) stays small per event.
CHUNK_ROWS = 200_000
EVENT_FIELDS = ("customer_id", "event", "ts")
STANDARD_TEXT = ("email", "phone", "push_token", "timezone")
CONSENTS = tuple(f"consent_{channel}" for channel in CONSENT_CHANNELS)
_CONSENT_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# File name extension -> format.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Control characters (C0, DEL, C1) and the line and paragraph separators: never in an id or a name.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_RE2 = "[\\x00-\\x1f\\x7f-\\x{9f}\\x{2028}\\x{2029}]"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DAY_US = 86_400 * 1_000_000
# 19 digits in a row: the only way a JSON text can hold an integer beyond 64 bits.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


class ReadPosition:
    """How far a reader has gone through its file, in bytes of the file: the offset of the open file
    (JSONL, CSV) or, for Parquet, the share of its rows read. Asked between chunks, never per row."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._file: IO[Any] | None = None
        self._rows_read = 0
        self._rows = 0

    def watch(self, file: IO[Any]) -> None:
        """The reader reads ``file`` from here on."""
        self._file = file

    def rows(self, read: int, total: int) -> None:
        """The reader has read ``read`` of the file's ``total`` rows."""
        self._rows_read, self._rows = read, total

    def read(self) -> int:
        """Bytes of the file read so far (the whole file once the reader has closed it)."""
        if self._file is not None:
            try:
                return min(self.size, os.lseek(self._file.fileno(), 0, os.SEEK_CUR))
            except (OSError, ValueError):  # closed: read to the end
                return self.size
        if self._rows:
            return self.size * self._rows_read // self._rows
        return 0


@dataclass(frozen=True)
class TimeRange:
    """The accepted event times, ``min_us <= ts <= max_us``."""

    min_us: int = 0
    max_us: int = INT64_MAX

    @classmethod
    def default(cls, now_us: int, max_future_us: int = DAY_US, min_us: int = 0) -> TimeRange:
        """1970-01-01 (or ``min_us``) to one day (or ``max_future_us``) after ``now_us``."""
        return cls(min_us, now_us + max_future_us)

    def rejects(self, ts_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the times before the range and after it."""
        return ts_us < self.min_us, ts_us > self.max_us

    def reason(self, late: bool) -> Reject:
        if late:
            return Reject(0, "ts out of range", f"later than {_instant(self.max_us)}")
        return Reject(0, "ts out of range", f"earlier than {_instant(self.min_us)}")


ANY_TIME = TimeRange(INT64_MIN, INT64_MAX)


def _instant(us: int) -> str:
    try:
        return from_us(us).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError):
        return f"{us} microseconds"


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character or a line or paragraph separator."""
    return not text.isprintable() and _CONTROL.search(text) is not None


# ---------------------------------------------------------------------------------------------- chunks


@dataclass
class EventChunk:
    """Accepted events as columns. Customer ids and event names are factorised: ``customer_ids`` holds
    the distinct ids and ``customer_codes`` indexes it per event (likewise ``event_names``/``event_codes``).
    ``properties`` holds each event's properties as JSON object text."""

    customer_ids: list[str]
    customer_codes: np.ndarray
    event_names: list[str]
    event_codes: np.ndarray
    ts_us: np.ndarray
    properties: list[str]
    rejects: list[Reject] = field(default_factory=list)
    # Each event's line (row number for Parquet, position for records): its place in the source.
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Each event's own id, or None; None for the whole chunk when no event has one.
    message_ids: list[str | None] | None = None
    # ``customer_ids`` as an Arrow string array, when the reader has one (Parquet): what the ingest looks
    # the customers up with (``ingest._ids``).
    customer_id_array: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.ts_us)


@dataclass
class CustomerChunk:
    """Accepted customer rows in the form ``upsert_customers`` takes, plus the rows rejected."""

    rows: list[dict[str, Any]]
    rejects: list[Reject] = field(default_factory=list)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- values


def parse_number(cell: str) -> Any:
    """A CSV cell as an int or float when the whole cell is a JSON number (so ``007`` and ``1e999`` stay
    text), else the cell unchanged. Raises OverflowError for an integer beyond 64 bits."""
    m = _NUMBER.fullmatch(cell)
    if m is None:
        return cell
    if m.group(1) is None and m.group(2) is None:
        whole = int(cell)
        if not INT64_MIN <= whole <= INT64_MAX:
            raise OverflowError("integer beyond 64 bits")
        return whole
    value = float(cell)
    return value if np.isfinite(value) else cell


def parse_consent(value: Any) -> bool | None:
    """true/false/1/0/yes/no (any case) or a JSON boolean or 0/1; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value)
    if isinstance(value, str):
        return _CONSENT_WORDS.get(value.strip().lower())
    return None


@functools.lru_cache(maxsize=4096)
def known_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def parse_ts_text(text: str) -> int | Reject:
    """Microseconds of an ISO-8601 instant (``Z`` accepted, as ``clock.parse_instant``), or a Reject with
    line 0 saying why not."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return Reject(0, "ts unparseable", _show(text))
    if value.tzinfo is None:
        return Reject(0, "ts without a time zone", _show(text))
    try:
        return to_us(value)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: no instant Python can hold
        return Reject(0, "ts out of range", "outside the years 1 to 9999 in UTC")


def parse_ts_texts(texts: Sequence[str] | pa.Array) -> tuple[np.ndarray, dict[int, Reject]]:
    """Parse many ISO-8601 instants: vectorised through Arrow, falling back to ``parse_ts_text`` one by one
    when Arrow refuses any of them (Arrow accepts a subset of what Python does, and agrees on it).
    Returns the int64 microseconds (0 where rejected) and the rejects by position."""
    try:
        arr = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
        parsed = pc.cast(arr, pa.timestamp("us", tz="UTC"))
        return parsed.cast(pa.int64()).to_numpy(zero_copy_only=False), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeError):
        pass
    values = texts.to_pylist() if isinstance(texts, pa.Array) else texts
    out = np.zeros(len(values), np.int64)
    bad: dict[int, Reject] = {}
    for i, text in enumerate(values):
        result = parse_ts_text(text)
        if isinstance(result, Reject):
            bad[i] = result
        else:
            out[i] = result
    return out, bad


def _dumps_properties(props: dict[str, Any]) -> str | None:
    if not props:
        return "{}"
    try:
        return orjson.dumps(props).decode()
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------------- events


#: Above this many times given as text among times known already, ``EventBuilder.finish`` parses them as
#: one Arrow column rather than one by one.
MANY_TEXTS = 16


class EventBuilder:
    """Validates event records one at a time and collects the accepted ones as columns."""

    def __init__(self, time_range: TimeRange = ANY_TIME) -> None:
        self.time_range = time_range
        self._reset()

    def _reset(self) -> None:
        self.customer_index: dict[str, int] = {}
        self.customer_codes: list[int] = []
        self.event_index: dict[str, int] = {}
        self.event_codes: list[int] = []
        self.ts: list[Any] = []  # str to parse, or int microseconds already known
        self.ts_all_text = True
        self.lines: list[int] = []
        self.properties: list[str] = []
        self.message_ids: list[str | None] = []
        self.any_id = False
        self.rejects: list[Reject] = []

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def pending(self) -> int:
        return len(self.lines) + len(self.rejects)

    def fill(self, items: Iterator[tuple[int, Any]], limit: int) -> bool:
        """Take ``(line, record or Reject)`` items until ``limit`` rows are pending; True when ``items`` ran
        out. The common well-formed record takes an inlined fast path; everything else goes to ``add``."""
        cindex, eindex = self.customer_index, self.event_index
        ccode, ecode = self.customer_codes.append, self.event_codes.append
        ts_add, line_add, props_add = self.ts.append, self.lines.append, self.properties.append
        id_add = self.message_ids.append
        reject, add, dumps = self.rejects.append, self.add, orjson.dumps
        room = limit - self.pending
        for line, obj in items:
            room -= 1
            if type(obj) is dict:
                cid = obj.get("customer_id")
                event = obj.get("event")
                ts = obj.get("ts")
                props = obj.get("properties")
                n = len(obj) - (3 if props is None else 4)
                mid = None
                if (
                    type(cid) is str
                    and cid
                    and type(event) is str
                    and event
                    and type(ts) is str
                    and (props is None or type(props) is dict)
                    and (n == 0 or (n == 1 and type(mid := obj.get("message_id")) is str and mid))
                    and cid.isprintable()
                    and event.isprintable()
                    and not event.isspace()
                ):
                    try:
                        text = dumps(props).decode() if props else "{}"
                    except TypeError:
                        add(line, obj)
                    else:
                        if "\\" in text or not text.isprintable():  # an escape: look at the names
                            add(line, obj)
                        else:
                            ccode(cindex.setdefault(cid, len(cindex)))
                            ecode(eindex.setdefault(event, len(eindex)))
                            ts_add(ts)
                            line_add(line)
                            props_add(text)
                            id_add(mid)
                else:
                    add(line, obj)
            elif type(obj) is Reject:
                reject(obj)
            else:
                add(line, obj)
            if room <= 0:
                return False
        return True

    def add(self, line: int, obj: Any) -> None:
        """Validate one record (a mapping) and keep it, or note why it is rejected."""
        reject = self.rejects.append
        if type(obj) is not dict and not isinstance(obj, Mapping):
            reject(Reject(line, "not an object", type(obj).__name__))
            return
        cid = obj.get("customer_id")
        if type(cid) is not str:
            if cid is None:
                reject(Reject(line, "missing customer_id"))
                return
            if not isinstance(cid, int | np.integer) or isinstance(cid, bool):
                reject(
                    Reject(
                        line, "bad customer_id", f"must be a string or an integer, not {type(cid).__name__}"
                    )
                )
                return
            if not INT64_MIN <= int(cid) <= INT64_MAX:
                reject(Reject(line, "integer beyond 64 bits", "customer_id"))
                return
            cid = str(int(cid))
        elif not cid:
            reject(Reject(line, "missing customer_id", "empty"))
            return
        elif has_control(cid):
            reject(Reject(line, "customer_id contains a control character"))
            return
        event = obj.get("event")
        if type(event) is not str:
            if event is None:
                reject(Reject(line, "missing event"))
            else:
                reject(Reject(line, "bad event", f"must be a string, got {_show(event)}"))
            return
        if not event or event.isspace():
            reject(Reject(line, "empty event name", _show(event)))
            return
        if has_control(event):
            reject(Reject(line, "event name contains a control character"))
            return
        ts = obj.get("ts")
        if type(ts) is not str:
            if ts is None:
                reject(Reject(line, "missing ts"))
                return
            if not isinstance(ts, datetime):
                reject(Reject(line, "bad ts", f"must be an ISO-8601 string, got {_show(ts)}"))
                return
            if ts.tzinfo is None:
                reject(Reject(line, "ts without a time zone", _show(ts.isoformat())))
                return
            ts = to_us(ts)
            self.ts_all_text = False
        mid = message_id(obj)
        if isinstance(mid, Reject):
            reject(mid._replace(line=line))
            return
        props = obj.get("properties")
        if props is None:
            props = {}
        elif type(props) is not dict:
            if not isinstance(props, Mapping):
                reject(Reject(line, "properties not an object", type(props).__name__))
                return
            props = dict(props)
        if len(obj) > (4 if "properties" in obj else 3) + (mid is not None):
            extras = {k: v for k, v in obj.items() if k not in _NOT_PROPERTIES}
            props = {**extras, **props}
        if any(type(k) is str and has_control(k) for k in props):
            reject(Reject(line, "property name contains a control character"))
            return
        text = _dumps_properties(props)
        if text is None:
            where = _big_int_field(props)
            if where is not None:
                reject(Reject(line, "integer beyond 64 bits", f"properties.{where}"))
            else:
                reject(Reject(line, "properties not serialisable", _show(props)))
            return
        ci = self.customer_index.setdefault(cid, len(self.customer_index))
        ei = self.event_index.setdefault(event, len(self.event_index))
        self.customer_codes.append(ci)
        self.event_codes.append(ei)
        self.ts.append(ts)
        self.lines.append(line)
        self.properties.append(text)
        self.message_ids.append(mid)
        self.any_id = self.any_id or mid is not None

    def finish(self) -> EventChunk:
        """The collected chunk (rows whose ``ts`` fails to parse or is out of range move to the rejects);
        resets the builder."""
        n = len(self.lines)
        if self.ts_all_text:
            ts_us, bad = parse_ts_texts(self.ts)
        else:
            ts_us = np.zeros(n, np.int64)
            bad = {}
            texts = [i for i, value in enumerate(self.ts) if type(value) is str]
            if not texts:  # every time known already (microseconds within int64)
                ts_us = np.asarray(self.ts, dtype=np.int64)
            elif len(texts) > MANY_TEXTS:  # many texts among known times: still one Arrow column
                parsed, text_bad = parse_ts_texts([self.ts[i] for i in texts])
                for j, i in enumerate(texts):
                    self.ts[i] = text_bad[j] if j in text_bad else int(parsed[j])
            for i, value in enumerate(self.ts) if texts else ():
                result = parse_ts_text(value) if isinstance(value, str) else value
                if isinstance(result, Reject):
                    bad[i] = result
                else:
                    ts_us[i] = result
        early, late = self.time_range.rejects(ts_us)
        for i in np.flatnonzero(early | late).tolist():
            bad.setdefault(i, self.time_range.reason(bool(late[i])))
        customer_ids = list(self.customer_index)
        event_names = list(self.event_index)
        customer_codes = np.asarray(self.customer_codes, dtype=np.int64)
        event_codes = np.asarray(self.event_codes, dtype=np.int64)
        lines = np.asarray(self.lines, dtype=np.int64)
        properties = self.properties
        any_id = self.any_id or any(mid is not None for mid in self.message_ids)
        message_ids: list[str | None] | None = self.message_ids if any_id else None
        rejects = self.rejects
        if bad:
            keep = np.ones(n, bool)
            keep[list(bad)] = False
            rejects = sorted(
                rejects + [Reject(self.lines[i], r.reason, r.detail) for i, r in bad.items()],
                key=lambda r: r.line,
            )
            customer_codes, event_codes, ts_us = customer_codes[keep], event_codes[keep], ts_us[keep]
            lines = lines[keep]
            kept = keep.tolist()
            properties = [p for p, k in zip(properties, kept, strict=True) if k]
            if message_ids is not None:
                message_ids = [m for m, k in zip(message_ids, kept, strict=True) if k]
        self._reset()
        return EventChunk(
            customer_ids,
            customer_codes,
            event_names,
            event_codes,
            ts_us,
            properties,
            rejects,
            lines=lines,
            message_ids=message_ids,
        )


_NOT_PROPERTIES = frozenset((*EVENT_FIELDS, "properties", *ID_FIELDS))


def message_id(obj: Mapping[str, Any]) -> str | Reject | None:
    """A record's own id (the first of ``ID_FIELDS`` present: a non-empty string, or an integer as its
    decimal text), None when it has none, or a Reject (line 0) when the field holds something else."""
    for name in ID_FIELDS:
        value = obj.get(name)
        if value is None or value == "":
            continue
        if type(value) is str:
            return value
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return str(int(value))
        return Reject(
            0, "bad message id", f"{name} must be a string or an integer, not {type(value).__name__}"
        )
    return None


def _big_int_field(value: Any, path: str = "") -> str | None:
    """The path of the first integer beyond 64 bits inside ``value``, or None."""
    if type(value) is int:
        return None if INT64_MIN <= value <= INT64_MAX else (path or "value")
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _big_int_field(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = _big_int_field(item, path)
            if found is not None:
                return found
    return None


def _built_chunks(
    items: Iterable[tuple[int, Any]], chunk_rows: int, time_range: TimeRange = ANY_TIME
) -> Iterator[EventChunk]:
    builder = EventBuilder(time_range)
    items = iter(items)
    while True:
        done = builder.fill(items, chunk_rows)
        if builder.pending:
            yield builder.finish()
        if done:
            return


def record_event_chunks(
    records: Iterable[Any], chunk_rows: int = CHUNK_ROWS, time_range: TimeRange = ANY_TIME
) -> Iterator[EventChunk]:
    """Event chunks from in-memory records (mappings shaped like JSONL lines); line = 1-based position."""
    return _built_chunks(enumerate(records, 1), chunk_rows, time_range)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def may_hold_long_integer(raw: bytes) -> bool:
    """Whether JSON text may hold an integer beyond 64 bits (19 digits in a row), which orjson reads as a
    float: such text is read again with ``exact_json``."""
    return _LONG_DIGITS in raw.translate(_DIGITS)


def exact_json(raw: bytes) -> Any:
    """JSON text read with its integers exact, whatever their size (so the checks can refuse those beyond
    64 bits); NaN and Infinity are refused (ValueError), as orjson refuses them."""
    return json.loads(raw, parse_constant=_refuse_constant)


def _exact(raw: bytes, line: int, parsed: Any) -> Any:
    """``parsed`` (orjson's reading of ``raw``, which turns integers beyond 64 bits into floats), or a
    Reject when ``raw`` holds such an integer."""
    try:
        exact = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        return parsed
    where = _big_int_field(exact)
    return parsed if where is None else Reject(line, "integer beyond 64 bits", where)


def _jsonl_objects(path: Path, position: ReadPosition | None = None) -> Iterator[tuple[int, Any]]:
    """(line, parsed value) for every non-blank line; a line that is not JSON, or that holds an integer
    beyond 64 bits, yields a Reject instead."""
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    line = 0
    with open(path, "rb") as f:
        if position is not None:
            position.watch(f)
        while lines := f.readlines(1 << 20):
            # A block without 19 digits in a row holds no integer beyond 64 bits: most lines skip the check.
            suspect = _LONG_DIGITS in b"".join(lines).translate(_DIGITS)
            for raw in lines:
                line += 1
                if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    obj = loads(raw)
                except decode_error as exc:
                    if raw.strip():
                        yield line, Reject(line, "bad JSON", str(exc)[:80])
                    continue
                if suspect and _LONG_DIGITS in raw.translate(_DIGITS):
                    obj = _exact(raw, line, obj)
                yield line, obj


def jsonl_event_chunks(
    path: Path,
    chunk_rows: int = CHUNK_ROWS,
    time_range: TimeRange = ANY_TIME,
    position: ReadPosition | None = None,
) -> Iterator[EventChunk]:
    return _built_chunks(_jsonl_objects(path, position), chunk_rows, time_range)


def _csv_rows(path: Path, position: ReadPosition | None = None) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields) for every CSV record after the header, which is line 1 and
    yielded as line 1. Blank lines are skipped; undecodable bytes come back as lone surrogates."""
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        if position is not None:
            position.watch(f)
        reader = csv.reader(f)
        previous = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield previous + 1, [f"\udc00{exc}"]  # marks a broken record for the caller
                previous = reader.line_num
                continue
            start, previous = previous + 1, reader.line_num
            if fields:
                yield start, fields


def _csv_problem(fields: list[str], width: int) -> Reject | None:
    if len(fields) == 1 and fields[0].startswith("\udc00"):
        return Reject(0, "bad CSV record", fields[0][1:80])
    if len(fields) != width:
        return Reject(0, "wrong number of fields", f"{len(fields)} fields, header has {width}")
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return Reject(0, "bad encoding", "not UTF-8")
    return None


def _csv_header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> list[str] | None:
    """The header's column names (the first record), or None for an empty file."""
    first = next(rows, None)
    if first is None:
        return None
    names = [name.strip() for name in first[1]]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise IngestError(f"{path}: CSV header repeats column(s) {sorted(dup)}")
    _check_names(path, names)
    return names


def _check_names(path: Path, names: Sequence[str]) -> None:
    for i, name in enumerate(names, 1):
        if has_control(name):
            raise IngestError(f"{path}: the name of column {i} contains a control character")


def _id_column(names: Sequence[str]) -> str | None:
    """The column holding events' own ids, if any."""
    return next((name for name in ID_FIELDS if name in names), None)


def csv_event_chunks(
    path: Path,
    chunk_rows: int = CHUNK_ROWS,
    time_range: TimeRange = ANY_TIME,
    position: ReadPosition | None = None,
) -> Iterator[EventChunk]:
    """Event chunks from a CSV file with columns customer_id, event, ts (and optionally an id column,
    see ``ID_FIELDS``; an empty cell is no id); every other non-empty cell is a property (a number when
    the whole cell is a JSON number)."""
    rows = _csv_rows(path, position)
    names = _csv_header(path, rows)
    if names is None:
        return
    missing = [name for name in EVENT_FIELDS if name not in names]
    if missing:
        raise IngestError(f"{path}: CSV header lacks {missing}")
    ci, ei, ti = (names.index(name) for name in EVENT_FIELDS)
    id_name = _id_column(names)
    mi = None if id_name is None else names.index(id_name)
    others = [(i, name) for i, name in enumerate(names) if name not in _NOT_PROPERTIES]
    width = len(names)

    def items() -> Iterator[tuple[int, Any]]:
        for line, fields in rows:
            problem = _csv_problem(fields, width)
            if problem is not None:
                yield line, problem._replace(line=line)
                continue
            try:
                props = {name: parse_number(fields[i]) for i, name in others if fields[i] != ""}
            except OverflowError:
                where = next(name for i, name in others if _overflows(fields[i]))
                yield line, Reject(line, "integer beyond 64 bits", f"properties.{where}")
                continue
            record = {"customer_id": fields[ci], "event": fields[ei], "ts": fields[ti], "properties": props}
            if mi is not None and fields[mi] != "":
                record["message_id"] = fields[mi]
            yield line, record

    yield from _built_chunks(items(), chunk_rows, time_range)


def _overflows(cell: str) -> bool:
    try:
        parse_number(cell)
    except OverflowError:
        return True
    return False


# ---------------------------------------------------------------------------------------------- parquet


def _plain(col: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_large_string(col.type) or str(col.type) == "string_view":
        col = col.cast(pa.string())
    return col


def _utf8_bytes(col: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of every value of a string array, end to end (no copy)."""
    _, offsets_buf, data_buf = col.buffers()
    if data_buf is None or len(col) == 0:
        return np.zeros(0, np.uint8)
    offsets = np.frombuffer(offsets_buf, np.int32, count=len(col) + 1, offset=col.offset * 4)
    return np.frombuffer(data_buf, np.uint8)[offsets[0] : offsets[-1]]


def _control_rows(col: pa.Array) -> np.ndarray:
    """Rows of a string array holding a control character or a line or paragraph separator. The bytes
    are looked at first, all at once: a column without a byte below 0x20, 0x7f, or a 0xc2 or 0xe2 lead
    byte (of U+0080-U+009F, U+2028, U+2029) has none, and needs no per-value check."""
    data = _utf8_bytes(col)
    if not ((data < 0x20) | (data == 0x7F) | (data == 0xC2) | (data == 0xE2)).any():
        return np.zeros(len(col), bool)
    return _mask(pc.match_substring_regex(col, _CONTROL_RE2))


def _mask(arr: pa.Array) -> np.ndarray:
    """A boolean arrow array as numpy, nulls as False."""
    if arr.null_count:
        arr = arr.fill_null(False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _json_fragments(name: str, col: pa.Array) -> pa.Array:
    """Per row ``,"name":<json value>``, or "" where the value is null (or a non-finite float)."""
    prefix = "," + orjson.dumps(name).decode() + ":"
    col = _plain(col)
    t = col.type
    text: pa.Array
    if pa.types.is_integer(t):
        text = pc.cast(col, pa.string())
    elif pa.types.is_floating(t):
        finite = pc.is_finite(col)
        text = pc.cast(col, pa.string())
        integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    elif pa.types.is_boolean(t):
        text = pc.if_else(col, "true", "false")
    elif pa.types.is_string(t) and not (_utf8_bytes(col) < 0x20).any():  # nothing to escape but " and \
        escaped = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    else:
        values = col.to_pylist()
        text = pa.array(
            [None if v is None else orjson.dumps(v, default=_json_default).decode() for v in values],
            pa.string(),
        )
    return pc.binary_join_element_wise(prefix, text, "").fill_null("")


def _properties_json(batch: pa.RecordBatch, names: Sequence[str]) -> pa.Array:
    """The properties of each row as JSON object text built column-wise (no per-row Python)."""
    if not names:
        return pa.array(["{}"] * batch.num_rows, pa.string())
    frags = [_json_fragments(name, batch.column(name)) for name in names]
    joined = frags[0] if len(frags) == 1 else pc.binary_join_element_wise(*frags, "")
    body = pc.utf8_slice_codeunits(joined, 1)  # drop the leading comma
    return pc.binary_join_element_wise("{", body, "}", "")


def _timestamp_us(col: pa.Array) -> np.ndarray:
    """Microseconds of a timestamp array (floor for nanoseconds); null slots hold 0."""
    unit = col.type.unit
    raw = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if unit == "s":
        return raw * 1_000_000
    if unit == "ms":
        return raw * 1_000
    if unit == "ns":
        return raw // 1_000
    return raw


def arrow_event_chunk(batch: pa.RecordBatch, first_row: int, time_range: TimeRange = ANY_TIME) -> EventChunk:
    """Validate and convert a record batch of events column by column; ``first_row`` numbers its rows."""
    n = batch.num_rows
    names = batch.schema.names
    _check_names(Path("batch"), names)
    reason = np.full(n, "", dtype=object)
    details = np.full(n, "", dtype=object)

    def fail(mask: np.ndarray, why: str, detail: str = "") -> None:
        if not mask.any():  # the common case: no row fails this check
            return
        hit = mask & (reason == "")
        reason[hit] = why
        details[hit] = detail

    cid = _plain(batch.column("customer_id"))
    if pa.types.is_integer(cid.type):
        cid = pc.cast(cid, pa.string())
    elif not pa.types.is_string(cid.type):
        raise IngestError(f"customer_id column has type {cid.type}; expected text or integers")
    fail(~_mask(pc.is_valid(cid)) | ~_mask(pc.greater(pc.binary_length(cid), 0)), "missing customer_id")
    fail(_control_rows(cid), "customer_id contains a control character")

    event = _plain(batch.column("event"))
    if not pa.types.is_string(event.type):
        raise IngestError(f"event column has type {event.type}; expected text")
    fail(~_mask(pc.is_valid(event)), "missing event")
    fail(~_mask(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(event)), 0)), "empty event name")
    fail(_control_rows(event), "event name contains a control character")

    ts_col = _plain(batch.column("ts"))
    fail(~_mask(pc.is_valid(ts_col)), "missing ts")
    if pa.types.is_timestamp(ts_col.type):
        if ts_col.type.tz is None:
            fail(np.ones(n, bool), "ts without a time zone", f"column type {ts_col.type}")
        ts_us = _timestamp_us(ts_col)
    elif pa.types.is_string(ts_col.type):
        ts_us, bad = parse_ts_texts(ts_col.fill_null("1970-01-01T00:00:00Z"))
        for i, r in bad.items():
            if reason[i] == "":
                reason[i], details[i] = r.reason, r.detail
    else:
        raise IngestError(f"ts column has type {ts_col.type}; expected a timestamp with time zone or text")
    early, late = time_range.rejects(ts_us)
    fail(early, *time_range.reason(False)[1:])
    fail(late, *time_range.reason(True)[1:])

    prop_names = [name for name in names if name not in _NOT_PROPERTIES]
    for name in prop_names:
        col = batch.column(name)
        if pa.types.is_uint64(col.type):
            fail(_mask(pc.greater(col, pa.scalar(INT64_MAX, pa.uint64()))), "integer beyond 64 bits", name)
    props = _properties_json(batch, prop_names)
    id_name = _id_column(names)
    ids: pa.Array | None = None
    if id_name is not None:
        ids = _plain(batch.column(id_name))
        if pa.types.is_integer(ids.type):
            ids = pc.cast(ids, pa.string())
        elif not pa.types.is_string(ids.type):
            raise IngestError(f"{id_name} column has type {ids.type}; expected text or integers")
        ids = pc.if_else(pc.equal(ids, ""), pa.scalar(None, pa.string()), ids)
    lines = np.arange(first_row, first_row + n, dtype=np.int64)

    bad_rows = np.flatnonzero(reason != "")
    rejects = [Reject(first_row + int(i), str(reason[i]), str(details[i])) for i in bad_rows]
    if len(bad_rows):
        keep = reason == ""
        keep_arr = pa.array(keep)
        cid, event, props = cid.filter(keep_arr), event.filter(keep_arr), props.filter(keep_arr)
        ts_us = ts_us[keep]
        lines = lines[keep]
        if ids is not None:
            ids = ids.filter(keep_arr)
    cid_codes = pc.dictionary_encode(cid)
    event_codes = pc.dictionary_encode(event)
    return EventChunk(
        customer_id_array=cid_codes.dictionary,
        customer_ids=cid_codes.dictionary.to_pylist(),
        customer_codes=cid_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        event_names=event_codes.dictionary.to_pylist(),
        event_codes=event_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        ts_us=np.asarray(ts_us, dtype=np.int64),
        properties=props.to_pylist(),
        rejects=rejects,
        lines=lines,
        message_ids=None if ids is None or ids.null_count == len(ids) else ids.to_pylist(),
    )


def parquet_event_chunks(
    path: Path,
    chunk_rows: int = CHUNK_ROWS,
    time_range: TimeRange = ANY_TIME,
    position: ReadPosition | None = None,
) -> Iterator[EventChunk]:
    """Event chunks from a Parquet file (one per record batch); rows are numbered from 1."""
    pf = pq.ParquetFile(path)
    missing = [name for name in EVENT_FIELDS if name not in pf.schema_arrow.names]
    if missing:
        raise IngestError(f"{path}: Parquet file lacks column(s) {missing}")
    _check_names(path, pf.schema_arrow.names)
    first = 1
    for batch in pf.iter_batches(batch_size=chunk_rows):
        if position is not None:
            position.rows(first - 1 + batch.num_rows, pf.metadata.num_rows)
        yield arrow_event_chunk(batch, first, time_range)
        first += batch.num_rows


# ---------------------------------------------------------------------------------------------- customers


def parse_updated_at(value: Any, latest_us: int | None) -> int | Reject:
    """A customer record's ``updated_at`` (ISO-8601 text with a time zone, or an aware ``datetime``) as
    microseconds, or a Reject with line 0: no zone, before 1970, or after ``latest_us`` (a record from the
    future would make every later update look stale)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return Reject(0, "updated_at without a time zone", _show(value))
        when: int | Reject = to_us(value)
    elif isinstance(value, str):
        when = parse_ts_text(value)
    else:
        return Reject(0, "bad updated_at", f"must be ISO-8601 text with a time zone, got {_show(value)}")
    if isinstance(when, Reject):
        return when._replace(reason=when.reason.replace("ts", "updated_at", 1))
    if when < 0:
        return Reject(0, "updated_at out of range", f"before 1970: {_show(value)}")
    if latest_us is not None and when > latest_us:
        return Reject(0, "updated_at in the future", _show(value))
    return when


def customer_row(
    line: int, obj: Any, from_text: bool, latest_us: int | None = None
) -> dict[str, Any] | Reject:
    """Validate one customer record into an ``upsert_customers`` row, or say why it is rejected.

    ``from_text`` (CSV) means cells are strings: an empty cell is "not given" and attribute cells that are
    whole JSON numbers become numbers. Consents must be true/false/1/0/yes/no; ``timezone`` an IANA zone;
    ``updated_at``, the record's time, as ``parse_updated_at`` takes it (no later than ``latest_us``).
    """
    if not isinstance(obj, Mapping):
        return Reject(line, "not an object", type(obj).__name__)
    cid = obj.get("customer_id")
    alt = obj.get("id")
    if cid is None or cid == "":
        cid = alt
    elif alt is not None and alt != "" and str(alt) != str(cid):
        return Reject(line, "conflicting customer_id and id")
    if type(cid) is int:
        if not INT64_MIN <= cid <= INT64_MAX:
            return Reject(line, "integer beyond 64 bits", "customer_id")
        cid = str(cid)
    elif cid is None or cid == "":
        return Reject(line, "missing customer_id")
    elif type(cid) is not str:
        return Reject(line, "bad customer_id", f"must be a string or an integer, not {type(cid).__name__}")
    elif has_control(cid):
        return Reject(line, "customer_id contains a control character")
    row: dict[str, Any] = {"id": cid}
    for name, value in obj.items():
        if name in ("customer_id", "id") or (from_text and value == ""):
            continue
        if type(name) is str and has_control(name):
            return Reject(line, "attribute name contains a control character")
        if name in STANDARD_TEXT:
            if value is not None and not isinstance(value, str):
                return Reject(line, f"bad {name}", f"must be a string, not {type(value).__name__}")
            if name == "timezone" and value is not None and not known_time_zone(value):
                return Reject(line, "unknown time zone", _show(value))
            row[name] = value
        elif name in CONSENTS:
            consent = parse_consent(value)
            if consent is None:
                detail = f"{name} must be true/false/1/0/yes/no, got {_show(value)}"
                return Reject(line, "bad consent", detail)
            row[name] = consent
        elif name == "attributes":
            if not isinstance(value, Mapping):
                return Reject(line, "attributes not an object", type(value).__name__)
            if any(type(k) is str and has_control(k) for k in value):
                return Reject(line, "attribute name contains a control character")
            row[name] = dict(value)
        elif name == "updated_at":
            when = parse_updated_at(value, latest_us)
            if isinstance(when, Reject):
                return when._replace(line=line)
            row[RECORD_TIME] = when
        elif name in ("key", "updated_us", RECORD_TIME):
            return Reject(line, "reserved field", name)
        elif from_text and isinstance(value, str):
            try:
                row[name] = parse_number(value)
            except OverflowError:
                return Reject(line, "integer beyond 64 bits", name)
        else:
            if _big_int_field(value) is not None:
                return Reject(line, "integer beyond 64 bits", name)
            row[name] = value
    return row


class _CustomerBuilder:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[Reject] = []

    @property
    def pending(self) -> int:
        return len(self.rows) + len(self.rejects)

    def add(self, result: dict[str, Any] | Reject) -> None:
        if isinstance(result, Reject):
            self.rejects.append(result)
        else:
            self.rows.append(result)

    def finish(self) -> CustomerChunk:
        chunk = CustomerChunk(self.rows, self.rejects)
        self._reset()
        return chunk


def _customer_chunks(items: Iterable[dict[str, Any] | Reject], chunk_rows: int) -> Iterator[CustomerChunk]:
    builder = _CustomerBuilder()
    for item in items:
        builder.add(item)
        if builder.pending >= chunk_rows:
            yield builder.finish()
    if builder.pending:
        yield builder.finish()


def jsonl_customer_chunks(
    path: Path,
    chunk_rows: int = CHUNK_ROWS,
    latest_us: int | None = None,
    position: ReadPosition | None = None,
) -> Iterator[CustomerChunk]:
    items = (
        obj if type(obj) is Reject else customer_row(line, obj, False, latest_us)
        for line, obj in _jsonl_objects(path, position)
    )
    return _customer_chunks(items, chunk_rows)


def csv_customer_chunks(
    path: Path,
    chunk_rows: int = CHUNK_ROWS,
    latest_us: int | None = None,
    position: ReadPosition | None = None,
) -> Iterator[CustomerChunk]:
    rows = _csv_rows(path, position)
    names = _csv_header(path, rows)
    if names is None:
        return iter(())
    if "customer_id" not in names and "id" not in names:
        raise IngestError(f"{path}: customer CSV header needs customer_id or id")
    width = len(names)

    def items() -> Iterator[dict[str, Any] | Reject]:
        for line, fields in rows:
            problem = _csv_problem(fields, width)
            if problem is not None:
                yield problem._replace(line=line)
            else:
                yield customer_row(line, dict(zip(names, fields, strict=True)), True, latest_us)

    return _customer_chunks(items(), chunk_rows)


def parquet_customer_chunks(
    path: Path,
    chunk_rows: int = CHUNK_ROWS,
    latest_us: int | None = None,
    position: ReadPosition | None = None,
) -> Iterator[CustomerChunk]:
    """Customer chunks from Parquet; null cells are "not given"."""
    pf = pq.ParquetFile(path)
    if "customer_id" not in pf.schema_arrow.names and "id" not in pf.schema_arrow.names:
        raise IngestError(f"{path}: customer Parquet file needs a customer_id or id column")

    def items() -> Iterator[dict[str, Any] | Reject]:
        line = 1
        for batch in pf.iter_batches(batch_size=chunk_rows):
            if position is not None:
                position.rows(line - 1 + batch.num_rows, pf.metadata.num_rows)
            for record in batch.to_pylist():
                clean = {k: v for k, v in record.items() if v is not None}
                yield customer_row(line, clean, False, latest_us)
                line += 1

    return _customer_chunks(items(), chunk_rows)


# ---------------------------------------------------------------------------------------------- detection


def detect_format(path: Path) -> str:
    """jsonl, csv or parquet, from the file name's extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise IngestError(f"{path}: unknown file type {path.suffix!r}; expected {sorted(FORMATS)}")
    return fmt


def detect_kind(path: Path, fmt: str) -> str:
    """ "events" or "customers", from the file as a whole: an ``event`` column in the CSV header or the
    Parquet schema means events. In JSONL a record with an ``event`` field is an event, one with neither
    ``event`` nor ``ts`` a customer, and one with ``ts`` but no ``event`` could be either (an event that
    lost its name): the file is events when any record is an event, customers otherwise, and refused
    (``IngestError``) when it has both events and customers. A file without any record counts as
    events."""
    if fmt == "parquet":
        names = pq.ParquetFile(path).schema_arrow.names
        return "events" if "event" in names else "customers"
    if fmt == "csv":
        header = _csv_header(path, _csv_rows(path))
        return "events" if header is None or "event" in header else "customers"
    return _jsonl_kind(path)


def _jsonl_kind(path: Path) -> str:
    """Every line is looked at: one without the text ``"event"`` is parsed; lines with it are parsed
    until one is an event."""
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    first_event = first_customer = 0
    records = False
    with open(path, "rb") as f:
        for line, raw in enumerate(f, 1):
            if first_event and b'"event"' in raw:
                continue
            try:
                obj = loads(raw[3:] if line == 1 and raw.startswith(b"\xef\xbb\xbf") else raw)
            except decode_error:
                continue
            if type(obj) is not dict:
                continue
            records = True
            if "event" in obj:
                first_event = first_event or line
            elif "ts" not in obj:
                first_customer = first_customer or line
            if first_event and first_customer:
                raise IngestError(
                    f"{path}: the file mixes events and customers (line {first_event} has an event field, "
                    f"line {first_customer} has neither event nor ts); pass the kind explicitly (--kind)"
                )
    return "events" if first_event or not records else "customers"


def event_chunks(
    path: Path,
    fmt: str,
    chunk_rows: int = CHUNK_ROWS,
    time_range: TimeRange = ANY_TIME,
    position: ReadPosition | None = None,
) -> Iterator[EventChunk]:
    readers = {"jsonl": jsonl_event_chunks, "csv": csv_event_chunks, "parquet": parquet_event_chunks}
    return readers[fmt](path, chunk_rows, time_range, position)


def customer_chunks(
    path: Path,
    fmt: str,
    chunk_rows: int = CHUNK_ROWS,
    latest_us: int | None = None,
    position: ReadPosition | None = None,
) -> Iterator[CustomerChunk]:
    """Customer chunks of a file; ``latest_us`` bounds the rows' ``updated_at`` (None: no bound)."""
    readers = {"jsonl": jsonl_customer_chunks, "csv": csv_customer_chunks, "parquet": parquet_customer_chunks}
    return readers[fmt](path, chunk_rows, latest_us, position)
