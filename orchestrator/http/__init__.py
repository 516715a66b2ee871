"""The HTTP service: a Segment-compatible event API, health, readiness, Prometheus metrics and the
read-only console.

    app = create_app(load_config())          # an ASGI app (Starlette)
    serve(load_config(), host="0.0.0.0")     # run it on uvicorn until SIGTERM
    running = start_in_thread(config, store) # beside the engine, in the daemon's process

Modules, one concern each: ``_segment`` (call shapes to ingest records), ``_auth`` (write keys),
``_writer`` (group commits), ``_events`` (the event routes), ``_ops`` (health, readiness, metrics routes),
``_metrics`` (what is measured), ``_openapi`` (the schema), ``_app`` (the ASGI app), ``_server`` (uvicorn);
the console: ``_console`` (its pages, from the templates and style sheet in ``console/``), ``_console_auth``
(its keys, login and sessions), ``_console_format`` (how its figures are written).
"""

from orchestrator.http._app import create_app
from orchestrator.http._segment import MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from orchestrator.http._server import RunningServer, listen_address, serve, start_in_thread

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "RunningServer",
    "create_app",
    "listen_address",
    "serve",
    "start_in_thread",
]
