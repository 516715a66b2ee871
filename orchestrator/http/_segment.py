"""Segment's call shapes turned into the engine's ingest records, with file ingest's own checks.

A call is a JSON object with Segment's field names. What each kind becomes:

- ``track``: the event ``event`` of customer ``userId`` at ``timestamp`` with its ``properties``;
- ``page`` / ``screen``: the event ``page`` / ``screen``, its ``properties`` plus ``name`` (and, for a
  page, ``category``) when given;
- ``identify``: the customer ``userId``'s ``traits`` upserted as a customer record would be (``email``,
  ``phone``, ``push_token``, ``timezone``, ``consent_*`` set their columns; other traits are attributes),
  as of ``timestamp`` (an older identify never overwrites a newer one).

``messageId`` is the event's own id: the same id through a file or through the API is stored once (see
``ingest._keys``). Without ``timestamp`` the call's time is when it was received. ``anonymousId``,
``context``, ``integrations`` and the other common fields are accepted and not stored: customers are
keyed by ``userId``, so a call with only an ``anonymousId`` is rejected.

Every check after the shape is file ingest's (``ingest._readers``): control characters in ids and names,
the time range, integers beyond 64 bits, consents, time zones. A rejected call gets a reason in the
API's field names, never a value from the call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from orchestrator.clock import from_us
from orchestrator.ingest import (
    UPDATED_AT_LEEWAY_US,
    EventBuilder,
    EventChunk,
    Reject,
    customer_row,
    parse_ts_text,
    time_range,
)

#: The calls this API takes (``group`` and ``alias`` are refused: the engine has no use for them).
KINDS = ("track", "identify", "page", "screen")
EVENT_KINDS = frozenset(("track", "page", "screen"))
MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
#: Up to this many calls, timestamps are parsed one by one rather than as one Arrow column.
FEW_CALLS = 16
#: The reasons whose detail names only our own bounds or field paths, never a value from the call.
_DETAILED = frozenset(("ts out of range", "integer beyond 64 bits", "reserved field"))
_WORDS = (
    (re.compile(r"\bcustomer_id and id\b"), "userId and traits.id"),
    (re.compile(r"(?<!traits\.)\bcustomer_id\b"), "userId"),
    (re.compile(r"^(bad |missing )?ts\b"), r"\1timestamp"),
    (re.compile(r"\bmessage id\b"), "messageId"),
)


def api_reason(reject: Reject) -> str:
    """A reject's reason in the API's field names; the detail only where it cannot hold a value."""
    reason = reject.reason
    for pattern, word in _WORDS:
        reason = pattern.sub(word, reason)
    if reject.reason in _DETAILED and reject.detail:
        detail = reject.detail
        for pattern, word in _WORDS[1:2]:
            detail = pattern.sub(word, detail)
        return f"{reason}: {detail}"
    return reason


@dataclass
class ParsedCalls:
    """The calls of one request, validated: ``events`` holds the accepted events (their ``lines`` are
    the calls' 1-based positions), ``customers`` the accepted identify records as ``(0-based
    position, row)``, ``rejected`` each refused call as ``(0-based position, reason)``, in order."""

    count: int
    events: EventChunk | None
    customers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _user_id(call: Mapping[str, Any]) -> Any:
    user = call.get("userId")
    if user is None or user == "":
        if call.get("anonymousId") not in (None, ""):
            return Reject(0, "no userId: calls with only an anonymousId are not stored")
        return Reject(0, "missing userId")
    return user


def _event_record(
    kind: str, call: Mapping[str, Any], user: Any, received: datetime | str, one_by_one: bool
) -> dict[str, Any] | Reject:
    ts = call.get("timestamp")
    if ts is None:
        ts = received
    elif one_by_one and type(ts) is str:
        # A few calls: parsed here, as ingest parses one text (Arrow, which the builder uses for the
        # whole chunk, costs more than it saves on so few).
        parsed = parse_ts_text(ts)
        if isinstance(parsed, Reject):
            return parsed
        ts = from_us(parsed)
    record: dict[str, Any] = {"customer_id": user, "ts": ts}
    props = call.get("properties")
    if kind == "track":
        record["event"] = call.get("event")
    else:
        record["event"] = kind
        extra = {name: call[name] for name in ("name", "category") if call.get(name) is not None}
        if kind == "screen":
            extra.pop("category", None)
        if extra and (props is None or type(props) is dict):
            props = {**(props or {}), **extra}
    if props is not None:
        record["properties"] = props
    mid = call.get("messageId")
    if mid is not None and mid != "":
        record["message_id"] = mid
    return record


def _customer_record(
    call: Mapping[str, Any], user: Any, line: int, latest_us: int
) -> dict[str, Any] | Reject:
    traits = call.get("traits")
    if traits is None:
        traits = {}
    elif not isinstance(traits, Mapping):
        return Reject(line, "traits not an object")
    given = traits.get("customer_id")
    if given not in (None, "") and str(given) != str(user):
        return Reject(line, "conflicting userId and traits.customer_id")
    record = {**traits, "customer_id": user}
    if call.get("timestamp") is not None:
        record["updated_at"] = call["timestamp"]
    return customer_row(line, record, False, latest_us)


def _size(call: dict[str, Any]) -> int:
    """A call's size as JSON (its integers may be beyond 64 bits, which orjson refuses to write)."""
    try:
        return len(orjson.dumps(call))
    except TypeError:
        return len(json.dumps(call).encode())


def parse_calls(
    calls: list[Any], kind: str | None, now_us: int, body_bytes: int | None = None, *, general: bool = False
) -> ParsedCalls:
    """Validate ``calls`` (JSON values) of one request: every call is of ``kind``, or (``kind`` None, a
    batch) of its own ``type``. Each call is checked on its own; a bad one never stops the others. A
    batch's calls are measured against the 32 KB bound unless the whole request (``body_bytes``) is
    within it.

    The common call (an event whose ids, name and properties need no closer look) goes straight into the
    chunk's columns; any other takes the general path, file ingest's checks record by record. Both give
    the same result for the calls the first takes (``general`` sends every call down the general path:
    ``tests/http/test_http.py`` compares the two)."""
    measure = body_bytes is None or body_bytes > MAX_EVENT_BYTES
    one_by_one = len(calls) <= FEW_CALLS
    # As text for many calls: the builder then parses every time as one column (a datetime would send
    # each call down its slow path).
    received: datetime | str = from_us(now_us) if one_by_one else from_us(now_us).isoformat()
    latest_us = now_us + UPDATED_AT_LEEWAY_US
    builder = EventBuilder(time_range(now_us))
    parsed = ParsedCalls(len(calls), None)
    rejected: list[Reject] = []
    # The builder's columns, filled here directly for the common call (see ``EventBuilder.fill``).
    cindex, eindex = builder.customer_index, builder.event_index
    ccode, ecode = builder.customer_codes.append, builder.event_codes.append
    ts_add, line_add, props_add = builder.ts.append, builder.lines.append, builder.properties.append
    id_add, dumps = builder.message_ids.append, orjson.dumps
    for index, call in enumerate(calls):
        line = index + 1
        if type(call) is not dict:
            rejected.append(Reject(line, "not an object"))
            continue
        call_kind = kind
        if call_kind is None:
            call_kind = call.get("type")
            if call_kind not in KINDS:
                if isinstance(call_kind, str) and call_kind in ("group", "alias"):
                    rejected.append(Reject(line, f"{call_kind} calls are not supported"))
                else:
                    rejected.append(Reject(line, "bad type: one of track, identify, page, screen"))
                continue
            if measure and _size(call) > MAX_EVENT_BYTES:
                rejected.append(Reject(line, "call larger than 32 KB"))
                continue
        if general:
            event = None
        elif call_kind == "track":
            event = call.get("event")
        elif call_kind in EVENT_KINDS and call.get("name") is None and call.get("category") is None:
            event = call_kind
        else:
            event = None
        if event is not None:
            user = call.get("userId")
            props = call.get("properties")
            ts = call.get("timestamp")
            mid = call.get("messageId")
            if (
                type(user) is str
                and user
                and type(event) is str
                and event
                and (props is None or type(props) is dict)
                and (ts is None or type(ts) is str)
                and (mid is None or type(mid) is str)
                and user.isprintable()
                and event.isprintable()
                and not event.isspace()
            ):
                try:
                    text = dumps(props).decode() if props else "{}"
                except TypeError:  # an integer beyond 64 bits: the general path says where
                    text = "\\"
                if "\\" not in text and text.isprintable():  # no escape: no control character in names
                    ccode(cindex.setdefault(user, len(cindex)))
                    ecode(eindex.setdefault(event, len(eindex)))
                    if ts is None:
                        ts_add(now_us)
                        builder.ts_all_text = False
                    else:
                        ts_add(ts)
                    line_add(line)
                    props_add(text)
                    id_add(mid or None)
                    continue
        user = _user_id(call)
        if isinstance(user, Reject):
            rejected.append(user._replace(line=line))
        elif call_kind in EVENT_KINDS:
            record = _event_record(call_kind, call, user, received, one_by_one)
            if isinstance(record, Reject):
                rejected.append(record._replace(line=line))
            else:
                builder.add(line, record)
        else:
            row = _customer_record(call, user, line, latest_us)
            if isinstance(row, Reject):
                rejected.append(row._replace(line=line))
            else:
                parsed.customers.append((index, row))
    if builder.pending:
        chunk = builder.finish()
        rejected += chunk.rejects
        chunk.rejects = []
        parsed.events = chunk if len(chunk) else None
    parsed.rejected = sorted((r.line - 1, api_reason(r)) for r in rejected)
    return parsed
