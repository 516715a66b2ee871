"""Counts every request by route and status, and times it (``orchestrator_api_requests``,
``orchestrator_api_request_seconds``). A plain ASGI middleware: no work beyond reading the status."""

from __future__ import annotations

import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.http._metrics import ApiMetrics


class RequestMetrics:
    """Requests are labelled by their route (``/u/{token}`` for every unsubscribe link); paths outside
    ``routes`` are counted as ``other``, so the labels stay few."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(route for route in routes if "{" not in route)
        self.templates = [(route.split("{", 1)[0], route) for route in routes if "{" in route]

    def route(self, path: str) -> str:
        if path in self.routes:
            return path
        for prefix, template in self.templates:
            if path.startswith(prefix):
                return template
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        route = self.route(path)
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.seconds.labels(route).observe(time.perf_counter() - started)
