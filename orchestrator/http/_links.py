"""The HTTP routes behind the links of sent messages: unsubscribe, click redirects and the open pixel.

``link_routes(store, links)`` gives Starlette routes (FastAPI mounts them as they are) for what the
workspace config sets up (``channels._links.message_links``):

- ``GET /u/{token}``: a small confirmation page (no customer data: only the kind of messages) whose button
  POSTs back; ``POST /u/{token}``: the opt-out, from that button (source ``unsubscribe_link``) or from a
  mail client's RFC 8058 one-click POST with the body ``List-Unsubscribe=One-Click`` (source
  ``one_click``). A valid token answers 200 whether or not the store knew the customer, and again 200 when
  the customer had unsubscribed already (twice is once); a token that is not ours answers 404, a POST that
  does not ask to unsubscribe 400, a body over 16 KB 413, a store that cannot record it 503 (the customer
  can try again: nothing is claimed that was not recorded). A GET never unsubscribes: mail scanners
  fetch links.
- ``GET /c/{token}``: records an ``email_click`` and answers 302 to the URL the token signs, and only to
  it; any other token answers 400, so the service is no open redirect. The redirect does not wait on a
  store that fails (the click is then lost, with one log line). A HEAD is answered without recording.
- ``GET /o/{token}.gif``: records an ``email_open`` and answers a 1x1 transparent GIF that caches must not
  keep; a token that is not ours answers 404.

Pages and answers are marked not to be cached, indexed, framed or sent on as a referrer. The store's work
runs on a worker thread, off the event loop.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Awaitable, Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.channels import MessageLinks, TrackingLinks, UnsubscribeLinks
from orchestrator.clock import Clock, SystemClock, to_us
from orchestrator.ingest import record_click, record_open, unsubscribe
from orchestrator.store import Store, is_database_error

log = logging.getLogger("orchestrator.http")

#: The largest unsubscribe POST body read (the one-click body is 26 bytes).
MAX_BODY = 16 * 1024
#: A transparent 1x1 GIF.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
}
_KIND = {"email": "emails", "sms": "text messages", "push": "push notifications"}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
    "button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:.3rem;background:#333;color:#fff;"
    "cursor:pointer}"
)


def link_routes(store: Store, links: MessageLinks | None, clock: Clock | None = None) -> list[Route]:
    """The routes for ``links`` (none for what is not configured): ``/u/{token}`` with unsubscribe links,
    ``/c/{token}`` and ``/o/{token}.gif`` with tracking. ``clock`` stamps opt-outs and events (default:
    the system clock)."""
    if links is None:
        return []
    writer = _Writer(store, clock or SystemClock())
    routes: list[Route] = []
    if links.unsubscribe is not None:
        page = _unsubscribe_endpoint(writer, links.unsubscribe)
        routes.append(Route("/u/{token}", page, methods=["GET", "POST"], name="unsubscribe"))
    if links.tracking is not None:
        routes.append(Route("/c/{token}", _click_endpoint(writer, links.tracking), name="click"))
        routes.append(Route("/o/{token}.gif", _open_endpoint(writer, links.tracking), name="open"))
    return routes


class _Writer:
    """Runs the routes' writes on worker threads, one at a time: on SQLite, writers that meet at the
    database's lock back off by sleeping (up to 100 ms at a time), so concurrent clicks queue here instead,
    where the next one starts as soon as the last one commits."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return to_us(self.clock.now())

    def _locked(self, call: Callable[..., bool], *args: object) -> bool:
        with self._lock:
            return call(self.store, *args)

    async def run(self, call: Callable[..., bool], *args: object) -> bool:
        return await run_in_threadpool(self._locked, call, *args)


# -- unsubscribe ----------------------------------------------------------------------------------------


def _page(title: str, text: str, status: int = 200, *, button: bool = False) -> HTMLResponse:
    form = (
        '<form method="post"><input type="hidden" name="confirm" value="unsubscribe">'
        '<button type="submit">Unsubscribe</button></form>'
        if button
        else ""
    )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, None when it is longer than ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request) -> dict[str, str] | None:
    """The fields of an unsubscribe POST (url-encoded or multipart), None when the body is too large. A
    body of another type is read as url-encoded, as some clients send the one-click body bare."""
    body = await _body(request, MAX_BODY)
    if body is None:
        return None
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        return _multipart(content_type, body)
    return dict(parse_qsl(body.decode("utf-8", "replace").strip(), keep_blank_values=True))


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a small ``multipart/form-data`` body, read by the standard library's MIME
    parser (the first of a repeated name wins; files are left out)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            fields.setdefault(name, text.strip())
    return fields


def _unsubscribe_endpoint(
    writer: _Writer, links: UnsubscribeLinks
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        who = links.read(request.path_params["token"])
        if who is None:
            return _page("Link not valid", "This unsubscribe link is not valid.", 404)
        customer_id, channel = who
        kind = _KIND[channel]
        if request.method != "POST":
            return _page("Unsubscribe", f"Stop receiving our {kind}?", button=True)
        form = await _form(request)
        if form is None:
            return _page("Request too large", "This request is too large.", 413)
        if form.get("List-Unsubscribe") == "One-Click":
            source = "one_click"
        elif form.get("confirm") == "unsubscribe":
            source = "unsubscribe_link"
        else:
            return _page("Unsubscribe", "This request does not ask to unsubscribe.", 400)
        try:
            await writer.run(unsubscribe, customer_id, channel, source, writer.now_us())
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("could not record an unsubscribe: %s", type(exc).__name__)
            return _page("Please try again", "We could not record this just now. Please try again.", 503)
        return _page("Unsubscribed", f"You will no longer receive our {kind}.")

    return endpoint


# -- tracking -------------------------------------------------------------------------------------------


async def _record(writer: _Writer, what: str, call: Callable[..., bool], *args: object) -> None:
    """Record an open or click; a store that fails costs the event (one log line), never the answer."""
    try:
        await writer.run(call, *args, writer.now_us())
    except Exception as exc:
        if not is_database_error(exc):
            raise
        log.warning("could not record an email %s: %s", what, type(exc).__name__)


def _click_endpoint(writer: _Writer, tracking: TrackingLinks) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        found = tracking.read_click(request.path_params["token"])
        if found is None:
            return PlainTextResponse("This link is not valid.\n", status_code=400, headers=NO_STORE)
        message_id, url = found
        if request.method == "GET":  # link checkers that only HEAD a link do not count as a click
            await _record(writer, "click", record_click, message_id, url)
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    return endpoint


def _open_endpoint(writer: _Writer, tracking: TrackingLinks) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        message_id = tracking.read_open(request.path_params["token"])
        if message_id is None:
            return Response(status_code=404, headers=NO_STORE)
        if request.method == "GET":
            await _record(writer, "open", record_open, message_id)
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    return endpoint
