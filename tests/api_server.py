"""The HTTP service as a real process for the tests: ``orchestrator serve`` (uvicorn) on a free
loopback port of a workspace made by ``init_workspace``, stopped by its pid at the end."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from orchestrator.config import init_workspace

KEY = "test-write-key"
KEY_VARIABLE = "ORCHESTRATOR_WRITE_KEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def basic(key: str) -> dict[str, str]:
    """The Authorization header of a write key, as Segment's libraries send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@dataclass
class ApiServer:
    url: str
    folder: Path
    db: str
    process: subprocess.Popen[bytes]

    @property
    def auth(self) -> dict[str, str]:
        return basic(KEY)

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")


def make_workspace(folder: Path) -> Path:
    """A workspace as ``orchestrator init`` makes it; returns its config file."""
    init_workspace(folder, datetime.now(UTC))
    return folder / "orchestrator.yaml"


CHECKOUT = Path(__file__).resolve().parents[1]


@contextmanager
def api_server(
    folder: Path, db: str | None = None, environ: Mapping[str, str] | None = None, *, key: bool = True
) -> Iterator[ApiServer]:
    """Serve the workspace in ``folder`` (made first when it has no config) on a free port; with ``key``
    the write key ``KEY`` is set in the server's environment, without it no variable is (the config's
    ``${ORCHESTRATOR_WRITE_KEY}`` stays unset)."""
    config = folder / "orchestrator.yaml"
    if not config.exists():
        make_workspace(folder)
    db = db or f"sqlite:///{folder / 'orchestrator.db'}"
    env = {k: v for k, v in (environ if environ is not None else os.environ).items() if k != KEY_VARIABLE}
    env.pop("ORCHESTRATOR_DB", None)
    # The server runs this checkout's code, whatever the environment given (and whichever is installed).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    if key:
        env[KEY_VARIABLE] = KEY
    port = free_port()
    # ``orchestrator serve``, as an operator starts it.
    command = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(config), "--db", db]
    command += ["--port", str(port), "--log-level", "warning"]
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ApiServer(f"http://127.0.0.1:{port}", folder, db, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server stopped:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
