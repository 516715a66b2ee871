"""The console: read-only pages for operators under ``/console/``, server-rendered from Jinja2 templates
(autoescaped: journey names and customer data are shown as text), one style sheet, no script, nothing from
another site. It is mounted by ``create_app`` only when the config has an ``http.console`` section.

Pages: the journeys (``/console/``), a journey (``/console/journeys/{id}``: its diagram with the funnel's
counts, its steps, the funnel per arm, the lift summary, the recent sends) and its full lift report
(``.../report``), a customer (``/console/customers/{id}``: the ``why`` trace), saved backtests
(``/console/backtests``, each report at ``/console/backtests/{id}``). Every figure comes from the core
(``engine.journeys_overview``, ``engine.journey_detail``, ``engine.explain``, ``measure.journey_funnel``,
``measure.journey_report``, ``measure.backtest_html``, the diagram from ``JourneyPlan.diagram``); here it
is only formatted (``_console_format``). Access: ``_console_auth``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.clock import Clock, to_us
from orchestrator.config import Console
from orchestrator.engine import (
    JourneyNotRun,
    UnknownCustomer,
    explain,
    iso,
    journey_detail,
    journeys_overview,
)
from orchestrator.http import _console_format as fmt
from orchestrator.http._console_auth import SESSION_COOKIE, ConsoleKeys, RequireLogin, safe_next
from orchestrator.language import DiagramCounts, JourneyPlan
from orchestrator.store import Store

if TYPE_CHECKING:
    from orchestrator.measure import JourneyFunnel

log = logging.getLogger("orchestrator.http")

#: Longest customer id the console looks up (longer ones are refused before reaching the store).
MAX_ID_LENGTH = 256
#: The journey page reloads itself this often (seconds), so its counts stay live without a script.
REFRESH_SECONDS = 60
MAX_LOGIN_BYTES = 4096
#: Sent with every console page: nothing loads from elsewhere, no script runs, no other site frames it.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no Referer to other sites; the login form keeps its Origin
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.http", "console/templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = fmt.when
    env.filters["count"] = fmt.count
    env.filters["rate"] = fmt.rate
    env.filters["p_value"] = fmt.p_value
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from a page of this service (browsers send ``Origin`` with every POST;
    a client that sends none, such as a script, is taken)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


class ConsolePages:
    """The handlers of the console's pages over one store."""

    def __init__(self, store: Store, clock: Clock, keys: ConsoleKeys) -> None:
        self.store = store
        self.clock = clock
        self.keys = keys
        self.env = _environment()
        self.css = (resources.files("orchestrator.http") / "console" / "static" / "console.css").read_bytes()

    # ------------------------------------------------------------------------------------------ helpers

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        html = self.env.get_template(template).render(
            base=base, signed_in=request.scope.get("console_key") is not None, **context
        )
        return HTMLResponse(html, status)

    def bad_id(self, request: Request) -> HTMLResponse:
        return self.page(request, "message.html", 400, title="Not a customer id", message="Not an id.")

    def not_found(self, request: Request, what: str) -> HTMLResponse:
        return self.page(request, "message.html", 404, title="Not found", message=what)

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kwargs)

    def now_us(self) -> int:
        return to_us(self.clock.now())

    # ------------------------------------------------------------------------------------------- access

    async def css_file(self, _request: Request) -> Response:
        return Response(self.css, media_type="text/css")

    async def login_form(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        return self.page(request, "login.html", next=target, failed=False)

    async def login(self, request: Request) -> Response:
        if not _same_origin(request):
            # A form posted from another site (logging a browser in with someone else's key): refused.
            return Response("403: a login from another site\n", 403, media_type="text/plain")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return Response("413: the form is too large\n", 413, media_type="text/plain")
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        given = (form.get("key") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        key_id = self.keys.match(given) if given else None
        if key_id is None:
            # The same answer for every wrong key (and for an empty one); the key is never logged or shown.
            log.info("console: a login was refused")
            return self.page(request, "login.html", 401, next=target, failed=True)
        request.session.clear()
        request.session["key"] = key_id
        request.session["fp"] = self.keys.fingerprint(key_id)
        log.info("console: key %s logged in", key_id)
        return RedirectResponse(request.scope.get("root_path", "") + target, 303)

    async def logout(self, request: Request) -> Response:
        request.session.clear()
        return RedirectResponse(request.scope.get("root_path", "") + "/login", 303)

    # -------------------------------------------------------------------------------------------- pages

    async def journeys(self, request: Request) -> Response:
        overview = await self.read(journeys_overview, self.store, self.now_us())
        return self.page(request, "journeys.html", overview=overview.to_dict())

    async def journey(self, request: Request) -> Response:
        journey_id = request.path_params["journey_id"]
        if not _valid_id(journey_id):
            return self.not_found(request, "No such journey.")
        try:
            detail = await self.read(journey_detail, self.store, journey_id, self.now_us())
        except JourneyNotRun:
            return self.not_found(request, f"The store knows no journey {journey_id!r}.")
        report = await self.read(_lift_report, self.store, journey_id)
        funnel = await self.read(_funnel, self.store, journey_id, detail.overview.version)
        diagram = await self.read(_diagram, detail.plan, funnel)
        return self.page(
            request,
            "journey.html",
            refresh=REFRESH_SECONDS,
            journey=detail.to_dict(),
            diagram=diagram,
            funnel=None if funnel is None else funnel.to_dict(),
            lift=None if report is None else fmt.lift_summary(report),
        )

    async def report(self, request: Request) -> Response:
        journey_id = request.path_params["journey_id"]
        if not _valid_id(journey_id):
            return self.not_found(request, "No such journey.")
        html = await self.read(_report_html, self.store, journey_id)
        if html is None:
            return self.not_found(request, f"The store knows no journey {journey_id!r}.")
        return HTMLResponse(html)

    async def customer_search(self, request: Request) -> Response:
        customer_id = (request.query_params.get("id") or "").strip()
        base = request.scope.get("root_path", "")
        if not customer_id:
            return RedirectResponse(base + "/", 303)
        if not _valid_id(customer_id):
            return self.bad_id(request)
        return RedirectResponse(f"{base}/customers/{quote(customer_id, safe='')}", 303)

    async def customer(self, request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        if not _valid_id(customer_id):
            return self.bad_id(request)
        try:
            story = await self.read(explain, self.store, customer_id)
        except UnknownCustomer:
            return self.not_found(request, f"The store knows no customer {customer_id!r}.")
        return self.page(request, "customer.html", why=story.to_dict())

    async def backtests(self, request: Request) -> Response:
        saved = await self.read(_saved_backtests, self.store)
        return self.page(request, "backtests.html", backtests=saved)

    async def backtest(self, request: Request) -> Response:
        raw = request.path_params["backtest_id"]
        valid = raw.isascii() and raw.isdigit() and len(raw) < 19  # a positive 64-bit integer
        html = await self.read(_backtest_html, self.store, int(raw)) if valid else None
        if html is None:
            return self.not_found(request, "No saved backtest of that id.")
        return HTMLResponse(html)


def _funnel(store: Store, journey_id: str, version: int) -> JourneyFunnel | None:
    """The per-step funnel of the journey's ``version`` (None when nothing was counted for it)."""
    from orchestrator.measure import journey_funnel

    try:
        funnel = journey_funnel(store, journey_id, version)
    except KeyError:
        return None
    return funnel if funnel.counts else None


def _diagram(plan: JourneyPlan | None, funnel: JourneyFunnel | None) -> Markup | None:
    """The journey's SVG diagram (drawn by the language package, every text in it escaped there), with the
    funnel's counts on its steps and transitions when the plan is the funnel's version."""
    if plan is None:
        return None
    counts = None
    if funnel is not None and funnel.version == plan.version:
        counts = DiagramCounts(funnel.diagram_nodes(), funnel.diagram_edges())
    return Markup(plan.diagram("svg", counts))


def _saved_backtests(store: Store) -> list[dict[str, Any]]:
    """The saved backtests, newest first: id, when it was saved and its parameters."""
    from orchestrator.store import saved_backtests

    with store.connect() as conn:
        saved = saved_backtests(conn)
    return [{"id": b.id, "saved": iso(b.created_us), "parameters": json.loads(b.parameters)} for b in saved]


def _backtest_html(store: Store, backtest_id: int) -> str | None:
    """A saved backtest's report as its HTML page (a comparison's when it compared two), None if none."""
    from orchestrator.measure import backtest_html, comparison_html
    from orchestrator.store import saved_backtest

    with store.connect() as conn:
        saved = saved_backtest(conn, backtest_id)
    if saved is None:
        return None
    report = json.loads(saved.report)
    return comparison_html(report) if "a" in report and "b" in report else backtest_html(report)


def _lift_report(store: Store, journey_id: str) -> dict[str, Any] | None:
    from orchestrator.measure import journey_report

    try:
        return journey_report(store, journey_id).to_dict()
    except KeyError:
        return None


def _report_html(store: Store, journey_id: str) -> str | None:
    from orchestrator.measure import journey_report, render_journey_html

    try:
        return render_journey_html(journey_report(store, journey_id))
    except KeyError:
        return None


def console_app(console: Console, store: Store, clock: Clock) -> Starlette:
    """The console's ASGI app over ``store`` (mounted at ``/console``)."""
    keys = ConsoleKeys.from_config(console)
    if not keys:
        log.warning("no console key is set (http.console.keys): the console refuses every login")
    pages = ConsolePages(store, clock, keys)
    handler = Callable[[Request], Awaitable[Response]]
    get: list[tuple[str, handler]] = [
        ("/", pages.journeys),
        ("/login", pages.login_form),
        ("/static/console.css", pages.css_file),
        ("/journeys/{journey_id}", pages.journey),
        ("/journeys/{journey_id}/report", pages.report),
        ("/customers", pages.customer_search),
        ("/customers/{customer_id:path}", pages.customer),
        ("/backtests", pages.backtests),
        ("/backtests/{backtest_id}", pages.backtest),
    ]
    routes = [Route(path, endpoint, methods=["GET"]) for path, endpoint in get]
    routes += [
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=keys.secret.hex(),
                session_cookie=SESSION_COOKIE,
                max_age=max(1, round(console.session.total_seconds())),
                path="/console",
                same_site="strict",
                https_only=console.secure_cookie,
            ),
            Middleware(RequireLogin, keys=keys),
        ],
    )
