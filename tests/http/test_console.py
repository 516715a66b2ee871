"""The console in the browser, against a real ``orchestrator serve`` process and real clients: httpx for
access, escaping and the figures, headless chromium (driven by playwright) for screenshots read back by
OCR (tesseract) at a desktop and a phone width.

The store is a journey run for a simulated week by ``orchestrator.testing.World``; what a page must show
is read from the core functions the console calls, never copied into the test.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import itsdangerous
import pytest
from api_server import ApiServer, api_server
from markupsafe import escape

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.engine import explain, journey_detail, journeys_overview
from orchestrator.http._console_auth import SESSION_COOKIE, ConsoleKeys
from orchestrator.measure import backtest_html, journey_funnel, journey_report
from orchestrator.store import open_store, saved_backtest, sqlite_url
from orchestrator.testing import SimClock, World, at, customer, event, write_files
from tests.browser import browser_tools, read_text

CONSOLE_KEY = "console-key-for-tests-0123456789"
OTHER_KEY = "reader-key-for-tests-9876543210"
HOSTILE_NAME = "<script>alert('name')</script> Carts & <b>rescue</b>"
HOSTILE_CUSTOMER = '<img src=x onerror="alert(1)">'
RESCUE = f"""\
id: rescue
version: 1
name: "{HOSTILE_NAME}"
description: 'Carts left <i>behind</i>'
signal: count(add_to_cart, within=1d) > 0
holdout: 20
goal: {{event: purchase, within: 2d}}
steps:
  - id: reminder
    send: {{channel: email, subject: "Your cart", template: reminder.txt}}
  - wait: 1d
  - id: nudge
    send: {{channel: sms, template: nudge.txt}}
  - wait: 2d
"""
CONFIG = """\
store: sqlite:///orchestrator.db
journeys: journeys
templates: templates
http:
  console:
    keys:
      - id: ops
        key: ${ORCHESTRATOR_CONSOLE_KEY}
      - id: reader
        key: ${ORCHESTRATOR_CONSOLE_READER}
"""
T0 = at("2024-04-01T00:00:00Z")


@dataclass
class Site:
    server: ApiServer
    folder: Path
    customers: list[str]

    @property
    def console(self) -> str:
        return f"{self.server.url}/console"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("console")
    write_files(
        folder,
        {
            "orchestrator.yaml": CONFIG,
            "journeys/rescue.yaml": RESCUE,
            "templates/reminder.txt": "Your cart is waiting.",
            "templates/nudge.txt": "Still thinking it over?",
        },
    )
    rng = random.Random(7)
    ids = [f"C{i:03d}" for i in range(120)] + [HOSTILE_CUSTOMER]
    with World(folder, store=sqlite_url(folder / "orchestrator.db"), clock=SimClock(T0)) as world:
        world.add_customers(*(customer(c) for c in ids))
        events = []
        for c in ids:
            carted = T0 + timedelta(hours=rng.randrange(0, 6 * 24))
            events.append(event(c, "add_to_cart", carted))
            if rng.random() < 0.4:
                events.append(event(c, "purchase", carted + timedelta(hours=rng.randrange(2, 40))))
        events.append(event(HOSTILE_CUSTOMER, "add_to_cart", T0))
        world.add_events(*events)
        world.run_for("7d")
    # A backtest of the same week, kept in the store for the console's backtest pages.
    db = sqlite_url(folder / "orchestrator.db")
    window = ["--from", "2024-04-01", "--to", "2024-04-08", "--tick", "2h"]
    backtest = [*window, "--journeys", str(folder / "journeys"), "--db", db, "--save", "--format", "json"]
    assert main(["backtest", *backtest]) == 0
    environ = {
        **os.environ,
        "ORCHESTRATOR_CONSOLE_KEY": CONSOLE_KEY,
        "ORCHESTRATOR_CONSOLE_READER": OTHER_KEY,
    }
    with api_server(folder, environ=environ) as server:
        yield Site(server, folder, ids)


@contextmanager
def logged_in(site: Site, key: str = CONSOLE_KEY) -> Iterator[httpx.Client]:
    """A client logged in through the form (its cookie jar keeps the session)."""
    with httpx.Client(base_url=site.console, timeout=30) as client:
        answer = client.post("/login", data={"key": key, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield client


def pages(site: Site) -> list[str]:
    """Every console page the test site has, by path under /console."""
    return [
        "/",
        "/journeys/rescue",
        "/journeys/rescue/report",
        "/customers/C001",
        "/backtests",
        "/backtests/1",
    ]


def core_figures(site: Site) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What the core says of the site's store: the overview, the journey's detail, its lift report and
    what ``why C001`` says; the journey's funnel is in the detail under ``funnel``."""
    store = open_store(site.server.db)
    try:
        now = int(time.time() * 1_000_000)
        return (
            journeys_overview(store, now).to_dict(),
            {
                **journey_detail(store, "rescue", now).to_dict(),
                "funnel": journey_funnel(store, "rescue").to_dict(),
                "nodes": journey_funnel(store, "rescue").diagram_nodes(),
            },
            journey_report(store, "rescue").to_dict(),
            explain(store, "C001").to_dict(),
        )
    finally:
        store.dispose()


# ------------------------------------------------------------------------------------------------ access


def test_every_page_needs_a_login_or_a_key(site: Site) -> None:
    with httpx.Client(base_url=site.console, timeout=30) as anonymous:
        for path in pages(site):
            answer = anonymous.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/login?next=")
            # A wrong key in the header is refused outright.
            refused = anonymous.get(path, headers={"Authorization": "Bearer not-a-console-key-at-all"})
            assert refused.status_code == 401 and CONSOLE_KEY not in refused.text
            refused = anonymous.get(path, headers={"Authorization": f"Basic {CONSOLE_KEY}"})
            assert refused.status_code == 401
        # The login form and the style sheet are open; the event API and its operations are as before.
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/static/console.css").status_code == 200
    assert httpx.get(f"{site.server.url}/healthz").status_code == 200
    assert httpx.post(f"{site.server.url}/v1/track", json={}).status_code == 401


def test_a_wrong_key_is_refused_the_same_way_whatever_it_is(site: Site) -> None:
    answers = []
    for wrong in ("nope", CONSOLE_KEY[:-1], CONSOLE_KEY + "x", "", OTHER_KEY.upper()):
        with httpx.Client(base_url=site.console, timeout=30) as client:
            answer = client.post("/login", data={"key": wrong, "next": "/journeys/rescue"})
            assert answer.status_code == 401
            assert "set-cookie" not in answer.headers
            assert client.get("/").status_code == 303  # still not logged in
            answers.append(answer.text.replace(wrong, "") if wrong else answer.text)
            assert not wrong or wrong not in answer.text  # the key given is never echoed
    assert len(set(answers)) == 1
    assert "not a console key" in answers[0]
    assert CONSOLE_KEY not in site.server.log() and "nope" not in site.server.log()


def test_login_sets_a_strict_httponly_session_and_logout_ends_it(site: Site) -> None:
    with httpx.Client(base_url=site.console, timeout=30) as client:
        answer = client.post("/login", data={"key": OTHER_KEY, "next": "/journeys/rescue"})
        assert answer.status_code == 303 and answer.headers["location"] == "/console/journeys/rescue"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path", "max-age"} <= flags
        assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
        assert OTHER_KEY not in cookie
        assert client.get("/journeys/rescue").status_code == 200
        # A login posted from another site's page is refused, even with the right key.
        foreign = client.post("/login", data={"key": OTHER_KEY}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
        same = client.post("/login", data={"key": OTHER_KEY}, headers={"Origin": site.server.url})
        assert same.status_code == 303
        # A redirect target outside the console is not followed.
        other = client.post("/login", data={"key": OTHER_KEY, "next": "//evil.example/x"})
        assert other.headers["location"] == "/console/"
        assert client.post("/logout").status_code == 303
        assert client.get("/").status_code == 303


def test_a_session_cookie_is_checked_for_signature_key_and_age(site: Site) -> None:
    console = load_config(
        site.folder / "orchestrator.yaml",
        environ={
            "ORCHESTRATOR_CONSOLE_KEY": CONSOLE_KEY,
            "ORCHESTRATOR_CONSOLE_READER": OTHER_KEY,
        },
    ).file.http.console
    assert console is not None
    keys = ConsoleKeys.from_config(console)

    def cookie(data: dict[str, Any], age_s: float = 0, secret: bytes = keys.secret) -> str:
        class Signer(itsdangerous.TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time() - age_s)

        payload = __import__("base64").b64encode(json.dumps(data).encode())
        return Signer(secret.hex()).sign(payload).decode()

    good = {"key": "ops", "fp": keys.fingerprint("ops")}

    def status(value: str) -> int:
        with httpx.Client(base_url=site.console, timeout=30, cookies={SESSION_COOKIE: value}) as client:
            return client.get("/").status_code

    assert status(cookie(good)) == 200  # a cookie made as the server makes one is taken
    assert status(cookie(good, age_s=console.session.total_seconds() + 60)) == 303  # expired
    assert status(cookie(good, secret=b"another secret")) == 303  # not signed by the server
    assert status(cookie({"key": "ops", "fp": keys.fingerprint("reader")})) == 303  # another key's
    assert status(cookie({"key": "ops"})) == 303
    assert status(cookie(good)[:-2] + "xx") == 303


def test_bearer_key_reads_every_page(site: Site) -> None:
    with httpx.Client(
        base_url=site.console, timeout=30, headers={"Authorization": f"Bearer {CONSOLE_KEY}"}
    ) as client:
        for path in pages(site):
            assert client.get(path).status_code == 200, path


# ------------------------------------------------------------------------------------------------- pages


def test_every_page_answers_and_shows_what_the_core_computed(site: Site) -> None:
    overview, detail, report, why = core_figures(site)
    with logged_in(site) as client:
        for path in pages(site):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].startswith("text/html")
            assert "default-src 'none'" in answer.headers["content-security-policy"]
        listing = client.get("/").text
        (rescue,) = overview["journeys"]
        assert rescue["state"] == "running" and rescue["active"] + sum(rescue["finished"].values()) > 100
        row = re.search(r"<tr>\s*<td><a href=\"/console/journeys/rescue\">rescue</a>.*?</tr>", listing, re.S)
        assert row is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
        assert ">running<" in cells[2]
        assert cells[3] == f"{rescue['active']:,}" and cells[4] == f"{rescue['entered_last_day']:,}"
        assert cells[5] == f"{sum(rescue['finished'].values()):,}"

        page = client.get("/journeys/rescue").text
        # The journey's diagram, drawn inline by the language package.
        assert page.count("<svg") == 1 and ">reminder</text>" in page and ">nudge</text>" in page
        for step in detail["steps"]:
            assert f"<td>{step['id']}</td>" in page
        active = detail["active_by_step"].get("1", {})
        for step in detail["steps"]:
            n = active.get(step["id"], 0)
            assert re.search(rf"<td>{step['id']}</td><td>[^<]*</td><td class=\"num\">{n:,}</td>", page), step
        for outcome, n in rescue["finished"].items():
            assert f'<span class="figure">{n:,}</span> {outcome}' in page
        # The diagram carries the funnel's counts; the funnel's table, every figure per arm and step.
        for step, n in detail["nodes"].items():
            assert n == 0 or f'<tspan font-weight="bold" fill="#1f2937">{n:,}</tspan>' in page, step
        funnel = detail["funnel"]
        assert funnel["adds_up"] and {a["arm"] for a in funnel["arms"]} == {"treatment", "holdout"}
        treatment = next(a for a in funnel["arms"] if a["arm"] == "treatment")
        assert treatment["entered"] > 50 and treatment["converted"] > 0
        for arm in funnel["arms"]:
            assert f"<h3>{arm['arm']}</h3>" in page
            assert f"{arm['entered']:,} entered" in page and f"{arm['converted']:,} converted." in page
            for step in arm["steps"]:
                row = (
                    rf"<tr><td>{step['step']}</td><td>{re.escape(step['label'])}</td>"
                    rf"<td class=\"num\">{step['reached']:,}</td><td class=\"num\">{step['inside']:,}</td>"
                )
                if step["kind"] == "send":
                    m = step["messages"]
                    row += (
                        rf"\s*<td class=\"num\">{m['sent']:,}</td><td class=\"num\">{m['suppressed']:,}</td>"
                        rf"<td class=\"num\">{m['failed']:,}</td>"
                    )
                assert re.search(row, page), (arm["arm"], step)
            for x in arm["exits"]:
                assert re.search(
                    rf"<td>{x['kind']}</td><td>[^<]*</td><td>[^<]*</td><td class=\"num\">{x['n']:,}</td>",
                    page,
                )
        # The recent sends are the ledger's latest rows, newest first.
        assert len(detail["recent_sends"]) == 50
        first = detail["recent_sends"][0]
        assert re.search(
            rf"<td>{re.escape(first['step'])}</td><td>{first['channel']}</td><td><span class=\"status "
            rf"{first['status']}\">",
            page,
        )
        # The lift summary: the report's arms and its conversion-rate lift.
        for arm in report["lift"]["arms"]:
            assert re.search(
                rf"<td>{arm['name']}</td><td class=\"num\">{arm['n']:,}</td>"
                rf"<td class=\"num\">{arm['conversions']:,}</td>"
                rf"<td class=\"num\">{arm['rate'] * 100:.1f}%</td>",
                page,
            ), arm
        comparison = report["lift"]["metrics"][0]["comparisons"][0]
        assert f"<strong>{comparison['absolute'] * 100:+.1f}%</strong>" in page
        assert 'href="/console/journeys/rescue/report"' in page
        full = client.get("/journeys/rescue/report").text
        assert "Lift report: rescue (version 1)" in full and full.count("<svg") >= 3

        # The saved backtest: listed, and its page is the report measurement writes for it.
        listing = client.get("/backtests").text
        assert '<a href="/console/backtests/1">1</a>' in listing and "2024-04-01 to 2024-04-08" in listing
        store = open_store(site.server.db)
        try:
            with store.connect() as conn:
                saved = saved_backtest(conn, 1)
        finally:
            store.dispose()
        assert saved is not None
        assert client.get("/backtests/1").text == backtest_html(json.loads(saved.report))
        for missing in ("2", "x", "9" * 30):
            assert client.get(f"/backtests/{missing}").status_code == 404
        who = client.get("/customers/C001").text
        assert "Customer C001" in who and "reminder" in who
        for entry in why["entries"]:  # why's words, as the core wrote them
            assert str(escape(entry["entered_because"])) in who
            if entry["finish_words"]:
                assert str(escape(entry["finish_words"])) in who
        search = client.get("/customers", params={"id": "C001"})
        assert search.status_code == 303 and search.headers["location"] == "/console/customers/C001"
        assert client.get("/customers/nobody-here").status_code == 404
        assert client.get("/journeys/nope").status_code == 404
        assert client.get("/customers/" + "x" * 300).status_code == 400


def test_journey_and_customer_text_is_escaped(site: Site) -> None:
    with logged_in(site) as client:
        page = client.get("/journeys/rescue").text
        assert "<script" not in page and "<b>rescue" not in page and "<i>behind" not in page
        assert (
            "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt; Carts &amp; &lt;b&gt;rescue&lt;/b&gt;" in page
        )
        assert "&lt;i&gt;behind&lt;/i&gt;" in page
        who = client.get("/customers/" + quote(HOSTILE_CUSTOMER, safe=""))
        assert who.status_code == 200
        assert "<img" not in who.text and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in who.text


def test_no_page_loads_anything_from_elsewhere(site: Site) -> None:
    with logged_in(site) as client:
        for path in [*pages(site), "/login"]:
            html = client.get(path).text
            assert "<script" not in html.lower(), path
            for ref in re.findall(r"""(?:src|href|action)\s*=\s*["']?([^"'\s>]+)""", html):
                assert not re.match(r"(?i)(https?:)?//", ref), (path, ref)
            assert "@import" not in html and "url(" not in html.replace("url(#", "")
        css = client.get("/static/console.css").text
        assert "http" not in css and "url(" not in css and "@import" not in css


# ------------------------------------------------------------------------------------------ screenshots


def _read(ocr: str, shot: Path) -> str:
    return read_text(ocr, shot)


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_screenshots_show_the_steps_and_their_counts(
    site: Site, tmp_path: Path, width: int, height: int
) -> None:
    from playwright.sync_api import sync_playwright

    browser_path, ocr = browser_tools()
    overview, detail, _, _ = core_figures(site)
    (rescue,) = overview["journeys"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            # Through the login form, as an operator does: the first page asked for sends there.
            page.goto(f"{site.console}/journeys/rescue")
            assert "/console/login" in page.url
            page.fill("#key", CONSOLE_KEY)
            page.click("form.login button")
            page.wait_for_load_state()
            assert page.url.endswith("/console/journeys/rescue")
            shots = {}
            for name, path in (("journeys", "/"), ("journey", "/journeys/rescue")):
                page.goto(f"{site.console}{path}")
                shots[name] = tmp_path / f"{name}-{width}.png"
                page.screenshot(path=str(shots[name]), full_page=True)
                # Nothing is wider than the window: tables scroll inside their box.
                assert page.evaluate("document.documentElement.scrollWidth") <= width, name
                assert page.evaluate("document.body.scrollWidth") <= width, name
        finally:
            browser.close()
    print(f"\nscreenshots: {' '.join(str(s) for s in shots.values())}")

    listing = _read(ocr, shots["journeys"])
    assert "rescue" in listing and "running" in listing
    assert re.search(rf"\b{rescue['active']}\b", listing), listing

    text = _read(ocr, shots["journey"])
    for step in ("reminder", "nudge"):
        assert step in text, text
    finished = rescue["finished"]
    outcome, n = max(finished.items(), key=lambda item: item[1])
    # OCR may run a figure and its word together ("52completed").
    assert re.search(rf"\b{n:,}\s*{outcome}\b", text), (outcome, n, text)
    assert re.search(rf"\b{rescue['active']:,}\s*active\b", text), text
    # The funnel's figures: each arm's entries, and the reminder's reach in the diagram and the table.
    for arm in detail["funnel"]["arms"]:
        assert re.search(rf"\b{arm['entered']:,}\s*entered\b", text), (arm["arm"], text)
    reached = detail["nodes"]["reminder"]
    assert re.search(rf"send email\W+{reached:,}\b", text), text
