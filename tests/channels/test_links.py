"""Unsubscribe and tracking links: signed tokens with key ids (rotation, forgeries), the links dispatch puts
in email (headers, ``links.unsubscribe``, tracked clicks and the open pixel, none of it on transactional
email), and the HTTP routes behind them served by uvicorn on a free loopback port: the one-click POST
withdraws consent before the next send, a click redirects to its signed URL only and becomes an
``email_click`` event that a journey can enter on, the pixel becomes an ``email_open``."""

from __future__ import annotations

import email
import http.client
import re
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette

from orchestrator.channels import EmailSettings, OutboxAdapter
from orchestrator.channels._links import MessageLinks, TrackingLinks, message_links
from orchestrator.channels._mail import UnsubscribeLinks
from orchestrator.channels._signing import Keyring, b64decode, b64encode
from orchestrator.clock import to_us
from orchestrator.config import load_config, unsubscribe_missing
from orchestrator.engine._preview import render_step
from orchestrator.engine._workspace import unsubscribe_warnings, validate_paths
from orchestrator.http._links import link_routes
from orchestrator.ingest._feedback import REPEAT_WINDOW_US
from orchestrator.store import Store
from orchestrator.store._customers import customer_key, customer_records, upsert_customers
from orchestrator.testing import T0, SimClock, World, customer, write_files

#: Every test here runs on SQLite and on PostgreSQL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

OLD = ("k1", "old-secret-0123456789abcdef")
NEW = ("k2", "new-secret-fedcba9876543210")


# -- tokens ---------------------------------------------------------------------------------------------


def unsubscribe_links(*keys: tuple[str, str]) -> UnsubscribeLinks:
    return UnsubscribeLinks(keys=Keyring(keys), url="https://shop.example/u")


def test_a_rotated_out_key_verifies_until_it_is_removed() -> None:
    before = unsubscribe_links(OLD)
    token = before.token("C1")
    assert token.split(".")[1] == "k1"
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token) and len(token) < 50  # short and URL-safe
    # Rotation, step 1: the new key first; it signs, the old one still verifies what was sent.
    during = unsubscribe_links(NEW, OLD)
    assert during.read(token) == ("C1", "email")
    assert during.token("C1").split(".")[1] == "k2"
    assert during.token("C1") != token
    # Step 2: the old key removed; its links are refused, the new key's still work.
    after = unsubscribe_links(NEW)
    assert after.read(token) is None
    assert after.read(during.token("C1")) == ("C1", "email")


def test_forged_and_borrowed_tokens_are_refused() -> None:
    links = unsubscribe_links(OLD)
    token = links.token("C1", "email")
    payload, key_id, mac = token.split(".")
    # Another customer's or another channel's payload under C1's MAC.
    for other in (b"email:C2", b"sms:C1"):
        assert links.read(f"{b64encode(other)}.{key_id}.{mac}") is None
    assert not links.verify("C2", "email", token) and not links.verify("C1", "sms", token)
    assert links.verify("C1", "email", token)
    # The same payload signed with a key of the same id that is not ours.
    assert links.read(unsubscribe_links(("k1", "not-our-secret-0123456789")).token("C1")) is None
    # A MAC changed in one character, cut short, or missing; an unknown key id; junk.
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (
        f"{payload}.{key_id}.{flipped}",
        f"{payload}.{key_id}.{mac[:10]}",
        f"{payload}.{key_id}.",
        f"{payload}.k9.{mac}",
        "",
        "....",
        "a" * 5000,
        token + "é",
    ):
        assert links.read(bad) is None, bad
    # A token made for a click is no unsubscribe token (and the other way round).
    tracking = TrackingLinks(Keyring([OLD]), "https://t.shop.example")
    click_token = tracking.click_url(7, "https://shop.example/").rsplit("/", 1)[1]
    assert links.read(click_token) is None
    assert tracking.read_click(token) is None and tracking.read_open(token) is None
    assert b64decode(payload) == b"email:C1"


def test_click_tokens_sign_the_target() -> None:
    tracking = TrackingLinks(Keyring([NEW, OLD]), "https://t.shop.example/")
    url = tracking.click_url(42, "https://shop.example/offer?a=1&b=2")
    assert url.startswith("https://t.shop.example/c/")
    token = url.rsplit("/", 1)[1]
    assert tracking.read_click(token) == (42, "https://shop.example/offer?a=1&b=2")
    _, key_id, mac = token.split(".")
    evil = b64encode(b"42:https://evil.example/")
    assert tracking.read_click(f"{evil}.{key_id}.{mac}") is None
    assert (
        tracking.read_click(f"{b64encode(b'43:https://shop.example/offer?a=1&b=2')}.{key_id}.{mac}") is None
    )
    pixel = tracking.pixel_url(42)
    assert re.fullmatch(r"https://t\.shop\.example/o/[A-Za-z0-9_.-]+\.gif", pixel)
    assert tracking.read_open(pixel.rsplit("/", 1)[1].removesuffix(".gif")) == 42


def test_links_come_from_the_workspace_config(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        "unsubscribe:\n  base_url: https://shop.example/u\n  mailto: unsub@shop.example\n  keys:\n"
        "    - id: k2\n      secret: ${UNSUB_NEW}\n    - id: k1\n      secret: ${UNSUB_OLD}\n"
        "tracking:\n  base_url: https://t.shop.example\n  opens: false\n"
    )
    environ = {"UNSUB_NEW": NEW[1], "UNSUB_OLD": OLD[1]}
    links = message_links(load_config(start=tmp_path, environ=environ).file)
    assert links is not None and links.unsubscribe is not None and links.tracking is not None
    assert links.unsubscribe.keys.ids == ("k2", "k1")
    assert links.unsubscribe.read(unsubscribe_links(OLD).token("C1")) == ("C1", "email")
    assert links.tracking.keys.ids == ("k2", "k1") and not links.tracking.opens and links.tracking.clicks
    assert links.for_template("C1", "email")["unsubscribe"].startswith("https://shop.example/u/")
    assert links.for_template("C1", "webhook") == {}
    # A key whose variable is unset: named, never a value.
    with pytest.raises(ValueError, match="UNSUB_OLD is not set") as caught:
        message_links(load_config(start=tmp_path, environ={"UNSUB_NEW": NEW[1]}).file)
    assert NEW[1] not in str(caught.value)
    assert "k2" in repr(links.unsubscribe.keys) and NEW[1] not in repr(links)
    # Config checks: one-click needs https; tracking needs keys from somewhere.
    (tmp_path / "orchestrator.yaml").write_text(
        "unsubscribe:\n  base_url: http://shop.example/u\n  keys:\n    - {id: k1, secret: '${K}'}\n"
    )
    with pytest.raises(Exception, match="https"):
        load_config(start=tmp_path, environ={"K": OLD[1]})
    (tmp_path / "orchestrator.yaml").write_text("tracking:\n  base_url: https://t.shop.example\n")
    with pytest.raises(Exception, match="tracking links are signed"):
        load_config(start=tmp_path, environ={})


# -- rewriting ------------------------------------------------------------------------------------------

PAGE = """<html><body>
<a href="https://shop.example/offer?a=1&amp;b=2" class="button">Offer</a>
<A HREF='https://shop.example/single'>Single</A>
<a title="a > b" href=https://shop.example/bare>Bare</a>
<a data-no-track href="https://shop.example/private">Private</a>
<a href="https://shop.example/u/TOKEN">Unsubscribe</a>
<a href="mailto:help@shop.example">Mail</a> <a href="/relative">Relative</a> <a name="top">Top</a>
<a href="https://t.shop.example/c/already">Tracked</a>
</BODY></html>"""


def test_links_in_html_are_rewritten_in_one_pass() -> None:
    links = MessageLinks(
        unsubscribe_links(OLD), TrackingLinks(Keyring([OLD]), "https://t.shop.example", opens=True)
    )
    assert links.tracking is not None
    out = links.track(PAGE, 9)
    hrefs = re.findall(r"""href=["']?([^"'\s>]+)""", out, re.IGNORECASE)
    tracked = [
        h
        for h in hrefs
        if h.startswith("https://t.shop.example/c/") and h != "https://t.shop.example/c/already"
    ]
    targets = [links.tracking.read_click(h.rsplit("/", 1)[1]) for h in tracked]
    assert targets == [
        (9, "https://shop.example/offer?a=1&b=2"),  # entities undone before signing
        (9, "https://shop.example/single"),
        (9, "https://shop.example/bare"),
    ]
    for kept in (
        "https://shop.example/private",
        "https://shop.example/u/TOKEN",
        "mailto:help@shop.example",
        "/relative",
        "https://t.shop.example/c/already",
    ):
        assert kept in hrefs
    assert 'class="button"' in out and 'title="a > b"' in out and '<a name="top">' in out
    pixel = re.search(r'<img src="([^"]+)"[^>]*>\s*</BODY>', out)
    assert pixel is not None and links.tracking.read_open(pixel.group(1).rsplit("/", 1)[1][:-4]) == 9
    # Each can be turned off.
    # (TrackingLinks alone does not know the unsubscribe page, so it is tracked here: MessageLinks tells it.)
    clicks_only = TrackingLinks(Keyring([OLD]), "https://t.shop.example", opens=False).rewrite(PAGE, 9)
    assert "<img" not in clicks_only and clicks_only.count("https://t.shop.example/c/") == 5
    assert 'href="https://t.shop.example/c/already"' in clicks_only
    opens_only = TrackingLinks(Keyring([OLD]), "https://t.shop.example", clicks=False).rewrite(PAGE, 9)
    assert re.sub(r"<img [^>]+>", "", opens_only) == PAGE
    assert (
        TrackingLinks(Keyring([OLD]), "https://t.shop.example")
        .rewrite("<p>x</p>", 1)
        .startswith("<p>x</p><img")
    )


# -- dispatch, the HTTP routes, the next send -----------------------------------------------------------

JOURNEYS = {
    "journeys/promo.yaml": """\
        id: promo
        version: 1
        segment: tier == "gold"
        holdout: 0
        steps:
          - id: offer
            send: {channel: email, subject: "Offer", template: t.txt, html: t.html}
          - wait: 1d
          - id: again
            send: {channel: email, subject: "Again", template: t.txt, html: t.html}
        """,
    "journeys/receipt.yaml": """\
        id: receipt
        version: 1
        segment: tier == "gold"
        holdout: 0
        steps:
          - id: thanks
            send: {channel: email, subject: "Receipt", template: t.txt, html: t.html, transactional: true}
        """,
    "journeys/clicked.yaml": """\
        id: clicked
        version: 1
        entry:
          event: email_click
        holdout: 0
        steps:
          - id: follow
            send: {channel: webhook, endpoint: crm, template: follow.txt}
        """,
    "templates/t.txt": "Hello {{ customer.id }}. Unsubscribe: {{ links.unsubscribe }}\n",
    "templates/follow.txt": "{{ entry.url }}",
    "templates/t.html": (
        '<html><body><p><a href="https://shop.example/offer?a=1&amp;b=2">Offer</a> '
        '<a data-no-track href="https://shop.example/private">Private</a> '
        '<a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>'
    ),
}


def person(cid: str) -> dict[str, Any]:
    return customer(cid, tier="gold")


class Shop:
    """A workspace with links configured, an outbox, a store and a simulated clock."""

    def __init__(self, folder: Path, store_url: str) -> None:
        write_files(folder, JOURNEYS)
        self.folder = folder
        self.links = MessageLinks(
            UnsubscribeLinks(keys=Keyring([NEW, OLD]), url="https://shop.example/u", mailto="u@shop.example"),
            TrackingLinks(Keyring([NEW, OLD]), "https://t.shop.example"),
        )
        settings = EmailSettings(sender="Shop <news@shop.example>", unsubscribe=self.links.unsubscribe)
        self.outbox = folder / "outbox"
        adapter = OutboxAdapter(self.outbox, email=settings, durable=False)
        self.world = World(folder, store=store_url, clock=SimClock(T0), adapter=adapter, links=self.links)
        self.world.add_customers(person("ann"), person("bob"))
        self.store: Store = self.world.store
        self.clock = self.world.clock
        self.engine = self.world.engine

    def emails(self) -> dict[tuple[str, str], EmailMessage]:
        """(recipient, subject) -> the email in the outbox."""
        out = {}
        for path in (self.outbox / "email").glob("*.eml"):
            parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            out[(str(parsed["To"]), str(parsed["Subject"]))] = parsed
        return out

    def record(self, cid: str) -> dict[str, Any]:
        with self.store.connect() as conn:
            key = customer_key(conn, cid)
            assert key is not None
            return customer_records(conn, [key])[key]

    def rows(self, sql: str) -> list[Any]:
        with self.store.connect() as conn:
            return list(conn.exec_driver_sql(sql).all())

    def events(self, name: str) -> list[tuple[str, int, dict[str, Any]]]:
        return [
            (cid, ts, orjson.loads(props))
            for cid, ts, props in self.rows(
                "SELECT c.id, e.ts_us, e.properties FROM events e JOIN event_types t ON t.id = e.type_id "
                f"JOIN customers c ON c.key = e.customer_key WHERE t.name = '{name}' ORDER BY e.id"
            )
        ]


def html_of(parsed: EmailMessage) -> str:
    return str(list(parsed.iter_parts())[1].get_content())


def test_marketing_email_carries_unsubscribe_and_tracking_and_transactional_does_not(
    tmp_path: Path, store_url: str
) -> None:
    shop = Shop(tmp_path, store_url)
    shop.engine.tick()
    mails = shop.emails()
    assert len(mails) == 4
    offer, receipt = mails[("ann@example.com", "Offer")], mails[("ann@example.com", "Receipt")]
    unsubscribe = shop.links.for_template("ann", "email")["unsubscribe"]
    assert str(offer["List-Unsubscribe"]) == (
        f"<{unsubscribe}>, <mailto:u@shop.example?subject=unsubscribe%20{unsubscribe.rsplit('/', 1)[1]}>"
    )
    assert offer["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert receipt["List-Unsubscribe"] is None and receipt["List-Unsubscribe-Post"] is None
    # Templates see links.unsubscribe, in the text part and the HTML part, transactional or not.
    text_part = str(next(iter(offer.iter_parts())).get_content())
    assert f"Unsubscribe: {unsubscribe}" in text_part
    assert f'href="{unsubscribe}"' in html_of(offer) and f'href="{unsubscribe}"' in html_of(receipt)
    # Marketing HTML is tracked (the unsubscribe and data-no-track links are not); transactional is not.
    assert "https://t.shop.example/c/" in html_of(offer) and "https://t.shop.example/o/" in html_of(offer)
    assert 'href="https://shop.example/private"' in html_of(offer)
    assert "t.shop.example" not in html_of(receipt)
    assert 'href="https://shop.example/offer?a=1&amp;b=2"' in html_of(receipt)
    # Bob's links are his own.
    assert shop.links.for_template("bob", "email")["unsubscribe"] in html_of(
        mails[("bob@example.com", "Offer")]
    )


def test_preview_shows_the_links_dispatch_would_put(tmp_path: Path, store_url: str) -> None:
    shop = Shop(tmp_path, store_url)
    row = render_step(
        shop.engine.workspace, shop.store, "promo", "offer", shop.clock, "ann", links=shop.links
    )
    assert row["status"] == "queued"
    assert f"Unsubscribe: {shop.links.for_template('ann', 'email')['unsubscribe']}" in row["body"]
    sample = render_step(shop.engine.workspace, None, "promo", "offer", shop.clock, links=shop.links)
    assert shop.links.for_template("sample-customer", "email")["unsubscribe"] in sample["body"]
    # Without links, a template that reads links.unsubscribe cannot render: the reason says so.
    failed = render_step(shop.engine.workspace, shop.store, "promo", "offer", shop.clock, "ann")
    assert failed["status"] == "failed" and "unsubscribe" in failed["reason"]


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start a Starlette app with the given routes under uvicorn on a free loopback port; stopped after."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(routes: list[Any]) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        return int(sock.getsockname()[1])

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(10)


def call(
    port: int, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to the local server for the path of ``url`` (as a proxy in front of it would pass it)."""
    path = re.sub(r"^https?://[^/]+", "", url)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_one_click_unsubscribe_holds_before_the_next_send(tmp_path: Path, store_url: str, serve: Any) -> None:
    shop = Shop(tmp_path, store_url)
    shop.engine.tick()
    port = serve(link_routes(shop.store, shop.links, shop.clock))
    link = re.findall(
        r"<(https://[^>]+)>", str(shop.emails()[("ann@example.com", "Offer")]["List-Unsubscribe"])
    )[0]

    # GET shows a page with a button, and changes nothing; it names no customer.
    status, headers, page = call(port, "GET", link)
    assert status == 200 and b'<form method="post">' in page and b"ann" not in page
    assert (
        "no-store" in headers["cache-control"]
        and "frame-ancestors 'none'" in headers["content-security-policy"]
    )
    assert shop.record("ann")["consent_email"] is True
    # Bad tokens: 404 whatever they name; a POST that does not ask: 400; a body too large: 413.
    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert call(port, "POST", forged, b"List-Unsubscribe=One-Click", FORM)[0] == 404
    assert call(port, "GET", "https://shop.example/u/nonsense")[0] == 404
    assert call(port, "POST", link, b"something=else", FORM)[0] == 400
    assert call(port, "POST", link, b"x" * 20_000, FORM)[0] == 413
    assert shop.rows("SELECT COUNT(*) FROM consent_changes") == [(0,)]

    # The one-click POST (RFC 8058), twice: recorded once, with its source and time.
    shop.clock.advance(timedelta(hours=2))
    for _ in range(2):
        status, _, page = call(port, "POST", link, b"List-Unsubscribe=One-Click", FORM)
        assert status == 200 and b"no longer receive" in page
    changes = shop.rows(
        "SELECT c.id, k.channel, k.consent, k.source, k.at_us FROM consent_changes k "
        "JOIN customers c ON c.key = k.customer_key"
    )
    assert [(cid, ch, bool(v), src, t) for cid, ch, v, src, t in changes] == [
        ("ann", "email", False, "one_click", to_us(T0 + timedelta(hours=2)))
    ]

    # The next send to Ann is suppressed for consent; Bob's goes.
    shop.clock.advance(timedelta(days=1))
    shop.engine.tick()
    got = dict(
        ((cid, step), (status, reason))
        for cid, step, status, reason in shop.rows(
            "SELECT c.id, m.step, m.status, m.reason FROM messages m "
            "JOIN customers c ON c.key = m.customer_key"
        )
    )
    assert got[("ann", "again")] == ("suppressed", "no consent for email")
    assert got[("bob", "again")][0] == "sent"

    # The confirmation page's button (a form POST, multipart here) records source unsubscribe_link.
    bob = shop.links.for_template("bob", "email")["unsubscribe"]
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="confirm"\r\n\r\n'
        f"unsubscribe\r\n--{boundary}--\r\n"
    )
    status, _, _ = call(
        port, "POST", bob, body.encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200
    assert shop.rows("SELECT source FROM consent_changes ORDER BY id") == [
        ("one_click",),
        ("unsubscribe_link",),
    ]


def test_an_older_customer_record_cannot_undo_an_opt_out(tmp_path: Path, store_url: str, serve: Any) -> None:
    shop = Shop(tmp_path, store_url)
    port = serve(link_routes(shop.store, shop.links, shop.clock))
    shop.clock.advance(timedelta(hours=1))
    assert (
        call(
            port,
            "POST",
            shop.links.for_template("ann", "sms")["unsubscribe"],
            b"List-Unsubscribe=One-Click",
            FORM,
        )[0]
        == 200
    )
    assert (
        call(
            port,
            "POST",
            shop.links.for_template("ann", "email")["unsubscribe"],
            b"List-Unsubscribe=One-Click",
            FORM,
        )[0]
        == 200
    )
    opted_at = to_us(T0 + timedelta(hours=1))

    def consent() -> tuple[Any, Any, Any]:
        found = shop.record("ann")
        return found["consent_email"], found["consent_sms"], found.get("first_name")

    with shop.store.begin() as conn:
        # An export made before the opt-out: its other attributes apply, its consent does not.
        older = upsert_customers(
            conn,
            [
                {
                    "id": "ann",
                    "consent_email": True,
                    "consent_sms": True,
                    "first_name": "Ann",
                    "record_us": opted_at - 1,
                }
            ],
            now_us=opted_at + 10,
        )
        # A record without its own time cannot prove it is newer.
        untimed = upsert_customers(conn, [{"id": "ann", "consent_email": True}], now_us=opted_at + 20)
    assert (older.kept_opt_outs, untimed.kept_opt_outs) == (2, 1)
    assert consent() == (False, False, "Ann")
    # A record of the customer's own later choice gives the consent back (email only here).
    with shop.store.begin() as conn:
        upsert_customers(
            conn, [{"id": "ann", "consent_email": True, "record_us": opted_at + 100}], now_us=opted_at + 100
        )
    assert consent()[:2] == (True, False)
    # A customer unsubscribing again after that is recorded again.
    shop.clock.advance(timedelta(hours=1))
    assert (
        call(
            port,
            "POST",
            shop.links.for_template("ann", "email")["unsubscribe"],
            b"List-Unsubscribe=One-Click",
            FORM,
        )[0]
        == 200
    )
    assert consent()[0] is False
    assert shop.rows("SELECT COUNT(*) FROM consent_changes") == [(3,)]
    # A valid token for a customer the store does not know answers the same, and holds when they arrive.
    stranger = UnsubscribeLinks(keys=Keyring([NEW]), url="https://shop.example/u").https_url("zed")
    assert stranger is not None
    status, _, page = call(port, "POST", stranger, b"List-Unsubscribe=One-Click", FORM)
    assert status == 200 and b"no longer receive" in page
    with shop.store.begin() as conn:
        upsert_customers(conn, [person("zed")], now_us=to_us(shop.clock.now()))
    assert shop.record("zed")["consent_email"] is False


def test_clicks_redirect_to_the_signed_url_only_and_become_events(
    tmp_path: Path, store_url: str, serve: Any
) -> None:
    shop = Shop(tmp_path, store_url)
    shop.engine.tick()
    port = serve(link_routes(shop.store, shop.links, shop.clock))
    html = html_of(shop.emails()[("ann@example.com", "Offer")])
    click = re.search(r'href="(https://t\.shop\.example/c/[^"]+)"', html)
    pixel = re.search(r'src="(https://t\.shop\.example/o/[^"]+)"', html)
    assert click is not None and pixel is not None
    ledger_key = shop.rows(
        "SELECT m.idempotency_key FROM messages m JOIN customers c ON c.key = m.customer_key "
        "WHERE c.id = 'ann' AND m.step = 'offer'"
    )[0][0]

    # A HEAD (link checkers) redirects without counting; the GET counts.
    status, headers, _ = call(port, "HEAD", click.group(1))
    assert status == 302 and shop.events("email_click") == []
    status, headers, _ = call(port, "GET", click.group(1))
    assert status == 302 and headers["location"] == "https://shop.example/offer?a=1&b=2"
    assert "no-store" in headers["cache-control"]
    # A retry a few seconds later is the same click; a minute later it is another.
    shop.clock.advance(timedelta(seconds=20))
    assert call(port, "GET", click.group(1))[0] == 302
    assert len(shop.events("email_click")) == 1
    shop.clock.advance(timedelta(microseconds=REPEAT_WINDOW_US))
    assert call(port, "GET", click.group(1))[0] == 302
    clicks = shop.events("email_click")
    assert [(cid, ts) for cid, ts, _ in clicks] == [
        ("ann", to_us(T0)),
        ("ann", to_us(T0) + 20_000_000 + REPEAT_WINDOW_US),
    ]
    assert clicks[0][2] == {
        "message": ledger_key,
        "journey": "promo",
        "version": 1,
        "step": "offer",
        "channel": "email",
        "url": "https://shop.example/offer?a=1&b=2",
    }

    # No open redirect: another URL under the same signature, a made-up token, a bare URL: 400.
    _, key_id, mac = click.group(1).rsplit("/", 1)[1].split(".")
    evil = f"https://t.shop.example/c/{b64encode(b'1:https://evil.example/')}.{key_id}.{mac}"
    for bad in (evil, "https://t.shop.example/c/evil.example", "https://t.shop.example/c/x.k2.y"):
        status, headers, _ = call(port, "GET", bad)
        assert status == 400 and "location" not in headers
    status, headers, _ = call(port, "GET", "https://t.shop.example/c/https%3A%2F%2Fevil.example")
    assert status == 404 and "location" not in headers  # a path of its own: no route

    # The open pixel: a GIF no cache keeps, and an email_open event.
    status, headers, gif = call(port, "GET", pixel.group(1))
    assert status == 200 and headers["content-type"] == "image/gif" and gif.startswith(b"GIF89a")
    assert "no-store" in headers["cache-control"]
    opens = shop.events("email_open")
    assert [(cid, props["step"], props["message"]) for cid, _, props in opens] == [
        ("ann", "offer", ledger_key)
    ]
    assert call(port, "GET", "https://t.shop.example/o/forged.k2.AAAA.gif")[0] == 404

    # The click is an event like any other: a journey entered by email_click enters at the next tick.
    shop.clock.advance(timedelta(minutes=5))
    shop.engine.tick()
    entered = shop.rows(
        "SELECT c.id FROM journey_instances i JOIN customers c ON c.key = i.customer_key "
        "WHERE i.journey_id = 'clicked'"
    )
    assert entered == [("ann",)]
    (follow,) = (shop.outbox / "webhook").glob("*.json")
    assert "https://shop.example/offer?a=1&b=2" in follow.read_text()  # the event's url, read by the template


# -- validate -------------------------------------------------------------------------------------------


def test_validate_warns_of_real_email_without_unsubscribe(tmp_path: Path) -> None:
    write_files(tmp_path, JOURNEYS)
    journeys = [tmp_path / "journeys"]
    config_file = tmp_path / "orchestrator.yaml"
    config_file.write_text("channels:\n  email:\n    provider: smtp\n    host: smtp.example.com\n")
    config = load_config(start=tmp_path, environ={})
    assert unsubscribe_missing(config) == "smtp"
    warnings = [str(w) for w in unsubscribe_warnings(journeys, config)]
    # The two marketing email steps of promo (not the transactional receipt, not the webhook), then each
    # step whose templates read links.unsubscribe, which fails without the section.
    assert [w.split(": ", 1)[1] for w in warnings if "through smtp" in w] == [
        "marketing email goes out through smtp without unsubscribe links: add an unsubscribe: section to "
        "the workspace config (Gmail and Yahoo require one-click unsubscribe of bulk senders)"
    ] * 2
    assert all("promo.yaml" in w for w in warnings if "through smtp" in w)
    failing = [w for w in warnings if "links.unsubscribe needs an unsubscribe: section" in w]
    assert len(failing) == 3  # once per step: promo's two, the receipt's
    # The outbox: only the templates' warning; an unsubscribe section: none at all.
    config_file.write_text("channels:\n  email:\n    provider: outbox\n")
    config = load_config(start=tmp_path, environ={})
    assert unsubscribe_missing(config) is None
    assert all("links.unsubscribe" in str(w) for w in unsubscribe_warnings(journeys, config))
    config_file.write_text(
        "channels:\n  email:\n    provider: smtp\n    host: smtp.example.com\n"
        "unsubscribe:\n  base_url: https://shop.example/u\n  keys:\n    - {id: k1, secret: '${K}'}\n"
    )
    config = load_config(start=tmp_path, environ={"K": OLD[1]})
    assert unsubscribe_missing(config) is None and unsubscribe_warnings(journeys, config) == []


def test_templates_may_read_links_unsubscribe_only(tmp_path: Path) -> None:
    write_files(tmp_path, JOURNEYS)
    _, problems = validate_paths([tmp_path / "journeys"])
    assert problems == []
    (tmp_path / "templates" / "t.txt").write_text("{{ links.unsubscrib }}")
    _, problems = validate_paths([tmp_path / "journeys"])
    assert any(
        "links.unsubscrib is not a link the engine provides (links: unsubscribe); did you mean 'unsubscribe'?"
        in str(p)
        for p in problems
    )


def test_open_and_click_events_need_no_declaring(tmp_path: Path) -> None:
    write_files(tmp_path, {**JOURNEYS, "journeys/events.yaml": "events:\n  purchase:\n"})
    _, problems = validate_paths([tmp_path / "journeys"])
    assert problems == []  # email_click and its url are the engine's own, not in the tracking plan
    (tmp_path / "templates" / "follow.txt").write_text("{{ entry.ulr }}")
    _, problems = validate_paths([tmp_path / "journeys"])
    assert [p.message for p in problems] == [
        "template 'follow.txt' line 1: entry.ulr: event 'email_click' has no property 'ulr' (the engine "
        "records channel, journey, message, step, url, version); did you mean 'url'?"
    ]
