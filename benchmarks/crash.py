#!/usr/bin/env python3
"""Crash test: the daemon is killed with SIGKILL at random points and restarted; at the end the provider's
own count of what it received is compared with what every customer should have got.

    python benchmarks/crash.py [--customers 100000] [--kills 100] [--seed 1] [--workdir DIR]
                               [--provider outbox|smtp|http] [--mode at_least_once|at_most_once]

Setup (not timed): a SQLite store with N customers and one journey entered on a segment:
``send welcome -> wait 1d -> send reminder -> wait 2d -> send last`` (holdout 0), so each customer should
receive three messages. The provider:

- ``outbox`` (webhook channel): the file outbox, one file per idempotency key (a repeated key is answered
  ``sent`` without a second file, so it de-duplicates by itself);
- ``smtp`` (email channel): a local aiosmtpd server started by this process, which counts every message it
  accepts by its ``X-Idempotency-Key`` header (the same key always has the same Message-ID); it keeps no
  memory of keys, so a message sent again is delivered again;
- ``http`` (sms channel): a local Twilio-style HTTP API started by this process (the SMS adapter POSTs to
  it), which answers 201 to every POST and counts them by ``Idempotency-Key``, without de-duplicating.

The SMTP and HTTP counts come from the server, in this process, which the kills never touch: not from the
daemon. ``--provider-delay`` makes the server wait between receiving a message and answering, so more
kills land while messages are in flight, and ``--kill-at-receipts K`` kills each daemon after 1..K more
messages reached the server rather than after a random time (the small test run uses both, so its kills
land in dispatch however slowly the machine starts a process). ``--mode`` is the channel's
delivery mode (``--delivery CHANNEL=MODE`` of the daemon).

The run: a real ``orchestrator daemon`` subprocess on a simulated clock (6 hours per tick, resumed after
the last stored tick on restart) ticking back to back, killed with SIGKILL a random 0.2 to ``--max-delay``
seconds after it is up (its start line, written once the engine is loaded), restarted at once, ``--kills``
times; then it runs undisturbed until every instance has finished and nothing is
queued or in flight, and is stopped with SIGTERM. On each start the daemon first settles the ledger rows
left in flight (``sending``: handed to the provider, answer not recorded): sent again with the same key
(at_least_once) or recorded ``uncertain`` (at_most_once), then dispatches what is queued, then ticks.

Counts (one JSON line), per (customer, message) pair, at the provider:

- ``expected``: customers x 3;
- ``delivered``: pairs the provider received at least once;
- ``duplicates``: receipts beyond the first, summed over pairs;
- ``uncertain``: ledger rows recorded ``uncertain`` (at_most_once: in flight at a kill, never resent), and
  ``uncertain_received``, how many of them the provider had in fact received before the kill;
- ``lost``: pairs the provider never received and the ledger does not declare ``uncertain``: a message
  silently gone. So ``expected = delivered + lost + (uncertain - uncertain_received)``;
- ``in_flight_at_kills``: ledger rows left ``sending`` by the kills, summed: the bound on what a kill can
  repeat (at_least_once) or leave uncertain (at_most_once);
- ``sent_not_received``: ledger rows ``sent`` that the provider does not have (must be 0);
- the daemon's own delivery attempts (``attempts``, ``repeated_attempts``: a key handed over again), the
  ledger by status, instances by final status, wall time.

Exit status 0 when the mode's promise held: at_least_once: lost 0 and duplicates <= in_flight_at_kills;
at_most_once: lost 0, duplicates 0 and uncertain <= in_flight_at_kills.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from orchestrator.channels._outbox import file_stem  # noqa: E402
from orchestrator.store import open_store, sqlite_url  # noqa: E402
from orchestrator.store._customers import upsert_customers  # noqa: E402

SENDS = {
    "outbox": "{channel: webhook, endpoint: crm, template: m.json}",
    "smtp": '{channel: email, subject: "Hello", template: m.txt}',
    "http": "{channel: sms, template: m.txt}",
}
CHANNEL = {"outbox": "webhook", "smtp": "email", "http": "sms"}
JOURNEY = """\
id: crash
version: 1
entry:
  segment: cohort == "crash"
holdout: 0
steps:
  - id: welcome
    send: {send}
  - id: day_one
    wait: 1d
  - id: reminder
    send: {send}
  - id: day_three
    wait: 2d
  - id: last
    send: {send}
"""
MESSAGES = ("welcome", "reminder", "last")
START = "2024-05-01T00:00:00Z"
STEP = "6h"


# -- providers that count what they receive -----------------------------------------------------------


class Receipts:
    """Deliveries by idempotency key, as a provider counts them (thread-safe)."""

    def __init__(self) -> None:
        self.by_key: Counter[str] = Counter()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self.by_key[key] += 1
            self._total += 1

    def total(self) -> int:
        return self._total


class SmtpProvider:
    """A local aiosmtpd server that accepts every message and counts it by ``X-Idempotency-Key``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        from aiosmtpd.controller import Controller

        self.delay_s = delay_s
        self.receipts = Receipts()
        self._parser = BytesHeaderParser()
        with socket.socket() as sock:  # a free port (the controller checks it by connecting to it)
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = self._parser.parsebytes(envelope.original_content or envelope.content)
        self.receipts.add(str(headers.get("X-Idempotency-Key", "")).strip())
        if self.delay_s:  # received, but the answer takes a while: a kill now leaves it in doubt
            await asyncio.sleep(self.delay_s)
        return "250 Message accepted for delivery"

    def start(self) -> str:
        self._controller.start()
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._controller.stop()


class HttpProvider:
    """A local Twilio-style SMS API: every POST is answered 201 and counted by ``Idempotency-Key``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        receipts = self.receipts = Receipts()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receipts.add(self.headers.get("Idempotency-Key", ""))
                if delay_s:
                    time.sleep(delay_s)
                body = b'{"sid": "SM1", "status": "queued"}'
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> str:
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/Messages.json"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the run ------------------------------------------------------------------------------------------


def setup(workdir: Path, customers: int, provider: str) -> str:
    (workdir / "journeys").mkdir(parents=True, exist_ok=True)
    (workdir / "templates").mkdir(exist_ok=True)
    (workdir / "journeys" / "crash.yaml").write_text(JOURNEY.format(send=SENDS[provider]))
    (workdir / "templates" / "m.json").write_text('{"customer": "{{ customer.id }}"}\n')
    (workdir / "templates" / "m.txt").write_text("Hello {{ customer.id }}\n")
    url = sqlite_url(workdir / "crash.db")
    store = open_store(url)
    try:
        for first in range(0, customers, 50_000):
            with store.begin() as conn:
                rows = [
                    {"id": f"c{k}", "cohort": "crash", "email": f"c{k}@example.com", "consent_email": True,
                     "phone": f"+1201{2_000_000 + k:07d}", "consent_sms": True}
                    for k in range(first, min(first + 50_000, customers))
                ]  # fmt: skip
                upsert_customers(conn, rows, now_us=0)
    finally:
        store.dispose()
    return url


def daemon(
    workdir: Path, url: str, provider_url: str | None, channel: str, mode: str
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "orchestrator", "daemon", "--db", url, "--journeys", str(workdir / "journeys"),
        "--outbox", str(workdir / "outbox"), "--interval", "0.05", "--simulated-clock", START,
        "--simulated-step", STEP, "--attempt-log", str(workdir / "attempts.jsonl"),
        "--delivery", f"{channel}={mode}",
    ]  # fmt: skip
    if provider_url is not None:
        command += ["--provider", provider_url]
    log = (workdir / "daemon.log").open("ab")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def started(workdir: Path, proc: subprocess.Popen[bytes], offset: int, timeout: float = 300) -> None:
    """Wait until the daemon has written its start line to its log, after byte ``offset``."""
    deadline = time.monotonic() + timeout
    with (workdir / "daemon.log").open("rb") as log:
        while time.monotonic() < deadline and proc.poll() is None:
            log.seek(offset)
            if b"a tick every" in log.read(4096):
                return
            time.sleep(0.02)


def progress(url: str) -> dict[str, int]:
    store = open_store(url, create=False)
    try:
        if not store.is_initialised():
            return {"active": -1, "entered": 0, "queued": -1, "sending": 0}
        with store.connect() as conn:
            active = conn.execute(
                text("SELECT COUNT(*) FROM journey_instances WHERE status = 'active'")
            ).scalar()
            entered = conn.execute(text("SELECT COUNT(*) FROM journey_instances")).scalar()
            ledger = dict(
                conn.execute(
                    text(
                        "SELECT status, COUNT(*) FROM messages WHERE status IN ('queued', 'sending') "
                        "GROUP BY status"
                    )
                ).all()
            )
    finally:
        store.dispose()
    return {"active": int(active or 0), "entered": int(entered or 0), "queued": int(ledger.get("queued", 0)),
            "sending": int(ledger.get("sending", 0))}  # fmt: skip


def count(workdir: Path, url: str, customers: int, receipts: Counter[str] | None) -> dict[str, Any]:
    log = workdir / "attempts.jsonl"
    attempts = [orjson.loads(line) for line in log.read_bytes().splitlines() if line] if log.exists() else []
    seen: set[str] = set()
    repeated = 0
    for a in attempts:
        repeated += a["key"] in seen
        seen.add(a["key"])
    store = open_store(url, create=False)
    with store.connect() as conn:
        ledger_rows = conn.execute(
            text(
                "SELECT m.idempotency_key, c.id, m.step, m.status FROM messages m "
                "JOIN customers c ON c.key = m.customer_key"
            )
        ).all()
        statuses = dict(
            conn.execute(text("SELECT status, COUNT(*) FROM journey_instances GROUP BY status")).all()
        )
        per_instance_step = conn.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT instance_id, step FROM messages "
                "GROUP BY instance_id, step HAVING COUNT(*) > 1) AS repeated"
            )
        ).scalar()
    store.dispose()
    if receipts is None:  # the outbox: one file per key received
        folder = workdir / "outbox" / "webhook"
        files = {p.name for p in folder.iterdir()} if folder.exists() else set()
        receipts = Counter(k for k, *_ in ledger_rows if f"{file_stem(k)}.json" in files)
    pair_of = {k: (cid, step) for k, cid, step, _ in ledger_rows}
    status_of = {k: status for k, _, _, status in ledger_rows}
    per_pair: Counter[tuple[str, str]] = Counter()
    for key, n in receipts.items():
        per_pair[pair_of.get(key, ("?", key))] += n
    uncertain_pairs = {pair_of[k] for k, s in status_of.items() if s == "uncertain"}
    expected = {(f"c{k}", step) for k in range(customers) for step in MESSAGES}
    return {
        "customers": customers,
        "expected": len(expected),
        "delivered": sum(1 for pair in expected if per_pair[pair] >= 1),
        "duplicates": sum(n - 1 for n in per_pair.values() if n > 1),
        "lost": sum(1 for pair in expected if per_pair[pair] == 0 and pair not in uncertain_pairs),
        "uncertain": len(uncertain_pairs),
        "uncertain_received": sum(1 for pair in uncertain_pairs if per_pair[pair] >= 1),
        "unexpected": sum(1 for pair in per_pair if pair not in expected),
        "sent_not_received": sum(1 for k, s in status_of.items() if s == "sent" and receipts[k] == 0),
        "provider_receipts": sum(receipts.values()),
        "attempts": len(attempts),
        "repeated_attempts": repeated,
        "ledger": dict(Counter(str(s) for s in status_of.values())),
        "ledger_duplicate_steps": int(per_instance_step or 0),
        "instances": {str(k): int(v) for k, v in statuses.items()},
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    url = setup(workdir, args.customers, args.provider)
    server: SmtpProvider | HttpProvider | None = None
    provider_url = None
    if args.provider == "smtp":
        server = SmtpProvider(args.provider_delay)
    elif args.provider == "http":
        server = HttpProvider(args.provider_delay)
    if server is not None:
        provider_url = server.start()
    channel = CHANNEL[args.provider]
    began = time.perf_counter()
    in_flight = []
    try:
        for _ in range(args.kills):
            offset = (workdir / "daemon.log").stat().st_size if (workdir / "daemon.log").exists() else 0
            proc = daemon(workdir, url, provider_url, channel, args.mode)
            if server is not None and args.kill_at_receipts:
                # Kill while the provider is receiving: after 1..K more receipts (or max-delay seconds).
                target = server.receipts.total() + rng.randint(1, args.kill_at_receipts)
                until = time.monotonic() + args.max_delay
                while server.receipts.total() < target and time.monotonic() < until:
                    time.sleep(0.002)
            else:
                # The delay counts from when the daemon is up (its start line), not from the process start:
                # on a loaded machine the imports alone can take longer than the longest delay.
                started(workdir, proc, offset)
                time.sleep(rng.uniform(0.2, args.max_delay))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Rows handed to the provider whose answer the killed process never recorded.
            in_flight.append(progress(url)["sending"])
        proc = daemon(workdir, url, provider_url, channel, args.mode)
        deadline = time.monotonic() + 7200
        while time.monotonic() < deadline:
            time.sleep(0.5)
            state = progress(url)
            if (
                state["entered"] >= args.customers
                and state["active"] == state["queued"] == state["sending"] == 0
            ):
                break
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}; see {workdir / 'daemon.log'}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        wall = time.perf_counter() - began
    finally:
        if server is not None:
            server.stop()
    figures = count(workdir, url, args.customers, None if server is None else server.receipts.by_key)
    figures.update(
        {
            "provider": args.provider,
            "mode": args.mode,
            "kills": args.kills,
            "in_flight_at_kills": sum(in_flight),
            "kills_with_rows_in_flight": sum(1 for n in in_flight if n),
            "max_in_flight_at_a_kill": max(in_flight, default=0),
            "seed": args.seed,
            "wall_seconds": round(wall, 1),
        }
    )
    return figures


def promise_held(f: dict[str, Any]) -> bool:
    if f["lost"] or f["sent_not_received"] or f["unexpected"] or f["ledger_duplicate_steps"]:
        return False
    if f["mode"] == "at_most_once":
        return f["duplicates"] == 0 and f["uncertain"] <= f["in_flight_at_kills"]
    return f["uncertain"] == 0 and f["duplicates"] <= f["in_flight_at_kills"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=5.0, help="longest run before a kill, seconds")
    parser.add_argument("--provider", choices=["outbox", "smtp", "http"], default="outbox")
    parser.add_argument("--mode", choices=["at_least_once", "at_most_once"], default="at_least_once")
    parser.add_argument(
        "--provider-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="smtp/http: the server waits this long between receiving a message and answering",
    )
    parser.add_argument(
        "--kill-at-receipts",
        type=int,
        default=0,
        metavar="K",
        help="smtp/http: kill after 1..K more messages reached the server (at most --max-delay seconds) "
        "instead of after a random 0.2..max-delay seconds",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store, outbox and logs here")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
        figures = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            figures = run(args, Path(scratch))
    print(json.dumps(figures), flush=True)
    sys.exit(0 if promise_held(figures) else 1)


if __name__ == "__main__":
    main()
