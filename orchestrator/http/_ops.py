"""Operations endpoints: ``/healthz`` (the process answers), ``/readyz`` (the store answers, the last
tick is recent and no journey is marked failed: the rule of ``orchestrator status``, from
``engine._health``) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import logging
from datetime import timedelta

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.clock import Clock, to_us
from orchestrator.durations import US_PER_SECOND
from orchestrator.engine import engine_health
from orchestrator.store import Store, is_database_error, ping

log = logging.getLogger("orchestrator.http")
JSON = "application/json"


class Operations:
    """The handlers of the operations endpoints."""

    def __init__(
        self, store: Store, registry: CollectorRegistry, clock: Clock, stale_after: timedelta | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.stale_after_us = (
            None if stale_after is None else round(stale_after.total_seconds() * US_PER_SECOND)
        )

    async def healthz(self, _request: Request) -> Response:
        return Response(b'{"status":"ok"}', 200, media_type=JSON)

    async def readyz(self, _request: Request) -> Response:
        answer = await run_in_threadpool(self.readiness)
        return Response(orjson.dumps(answer), 200 if answer["ready"] else 503, media_type=JSON)

    def readiness(self) -> dict[str, object]:
        """``{"ready", "store", "health"}``: ready when the store answers and the engine is healthy."""
        try:
            with self.store.connect() as conn:
                ping(conn)
                verdict = engine_health(conn, to_us(self.clock.now()), self.stale_after_us)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("readiness: the store did not answer: %s", type(exc).__name__)
            return {"ready": False, "store": False, "health": None}
        return {"ready": verdict.ok, "store": True, "health": verdict.to_dict()}

    async def metrics(self, _request: Request) -> Response:
        text = await run_in_threadpool(generate_latest, self.registry)
        return Response(text, 200, media_type=CONTENT_TYPE_LATEST)
