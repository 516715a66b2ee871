"""The HTTP service: a Segment-compatible event API, health, readiness and Prometheus metrics.

    app = create_app(load_config())          # an ASGI app (Starlette)
    serve(load_config(), host="0.0.0.0")     # run it on uvicorn until SIGTERM
    running = start_in_thread(config, store) # beside the engine, in the daemon's process

Modules, one concern each: ``segment`` (call shapes to ingest records), ``auth`` (write keys),
``writer`` (group commits), ``events`` (the event routes), ``ops`` (health, readiness, metrics routes),
``metrics`` (what is measured), ``openapi`` (the schema), ``app`` (the ASGI app), ``server`` (uvicorn).
"""

from orchestrator.http.app import create_app
from orchestrator.http.segment import MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from orchestrator.http.server import RunningServer, listen_address, serve, start_in_thread

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "RunningServer",
    "create_app",
    "listen_address",
    "serve",
    "start_in_thread",
]
