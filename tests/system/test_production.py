"""Going to production, end to end: a workspace made by ``orchestrator init``, its config pointing every
channel at a real local provider (an SMTP server with a login, a Twilio-style SMS API, FCM with a
service-account token server, a webhook endpoint), and the engine run as its operator runs it: the
``orchestrator`` command in the workspace folder, secrets in the environment only.

It shows the same journey delivered by ``run --once`` and by the daemon from the config alone,
``send-test`` delivering one message marked as a test, a secret missing from the environment refused at
its line, no secret in any output, and a running daemon taking a changed config (a webhook moved to
another URL) while a broken edit of it leaves the running providers sending."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from channel_servers import (
    LocalHttpServer,
    LocalSmtpServer,
    Reply,
    Request,
    SmtpRecorder,
    password_authenticator,
)
from fcm_servers import TokenServer, account, fcm_answer

from orchestrator.channels._webhook import verify_signature
from orchestrator.config import init_workspace

SECRETS = {
    "SMTP_PASSWORD": "smtp-pass-5f1e9c0b7d",
    "TWILIO_TOKEN": "twilio-token-88c2e41a",
    "CRM_SECRET": "crm-signing-secret-0b3f6e2d9a",
    "UNSUBSCRIBE_KEY": "unsubscribe-key-7a1c5e9f3b2d",
}

JOURNEY = """\
id: every_channel
version: 1
name: Welcome on every channel
entry:
  event: signup
holdout: 0
steps:
  - id: hello
    send:
      channel: email
      subject: "Welcome, {{ customer.first_name }}"
      template: welcome/hello.txt
      html: welcome/hello.html
  - id: text
    send:
      channel: sms
      template: welcome/text.txt
  - id: nudge
    send:
      channel: push
      title: "Hello {{ customer.first_name }}"
      template: welcome/push.txt
      link: "shop://welcome"
  - id: crm
    send:
      channel: webhook
      endpoint: crm
      template: welcome/crm.json
"""

CUSTOMERS = """\
customer_id,first_name,email,phone,push_token,timezone,consent_email,consent_sms,consent_push
P001,Ada,ada@example.com,+447911123411,device-1,Europe/London,true,true,true
P002,Ben,ben@example.com,+447911123422,device-2,Europe/London,true,true,true
P003,Cy,cy@example.com,+447911123433,device-3,Europe/London,true,true,true
"""


@dataclass
class Providers:
    smtp: SmtpRecorder
    smtp_port: int
    sms: LocalHttpServer
    tokens: TokenServer
    fcm: LocalHttpServer
    crm: LocalHttpServer
    crm2: LocalHttpServer


def sms_answer(request: Request) -> Reply:
    return Reply(
        201, json.dumps({"sid": f"SM{len(request.body)}"}).encode(), {"Content-Type": "application/json"}
    )


@pytest.fixture
def providers() -> Iterator[Providers]:
    recorder = SmtpRecorder()
    smtp = LocalSmtpServer(
        recorder,
        auth_require_tls=False,
        authenticator=password_authenticator("app", SECRETS["SMTP_PASSWORD"]),
    )
    tokens = TokenServer()
    with (
        smtp,
        LocalHttpServer(sms_answer, keep_alive=True) as sms,
        tokens.server,
        LocalHttpServer(fcm_answer, keep_alive=True) as fcm,
        LocalHttpServer(lambda r: Reply(200, b"{}"), keep_alive=True) as crm,
        LocalHttpServer(lambda r: Reply(200, b"{}"), keep_alive=True) as crm2,
    ):
        yield Providers(recorder, smtp.port, sms, tokens, fcm, crm, crm2)


def config_text(p: Providers, crm_url: str | None = None) -> str:
    return f"""\
store: sqlite:///orchestrator.db
journeys: journeys
templates: templates
inbox: inbox
sender:
  from: "My Shop <hello@shop.example>"
channels:
  email:
    provider: smtp
    host: 127.0.0.1
    port: {p.smtp_port}
    security: none
    username: app
    password: ${{SMTP_PASSWORD}}
    concurrency: 2
  sms:
    provider: twilio
    account_sid: AC0001
    auth_token: ${{TWILIO_TOKEN}}
    from: "+12025550100"
    url: {p.sms.url("/2010-04-01/Accounts/AC0001/Messages.json")}
  push:
    provider: fcm
    project_id: shop-app
    credentials_file: service-account.json
    url: {p.fcm.url("/v1/projects/{project}/messages:send")}
  webhook:
    provider: http
webhooks:
  crm:
    url: {crm_url or p.crm.url("/hooks/journeys")}
    secret: ${{CRM_SECRET}}
unsubscribe:
  base_url: https://shop.example/u
  keys:
    - id: k1
      secret: ${{UNSUBSCRIBE_KEY}}
log:
  format: json
"""


def make_workspace(folder: Path, p: Providers) -> Path:
    init_workspace(folder, datetime.now(UTC))
    (folder / "journeys" / "welcome.yaml").unlink()
    (folder / "journeys" / "every_channel.yaml").write_text(JOURNEY)
    (folder / "journeys" / "policy.yaml").write_text("consent:\n  missing: {email: opt_in, sms: opt_in}\n")
    templates = folder / "templates" / "welcome"
    (templates / "text.txt").write_text("My Shop: welcome, {{ customer.first_name }}! Reply STOP to opt out.")
    (templates / "push.txt").write_text("Your account is ready")
    (templates / "crm.json").write_text('{"task": "welcome call", "customer": "{{ customer.id }}"}')
    (folder / "sample" / "customers.csv").write_text(CUSTOMERS)
    (folder / "service-account.json").write_text(json.dumps(account(p.tokens.server.url("/token"))))
    (folder / "orchestrator.yaml").write_text(config_text(p))
    return folder


def signups(customers: list[str], at: datetime) -> str:
    return "".join(
        json.dumps({"customer_id": c, "event": "signup", "ts": at.isoformat(), "message_id": f"su-{c}"})
        + "\n"
        for c in customers
    )


def orchestrator(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    environ.update(SECRETS if env is None else env)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def no_secret_in(*outputs: str) -> None:
    for output in outputs:
        for value in SECRETS.values():
            assert value not in output


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def check_delivered(p: Providers, customers: list[str], emails: list[str]) -> None:
    """Each customer's email (logged in, with List-Unsubscribe), SMS, push and webhook arrived."""
    arrived = [m for m in p.smtp.messages if m.rcpt_tos[0] in emails]
    assert sorted(m.rcpt_tos[0] for m in arrived) == sorted(emails)
    for received in arrived:
        assert received.authenticated
        email = message_from_bytes(received.content)
        assert email["From"] == "My Shop <hello@shop.example>"
        assert email["List-Unsubscribe"].startswith("<https://shop.example/u/")
        assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    texts = [parse_qs(r.body.decode()) for r in p.sms.requests]
    assert {t["To"][0] for t in texts} >= {f"+4479111234{c[-1]}{c[-1]}" for c in customers}
    assert all(r.headers["authorization"].startswith("Basic ") for r in p.sms.requests)
    pushes = [json.loads(r.body)["message"] for r in p.fcm.requests]
    assert {m["token"] for m in pushes} >= {f"device-{c[-1]}" for c in customers}
    assert all(r.headers["authorization"].startswith("Bearer tok-") for r in p.fcm.requests)
    hooks = [
        r for r in p.crm.requests + p.crm2.requests if json.loads(r.body)["body"]["customer"] in customers
    ]
    assert len(hooks) == len(customers)
    for hook in hooks:
        check = verify_signature(
            SECRETS["CRM_SECRET"],
            hook.headers["x-orchestrator-timestamp"],
            hook.headers["x-orchestrator-signature"],
            hook.body,
            now_s=time.time(),
        )
        assert check.ok, check


def ledger(folder: Path) -> list[tuple[str, str, str, int]]:
    with contextlib.closing(sqlite3.connect(folder / "orchestrator.db")) as conn:
        return conn.execute("SELECT step, channel, status, test FROM messages ORDER BY id").fetchall()


def test_run_once_send_test_and_the_daemon_deliver_through_the_configured_providers(
    providers: Providers, tmp_path: Path
) -> None:
    folder = make_workspace(tmp_path / "shop", providers)
    outputs: list[str] = []

    def ok(*args: str, env: dict[str, str] | None = None) -> str:
        done = orchestrator(folder, *args, env=env)
        outputs.extend([done.stdout, done.stderr])
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "1 of 1 journey files valid" in ok("validate")
    shown = ok("config")
    assert "${SMTP_PASSWORD} (set)" in shown and f"port: {providers.smtp_port}" in shown

    # A secret missing from the environment stops a command that sends, at its line in the config.
    missing = orchestrator(
        folder, "run", "--once", env={k: v for k, v in SECRETS.items() if k != "SMTP_PASSWORD"}
    )
    assert missing.returncode == 1
    line = config_text(providers).splitlines().index("    password: ${SMTP_PASSWORD}") + 1
    unset = "channels.email.password: the environment variable SMTP_PASSWORD is not set"
    assert f"orchestrator.yaml:{line}:15: {unset}" in missing.stderr
    assert not providers.smtp.messages

    # run --once: the first two customers sign up and get every channel.
    (folder / "sample" / "events.jsonl").write_text(
        signups(["P001", "P002"], datetime.now(UTC) - timedelta(minutes=5))
    )
    ok("ingest", "sample/customers.csv", "sample/events.jsonl")
    tick = ok("run", "--once")
    assert "delivered 8" in tick, tick
    check_delivered(providers, ["P001", "P002"], ["ada@example.com", "ben@example.com"])
    assert all(status == "sent" for _, _, status, _ in ledger(folder))

    # send-test: one message to an address given by hand, marked as a test in the ledger.
    said = ok("send-test", "every_channel", "hello", "--to", "qa@shop.example", "--customer", "P001")
    assert said.startswith("sent every_channel/hello (email, rendered for customer P001) to qa@shop.example")
    test_mail = [m for m in providers.smtp.messages if m.rcpt_tos == ["qa@shop.example"]]
    assert len(test_mail) == 1 and message_from_bytes(test_mail[0].content)["Subject"] == "Welcome, Ada"
    assert ledger(folder)[-1] == ("hello", "email", "sent", 1)

    # The daemon: the third customer's sign-up dropped in the inbox goes out on every channel.
    (folder / "inbox" / "events" / "late.jsonl").write_text(
        signups(["P003"], datetime.now(UTC) - timedelta(minutes=1))
    )
    ok("daemon", "--max-ticks", "1")
    check_delivered(providers, ["P003"], ["cy@example.com"])
    assert [t for *_, t in ledger(folder)].count(0) == 12
    no_secret_in(*outputs, (folder / "orchestrator.db").read_bytes().decode("utf-8", "replace"))


def test_a_running_daemon_takes_a_changed_config_and_keeps_sending_through_a_broken_one(
    providers: Providers, tmp_path: Path
) -> None:
    folder = make_workspace(tmp_path / "shop", providers)
    done = orchestrator(folder, "ingest", "sample/customers.csv")
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "daemon.log").open("w")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")} | SECRETS
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "daemon", "--interval", "1", "--watch", "0.2"],
        cwd=folder,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    inbox = folder / "inbox" / "events"
    lines = lambda: [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines() if line]  # noqa: E731
    try:
        inbox.joinpath("a.jsonl").write_text(signups(["P001"], datetime.now(UTC) - timedelta(seconds=5)))
        wait_for(lambda: len(providers.crm.requests) == 1, "the first webhook")

        # A broken edit: reported with its place, the running providers keep sending.
        config = folder / "orchestrator.yaml"
        config.write_text(config_text(providers).replace("    security: none\n", "    securty: none\n"))
        wait_for(
            lambda: any(line["msg"].startswith("workspace not reloaded") for line in lines()), "the refusal"
        )
        refused = next(line for line in lines() if line["msg"].startswith("workspace not reloaded"))
        assert any(
            "channels.email: unknown key 'securty'; did you mean 'security'?" in p
            for p in refused["problems"]
        )
        inbox.joinpath("b.jsonl").write_text(signups(["P002"], datetime.now(UTC) - timedelta(seconds=5)))
        wait_for(lambda: len(providers.crm.requests) == 2, "the second webhook, on the running config")

        # A good edit: the webhook moves to another URL, taken before the next tick.
        config.write_text(config_text(providers, crm_url=providers.crm2.url("/hooks/v2")))
        wait_for(lambda: any(line["msg"].startswith("workspace reloaded") for line in lines()), "the reload")
        inbox.joinpath("c.jsonl").write_text(signups(["P003"], datetime.now(UTC) - timedelta(seconds=5)))
        wait_for(lambda: len(providers.crm2.requests) == 1, "the webhook at its new URL")
        assert len(providers.crm.requests) == 2
        assert json.loads(providers.crm2.requests[0].body)["body"]["customer"] == "P003"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
    assert daemon.returncode == 0
    text = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in text
    no_secret_in(text)


# ---------------------------------------------------------------------------------------- over HTTP
# The app posts events to `orchestrator serve`; ticks run by `run --once` at chosen instants, so the
# one-click unsubscribe lands between the welcome and the nudge without racing a clock.

API_JOURNEY = """\
id: welcome_api
version: 1
name: Welcome, then a nudge a day later
entry:
  event: signup
holdout: 0
steps:
  - id: hello
    send:
      channel: email
      subject: "Welcome, {{ customer.first_name }}"
      template: welcome/hello.txt
      html: welcome/offer.html
  - wait: 1d
  - id: nudge
    send:
      channel: email
      subject: "Still there, {{ customer.first_name }}?"
      template: welcome/nudge.txt
"""


def api_config(p: Providers, port: int) -> str:
    return f"""\
store: sqlite:///orchestrator.db
sender:
  from: "My Shop <hello@shop.example>"
channels:
  email:
    provider: smtp
    host: 127.0.0.1
    port: {p.smtp_port}
    security: none
    username: app
    password: ${{SMTP_PASSWORD}}
unsubscribe:
  base_url: https://shop.example/u
  keys:
    - id: k1
      secret: ${{UNSUBSCRIBE_KEY}}
tracking:
  base_url: https://t.shop.example
http:
  listen: 127.0.0.1:{port}
  api_keys:
    - id: web
      key: ${{WRITE_KEY}}
"""


def test_events_over_http_to_an_email_an_unsubscribe_and_a_tracked_click(
    providers: Providers, tmp_path: Path
) -> None:
    import httpx
    from api_server import basic, free_port

    folder = tmp_path / "shop"
    init_workspace(folder, datetime.now(UTC))
    (folder / "journeys" / "welcome.yaml").write_text(API_JOURNEY)
    (folder / "templates" / "welcome" / "offer.html").write_text(
        '<html><body><p>Hi {{ customer.first_name }}, <a href="https://shop.example/offer">see the offer</a>'
        '</p><p><a href="{{ links.unsubscribe }}">unsubscribe</a></p></body></html>'
    )
    port = free_port()
    (folder / "orchestrator.yaml").write_text(api_config(providers, port))
    env = SECRETS | {"WRITE_KEY": "write-key-3c9e1f"}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")} | env
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "serve"], cwd=folder, env=environ, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_for(lambda: _answers(http, "/healthz"), "the service")
            assert http.post("/v1/track", json={"userId": "A1", "event": "signup"}).status_code == 401
            at = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
            batch = {
                "batch": [
                    {"type": "identify", "userId": u, "messageId": f"id-{u}", "timestamp": at,
                     "traits": {"first_name": n, "email": f"{n.lower()}@example.com", "consent_email": True}}
                    for u, n in (("A1", "Ann"), ("A2", "Bob"))
                ] + [
                    {"type": "track", "userId": u, "event": "signup", "messageId": f"signup-{u}",
                     "timestamp": at}
                    for u in ("A1", "A2")
                ]
            }  # fmt: skip
            auth = basic("write-key-3c9e1f")
            for _ in range(2):  # the same messageIds twice: stored once
                answer = http.post("/v1/batch", json=batch, headers=auth)
                assert answer.status_code == 200, answer.text

            done = orchestrator(folder, "run", "--once", env=env)
            assert done.returncode == 0, done.stderr
            welcome = {m.rcpt_tos[0]: message_from_bytes(m.content) for m in providers.smtp.messages}
            assert set(welcome) == {"ann@example.com", "bob@example.com"}
            ann = welcome["ann@example.com"]
            unsubscribe = ann["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
            assert unsubscribe.startswith("https://shop.example/u/")
            html = next(part for part in ann.walk() if part.get_content_type() == "text/html")
            page = html.get_payload(decode=True).decode()
            click = page.split('href="https://t.shop.example', 1)[1].split('"', 1)[0]

            # The one-click unsubscribe (the proxy forwards /u/ to the service) and a tracked click.
            token = unsubscribe.rsplit("/", 1)[1]
            one_click = http.post(
                f"/u/{token}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert one_click.status_code == 200
            followed = http.get(click, follow_redirects=False)
            assert (
                followed.status_code == 302 and followed.headers["location"] == "https://shop.example/offer"
            )

        later = (datetime.now(UTC) + timedelta(days=1, hours=1)).isoformat()
        done = orchestrator(folder, "run", "--once", "--now", later, env=env)
        assert done.returncode == 0, done.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    with contextlib.closing(sqlite3.connect(folder / "orchestrator.db")) as conn:
        sends = dict(
            ((cid, step), (status, reason))
            for cid, step, status, reason in conn.execute(
                "SELECT c.id, m.step, m.status, m.reason FROM messages m "
                "JOIN customers c ON c.key = m.customer_key"
            )
        )
        events = conn.execute(
            "SELECT c.id, t.name FROM events e JOIN customers c ON c.key = e.customer_key "
            "JOIN event_types t ON t.id = e.type_id ORDER BY e.ts_us"
        ).fetchall()
    assert sends[("A1", "nudge")] == ("suppressed", "no consent for email")
    assert sends[("A2", "nudge")][0] == "sent"
    assert [m.rcpt_tos[0] for m in providers.smtp.messages].count("bob@example.com") == 2
    assert events.count(("A1", "signup")) == 1 and events.count(("A2", "signup")) == 1
    assert ("A1", "email_click") in events
    no_secret_in((tmp_path / "serve.log").read_text())


def _answers(http: object, path: str) -> bool:
    import httpx

    assert isinstance(http, httpx.Client)
    try:
        return http.get(path).status_code == 200
    except httpx.TransportError:
        return False
