"""Delivery outcomes: the result type, classification of provider answers, backoff, and the HTTP client
against a real local server (answers of every class, a server that stalls, one that drips, one that hangs
up, a closed port)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from channel_servers import LocalH2Server, LocalHttpServer, Reply, Request, closed_port

from orchestrator.channels import Backoff, DeliveryResult
from orchestrator.channels._delivery import (
    SentKeys,
    classify_http,
    classify_smtp,
    key_header_value,
    parse_retry_after,
    transport_failure,
)
from orchestrator.channels._http_pool import HttpPool
from orchestrator.channels._transport import Endpoint, HttpClient, HttpResponse

# -- the result type -------------------------------------------------------------------------------


def test_delivery_result_outcomes_and_extra_fields() -> None:
    assert DeliveryResult.sent("p").outcome == "delivered"
    retry = DeliveryResult.retry("busy", code="http_429", retry_after_s=7)
    assert retry.outcome == "transient" and retry.retry_after_s == 7 and retry.code == "http_429"
    bounce = DeliveryResult.failed("no such user", code="smtp_550", suppress=True)
    assert bounce.outcome == "permanent" and bounce.suppress
    # The old three-field form still compares equal: nothing that built results before changes meaning.
    assert DeliveryResult.retry("x") == DeliveryResult("retry", error="x")
    assert DeliveryResult.failed("x") == DeliveryResult("failed", None, "x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "sent", "retry_after_s": 3.0}, "only applies to a retry"),
        ({"status": "retry", "retry_after_s": -1.0}, "finite number >= 0"),
        ({"status": "retry", "retry_after_s": float("inf")}, "finite number >= 0"),
        ({"status": "retry", "suppress": True}, "only a permanent failure"),
    ],
)
def test_delivery_result_refuses_inconsistent_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeliveryResult(**kwargs)  # type: ignore[arg-type]


# -- classification --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "code", "retry_after", "suppress"),
    [
        (200, {}, "delivered", None, None, False),
        (201, {}, "delivered", None, None, False),
        (500, {}, "transient", "http_500", None, False),
        (503, {"retry-after": "120"}, "transient", "http_503", 120.0, False),
        (429, {"retry-after": "7"}, "transient", "http_429", 7.0, False),
        (429, {}, "transient", "http_429", None, False),
        (408, {}, "transient", "http_408", None, False),
        (400, {}, "permanent", "http_400", None, False),
        (401, {}, "permanent", "http_401", None, False),
        (404, {}, "permanent", "http_404", None, True),  # in suppress_statuses below
        (410, {}, "permanent", "http_410", None, True),
        (301, {}, "permanent", "http_301", None, False),
    ],
)
def test_classify_http(
    status: int,
    headers: dict[str, str],
    outcome: str,
    code: str | None,
    retry_after: float | None,
    suppress: bool,
) -> None:
    result = classify_http(
        status,
        headers,
        b"<html>error page</html>",
        provider="p",
        provider_id="id-1",
        suppress_statuses={404, 410},
    )
    assert result.outcome == outcome
    assert result.code == code and result.retry_after_s == retry_after and result.suppress is suppress
    if outcome == "delivered":
        assert result.provider_id == "id-1"
    else:
        assert str(status) in (result.error or "") and "error page" in (result.error or "")


def test_classify_http_recipient_refused_by_body_suppresses() -> None:
    result = classify_http(400, {}, b'{"code": 21211}', provider="p", recipient_refused=True)
    assert (
        result.outcome == "permanent" and result.suppress and "refused the recipient" in (result.error or "")
    )


def test_parse_retry_after() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 0 ") == 0.0
    # An HTTP date is measured against the answer's own Date header, never against a local clock.
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:30 GMT", date) == 150.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", date) == 0.0  # in the past: now
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:30 GMT") is None  # no Date to measure against
    assert parse_retry_after("soon", date) is None
    assert parse_retry_after(None) is None and parse_retry_after("-5") is None


@pytest.mark.parametrize(
    ("code", "stage", "outcome", "suppress"),
    [
        (450, "recipient", "transient", False),
        (421, "session", "transient", False),
        (550, "recipient", "permanent", True),  # hard bounce
        (553, "recipient", "permanent", True),
        (552, "message", "permanent", False),  # the content was refused, not the address
        (550, "sender", "permanent", False),
        (354, "message", "transient", False),  # not an answer a finished exchange gives: not a verdict
    ],
)
def test_classify_smtp(code: int, stage: str, outcome: str, suppress: bool) -> None:
    result = classify_smtp(code, b"5.1.1 reason text", stage=stage, recipient="ann@example.com")
    assert result.outcome == outcome and result.suppress is suppress
    assert result.code == f"smtp_{code}" and "reason text" in (result.error or "")


def test_transport_failure_codes() -> None:
    assert transport_failure("p", TimeoutError("timed out")).code == "timeout"
    refused = transport_failure("p", ConnectionRefusedError(111, "Connection refused"))
    assert (
        refused.outcome == "transient" and refused.code == "connection" and "refused" in (refused.error or "")
    )


def test_key_header_value() -> None:
    assert key_header_value("cart/v1/C1/7/step-2") == "cart/v1/C1/7/step-2"
    assert key_header_value("a b\r\nX-Evil: 1") == "a%20b%0D%0AX-Evil%3A%201"  # no header injection
    assert key_header_value("ключ") == key_header_value("ключ") != key_header_value("ключи")
    assert key_header_value("\ud800") == "%ED%A0%80"  # a lone surrogate still maps to one value


# -- backoff ---------------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_ends() -> None:
    no_jitter = Backoff(base_s=10, factor=2, cap_s=100, max_attempts=7, jitter=0)
    assert no_jitter.schedule(random.Random(1).random) == [10, 20, 40, 80, 100, 100]
    assert no_jitter.delay(7, random.random) is None  # the 7th attempt was the last
    assert no_jitter.delay(10_000, random.random) is None
    # A huge attempt number must not overflow the exponent.
    assert Backoff(max_attempts=10**6, jitter=0).delay(5000, random.random) == 3600.0


def test_backoff_jitter_stays_in_range_and_is_reproducible() -> None:
    policy = Backoff(base_s=10, factor=3, cap_s=1000, max_attempts=5, jitter=0.5)
    assert policy.delay(1, lambda: 0.0) == 10.0  # draw 0: the full delay
    assert policy.delay(2, lambda: 0.999999) == pytest.approx(15.0, rel=1e-5)  # draw ~1: half of 30
    first = policy.schedule(random.Random(42).random)
    assert first == policy.schedule(random.Random(42).random)  # same seed, same schedule
    assert first != policy.schedule(random.Random(43).random)
    for attempt, wait in enumerate(first, start=1):
        ceiling = min(1000, 10 * 3 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling
    full = replace(policy, jitter=1.0)
    assert full.delay(3, lambda: 0.5) == 45.0


def test_backoff_honours_retry_after_up_to_a_limit() -> None:
    policy = Backoff(base_s=10, cap_s=60, max_attempts=4, jitter=0, max_retry_after_s=300)
    assert policy.delay(1, random.random, retry_after_s=120) == 120  # the provider asked for longer
    assert policy.delay(1, random.random, retry_after_s=2) == 10  # never sooner than the schedule
    assert policy.delay(1, random.random, retry_after_s=10**9) == 300
    assert policy.delay(4, random.random, retry_after_s=5) is None  # attempts exhausted all the same


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": 0}, {"cap_s": 1, "base_s": 2}, {"factor": 0.5}, {"max_attempts": 0}, {"jitter": 1.5}],
)
def test_backoff_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_backoff_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="failed_attempts"):
        Backoff().delay(0, random.random)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Backoff().delay(1, lambda: 1.0)


def test_sent_keys_is_bounded_and_keeps_recent_keys() -> None:
    keys = SentKeys(capacity=2)
    keys.add("a", "1")
    keys.add("b", "2")
    assert keys.get("a") == "1"  # touching "a" makes "b" the oldest
    keys.add("c", "3")
    assert keys.get("b") is None and keys.get("a") == "1" and keys.get("c") == "3" and len(keys) == 2


# -- the HTTP client against a local server ---------------------------------------------------------


def test_endpoint_parse() -> None:
    assert Endpoint.parse("https://api.example.com/v1/send?x=1") == Endpoint(
        "https", "api.example.com", 443, "/v1/send?x=1"
    )
    assert Endpoint.parse("http://127.0.0.1:8080") == Endpoint("http", "127.0.0.1", 8080, "/")
    for bad in (
        "ftp://x",
        "https://",
        "https://user:pw@api.example.com/",
        "http://x/#frag",
        "http://x:99999/",
    ):
        with pytest.raises(ValueError):
            Endpoint.parse(bad)


def test_client_posts_and_reads_the_answer() -> None:
    with LocalHttpServer(lambda r: Reply(201, b'{"id": "m-1"}', {"X-Request-Id": "r-9"})) as server:
        client = HttpClient(server.url("/v1/messages?a=1"), timeout_s=2)
        response = client.post(b"payload", {"Content-Type": "text/plain", "Idempotency-Key": "k1"})
    assert response.status == 201 and response.body == b'{"id": "m-1"}'
    assert response.headers["x-request-id"] == "r-9"
    [request] = server.requests
    assert request.path == "/v1/messages?a=1" and request.body == b"payload"
    assert request.headers["idempotency-key"] == "k1" and request.headers["user-agent"].startswith(
        "orchestrator"
    )


def test_client_cuts_long_answers() -> None:
    with LocalHttpServer(lambda r: Reply(500, b"x" * 100_000)) as server:
        response = HttpClient(server.url(), timeout_s=2, max_response_bytes=1000).post(b"", {})
    assert response.status == 500 and len(response.body) == 1000


def test_client_times_out_on_a_silent_server() -> None:
    with LocalHttpServer(lambda r: Reply(delay_s=5)) as server, pytest.raises(TimeoutError):
        HttpClient(server.url(), timeout_s=0.2).post(b"x", {})
    assert len(server.requests) == 1  # it did reach the server, which then said nothing


def test_client_deadline_covers_a_dripping_answer() -> None:
    # Each byte arrives well within the timeout, but the whole answer would take 100 s: the deadline holds.
    server = LocalHttpServer(lambda r: Reply(200, b"y" * 1000, drip_s=0.1))
    with server, pytest.raises(TimeoutError):
        HttpClient(server.url(), timeout_s=0.5).post(b"x", {})


def test_client_connection_errors() -> None:
    with pytest.raises(ConnectionError):
        HttpClient(f"http://127.0.0.1:{closed_port()}/", timeout_s=1).post(b"x", {})
    with LocalHttpServer(lambda r: Reply(hang_up=True)) as server, pytest.raises(ConnectionError):
        HttpClient(server.url(), timeout_s=1).post(b"x", {})


def test_client_keeps_connections_alive_and_bounds_them_across_threads() -> None:
    with LocalHttpServer(lambda r: Reply(200, b"ok"), keep_alive=True) as server:
        client = HttpClient(server.url("/send"), timeout_s=2, max_connections=3)
        for i in range(5):
            assert client.post(f"m{i}".encode(), {}).status == 200
        assert server.connections == 1  # one connection carried the five requests
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: client.post(f"t{i}".encode(), {}), range(30)))
        client.close()
        with pytest.raises(ConnectionError, match="closed"):
            client.post(b"late", {})
    assert all(a.status == 200 and a.body == b"ok" for a in answers)
    assert len(server.requests) == 35 and server.connections <= 3


def test_a_shared_pool_serves_several_endpoints() -> None:
    with LocalHttpServer(lambda r: Reply(204), keep_alive=True) as server:
        pool = HttpPool(timeout_s=2)
        first, second = HttpClient(server.url("/a"), pool=pool), HttpClient(server.url("/b"), pool=pool)
        assert first.post(b"1", {}).status == second.post(b"2", {}).status == 204
        first.close()  # the shared pool belongs to its owner: still open
        assert second.post(b"3", {}).status == 204
        pool.close()
    assert [r.path for r in server.requests] == ["/a", "/b", "/b"] and server.connections == 1


def test_client_speaks_http2_with_prior_knowledge() -> None:
    with LocalH2Server(lambda r: Reply(200, b'{"id": "' + r.path.encode() + b'"}')) as server:
        client = HttpClient(server.url("/push/x"), timeout_s=2, http1=False, http2=True)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: client.post(b"{}", {}, target=f"/push/{i}"), range(24)))
        client.close()
    assert [a.body for a in answers] == [b'{"id": "/push/%d"}' % i for i in range(24)]
    assert server.connections == 1  # the requests in flight were multiplexed on one connection


def test_http2_deadline_holds_on_a_silent_stream() -> None:
    with LocalH2Server(lambda r: Reply(200, delay_s=5)) as server:
        client = HttpClient(server.url("/x"), timeout_s=0.3, http1=False, http2=True)
        with pytest.raises(TimeoutError):
            client.post(b"{}", {})
        client.close()


def test_pool_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        HttpPool(timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        HttpPool(max_connections=0)
    with pytest.raises(ValueError, match="http1, http2"):
        HttpPool(http1=False, http2=False)


def test_http2_streams_do_not_wait_for_each_other() -> None:
    # A stream whose answer is slow must not hold back another stream of the connection; closing the
    # client ends the slow exchange at once with a connection error.
    outcome: list[BaseException | HttpResponse] = []

    def respond(request: Request) -> Reply:
        return Reply(200, request.path.encode(), delay_s=30 if request.path == "/slow" else 0)

    def slow_call() -> None:
        try:
            outcome.append(client.post(b"", {}))
        except OSError as exc:
            outcome.append(exc)

    with LocalH2Server(respond) as server:
        client = HttpClient(server.url("/slow"), timeout_s=60, http1=False, http2=True)
        slow = threading.Thread(target=slow_call)
        slow.start()
        while not server.requests:  # the slow request is on the connection, its stream waiting
            time.sleep(0.01)
        fast = client.post(b"", {}, target="/fast")
        assert fast.body == b"/fast" and outcome == []
        client.close()
        slow.join(timeout=10)
    assert not slow.is_alive() and len(outcome) == 1 and isinstance(outcome[0], ConnectionError)
    assert server.connections == 1
