#!/usr/bin/env python3
"""Real providers at speed: SMTP over pooled connections, an HTTP provider through concurrency, and the rate
limit held across threads and processes. Prints ONE JSON line.

    python benchmarks/providers.py [--seconds 30] [--smtp-messages 20000] [--smtp-connections 8]
        [--http-messages 20000] [--http-concurrency 256] [--http-delay 0.05]
        [--rate 500] [--rate-threads 4] [--rate-processes 2] [--only smtp,http,rate]

- ``smtp_per_s``: e-mails (text and HTML parts, composed as the SMTP adapter composes them) sent through
  ``SmtpAdapter`` and its connection pool to an aiosmtpd server running in another process (so it does not
  share this process's GIL), through ``ChannelLanes`` as dispatch sends them. The server offers PIPELINING
  (aiosmtpd reads pipelined commands in order; it does not announce the extension by itself).
- ``http_per_s``: SMS through the Twilio-style ``HttpSmsAdapter`` (its pooled httpx client, keep-alive) to
  an asyncio HTTP server in another process that answers each request ``--http-delay`` seconds after it
  arrives, with ``--http-concurrency`` calls in flight through ``ChannelLanes``.
- ``rate_limit_error``: ``|achieved / limit - 1|`` for a ``--rate`` messages/s limit shared through its state
  file by ``--rate-threads`` threads spread over ``--rate-processes`` processes, taking turns as fast as
  they can for ``--seconds`` (achieved: by the instants the threads woke up for their turns).
  ``rate.max_slots_in_any_1s`` is the most turns the limiter handed out in any one-second window (at most
  ``--rate`` + burst: the limit itself is never overshot); ``rate.max_in_any_1s`` counts the instants the
  threads actually woke up, which the operating system may delay by a few milliseconds
  (``wake_late_ms_p50_p99_max``), so a late turn can fall in the next second beside that second's own.

Context in the line: messages, connections, CPU seconds of each side, the machine's cores and load, the
issue's targets. Servers are started and stopped by the benchmark; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"smtp_per_s": 2000, "http_per_s": 2000, "rate_limit_error": 0.02}
HTML = (
    "<html><head><style>p.lead {{ color: #336699; font-size: 18px; }} a.button {{ background: #e4572e; }}"
    "</style></head><body><p class='lead'>Hello {name},</p><p>You left {items} items in your cart:</p><ul>"
    + "".join(f"<li>Item {i}: a fine thing at {i * 7}.99 EUR</li>" for i in range(1, 9))
    + "</ul><p><a class='button' href='https://shop.example/cart'>Back to your cart</a></p></body></html>"
)


# -- servers (each runs in a process of its own) -------------------------------------------------------


def serve_smtp(port: int) -> None:
    """An aiosmtpd server counting the messages it accepts (several such processes may share the port:
    ``SO_REUSEPORT``); prints its figures when stdin closes."""
    from aiosmtpd.smtp import SMTP

    class Counting:
        messages = 0

        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Counting.messages += 1
            return "250 OK"

    handler = Counting()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="127.0.0.1"), "127.0.0.1", port, reuse_port=True, backlog=1024
        )
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())
    print(json.dumps({"messages": Counting.messages, "cpu_s": _cpu_s()}), flush=True)


def serve_http(port: int, delay_s: float) -> None:
    """An HTTP/1.1 keep-alive server (asyncio protocol) answering every request ``delay_s`` after it
    arrived with a Twilio-like JSON body; prints its figures when stdin closes."""
    counts = {"requests": 0, "connections": 0}

    class Provider(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buffer = b""
            counts["connections"] += 1

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            loop = asyncio.get_running_loop()
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                length = 0
                for header in self.buffer[:end].split(b"\r\n")[1:]:
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                counts["requests"] += 1
                body = b'{"sid": "SM%d", "status": "queued"}' % counts["requests"]
                reply = (
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                loop.call_later(delay_s, self._answer, reply)

        def _answer(self, reply: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(reply)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Provider, "127.0.0.1", port, backlog=1024)
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())
    print(json.dumps({**counts, "cpu_s": _cpu_s()}), flush=True)


def rate_worker(state_dir: str, rate: float, threads: int, seconds: float) -> None:
    """Threads taking turns on the shared limiter for ``seconds`` from the start instant, as ``acquire``
    does (take a slot, sleep until it); prints each turn's slot and the instant its thread woke up
    (``time.monotonic``, one clock for the whole host). The worker says ``ready`` once its imports are done
    and reads the start instant from its input, so a slow start on a busy machine eats no turns."""
    from orchestrator.channels._limits import RateLimiter

    limiter = RateLimiter(rate, key="benchmark-provider", state_dir=Path(state_dir), max_wait_s=60)
    turns: list[tuple[float, float]] = []
    lock = threading.Lock()
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    while time.monotonic() < start_at:
        time.sleep(0.001)
    end = start_at + seconds

    def run() -> None:
        mine = []
        while True:
            slot = limiter.reserve()
            if slot is None:
                continue
            wait = slot - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = time.monotonic()
            if now >= end:
                break
            mine.append((slot, now))
        with lock:
            turns.extend(mine)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    limiter.close()
    print(json.dumps(turns), flush=True)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 3)


# -- the measurements ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess of this script: started, waited for, stopped (its figures read back)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the server {args} did not start")

    def stop(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=60)
        return dict(json.loads(out.strip().splitlines()[-1]))


def bench_smtp(messages: int, connections: int, servers: int) -> dict[str, Any]:
    from orchestrator.channels import (
        ChannelLanes,
        ChannelRouter,
        EmailSettings,
        OutgoingMessage,
        ProviderLimits,
        SmtpAdapter,
        SmtpSettings,
    )
    from orchestrator.channels._mail import compose_email

    port = free_port()
    smtp_servers = [Server("--serve", "smtp", "--port", str(port)) for _ in range(servers)]
    email = EmailSettings(sender="The Shop <news@shop.example>", message_id_domain="mail.shop.example")
    settings = SmtpSettings(
        "127.0.0.1",
        port,
        security="none",
        limits=ProviderLimits(concurrency=connections),
        max_messages_per_connection=1000,
    )
    adapter = SmtpAdapter(settings, email, state_dir=None)
    outgoing = [
        OutgoingMessage(
            idempotency_key=f"cart/v1/C{i}/7/remind",
            channel="email",
            recipient=f"customer{i}@example.com",
            customer_id=f"C{i}",
            journey_id="cart",
            step="remind",
            subject=f"Customer {i}, your cart is waiting",
            body=f"Hello customer {i},\n\nYou left 3 items in your cart.\nThey are still waiting for you.\n",
            html=HTML.format(name=f"customer {i}", items=3),
        )
        for i in range(messages)
    ]
    size = len(compose_email(outgoing[0], email).data)
    cpu0 = _cpu_s()
    with ChannelLanes(ChannelRouter([adapter])) as lanes:
        started = time.perf_counter()
        results = []
        for at in range(0, messages, 1024):  # dispatch hands over groups; a large one here
            results += lanes.send_all(outgoing[at : at + 1024])
        elapsed = time.perf_counter() - started
    client_cpu = _cpu_s() - cpu0
    opened = adapter.pool.opened
    adapter.close()
    stopped = [server.stop() for server in smtp_servers]
    figures = {"messages": sum(f["messages"] for f in stopped), "cpu_s": sum(f["cpu_s"] for f in stopped)}
    failed = sum(1 for r in results if not r.ok)
    if failed or figures["messages"] != messages:
        raise RuntimeError(f"SMTP: {failed} failed, the server received {figures['messages']} of {messages}")
    return {
        "per_s": round(messages / elapsed),
        "messages": messages,
        "email_bytes": size,
        "connections": opened,
        "server_processes": servers,
        "pipelining": True,
        "seconds": round(elapsed, 2),
        "client_cpu_us_per_message": round(client_cpu / messages * 1e6),
        "server_cpu_us_per_message": round(figures["cpu_s"] / messages * 1e6),
    }


def bench_http(messages: int, concurrency: int, delay_s: float) -> dict[str, Any]:
    from orchestrator.channels import (
        ChannelLanes,
        ChannelRouter,
        HttpSmsAdapter,
        OutgoingMessage,
        ProviderLimits,
        SmsRules,
        TwilioSmsSettings,
    )

    port = free_port()
    server = Server("--serve", "http", "--port", str(port), "--http-delay", str(delay_s))
    settings = TwilioSmsSettings(
        url=f"http://127.0.0.1:{port}/2010-04-01/Accounts/AC1/Messages.json",
        sender="+14155550999",
        account_sid="AC1",
        auth_token="benchmark-token",
        limits=ProviderLimits(concurrency=concurrency),
    )
    adapter = HttpSmsAdapter(settings, rules=SmsRules(default_region="US"), state_dir=None)
    outgoing = [
        OutgoingMessage(
            idempotency_key=f"cart/v1/C{i}/7/sms",
            channel="sms",
            recipient=f"+1415555{i % 10_000:04d}",
            customer_id=f"C{i}",
            journey_id="cart",
            step="sms",
            body=f"The Shop: your cart is still waiting, customer {i}. Reply STOP to opt out.",
        )
        for i in range(messages)
    ]
    cpu0 = _cpu_s()
    with ChannelLanes(ChannelRouter([adapter])) as lanes:
        assert lanes.width("sms") == concurrency
        started = time.perf_counter()
        results = []
        for at in range(0, messages, 4 * concurrency):
            results += lanes.send_all(outgoing[at : at + 4 * concurrency])
        elapsed = time.perf_counter() - started
    client_cpu = _cpu_s() - cpu0
    adapter.close()
    figures = server.stop()
    failed = [r for r in results if not r.ok]
    if failed or figures["requests"] != messages:
        raise RuntimeError(f"HTTP: {len(failed)} failed ({failed[:1]}), the server got {figures['requests']}")
    return {
        "per_s": round(messages / elapsed),
        "requests": messages,
        "concurrency": concurrency,
        "provider_delay_ms": round(delay_s * 1000),
        "ceiling_per_s": round(concurrency / delay_s),
        "connections": figures["connections"],
        "seconds": round(elapsed, 2),
        "client_cpu_us_per_request": round(client_cpu / messages * 1e6),
        "server_cpu_us_per_request": round(figures["cpu_s"] / messages * 1e6),
    }


def bench_rate(rate: float, threads: int, processes: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rate-") as state_dir:
        per_process = [threads // processes + (1 if i < threads % processes else 0) for i in range(processes)]
        script = str(Path(__file__).resolve())
        common = ["--rate", str(rate), "--seconds", str(seconds)]
        procs = [
            subprocess.Popen(
                [sys.executable, script, "--rate-worker", state_dir, "--rate-threads", str(n), *common],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in per_process
        ]
        for proc in procs:  # every process has started and built its limiter
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a rate worker failed to start")
        start_at = time.monotonic() + 0.2  # then they all start at the same instant
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at!r}\n")
            proc.stdin.flush()
        turns: list[tuple[float, float]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 120)
            if proc.returncode != 0:
                raise RuntimeError("a rate worker failed")
            turns.extend((slot, woke) for slot, woke in json.loads(out))
    slots = sorted(slot for slot, _ in turns)
    stops = sorted(woke for _, woke in turns)
    achieved = (len(stops) - 1) / (stops[-1] - stops[0]) if len(stops) > 1 else 0.0
    late = sorted(woke - slot for slot, woke in turns)
    return {
        "limit_per_s": rate,
        "achieved_per_s": round(achieved, 2),
        "error": round(abs(achieved / rate - 1), 5),
        "max_slots_in_any_1s": _most_in_a_second(slots),
        "max_in_any_1s": _most_in_a_second(stops),
        "wake_late_ms_p50_p99_max": [
            round(late[int(q * (len(late) - 1))] * 1000, 2) for q in (0.5, 0.99, 1.0) if late
        ],
        "sends": len(stops),
        "threads": threads,
        "processes": processes,
        "seconds": seconds,
    }


def _most_in_a_second(instants: list[float]) -> int:
    """The most instants (sorted) that fall within any one-second window."""
    return max((bisect_left(instants, t + 1.0) - i for i, t in enumerate(instants)), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the rate-limit run")
    parser.add_argument("--smtp-messages", type=int, default=20_000)
    parser.add_argument("--smtp-connections", type=int, default=8)
    parser.add_argument("--smtp-servers", type=int, default=1, help="aiosmtpd processes sharing the port")
    parser.add_argument("--http-messages", type=int, default=20_000)
    parser.add_argument("--http-concurrency", type=int, default=256)
    parser.add_argument("--http-delay", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--rate-threads", type=int, default=4)
    parser.add_argument("--rate-processes", type=int, default=2)
    parser.add_argument("--only", default="smtp,http,rate", help="comma-separated parts to run")
    parser.add_argument("--serve", choices=["smtp", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "smtp":
        return serve_smtp(args.port)
    if args.serve == "http":
        return serve_http(args.port, args.http_delay)
    if args.rate_worker:
        return rate_worker(args.rate_worker, args.rate, args.rate_threads, args.seconds)

    parts = {part.strip() for part in args.only.split(",")}
    line: dict[str, Any] = {"smtp_per_s": None, "http_per_s": None, "rate_limit_error": None}
    if "smtp" in parts:
        line["smtp"] = bench_smtp(args.smtp_messages, args.smtp_connections, args.smtp_servers)
        line["smtp_per_s"] = line["smtp"]["per_s"]
    if "http" in parts:
        line["http"] = bench_http(args.http_messages, args.http_concurrency, args.http_delay)
        line["http_per_s"] = line["http"]["per_s"]
    if "rate" in parts:
        line["rate"] = bench_rate(args.rate, args.rate_threads, args.rate_processes, args.seconds)
        line["rate_limit_error"] = line["rate"]["error"]
    line["targets"] = TARGETS
    line["machine"] = {"cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
