"""The HTTP service against a real server process (uvicorn) and real HTTP clients (httpx).

One server serves the module's SQLite workspace; the tests that need their own (no key set, PostgreSQL)
start one. What a test expects in the store is read from the store itself.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import KEY, ApiServer, api_server, basic, free_port, make_workspace
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from orchestrator.channels._base import ChannelRouter
from orchestrator.channels._outbox import OutboxAdapter
from orchestrator.clock import SimulatedClock, SystemClock, to_us
from orchestrator.engine._health import default_stale_after_us, judge_health
from orchestrator.engine._tick import Engine
from orchestrator.engine._workspace import load_workspace
from orchestrator.http._segment import parse_calls
from orchestrator.ingest import ingest_file
from orchestrator.store import Store, open_store
from orchestrator.store._health import JourneyFailure, record_health


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(tmp_path_factory.mktemp("api")) as running:
        yield running


@pytest.fixture
def store(server: ApiServer) -> Iterator[Store]:  # the server's store, opened by the test too
    opened = open_store(server.db)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as http:
        yield http


def rows(store: Store, sql: str, **params: Any) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def events_of(store: Store, customer: str) -> list[tuple[str, dict[str, Any]]]:
    found = rows(
        store,
        "SELECT t.name, e.properties FROM events e JOIN customers c ON c.key = e.customer_key "
        "JOIN event_types t ON t.id = e.type_id WHERE c.id = :c ORDER BY e.id",
        c=customer,
    )
    return [(name, json.loads(props)) for name, props in found]


def event_count(store: Store) -> int:
    return int(rows(store, "SELECT COUNT(*) FROM events")[0][0])


def metrics(http: httpx.Client) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. ``orchestrator_api_calls_total{outcome=...}``."""
    answer = http.get("/metrics")
    assert answer.status_code == 200
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


# -- the event API ---------------------------------------------------------------------------------------


def test_track_page_screen_and_identify_are_stored(client: httpx.Client, store: Store) -> None:
    answer = client.post(
        "/v1/track",
        json={
            "userId": "t-1",
            "event": "Order Completed",
            "properties": {"revenue": 42.5, "currency": "EUR"},
            "timestamp": "2024-05-01T10:00:00Z",
            "context": {"ip": "203.0.113.9"},
            "anonymousId": "a-1",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "accepted": 1, "duplicates": 0, "stale": 0, "rejected": []}
    assert (
        client.post(
            "/v1/page", json={"userId": "t-1", "name": "Home", "properties": {"url": "/"}}
        ).status_code
        == 200
    )
    assert client.post("/v1/screen", json={"userId": "t-1", "name": "Cart"}).status_code == 200
    assert events_of(store, "t-1") == [
        ("Order Completed", {"revenue": 42.5, "currency": "EUR"}),
        ("page", {"url": "/", "name": "Home"}),
        ("screen", {"name": "Cart"}),
    ]
    ts = rows(
        store, "SELECT e.ts_us FROM events e JOIN customers c ON c.key = e.customer_key WHERE c.id = 't-1'"
    )
    assert ts[0][0] == to_us(datetime(2024, 5, 1, 10, tzinfo=UTC))

    answer = client.post(
        "/v1/identify",
        json={"userId": "t-1", "traits": {"email": "t1@example.com", "consent_email": True, "plan": "pro"}},
    )
    assert answer.status_code == 200, answer.text
    email, consent, attributes = rows(
        store, "SELECT email, consent_email, attributes FROM customers WHERE id = 't-1'"
    )[0]
    assert (email, bool(consent), json.loads(attributes)) == ("t1@example.com", True, {"plan": "pro"})
    # An identify older than the stored record is valid and not applied.
    old = client.post(
        "/v1/identify",
        json={"userId": "t-1", "traits": {"plan": "free"}, "timestamp": "2020-01-01T00:00:00Z"},
    )
    assert old.json()["stale"] == 1
    assert json.loads(rows(store, "SELECT attributes FROM customers WHERE id = 't-1'")[0][0]) == {
        "plan": "pro"
    }


def test_a_message_id_is_stored_once_through_track_batch_and_files(
    client: httpx.Client, store: Store, server: ApiServer
) -> None:
    call = {"userId": "m-1", "event": "Signed Up", "messageId": "mid-1"}
    assert client.post("/v1/track", json=call).json()["accepted"] == 1
    again = client.post("/v1/track", json=call).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    batch = client.post(
        "/v1/batch",
        json={"batch": [{**call, "type": "track"}, {**call, "type": "track", "messageId": "mid-2"}]},
    ).json()
    assert (batch["accepted"], batch["duplicates"]) == (1, 1)
    # The same id through a file, then through the API the other way round: one event each.
    inbox = server.folder / "events.jsonl"
    now = datetime.now(UTC)
    lines = [
        {"customer_id": "m-1", "event": "Signed Up", "ts": now.isoformat(), "message_id": "mid-2"},
        {"customer_id": "m-1", "event": "Signed Up", "ts": now.isoformat(), "message_id": "mid-file"},
    ]
    inbox.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = ingest_file(store, inbox, now_us=to_us(now))
    assert (report.accepted, report.duplicates) == (1, 1)
    assert client.post("/v1/track", json={**call, "messageId": "mid-file"}).json()["duplicates"] == 1
    assert [name for name, _ in events_of(store, "m-1")] == ["Signed Up"] * 3


def test_a_batch_keeps_its_good_calls_and_says_why_each_bad_one_was_refused(
    client: httpx.Client, store: Store
) -> None:
    secret_time = "next tuesday-ish"
    calls: list[Any] = [
        {"type": "track", "userId": "b-1", "event": "ok 1"},
        {"type": "track", "userId": "b-1", "event": "bad\u0000name"},
        {"type": "track", "anonymousId": "anon-7", "event": "no user"},
        {"type": "track", "userId": "b-1", "event": "when?", "timestamp": secret_time},
        {"type": "group", "userId": "b-1", "groupId": "g"},
        "not a call",
        {"type": "identify", "userId": "b-1", "traits": {"timezone": "Mars/Olympus_Mons", "email": "x@y.z"}},
        {"type": "track", "userId": "b-1", "event": "big", "properties": {"blob": "x" * 40_000}},
        {"type": "track", "userId": "b-1", "event": "later", "timestamp": "2999-01-01T00:00:00Z"},
        {"type": "identify", "userId": "b-1", "traits": {"consent_sms": "perhaps"}},
        {"type": "track", "userId": "b-1", "event": "ok 2", "properties": {"n": 2}},
    ]
    answer = client.post("/v1/batch", json={"batch": calls})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is False
    assert body["accepted"] == 2
    reasons = {item["index"]: item["reason"] for item in body["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert reasons[1] == "event name contains a control character"
    assert reasons[2].startswith("no userId")
    assert reasons[3] == "timestamp unparseable"
    assert reasons[4] == "group calls are not supported"
    assert reasons[5] == "not an object"
    assert reasons[6] == "unknown time zone"
    assert reasons[7] == "call larger than 32 KB"
    assert reasons[8].startswith("timestamp out of range: later than")
    assert reasons[9] == "bad consent"
    # Reasons name fields, never the values sent.
    for value in (secret_time, "Mars", "x@y.z", "perhaps", "anon-7"):
        assert value not in answer.text
    assert events_of(store, "b-1") == [("ok 1", {}), ("ok 2", {"n": 2})]
    assert rows(store, "SELECT timezone, email FROM customers WHERE id = 'b-1'") == [(None, None)]
    assert not rows(store, "SELECT id FROM event_types WHERE name IN ('no user', 'when?', 'later', 'big')")


def test_a_refused_single_call_is_a_400_with_its_reason(client: httpx.Client, store: Store) -> None:
    before = event_count(store)
    answer = client.post(
        "/v1/track", json={"userId": "s-1", "event": "x", "properties": ["not", "an object"]}
    )
    assert answer.status_code == 400
    assert answer.json() == {"success": False, "error": "properties not an object"}
    for body, reason in [
        (b"{not json", "the body is not JSON"),
        (b"[1, 2]", "the body is not a JSON object"),
    ]:
        answer = client.post("/v1/track", content=body)
        assert (answer.status_code, answer.json()["error"]) == (400, reason)
    answer = client.post("/v1/batch", json={"batch": {"type": "track"}})
    assert (answer.status_code, answer.json()["error"]) == (400, "batch is not a list of calls")
    assert event_count(store) == before


def test_write_keys_are_checked(server: ApiServer, store: Store) -> None:
    before = event_count(store)
    call = {"userId": "k-1", "event": "x"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        missing = http.post("/v1/track", json=call)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Basic")
        assert http.post("/v1/track", json=call, headers=basic("not-the-key")).status_code == 401
        assert (
            http.post("/v1/track", json=call, headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        )
        assert http.post("/v1/batch", json={"batch": [call]}, headers=basic(KEY[:-1])).status_code == 401
        assert http.post("/v1/track", json=call, headers={"Authorization": "Basic %%%"}).status_code == 401
        assert KEY not in missing.text
        # The key alone (no colon) is taken too, as some clients send it.
        import base64

        alone = {"Authorization": "Basic " + base64.b64encode(KEY.encode()).decode()}
        assert http.post("/v1/track", json=call, headers=alone).status_code == 200
    assert event_count(store) == before + 1


def test_oversized_requests_are_413_and_store_nothing(client: httpx.Client, store: Store) -> None:
    before = event_count(store)
    big = {"userId": "o-1", "event": "x", "properties": {"blob": "y" * (33 * 1024)}}
    assert client.post("/v1/track", json=big).status_code == 413
    calls = [{"type": "track", "userId": "o-1", "event": "x", "properties": {"blob": "y" * 20_000}}] * 30
    answer = client.post("/v1/batch", json={"batch": calls})
    assert answer.status_code == 413
    assert answer.json()["error"] == "the request is over 500 KB"
    # Without a Content-Length (chunked), the limit holds as the body is read.
    chunks = iter([json.dumps({"batch": calls}).encode()[i : i + 8192] for i in range(0, 620_000, 8192)])
    assert client.post("/v1/batch", content=chunks).status_code == 413
    assert (
        client.post(
            "/v1/track", json={"userId": "o-1", "event": "x"}, headers={"Content-Encoding": "gzip"}
        ).status_code
        == 415
    )
    assert event_count(store) == before


def test_concurrent_requests_share_commits(server: ApiServer, store: Store) -> None:
    """While the store's write lock is held elsewhere, requests queue; they are then committed together,
    each answered only after its commit."""
    before = metrics(httpx.Client(base_url=server.url))
    path = server.db.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=server.auth, timeout=60) as http:
            posts = [
                asyncio.create_task(
                    http.post(
                        "/v1/track", json={"userId": f"g-{i}", "event": "Grouped", "messageId": f"g-{i}"}
                    )
                )
                for i in range(24)
            ]
            await asyncio.sleep(1.0)  # they arrive and wait for the lock
            done = [post.done() for post in posts]
            blocker.execute("COMMIT")
            assert not any(done), "answered before the commit"
            return await asyncio.gather(*posts)

    try:
        answers = asyncio.run(post_all())
    finally:
        blocker.close()
    assert [a.status_code for a in answers] == [200] * 24
    assert rows(
        store, "SELECT COUNT(*) FROM events e JOIN event_types t ON t.id = e.type_id WHERE t.name = 'Grouped'"
    ) == [(24,)]
    after = metrics(httpx.Client(base_url=server.url))
    commits = after["orchestrator_api_commits_total"] - before["orchestrator_api_commits_total"]
    assert 1 <= commits < 24


# -- operations ------------------------------------------------------------------------------------------


def test_health_readiness_and_a_failed_journey(client: httpx.Client, store: Store) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True and ready.json()["store"] is True
    now_us = to_us(datetime.now(UTC))
    with store.begin() as conn:
        record_health(conn, {"welcome": "KeyError at step hello"}, now_us)
    try:
        failed = client.get("/readyz")
        assert failed.status_code == 503
        assert failed.json()["health"]["failed_journeys"][0]["journey"] == "welcome"
        assert metrics(client)["orchestrator_failed_journeys"] == 1
    finally:
        with store.begin() as conn:
            record_health(conn, {}, now_us)
    assert client.get("/readyz").status_code == 200


def test_metrics_count_requests_calls_and_what_the_engine_did(
    client: httpx.Client, store: Store, server: ApiServer
) -> None:
    before = metrics(client)
    accepted = "orchestrator_api_calls_total{outcome=accepted,type=event}"
    rejected = "orchestrator_api_calls_total{outcome=rejected,type=event}"
    requests = "orchestrator_api_requests_total{route=/v1/batch,status=200}"
    now = datetime.now(UTC)
    calls = [
        {
            "type": "identify",
            "userId": "e2e-1",
            "traits": {"email": "e2e@example.com", "consent_email": True},
        },
        {
            "type": "track",
            "userId": "e2e-1",
            "event": "signup",
            "timestamp": (now - timedelta(minutes=1)).isoformat(),
        },
        {"type": "track", "userId": "e2e-1"},
    ]
    assert client.post("/v1/batch", json={"batch": calls}).json()["accepted"] == 2
    # The engine, in another process as the daemon would be, finds the event at its next tick.
    workspace = load_workspace([server.folder / "journeys"], server.folder / "templates")
    router = ChannelRouter([OutboxAdapter(server.folder / "outbox")])
    report = Engine(store, workspace, router, SimulatedClock(now)).tick()
    assert report.journeys["welcome"].entered == 1
    after = metrics(client)
    assert after[accepted] - before.get(accepted, 0) == 1
    assert after[rejected] - before.get(rejected, 0) == 1
    assert after[requests] - before.get(requests, 0) == 1
    assert after["orchestrator_ticks_total"] - before["orchestrator_ticks_total"] == 1
    entered = after["orchestrator_entries_total{arm=treatment,journey=welcome}"] + after.get(
        "orchestrator_entries_total{arm=holdout,journey=welcome}", 0
    )
    assert entered == 1
    assert after["orchestrator_tick_seconds_total{phase=total}"] > 0
    assert after["orchestrator_last_tick_timestamp_seconds"] == pytest.approx(now.timestamp(), abs=1e-3)
    assert "orchestrator_last_tick_seconds{phase=dispatch}" in after
    sent = sum(v for k, v in after.items() if k.startswith("orchestrator_messages{channel=email"))
    assert sent == 1
    assert after["orchestrator_store_up"] == 1
    assert after["orchestrator_api_request_seconds_count{route=/v1/batch}"] >= 1


def test_the_openapi_document_describes_the_routes(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {"/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/batch"}
    assert document["paths"]["/v1/batch"]["post"]["responses"].keys() >= {"200", "401", "413"}


def test_a_new_workspace_without_keys_refuses_events_and_answers_operations(tmp_path: Path) -> None:
    """As ``orchestrator init`` leaves it, with no environment variable set."""
    make_workspace(tmp_path)
    with (
        api_server(tmp_path, environ={"PATH": "/usr/bin:/bin"}, key=False) as running,
        httpx.Client(base_url=running.url, timeout=30) as http,
    ):
        for path in ("/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/batch"):
            assert http.post(path, json={"userId": "u", "event": "e"}, headers=basic("")).status_code == 401
            assert (
                http.post(path, json={"userId": "u", "event": "e"}, headers=basic("anything")).status_code
                == 401
            )
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200
        assert "no API key is set" in running.log()
    opened = open_store(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    try:
        assert rows(opened, "SELECT COUNT(*) FROM events") == [(0,)]
    finally:
        opened.dispose()


@pytest.mark.postgres
def test_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with (
        api_server(tmp_path, db=postgres_url) as running,
        httpx.Client(base_url=running.url, headers=running.auth, timeout=30) as http,
    ):
        calls = [
            {"type": "identify", "userId": "p-1", "traits": {"email": "p@example.com"}},
            {"type": "track", "userId": "p-1", "event": "Viewed", "messageId": "pg-1"},
            {"type": "track", "userId": "p-1", "event": "Viewed", "messageId": "pg-1"},
            {"type": "track", "userId": "p-1", "event": "bad\u0007"},
        ]
        body = http.post("/v1/batch", json={"batch": calls}).json()
        assert (body["accepted"], body["duplicates"], len(body["rejected"])) == (2, 1, 1)
        assert http.get("/readyz").status_code == 200
        assert metrics(http)["orchestrator_store_up"] == 1
    opened = open_store(postgres_url)
    try:
        assert events_of(opened, "p-1") == [("Viewed", {})]
        assert rows(opened, "SELECT email FROM customers WHERE id = 'p-1'") == [("p@example.com",)]
    finally:
        opened.dispose()


# -- pieces ----------------------------------------------------------------------------------------------


def test_calls_map_to_ingest_records() -> None:
    now_us = to_us(datetime(2024, 5, 1, tzinfo=UTC))
    parsed = parse_calls(
        [
            {
                "type": "page",
                "userId": 7,
                "name": "Pricing",
                "category": "Docs",
                "properties": {"path": "/p"},
            },
            {"type": "screen", "userId": "s", "name": "Home", "category": "ignored"},
            {"type": "identify", "userId": "i", "traits": {"id": "other"}},
            {"type": "identify", "userId": "i", "traits": {"customer_id": "other"}},
            {"type": "alias", "userId": "i", "previousId": "x"},
        ],
        None,
        now_us,
    )
    assert parsed.events is not None
    assert parsed.events.customer_ids[:2] == ["7", "s"]
    assert parsed.events.properties == ['{"path":"/p","name":"Pricing","category":"Docs"}', '{"name":"Home"}']
    assert parsed.events.ts_us.tolist() == [now_us, now_us]
    assert parsed.rejected == [
        (2, "conflicting userId and traits.id"),
        (3, "conflicting userId and traits.customer_id"),
        (4, "alias calls are not supported"),
    ]


def test_the_common_calls_path_gives_what_the_general_path_gives() -> None:
    """``parse_calls`` takes well-formed events straight into columns; for every call, accepted or not,
    the result is the one of file ingest's record-by-record checks, with few calls or many."""
    now_us = to_us(datetime(2024, 5, 1, tzinfo=UTC))
    calls: list[Any] = [
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "m1", "properties": {"a": 1}},
        {"type": "track", "userId": "u2", "event": "Viewed", "messageId": ""},
        {"type": "track", "userId": "u1", "event": "Bought", "timestamp": "2024-04-30T10:00:00Z"},
        {"type": "track", "userId": "u1", "event": "Bought", "timestamp": "2024-04-30T10:00:00"},
        {"type": "track", "userId": "u1", "event": "Bought", "timestamp": "not a time"},
        {"type": "track", "userId": "u1", "event": "Bought", "timestamp": "2099-01-01T00:00:00Z"},
        {"type": "track", "userId": "u\x01", "event": "Viewed"},
        {"type": "track", "userId": "u3", "event": "  "},
        {"type": "track", "userId": "u3", "event": "Vi\u2028ewed"},
        {"type": "track", "userId": "u3", "event": "Viewed", "properties": {"b\x02": 1}},
        {"type": "track", "userId": "u3", "event": "Viewed", "properties": {"b": "tab\there", "c": "é"}},
        {"type": "track", "userId": "u3", "event": "Viewed", "properties": {"big": 2**70}},
        {"type": "track", "userId": "u3", "event": "Viewed", "properties": [1]},
        {"type": "track", "userId": "", "anonymousId": "a", "event": "Viewed"},
        {"type": "track", "userId": 12, "event": "Viewed", "messageId": 5},
        {"type": "track", "userId": "u4", "event": 3},
        {"type": "track", "userId": "u1", "event": "Viewed", "messageId": "m1"},
        {"type": "page", "userId": "u5", "properties": {"path": "/"}},
        {"type": "page", "userId": "u5", "name": "Home"},
        {"type": "screen", "userId": "u5", "timestamp": 17},
        {"type": "identify", "userId": "u6", "traits": {"plan": "pro"}},
    ]
    for some in (calls[:6], calls[6:12], calls):
        fast, general = (parse_calls(some, None, now_us, general=g) for g in (False, True))
        assert fast.rejected == general.rejected
        assert fast.customers == general.customers
        assert (fast.events is None) == (general.events is None)
        if fast.events is not None and general.events is not None:
            for chunk in (fast.events, general.events):
                chunk.customer_ids = [chunk.customer_ids[c] for c in chunk.customer_codes.tolist()]
                chunk.event_names = [chunk.event_names[c] for c in chunk.event_codes.tolist()]
            for name in ("customer_ids", "event_names", "properties", "message_ids"):
                assert getattr(fast.events, name) == getattr(general.events, name)
            for name in ("ts_us", "lines"):
                assert getattr(fast.events, name).tolist() == getattr(general.events, name).tolist()
    everything = parse_calls(calls, None, now_us)
    assert everything.events is not None
    assert everything.events.lines.tolist() == [1, 2, 3, 11, 15, 17, 18, 19]
    assert len(everything.customers) == 1 and len(everything.rejected) == 12


def test_the_staleness_rule_is_the_status_command_s() -> None:
    minute = 60_000_000
    instants = [i * minute for i in range(10)]
    assert default_stale_after_us(instants) == 3 * minute
    assert judge_health([], instants, instants[-1] + 3 * minute).ok
    assert not judge_health([], instants, instants[-1] + 3 * minute + 1).ok
    assert judge_health([], [], to_us(SystemClock().now())).ok  # no tick yet: nothing to judge
    failure = JourneyFailure("j", "boom", 0, 0)
    verdict = judge_health([failure], instants, instants[-1])
    assert not verdict.ok and verdict.to_dict()["failed_journeys"][0]["journey"] == "j"


def test_serving_beside_the_engine_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the daemon serves: in a thread of its own process, sharing its store, stopped with it."""
    from orchestrator.config import load_config
    from orchestrator.http import start_in_thread

    config_file = make_workspace(tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_WRITE_KEY", KEY)
    config = load_config(config_file)
    shared = open_store(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    try:
        port = free_port()
        running = start_in_thread(config, shared, "127.0.0.1", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=basic(KEY), timeout=30) as http:
                assert (
                    http.post("/v1/track", json={"userId": "d-1", "event": "signup"}).json()["accepted"] == 1
                )
                assert http.get("/readyz").status_code == 200
        finally:
            running.stop()
        assert events_of(shared, "d-1") == [("signup", {})]
        assert not running.thread.is_alive()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        shared.dispose()


def test_a_store_that_fails_answers_unavailable_and_stores_nothing(tmp_path: Path) -> None:
    """The writer on a store whose file cannot be opened: every request of the group gets
    ``StoreUnavailable`` (the service answers 503), and it writes again once the store is back."""
    import shutil

    from orchestrator.http._writer import GroupWriter, StoreUnavailable

    folder = tmp_path / "store"
    folder.mkdir()
    url = f"sqlite:///{folder / 'o.db'}"
    broken = open_store(url)
    shutil.rmtree(folder)
    broken.engine.dispose()  # no pooled connection to the removed file is left
    writer = GroupWriter(broken)
    writer.start()
    calls = parse_calls([{"userId": "f-1", "event": "x"}], "track", to_us(datetime.now(UTC)))

    async def two_writes() -> list[object]:
        return await asyncio.gather(writer.write(calls), writer.write(calls), return_exceptions=True)

    try:
        assert [type(r) for r in asyncio.run(two_writes())] == [StoreUnavailable, StoreUnavailable]
        folder.mkdir()
        open_store(url).dispose()  # the store is back (empty, as after a restore)
        written = asyncio.run(writer.write(calls))
        assert written.events == 1
    finally:
        writer.stop()
        broken.dispose()
    back = open_store(url)
    try:
        assert events_of(back, "f-1") == [("x", {})]
    finally:
        back.dispose()


def test_integers_beyond_64_bits_are_refused_not_rounded(client: httpx.Client, store: Store) -> None:
    big = 123456789012345678901234567890
    calls = [
        '{"type": "track", "userId": "big-1", "event": "x", "properties": {"n": BIG}}',
        '{"type": "track", "userId": "big-1", "event": "y", "properties": {"n": 12}}',
        '{"type": "identify", "userId": "big-1", "traits": {"score": BIG}}',
        '{"type": "track", "userId": BIG, "event": "z"}',
    ]
    body = ('{"batch": [' + ", ".join(calls) + "]}").replace("BIG", str(big))
    answer = client.post("/v1/batch", content=body.encode())
    assert answer.status_code == 200, answer.text
    reasons = {item["index"]: item["reason"] for item in answer.json()["rejected"]}
    assert reasons == {
        0: "integer beyond 64 bits: properties.n",
        2: "integer beyond 64 bits: score",
        3: "integer beyond 64 bits: userId",
    }
    assert events_of(store, "big-1") == [("y", {"n": 12})]
    assert (
        client.post(
            "/v1/track", content=b'{"userId": "big-1", "event": "x", "properties": {"n": NaN}}'
        ).status_code
        == 400
    )


def test_instants_beyond_the_calendar_are_refused_not_crashing(client: httpx.Client) -> None:
    """Found by the fuzzing: year 1 east of UTC has no instant; file ingest's parser now says so."""
    from orchestrator.ingest._readers import parse_ts_text

    assert parse_ts_text("0001-01-01T00:00:00+01:00").reason == "ts out of range"  # type: ignore[union-attr]
    for ts in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        answer = client.post("/v1/track", json={"userId": "cal-1", "event": "x", "timestamp": ts})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("timestamp out of range")
        calls = [{"type": "page", "userId": "cal-1", "timestamp": ts}] * 20  # parsed as one column
        assert (
            client.post("/v1/batch", json={"batch": calls})
            .json()["rejected"][0]["reason"]
            .startswith("timestamp out of range")
        )


def test_the_service_answers_the_links_the_config_sets_up(tmp_path: Path) -> None:
    """With ``unsubscribe`` and ``tracking`` in the config, the same service answers their links."""
    from orchestrator.channels._links import message_links
    from orchestrator.config import load_config

    config_file = make_workspace(tmp_path)
    config_file.write_text(
        config_file.read_text()
        + "\nunsubscribe:\n  base_url: https://shop.example/u\n  keys:\n    - id: k1\n"
        "      secret: ${UNSUB_KEY}\ntracking:\n  base_url: https://t.shop.example\n"
    )
    secret = "a-long-enough-unsubscribe-signing-key-0123456789"
    environ = {"UNSUB_KEY": secret, "PATH": "/usr/bin:/bin"}
    links = message_links(load_config(config_file, environ=environ).file)
    assert links is not None and links.unsubscribe is not None
    token = links.unsubscribe.token("L-1")
    with (
        api_server(tmp_path, environ=environ) as running,
        httpx.Client(base_url=running.url, timeout=30) as http,
    ):
        assert http.get(f"/u/{token}").status_code == 200
        answer = http.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 200, answer.text
        assert http.post(f"/u/{token[:-2]}xx", content=b"List-Unsubscribe=One-Click").status_code == 404
        counted = metrics(http)
        assert counted["orchestrator_api_requests_total{route=/u/{token},status=200}"] == 2
        assert secret not in running.log()
    opened = open_store(running.db)
    try:
        assert rows(opened, "SELECT consent_email FROM customers WHERE id = 'L-1'") == [(False,)]
    finally:
        opened.dispose()
