#!/usr/bin/env python3
"""Throughput and latency of the HTTP event API, against a real server process over loopback.

    python benchmarks/api.py [--seconds 10] [--batch-clients 8] [--track-clients 32] [--db URL]
                             [--client wrk|httpx]

A fresh workspace (``orchestrator.config.init_workspace``) gets a write key; the service runs as its own
process (``python -m orchestrator.http``, uvicorn) on a free loopback port, on SQLite in the workspace by
default (``--db`` for another store). Two phases, each ``--seconds`` long:

1. batches: ``--batch-clients`` clients post ``/v1/batch`` with 100 track calls each (every call with its
   own messageId, as Segment's libraries send them);
2. single calls: ``--track-clients`` clients post one ``/v1/track`` call at a time.

Every request is answered only once its calls are committed; at the end the events stored are counted in
the store and must equal the calls of every request answered 200 (else the run fails). The clients are
wrk (Debian's ``wrk``, with a Lua script making each body) when installed, else httpx; ``--client``
chooses. Prints one JSON line: ``batch_events_per_s``, ``track_requests_per_s``, ``track_p99_ms`` and
what they came from. Traffic goes to 127.0.0.1 only, and each phase stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.config import init_workspace  # noqa: E402
from orchestrator.store import open_store  # noqa: E402

KEY = "bench-write-key"
BATCH_SIZE = 100

# wrk: each request builds its body; ids are unique per thread and request. done() prints JSON.
_WRK_COMMON = """
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Basic %(auth)s"
end
local function call(kind)
  counter = counter + 1
  return string.format(
    '{%%s"userId":"user-%%d","event":"Product Viewed","messageId":"%(run)s-%%d-%%d",' ..
    '"properties":{"sku":"sku-%%d","price":%%d.5,"category":"shoes"}}',
    kind, (thread_id * 7919 + counter) %% 5000, thread_id, counter, counter %% 300, counter %% 90)
end
function done(summary, latency, requests)
  local codes = 0
  io.write(string.format(
    '{"requests":%%d,"seconds":%%.6f,"non_2xx":%%d,"errors":%%d,"p50_ms":%%.3f,"p99_ms":%%.3f,"max_ms":%%.3f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""
_WRK_TRACK = """
request = function()
  return wrk.format(nil, "/v1/track", nil, call(""))
end
"""
_WRK_BATCH = """
request = function()
  local parts = {}
  for i = 1, %(size)d do parts[i] = call('"type":"track",') end
  return wrk.format(nil, "/v1/batch", nil, '{"batch":[' .. table.concat(parts, ",") .. ']}')
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, db: str | None, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ORCHESTRATOR_WRITE_KEY": KEY}
    command = [sys.executable, "-m", "orchestrator.http", "--config", str(folder / "orchestrator.yaml")]
    command += ["--port", str(port), "--log-level", "warning"]
    if db:
        command += ["--db", db]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the process holds it
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server stopped: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not answer within 30 s")


def run_wrk(base: str, script: str, clients: int, seconds: float, folder: Path) -> dict[str, Any]:
    path = folder / "bench.lua"
    path.write_text(script)
    threads = min(2, clients)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(path),
            base,
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _body(kind: str, run: str, client: int, n: int) -> bytes:
    call = {
        "userId": f"user-{(client * 7919 + n) % 5000}",
        "event": "Product Viewed",
        "messageId": f"{run}-{kind}-{client}-{n}",
        "properties": {"sku": f"sku-{n % 300}", "price": n % 90 + 0.5, "category": "shoes"},
    }
    if kind == "track":
        return json.dumps(call).encode()
    calls = [{**call, "type": "track", "messageId": f"{run}-b-{client}-{n}-{i}"} for i in range(BATCH_SIZE)]
    return json.dumps({"batch": calls}).encode()


async def _httpx_phase(base: str, kind: str, run: str, clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    path = "/v1/track" if kind == "track" else "/v1/batch"
    headers = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    latencies: list[float] = []
    bad = 0
    deadline = time.monotonic() + seconds

    async def client(number: int, http: httpx.AsyncClient) -> None:
        nonlocal bad
        n = 0
        while time.monotonic() < deadline:
            n += 1
            started = time.perf_counter()
            response = await http.post(path, content=_body(kind, run, number, n), headers=headers)
            latencies.append(time.perf_counter() - started)
            bad += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "non_2xx": bad,
        "errors": 0,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def count_events(url: str) -> int:
    store = open_store(url, create=False)
    try:
        with store.connect() as conn:
            return int(conn.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one())
    finally:
        store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-clients", type=int, default=8)
    parser.add_argument("--track-clients", type=int, default=32)
    parser.add_argument("--db", default=None, help="store URL (default: SQLite in the workspace)")
    parser.add_argument(
        "--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx"
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace folder (its path is printed)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="orchestrator-api-bench-"))
    init_workspace(folder, datetime.now(UTC))
    db = args.db or f"sqlite:///{folder / 'orchestrator.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = f"r{int(time.time())}"
    server = start_server(folder, db, port)
    try:
        auth = base64.b64encode(f"{KEY}:".encode()).decode()
        common = _WRK_COMMON % {"auth": auth, "run": run}
        before = count_events(db)
        if args.client == "wrk":
            batch = run_wrk(
                base, common + _WRK_BATCH % {"size": BATCH_SIZE}, args.batch_clients, args.seconds, folder
            )
        else:
            batch = asyncio.run(_httpx_phase(base, "batch", run, args.batch_clients, args.seconds))
        after_batch = count_events(db)
        if args.client == "wrk":
            track = run_wrk(
                base,
                common.replace(f"{run}-", f"{run}-t-") + _WRK_TRACK,
                args.track_clients,
                args.seconds,
                folder,
            )
        else:
            track = asyncio.run(_httpx_phase(base, "track", run, args.track_clients, args.seconds))
        after_track = count_events(db)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    batch_ok = batch["requests"] - batch["non_2xx"] - batch["errors"]
    track_ok = track["requests"] - track["non_2xx"] - track["errors"]
    stored_batch, stored_track = after_batch - before, after_track - after_batch
    # wrk counts a request whose answer arrived after its deadline as not done; allow those few.
    if not (0 <= stored_batch - batch_ok * BATCH_SIZE <= args.batch_clients * BATCH_SIZE):
        raise SystemExit(f"batch phase: {batch_ok} requests answered 200 but {stored_batch} events stored")
    if not (0 <= stored_track - track_ok <= args.track_clients):
        raise SystemExit(f"track phase: {track_ok} requests answered 200 but {stored_track} events stored")
    result = {
        "batch_events_per_s": round(batch_ok * BATCH_SIZE / batch["seconds"]),
        "track_requests_per_s": round(track_ok / track["seconds"]),
        "track_p99_ms": round(track["p99_ms"], 2),
        "track_p50_ms": round(track["p50_ms"], 2),
        "batch_p99_ms": round(batch["p99_ms"], 2),
        "batch_requests": batch["requests"],
        "track_requests": track["requests"],
        "non_2xx": batch["non_2xx"] + track["non_2xx"],
        "events_stored": after_track - before,
        "client": args.client,
        "store": "sqlite" if db.startswith("sqlite") else db.split(":", 1)[0],
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))
    if args.keep:
        print(f"workspace: {folder}", file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
