"""Push (FCM and APNs shapes, the 4 KB bound, the HTTP adapter) and the signed webhook adapter, each
against a local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import pytest
from channel_servers import LocalHttpServer, Reply, Request

from orchestrator.channels import HttpPushAdapter, OutgoingMessage, PushRules, WebhookAdapter, WebhookEndpoint
from orchestrator.channels._push import PushRefused
from orchestrator.channels._webhook import sign, verify_signature, webhook_document
from orchestrator.clock import SimulatedClock


def make_push(key: str = "cart/v1/C1/7/push", **overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "channel": "push",
        "recipient": "device-token-abc",
        "customer_id": "C1",
        "journey_id": "cart",
        "step": "push",
        "title": "Still thinking about shoes?",
        "body": "3 items are waiting in your cart.",
        "link": "shop://cart?c=C1",
        "data": {"campaign": "cart", "items": "3"},
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


# -- payloads --------------------------------------------------------------------------------------


def test_fcm_payload_shape() -> None:
    payload = PushRules(platform="fcm", android_click_action="OPEN_CART").payload(make_push())
    alert = {"title": "Still thinking about shoes?", "body": "3 items are waiting in your cart."}
    assert payload == {
        "message": {
            "token": "device-token-abc",
            "notification": alert,
            "data": {"campaign": "cart", "items": "3", "link": "shop://cart?c=C1"},
            "android": {"notification": {"click_action": "OPEN_CART"}},
        }
    }


def test_apns_payload_shape() -> None:
    payload = PushRules(platform="apns", link_key="url").payload(make_push(title=None))
    assert payload == {
        "aps": {"alert": {"body": "3 items are waiting in your cart."}},
        "campaign": "cart",
        "items": "3",
        "url": "shop://cart?c=C1",
    }
    with pytest.raises(PushRefused, match="'aps'"):
        PushRules(platform="apns").payload(make_push(data={"aps": "x"}))


def test_message_data_must_be_strings() -> None:
    with pytest.raises(ValueError, match="strings to strings"):
        make_push(data={"items": 3})


def test_payload_over_4_kb_is_refused_with_its_size() -> None:
    rules = PushRules()
    # Find the longest body that fits, then one more byte must be refused: the bound is exact.
    overhead = len(rules.encode(make_push(body="")))
    fits = make_push(body="x" * (4096 - overhead))
    assert len(rules.encode(fits)) == 4096
    with pytest.raises(PushRefused) as info:
        rules.encode(make_push(body="x" * (4097 - overhead)))
    assert info.value.code == "payload_too_large" and "4097 bytes, over the 4096-byte limit of FCM" in str(
        info.value
    )
    # Bytes, not characters: 1,400 euro signs are 4,200 bytes of UTF-8.
    with pytest.raises(PushRefused, match="over the 4096-byte limit"):
        rules.encode(make_push(body="€" * 1400))


def test_push_rules_validation() -> None:
    with pytest.raises(ValueError):
        PushRules(platform="web")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PushRules(max_payload_bytes=5000)
    with pytest.raises(ValueError):
        PushRules(link_key="aps")


# -- the push adapter against a local server ---------------------------------------------------------


def fcm_server(request: Request) -> Reply:
    message = json.loads(request.body)["message"]
    if message["token"] == "gone-token":
        return Reply(404, b'{"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}')
    if message["token"] == "bad-token":
        return Reply(400, b'{"error": {"status": "INVALID_ARGUMENT"}}')
    if message["token"] == "busy-token":
        return Reply(500, b'{"error": {"status": "INTERNAL"}}')
    return Reply(200, json.dumps({"name": f"projects/shop/messages/{message['token']}"}).encode())


def test_fcm_adapter_posts_the_payload() -> None:
    with LocalHttpServer(fcm_server) as server:
        adapter = HttpPushAdapter(
            server.url("/v1/projects/shop/messages:send"), bearer_token="tok", timeout_s=2
        )
        message = make_push()
        result = adapter.send(message)
        again = adapter.send(message)
    assert result.ok and result.provider_id == "projects/shop/messages/device-token-abc" and again == result
    [request] = server.requests  # the resend did not reach the provider
    assert request.path == "/v1/projects/shop/messages:send"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["idempotency-key"] == message.idempotency_key
    assert json.loads(request.body) == PushRules().payload(message)


@pytest.mark.parametrize(
    ("token", "outcome", "code", "suppress"),
    [
        ("gone-token", "permanent", "http_404", True),  # unregistered device: stop using the token
        ("bad-token", "permanent", "http_400", False),
        ("busy-token", "transient", "http_500", False),
    ],
)
def test_fcm_answers_are_classified(token: str, outcome: str, code: str, suppress: bool) -> None:
    with LocalHttpServer(fcm_server) as server:
        result = HttpPushAdapter(server.url("/send"), timeout_s=2).send(make_push(recipient=token))
    assert (result.outcome, result.code, result.suppress) == (outcome, code, suppress)


def test_oversized_push_is_not_sent() -> None:
    with LocalHttpServer(fcm_server) as server:
        result = HttpPushAdapter(server.url("/send"), timeout_s=2).send(make_push(body="x" * 5000))
    assert result.outcome == "permanent" and result.code == "payload_too_large" and server.requests == []


def test_apns_adapter_puts_the_token_in_the_path_and_a_stable_apns_id() -> None:
    def apns(request: Request) -> Reply:
        if request.path.endswith("/expired"):
            return Reply(410, b'{"reason": "Unregistered"}')
        return Reply(200, headers={"apns-id": request.headers["apns-id"]})

    with LocalHttpServer(apns) as server:
        url = server.url("/3/device/{token}")
        rules = PushRules(platform="apns")
        first = HttpPushAdapter(url, rules=rules, apns_topic="com.shop.app", timeout_s=2).send(make_push())
        # A second adapter (another process, after a restart) derives the same apns-id from the key.
        second = HttpPushAdapter(url, rules=rules, timeout_s=2).send(make_push())
        expired = HttpPushAdapter(url, rules=rules, timeout_s=2).send(make_push("k2", recipient="expired"))
    one, two, _ = server.requests
    assert one.path == "/3/device/device-token-abc"
    assert one.headers["apns-topic"] == "com.shop.app" and one.headers["apns-push-type"] == "alert"
    assert uuid.UUID(one.headers["apns-id"]) and one.headers["apns-id"] == two.headers["apns-id"]
    assert first.ok and first.provider_id == one.headers["apns-id"]
    assert second.ok
    assert json.loads(one.body)["aps"]["alert"]["title"] == "Still thinking about shoes?"
    assert expired.outcome == "permanent" and expired.suppress and expired.code == "http_410"
    with pytest.raises(ValueError, match="token"):
        HttpPushAdapter("https://api.push.apple.com/3/device/", rules=rules)


# -- the webhook adapter ---------------------------------------------------------------------------

SECRET = "webhook-secret-0123456789"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def receiver(request: Request) -> Reply:
    """Verifies like an independent receiver would: its own HMAC over "<timestamp>." + body."""
    timestamp = request.headers.get("x-orchestrator-timestamp", "")
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    if request.headers.get("x-orchestrator-signature") != f"v1={expected}":
        return Reply(401, b"bad signature")
    if abs(int(timestamp) - NOW.timestamp()) > 300:
        return Reply(401, b"stale")
    return Reply(202, headers={"X-Request-Id": "task-42"})


def make_hook(key: str = "nps/v1/C9/3/handoff", endpoint: str = "customer-success") -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=key,
        channel="webhook",
        recipient=endpoint,
        customer_id="C9",
        journey_id="nps",
        step="handoff",
        body='{"customer_id": "C9", "score": 3, "comment": "Too slow"}',
    )


def test_webhook_posts_signed_json_to_the_named_endpoint() -> None:
    with LocalHttpServer(receiver) as server:
        endpoints = {"customer-success": server.url("/hooks/cs"), "crm": server.url("/hooks/crm")}
        adapter = WebhookAdapter(endpoints, secret=SECRET, clock=SimulatedClock(NOW), timeout_s=2)
        message = make_hook()
        result = adapter.send(message)
        again = adapter.send(message)
    assert result.ok and result.provider_id == "task-42" and again == result
    [request] = server.requests  # the resend did not call the endpoint again
    assert request.path == "/hooks/cs"
    assert request.headers["x-orchestrator-timestamp"] == str(int(NOW.timestamp()))
    assert request.headers["idempotency-key"] == message.idempotency_key
    assert request.headers["content-type"].startswith("application/json")
    document = json.loads(request.body)
    assert document == webhook_document(message)
    assert document == {
        "idempotency_key": "nps/v1/C9/3/handoff",
        "endpoint": "customer-success",
        "customer_id": "C9",
        "journey": "nps/handoff",
        "body": {"customer_id": "C9", "score": 3, "comment": "Too slow"},  # JSON text arrives as JSON
    }


def test_webhook_with_a_wrong_secret_or_clock_is_refused() -> None:
    with LocalHttpServer(receiver) as server:
        url = server.url()
        wrong = WebhookAdapter(url, secret="another-secret-0123456", clock=SimulatedClock(NOW), timeout_s=2)
        late = WebhookAdapter(url, secret=SECRET, clock=SimulatedClock(datetime(2025, 3, 2, tzinfo=UTC)))
        bad_signature = wrong.send(make_hook())
        stale = late.send(make_hook())
    assert bad_signature.outcome == "permanent" and bad_signature.code == "http_401"
    assert "bad signature" in (bad_signature.error or "") and "stale" in (stale.error or "")


def test_webhook_unknown_endpoint_is_refused_without_a_call() -> None:
    with LocalHttpServer(receiver) as server:
        adapter = WebhookAdapter({"crm": server.url()}, secret=SECRET, clock=SimulatedClock(NOW))
        result = adapter.send(make_hook(endpoint="customer-success"))
    assert result.outcome == "permanent" and result.code == "unknown_endpoint"
    assert "'customer-success'" in (result.error or "") and "crm" in (result.error or "")
    assert server.requests == []


def test_webhook_can_stand_in_for_another_channel() -> None:
    with LocalHttpServer(receiver) as server:
        adapter = WebhookAdapter(
            server.url("/crm"), secret=SECRET, clock=SimulatedClock(NOW), channels=["push"]
        )
        result = adapter.send(make_push())
    assert result.ok
    document = json.loads(server.requests[0].body)
    assert document["channel"] == "push" and document["endpoint"] == "device-token-abc"
    assert (
        document["title"] == "Still thinking about shoes?"
        and document["body"] == "3 items are waiting in your cart."
    )


def test_webhook_serves_only_its_channels_and_checks_settings() -> None:
    adapter = WebhookAdapter("http://127.0.0.1:9/", secret=SECRET)
    assert adapter.channels == frozenset({"webhook"})
    assert adapter.send(make_push()).code == "wrong_channel"
    with pytest.raises(ValueError, match="16"):
        WebhookAdapter("http://127.0.0.1:9/", secret="short")
    with pytest.raises(ValueError, match="unknown channels"):
        WebhookAdapter("http://127.0.0.1:9/", secret=SECRET, channels=["fax"])
    with pytest.raises(ValueError, match="http"):
        WebhookAdapter({"crm": "ftp://crm.example"}, secret=SECRET)
    with pytest.raises(ValueError, match="at least one endpoint"):
        WebhookAdapter({}, secret=SECRET)


def test_verify_signature() -> None:
    body = b'{"a": 1}'
    signature = sign(SECRET, 1_700_000_000, body)
    assert verify_signature(SECRET, "1700000000", signature, body, now_s=1_700_000_100).ok
    assert not verify_signature(SECRET, "1700000000", signature, b'{"a": 2}', now_s=1_700_000_100).ok
    assert not verify_signature(SECRET, "1700000001", signature, body, now_s=1_700_000_100).ok
    stale = verify_signature(SECRET, "1700000000", signature, body, now_s=1_700_001_000)
    assert not stale.ok and "away from now" in stale.reason
    assert not verify_signature(SECRET, "soon", signature, body, now_s=0).ok


def test_each_named_endpoint_signs_with_its_own_secret() -> None:
    crm_secret, cs_secret = "crm-secret-0123456789abcd", "cs-secret-0123456789abcdef"
    with LocalHttpServer(keep_alive=True) as server:
        adapter = WebhookAdapter(
            {
                "crm": WebhookEndpoint(server.url("/hooks/crm"), crm_secret),
                "customer-success": WebhookEndpoint(server.url("/hooks/cs"), cs_secret),
            },
            clock=SimulatedClock(NOW),
            timeout_s=2,
        )
        assert adapter.endpoint_names == frozenset({"crm", "customer-success"})
        results = [adapter.send(make_hook("k1", "crm")), adapter.send(make_hook("k2", "customer-success"))]
        adapter.close()
    assert all(r.ok for r in results)
    crm, cs = server.requests
    assert (crm.path, cs.path) == ("/hooks/crm", "/hooks/cs")
    for request, secret, other in ((crm, crm_secret, cs_secret), (cs, cs_secret, crm_secret)):
        timestamp = request.headers["x-orchestrator-timestamp"]
        signature = request.headers["x-orchestrator-signature"]
        assert verify_signature(secret, timestamp, signature, request.body, now_s=NOW.timestamp()).ok
        assert not verify_signature(other, timestamp, signature, request.body, now_s=NOW.timestamp()).ok
    assert server.connections == 1  # both endpoints share the adapter's pooled connection
    assert "secret-0123" not in repr(WebhookEndpoint("https://crm.example/h", crm_secret))


def test_webhook_endpoints_are_checked_at_configuration() -> None:
    with pytest.raises(ValueError, match="16"):
        WebhookEndpoint("https://crm.example/h", "short")
    with pytest.raises(ValueError, match="http"):
        WebhookEndpoint("crm.example/h", SECRET)
    with pytest.raises(ValueError, match="bare URL needs the adapter's secret"):
        WebhookAdapter({"crm": "https://crm.example/h"})
    adapter = WebhookAdapter("https://crm.example/h", secret=SECRET)
    assert adapter.endpoint_names == frozenset()
    adapter.close()
