"""Running the service: ``serve`` in the foreground (the ``serve`` command), or ``start_in_thread``
beside the engine in the daemon's own process."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from orchestrator.config import WorkspaceConfig
from orchestrator.http._app import create_app
from orchestrator.store import Store

#: The interpreter's switch interval while serving (Python's default is 5 ms). The group writer's thread
#: gives up the GIL around every SQLite step and needs it back for the next; while the event loop parses
#: a request, each time back costs up to one interval. 1 ms lets commits go on between requests.
SWITCH_INTERVAL_S = 0.001


def listen_address(
    config: WorkspaceConfig, host: str | None = None, port: int | None = None
) -> tuple[str, int]:
    """Where to listen: ``host`` and ``port`` when given, else the config's ``http.listen``."""
    default_host, _, default_port = config.file.http.listen.rpartition(":")
    return host or default_host.strip("[]"), int(default_port) if port is None else port


def _server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    # No logging set-up of uvicorn's own: the process's (the CLI's, the daemon's) applies to its loggers.
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    )


def serve(
    config: WorkspaceConfig,
    store_url: str | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    stale_after: timedelta | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> None:
    """Serve the workspace's HTTP service until SIGTERM or SIGINT (then answer the requests in flight,
    commit what is queued and stop). ``store_url`` overrides the config's store."""
    listen_host, listen_port = listen_address(config, host, port)
    app = create_app(config, store_url, stale_after=stale_after, extra_routes=extra_routes)
    # What is loaded by now lives as long as the process: out of the collector's sight, so that full
    # collections (pauses in every request waiting then) stay short.
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _server(app, listen_host, listen_port).run()


@dataclass
class RunningServer:
    """A service running in a thread of this process; ``stop`` ends it."""

    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the process's main thread keeps its own
        pass


def start_in_thread(
    config: WorkspaceConfig,
    store: Store,
    host: str | None = None,
    port: int | None = None,
    *,
    stale_after: timedelta | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    ready_timeout: float = 30.0,
) -> RunningServer:
    """Serve beside the caller (the daemon), sharing its ``store``; returns once the service listens.
    Raises ``RuntimeError`` when it could not start (the port taken)."""
    listen_host, listen_port = listen_address(config, host, port)
    app = create_app(config, store, stale_after=stale_after, extra_routes=extra_routes)
    base = _server(app, listen_host, listen_port)
    server = _ThreadServer(base.config)
    thread = threading.Thread(target=server.run, name="orchestrator-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the HTTP service could not start on {listen_host}:{listen_port}")
        time.sleep(0.02)
    return RunningServer(server, thread)
