"""The event API: ``POST /v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/screen`` and ``/v1/batch``.

Each request is checked in this order, and the first failure is the answer, nothing stored:

1. a write key (HTTP Basic, the key as user name): 401 otherwise;
2. no ``Content-Encoding`` but identity: 415 otherwise;
3. at most 500 KB (a single call: 32 KB): 413 otherwise;
4. a JSON object (a batch: with a ``batch`` list): 400 otherwise.

Then every call is checked on its own (``segment.parse_calls``), the accepted ones are committed with the
next group (``writer.GroupWriter``), and the answer says what became of each: 200 with the counts and
the calls refused with their reasons (a single call refused: 400 with its reason). 503 when the store did
not take them (nothing stored: retry).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.clock import Clock, to_us
from orchestrator.http._auth import WriteKeys
from orchestrator.http._metrics import ApiMetrics
from orchestrator.http._segment import KINDS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, ParsedCalls, parse_calls
from orchestrator.http._writer import GroupWriter, StoreUnavailable, Written
from orchestrator.ingest import exact_json, may_hold_long_integer

JSON = "application/json"
_UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="orchestrator"'}


def problem(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error answer: ``{"success": false, "error": ...}``."""
    return Response(orjson.dumps({"success": False, "error": error}), status, headers, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is over ``limit`` bytes (by its Content-Length or as read)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return b"".join(parts)


class EventApi:
    """The handlers of the event API over one writer."""

    def __init__(self, keys: WriteKeys, writer: GroupWriter, metrics: ApiMetrics, clock: Clock) -> None:
        self.keys = keys
        self.writer = writer
        self.metrics = metrics
        self.clock = clock

    async def track(self, request: Request) -> Response:
        return await self._handle(request, "track")

    async def identify(self, request: Request) -> Response:
        return await self._handle(request, "identify")

    async def page(self, request: Request) -> Response:
        return await self._handle(request, "page")

    async def screen(self, request: Request) -> Response:
        return await self._handle(request, "screen")

    async def batch(self, request: Request) -> Response:
        return await self._handle(request, None)

    async def _handle(self, request: Request, kind: str | None) -> Response:
        if self.keys.check(request.headers.get("authorization")) is None:
            return problem(
                401, "a write key is needed: HTTP Basic auth with the key as the user name", _UNAUTHORIZED
            )
        encoding = request.headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            return problem(415, "send the body without Content-Encoding")
        limit = MAX_REQUEST_BYTES if kind is None else MAX_EVENT_BYTES
        body = await read_body(request, limit)
        if body is None:
            return problem(413, f"the request is over {limit // 1024} KB")
        try:
            data = orjson.loads(body)
            if may_hold_long_integer(body):  # read exactly, so integers beyond 64 bits are refused
                data = exact_json(body)
        except ValueError:  # orjson's JSONDecodeError included
            return problem(400, "the body is not JSON")
        if type(data) is not dict:
            return problem(400, "the body is not a JSON object")
        if kind is None:
            calls = data.get("batch")
            if type(calls) is not list:
                return problem(400, "batch is not a list of calls")
        else:
            calls = [data]
        parsed = parse_calls(calls, kind, to_us(self.clock.now()), len(body))
        try:
            written = await self.writer.write(parsed)
        except StoreUnavailable as exc:  # its status, as every error's, is set in orchestrator.errors
            return problem(
                exc.http_status,
                "the store is unavailable; nothing was stored, retry later",
                {"Retry-After": "5"},
            )
        self._count(calls, kind, parsed, written)
        if kind is not None and parsed.rejected:
            return problem(400, parsed.rejected[0][1])
        answer = {
            "success": not parsed.rejected,
            "accepted": written.events + written.identified,
            "duplicates": written.duplicates,
            "stale": written.stale,
            "rejected": [{"index": index, "reason": reason} for index, reason in parsed.rejected],
        }
        return Response(orjson.dumps(answer), 200, media_type=JSON)

    def _count(self, calls: list[Any], kind: str | None, parsed: ParsedCalls, written: Written) -> None:
        counter = self.metrics.calls
        for name, outcome, n in (
            ("event", "accepted", written.events),
            ("event", "duplicate", written.duplicates),
            ("identify", "accepted", written.identified),
            ("identify", "stale", written.stale),
        ):
            if n:
                counter.labels(name, outcome).inc(n)
        for index, _ in parsed.rejected:
            call = calls[index]
            call_kind = kind if kind is not None else call.get("type") if type(call) is dict else None
            name = "identify" if call_kind == "identify" else "event" if call_kind in KINDS else "other"
            counter.labels(name, "rejected").inc()
