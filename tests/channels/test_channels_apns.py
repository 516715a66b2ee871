"""APNs against a local HTTP/2 server (h2c, prior knowledge): the request Apple expects, the ES256 provider
token reused and renewed every 50 minutes (by a clock moved by hand), and Apple's answers classified."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from channel_servers import LocalH2Server, Reply, Request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.channels import ApnsAdapter, ApnsSettings, OutgoingMessage, PushRules
from orchestrator.clock import SimulatedClock

KEY = ec.generate_private_key(ec.SECP256R1())
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def push(key: str = "cart/v1/C1/7/push", token: str = "a1b2c3", **overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "idempotency_key": key, "channel": "push", "recipient": token, "customer_id": "C1",
        "journey_id": "cart", "step": "push", "body": "Your cart misses you", "title": "Still there?",
        "link": "shop://cart", "data": {"cart": "7"},
    }  # fmt: skip
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def apple(request: Request) -> Reply:
    """APNs' answers: it checks the provider token, then the device token in the path."""
    token = request.headers.get("authorization", "").removeprefix("bearer ")
    try:
        claims = jwt.decode(token, KEY.public_key(), algorithms=["ES256"])
    except jwt.InvalidTokenError:
        return Reply(403, b'{"reason": "InvalidProviderToken"}')
    if claims.get("iat") == EXPIRED_IAT:
        return Reply(403, b'{"reason": "ExpiredProviderToken"}')
    device = request.path.rsplit("/", 1)[-1]
    reasons = {
        "unregistered": (410, b'{"reason": "Unregistered", "timestamp": 1700000000000}'),
        "baddevice": (400, b'{"reason": "BadDeviceToken"}'),
        "othertopic": (400, b'{"reason": "DeviceTokenNotForTopic"}'),
        "toobig": (413, b'{"reason": "PayloadTooLarge"}'),
        "busy": (429, b'{"reason": "TooManyRequests"}'),
        "down": (503, b'{"reason": "ServiceUnavailable"}'),
    }
    if device in reasons:
        status, body = reasons[device]
        return Reply(status, body, {"apns-id": request.headers.get("apns-id", "")})
    return Reply(200, b"", {"apns-id": request.headers.get("apns-id", "")})


EXPIRED_IAT = -1  # set by the test that plays an expired provider token


@pytest.fixture
def server() -> Iterator[LocalH2Server]:
    with LocalH2Server(apple) as h2:
        yield h2


def settings_for(server: LocalH2Server, **overrides: object) -> ApnsSettings:
    options: dict[str, object] = {
        "team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.shop.app", "private_key": PEM,
        "url": server.url(), "timeout_s": 3.0,
    }  # fmt: skip
    options.update(overrides)
    return ApnsSettings(**options)  # type: ignore[arg-type]


def test_the_request_is_what_apple_expects_over_http2(server: LocalH2Server) -> None:
    adapter = ApnsAdapter(settings_for(server), state_dir=None, clock=SimulatedClock(START))
    result = adapter.send(push())
    again = ApnsAdapter(settings_for(server), state_dir=None, clock=SimulatedClock(START)).send(push())
    adapter.close()
    [first, second] = server.requests
    assert first.path == "/3/device/a1b2c3" and first.method == "POST"
    assert first.headers["apns-topic"] == "com.shop.app" and first.headers["apns-push-type"] == "alert"
    assert first.headers["apns-priority"] == "10"
    assert first.headers["apns-id"] == second.headers["apns-id"]  # the same on every resend of the key
    assert str(uuid.UUID(first.headers["apns-id"])) == first.headers["apns-id"]
    assert result.ok and result.provider_id == first.headers["apns-id"] and again.ok
    assert json.loads(first.body) == {
        "aps": {"alert": {"title": "Still there?", "body": "Your cart misses you"}},
        "cart": "7",
        "link": "shop://cart",
    }
    header = jwt.get_unverified_header(first.headers["authorization"].removeprefix("bearer "))
    claims = jwt.decode(
        first.headers["authorization"].removeprefix("bearer "), KEY.public_key(), algorithms=["ES256"]
    )
    assert header == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    assert claims == {"iss": "TEAM123456", "iat": int(START.timestamp())}


def test_messages_in_flight_share_one_connection_and_one_token(server: LocalH2Server) -> None:
    adapter = ApnsAdapter(settings_for(server), state_dir=None, clock=SimulatedClock(START))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(adapter.send, [push(f"k{i}", f"device{i}") for i in range(40)]))
    adapter.close()
    assert all(r.ok for r in results) and len(server.requests) == 40
    assert server.connections == 1 and adapter.tokens.issued == 1
    assert len({r.headers["authorization"] for r in server.requests}) == 1


def test_the_provider_token_is_renewed_every_50_minutes(server: LocalH2Server) -> None:
    clock = SimulatedClock(START)
    adapter = ApnsAdapter(settings_for(server), state_dir=None, clock=clock)
    assert adapter.send(push("k1")).ok
    clock.advance(timedelta(minutes=49))
    assert adapter.send(push("k2")).ok
    clock.advance(timedelta(minutes=2))  # 51 minutes: a new token, within Apple's hour
    assert adapter.send(push("k3")).ok
    adapter.close()
    issued = [
        jwt.decode(r.headers["authorization"][7:], KEY.public_key(), algorithms=["ES256"])["iat"]
        for r in server.requests
    ]
    start = int(START.timestamp())
    assert issued == [start, start, start + 51 * 60] and adapter.tokens.issued == 2


@pytest.mark.parametrize(
    ("device", "outcome", "code", "suppress"),
    [
        ("unregistered", "permanent", "http_410", True),
        ("baddevice", "permanent", "http_400", True),
        ("othertopic", "permanent", "http_400", True),
        ("toobig", "permanent", "http_413", False),
        ("busy", "transient", "http_429", False),
        ("down", "transient", "http_503", False),
    ],
)
def test_apple_answers_are_classified(
    server: LocalH2Server, device: str, outcome: str, code: str, suppress: bool
) -> None:
    adapter = ApnsAdapter(settings_for(server), state_dir=None, clock=SimulatedClock(START))
    result = adapter.send(push(token=device))
    adapter.close()
    assert (result.outcome, result.code, result.suppress) == (outcome, code, suppress)


def test_an_expired_token_is_renewed_and_the_message_sent_once_more(server: LocalH2Server) -> None:
    global EXPIRED_IAT
    clock = SimulatedClock(START)
    adapter = ApnsAdapter(settings_for(server), state_dir=None, clock=clock)
    EXPIRED_IAT = int(START.timestamp())  # Apple calls the first token expired (its clock runs ahead)
    try:
        assert adapter.send(push("k1")).code == "apns_auth"  # too young to renew: Apple would throttle
        clock.advance(timedelta(minutes=21))
        result = adapter.send(push("k2"))
    finally:
        EXPIRED_IAT = -1
    adapter.close()
    assert result.ok and adapter.tokens.issued == 2 and len(server.requests) == 3


def test_a_wrong_key_is_a_transient_configuration_failure(server: LocalH2Server) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    adapter = ApnsAdapter(settings_for(server, private_key=other.decode()), state_dir=None)
    result = adapter.send(push())
    adapter.close()
    assert result.outcome == "transient" and result.code == "apns_auth"
    assert "InvalidProviderToken" in (result.error or "")


def test_an_unreachable_apns_is_transient() -> None:
    from channel_servers import closed_port

    settings = ApnsSettings(
        team_id="T", key_id="K", topic="com.shop.app", private_key=PEM,
        url=f"http://127.0.0.1:{closed_port()}", timeout_s=1,
    )  # fmt: skip
    adapter = ApnsAdapter(settings, state_dir=None)
    result = adapter.send(push())
    adapter.close()
    assert result.outcome == "transient" and result.code == "connection"


def test_settings_are_checked_and_keep_the_key_out_of_repr(tmp_path: Path) -> None:
    settings = ApnsSettings(team_id="T", key_id="K", topic="com.shop.app", private_key=PEM)
    assert "PRIVATE KEY" not in repr(settings) and settings.base_url == "https://api.push.apple.com"
    assert ApnsSettings(
        team_id="T", key_id="K", topic="t", private_key=PEM, environment="sandbox"
    ).base_url == ("https://api.sandbox.push.apple.com")
    key_file = tmp_path / "AuthKey_K.p8"
    key_file.write_text(PEM)
    assert ApnsSettings(team_id="T", key_id="K", topic="t", private_key_file=key_file).signing_key() == PEM
    with pytest.raises(ValueError, match="one of the two"):
        ApnsSettings(team_id="T", key_id="K", topic="t")
    with pytest.raises(ValueError, match="20 minutes"):
        ApnsSettings(team_id="T", key_id="K", topic="t", private_key=PEM, token_ttl_s=3600)
    with pytest.raises(ValueError, match="not an EC private key") as refused:
        ApnsAdapter(ApnsSettings(team_id="T", key_id="K", topic="t", private_key="not a key"), state_dir=None)
    assert "not a key" not in str(refused.value)
    with pytest.raises(ValueError, match="apns platform"):
        ApnsAdapter(settings, rules=PushRules(platform="fcm"), state_dir=None)
