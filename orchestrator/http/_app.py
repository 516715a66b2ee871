"""The ASGI application: the event API, the operations endpoints and the OpenAPI document on Starlette.

``create_app(config)`` builds it over the workspace's store (or a store the caller shares, as the daemon
does when it serves in its own process); starting the app starts the group writer and stopping it writes
what is queued before the store closes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import orjson
from prometheus_client import CollectorRegistry, ProcessCollector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from orchestrator.channels import message_links
from orchestrator.clock import Clock, SystemClock, from_us, to_us
from orchestrator.config import WorkspaceConfig
from orchestrator.http._auth import WriteKeys
from orchestrator.http._console import console_app
from orchestrator.http._events import JSON, EventApi
from orchestrator.http._links import link_routes
from orchestrator.http._metrics import ApiMetrics, StoreCollector
from orchestrator.http._middleware import RequestMetrics
from orchestrator.http._openapi import openapi_document
from orchestrator.http._ops import Operations
from orchestrator.http._privacy import PrivacyApi
from orchestrator.http._segment import FEW_CALLS, parse_calls
from orchestrator.http._writer import GroupWriter
from orchestrator.store import Store, database_url, open_store

log = logging.getLogger("orchestrator.http")


def create_app(
    config: WorkspaceConfig,
    store: Store | str | None = None,
    *,
    clock: Clock | None = None,
    stale_after: timedelta | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    durable: bool = True,
) -> Starlette:
    """The HTTP service of the workspace ``config``.

    ``store`` is a store to share (left open when the app stops), or a URL to open (default: the config's
    store, else ``$ORCHESTRATOR_DB``, else ``orchestrator.db`` here; its tables are created when new).
    ``stale_after`` bounds the last tick's age for ``/readyz`` (default: the rule of ``status``).
    The unsubscribe and tracking links of the config's ``unsubscribe`` and ``tracking`` sections are
    served too (``http._links``; ``ValueError`` naming the variable when a signing key's is unset), and the
    console at ``/console/`` when the config has an ``http.console`` section (``http._console``).
    ``extra_routes`` are mounted beside the service's own. ``durable`` false lets SQLite commits skip
    the sync to disk (tests only)."""
    clock = clock or SystemClock()
    owned = not isinstance(store, Store)
    the_store = store if isinstance(store, Store) else open_store(database_url(store or config.store))
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    metrics = ApiMetrics(registry)
    collector = StoreCollector(the_store, clock)
    registry.register(collector)
    writer = GroupWriter(the_store, clock=clock, durable=durable, on_commit=metrics.committed)
    api = EventApi(WriteKeys(config.file.http.api_keys), writer, metrics, clock)
    ops = Operations(the_store, registry, clock, stale_after)
    privacy = PrivacyApi(WriteKeys(config.file.http.privacy_keys), the_store)
    document = orjson.dumps(openapi_document())

    async def openapi(_request: Request) -> Response:
        return Response(document, media_type=JSON)

    routes: list[BaseRoute] = [
        Route("/v1/track", api.track, methods=["POST"]),
        Route("/v1/identify", api.identify, methods=["POST"]),
        Route("/v1/page", api.page, methods=["POST"]),
        Route("/v1/screen", api.screen, methods=["POST"]),
        Route("/v1/batch", api.batch, methods=["POST"]),
        Route("/v1/privacy/export", privacy.export, methods=["POST"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        # Unsubscribe, click and open links of sent messages, when the config sets them up.
        *link_routes(the_store, message_links(config.file), clock),
        *extra_routes,
    ]
    counted = [route.path for route in routes if isinstance(route, Route)]
    console = config.file.http.console
    if console is not None:
        # The read-only console, with its own session and login: the event API's path is unchanged.
        routes.append(Mount("/console", app=console_app(console, the_store, clock)))
        counted.append("/console/{page}")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(collector.start)
        # The first parse loads what validation needs (Arrow's casts): before the first request, not in it.
        # A batch of more than a few calls with times, so that the Arrow path is loaded too.
        now_us = to_us(clock.now())
        ts = from_us(now_us).isoformat()
        call = {"type": "track", "userId": "warm-up", "event": "warm-up", "timestamp": ts}
        parse_calls([call] * (FEW_CALLS + 1), None, now_us)
        parse_calls([{"userId": "warm-up", "event": "warm-up"}], "track", now_us)
        writer.start()
        if not api.keys:
            log.warning("no API key is set (http.api_keys): the event API refuses every request")
        try:
            yield
        finally:
            await run_in_threadpool(writer.stop)
            if owned:
                the_store.dispose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestMetrics, metrics=metrics, routes=counted)],
        lifespan=lifespan,
    )
    app.state.store = the_store
    app.state.writer = writer
    app.state.registry = registry
    return app
