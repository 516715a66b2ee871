"""SMS: E.164 numbers, GSM-7/UCS-2 segments, the rules, and the Twilio-style adapter against a local
HTTP server."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from channel_servers import LocalHttpServer, Reply, Request, closed_port

from orchestrator.channels import (
    ChannelLanes,
    ChannelRouter,
    HttpSmsAdapter,
    JsonSmsAdapter,
    JsonSmsSettings,
    OutgoingMessage,
    ProviderLimits,
    SmsRules,
    TwilioSmsSettings,
)
from orchestrator.channels._sms import (
    InvalidNumber,
    SmsRefused,
    count_segments,
    lookup,
    normalise_number,
    twilio_url,
)


def make_sms(
    key: str = "cart/v1/C1/7/sms", recipient: str = "+1 (415) 555-0123", body: str = "Hi Ann"
) -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=key,
        channel="sms",
        recipient=recipient,
        customer_id="C1",
        journey_id="cart",
        step="sms",
        body=body,
    )


# -- segments --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("Ça coute 5€ à Zürich? ¡Sì! @£$¥ ΔΩ", "GSM-7", 35, 1),  # 34 characters, € counts twice
        ("Ça coûte 5€ à Zürich? ¡Sì! @£$¥ ΔΩ", "UCS-2", 34, 1),  # û is not GSM-7
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        ("^{}\\[~]|€\f", "GSM-7", 20, 1),  # every extension character counts twice
        # An escape pair is never split: 152 + 2 does not fit in a 153-septet part.
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
        ("д" * 70, "UCS-2", 70, 1),
        ("д" * 71, "UCS-2", 71, 2),
        ("д" * 134, "UCS-2", 134, 2),
        ("д" * 135, "UCS-2", 135, 3),
        ("a" * 159 + "д", "UCS-2", 160, 3),  # one non-GSM character makes the whole text UCS-2
        ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two code units each
        ("😀" * 36, "UCS-2", 72, 2),
        ("д" * 66 + "😀" + "д" * 66, "UCS-2", 134, 3),  # a surrogate pair is never split either
    ],
)
def test_count_segments(text: str, encoding: str, units: int, segments: int) -> None:
    counted = count_segments(text)
    assert (counted.encoding, counted.units, counted.segments) == (encoding, units, segments)


# -- numbers ---------------------------------------------------------------------------------------


def test_normalise_number() -> None:
    assert normalise_number("+1 (415) 555-0123") == "+14155550123"
    assert normalise_number("415.555.0123", "US") == "+14155550123"
    assert normalise_number("07911 123456", "GB") == "+447911123456"
    assert normalise_number("+351 912 345 678") == "+351912345678"


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("415 555 0123", None, "cannot be read"),  # a national number needs a region
        ("call me", "US", "cannot be read"),
        ("+1 555", None, "too short"),
        ("+44 7911 123456 7890", None, "too long"),
        ("+999 1234 5678", None, "cannot be read"),
        ("+1 200 555 0123", None, "not a valid number"),  # area codes do not start with 2-0-0
    ],
)
def test_invalid_numbers_say_why(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidNumber, match=reason):
        normalise_number(raw, region)


def test_rules() -> None:
    rules = SmsRules(default_region="US", max_segments=2)
    prepared = rules.prepare(make_sms(recipient="(415) 555-0123", body="a" * 306))
    assert prepared.to == "+14155550123" and prepared.segments.segments == 2
    with pytest.raises(SmsRefused) as too_long:
        rules.prepare(make_sms(body="д" * 135))
    assert too_long.value.code == "too_long" and not too_long.value.suppress
    assert "needs 3 segments (135 UCS-2 code units), over the maximum of 2" in str(too_long.value)
    with pytest.raises(SmsRefused) as bad:
        rules.prepare(make_sms(recipient="+1 555 0001"))
    assert bad.value.code == "invalid_number" and bad.value.suppress
    with pytest.raises(SmsRefused, match="empty"):
        rules.prepare(make_sms(body=""))
    with pytest.raises(SmsRefused, match="not valid Unicode"):
        rules.prepare(make_sms(body="x\ud800"))
    with pytest.raises(ValueError, match="region"):
        SmsRules(default_region="XX")
    with pytest.raises(ValueError, match="max_segments"):
        SmsRules(max_segments=0)


# -- the provider adapter against a local server -----------------------------------------------------


def twilio(request: Request) -> Reply:
    """A small Twilio-like endpoint: checks auth, refuses one number and one text, accepts the rest."""
    if request.headers.get("authorization") != "Basic " + base64.b64encode(b"AC123:tok").decode():
        return Reply(401, b'{"code": 20003, "message": "Authenticate"}')
    form = parse_qs(request.body.decode())
    if form["To"] == ["+14155550100"]:
        return Reply(400, b'{"code": 21211, "message": "The \'To\' number is not a valid phone number."}')
    if form["Body"] == ["blocked"]:
        return Reply(400, b'{"code": 30007, "message": "Message filtered"}')
    if form["Body"] == ["throttle"]:
        return Reply(429, b'{"code": 20429, "message": "Too Many Requests"}', {"Retry-After": "7"})
    if form["Body"] == ["down"]:
        return Reply(503, b"<html>Service Unavailable</html>")
    if form["Body"] == ["slow"]:
        return Reply(delay_s=5)
    return Reply(201, json.dumps({"sid": f"SM{len(request.body)}", "status": "queued"}).encode())


@pytest.fixture
def provider() -> LocalHttpServer:
    with LocalHttpServer(twilio) as server:
        yield server  # type: ignore[misc]


def adapter_for(server: LocalHttpServer, **kwargs: object) -> HttpSmsAdapter:
    options: dict[str, object] = {
        "sender": "+14155550999",
        "account_sid": "AC123",
        "auth_token": "tok",
        "rules": SmsRules(default_region="US", max_segments=3),
        "timeout_s": 2.0,
    }
    options.update(kwargs)
    return HttpSmsAdapter(server.url("/2010-04-01/Accounts/AC123/Messages.json"), **options)  # type: ignore[arg-type]


def test_sms_is_posted_as_a_form_with_auth_and_key(provider: LocalHttpServer) -> None:
    result = adapter_for(provider).send(make_sms(body="Your cart misses you, Zoë 🛒"))
    assert result.ok and result.provider_id is not None and result.provider_id.startswith("SM")
    [request] = provider.requests
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["idempotency-key"] == "cart/v1/C1/7/sms"
    form = parse_qs(request.body.decode())
    assert form == {
        "To": ["+14155550123"],
        "From": ["+14155550999"],
        "Body": ["Your cart misses you, Zoë 🛒"],
    }


def test_sms_resend_of_a_delivered_key_calls_nobody(provider: LocalHttpServer) -> None:
    adapter = adapter_for(provider)
    assert adapter.send(make_sms()) == adapter.send(make_sms(body="changed"))
    assert len(provider.requests) == 1


def test_sms_refusals_happen_before_any_call(provider: LocalHttpServer) -> None:
    adapter = adapter_for(provider)
    invalid = adapter.send(make_sms(recipient="+1 555 0001"))
    too_long = adapter.send(make_sms(body="a" * 500))  # 4 segments, the maximum is 3
    assert invalid.outcome == "permanent" and invalid.suppress and invalid.code == "invalid_number"
    assert too_long.outcome == "permanent" and not too_long.suppress and too_long.code == "too_long"
    assert "4 segments" in (too_long.error or "")
    assert provider.requests == []


@pytest.mark.parametrize(
    ("recipient", "body", "outcome", "code", "suppress", "retry_after"),
    [
        ("+14155550100", "hi", "permanent", "http_400", True, None),  # provider: invalid number
        ("+14155550123", "blocked", "permanent", "http_400", False, None),  # provider: content refused
        ("+14155550123", "throttle", "transient", "http_429", False, 7.0),
        ("+14155550123", "down", "transient", "http_503", False, None),
    ],
)
def test_sms_provider_answers_are_classified(
    provider: LocalHttpServer,
    recipient: str,
    body: str,
    outcome: str,
    code: str,
    suppress: bool,
    retry_after: float | None,
) -> None:
    result = adapter_for(provider).send(make_sms(recipient=recipient, body=body))
    assert (result.outcome, result.code, result.suppress, result.retry_after_s) == (
        outcome,
        code,
        suppress,
        retry_after,
    )


def test_sms_wrong_credentials_are_permanent(provider: LocalHttpServer) -> None:
    result = adapter_for(provider, auth_token="nope").send(make_sms())
    assert result.outcome == "permanent" and result.code == "http_401" and not result.suppress


def test_sms_timeout_and_unreachable_provider_are_transient(provider: LocalHttpServer) -> None:
    slow = adapter_for(provider, timeout_s=0.3).send(make_sms(body="slow"))
    assert slow.outcome == "transient" and slow.code == "timeout"
    down = HttpSmsAdapter(
        f"http://127.0.0.1:{closed_port()}/", sender="x", account_sid="a", auth_token="b", timeout_s=1
    ).send(make_sms())
    assert down.outcome == "transient" and down.code == "connection"
    # A failed attempt is not remembered as sent: the retry reaches the provider again.
    adapter = adapter_for(provider, timeout_s=0.3)
    adapter.send(make_sms("k-slow", body="slow"))
    adapter.send(make_sms("k-slow", body="slow"))
    assert sum(1 for r in provider.requests if b"slow" in r.body) == 3


def test_sms_groups_go_through_send_many_with_the_same_results(provider: LocalHttpServer) -> None:
    adapter = adapter_for(provider, timeout_s=0.5)
    adapter.send(make_sms("k-done"))  # already delivered: answered from the memo, no call
    group = [
        make_sms("k-ok-1"),
        make_sms("k-bad-number", recipient="+1 555 0001"),  # refused before any call
        make_sms("k-refused", recipient="+14155550100"),
        make_sms("k-throttled", body="throttle"),
        make_sms("k-slow", body="slow"),  # past the deadline: the others are not held up by it
        make_sms("k-done"),
        make_sms("k-ok-2", body="Hello again"),
    ]
    with ChannelLanes(ChannelRouter([adapter])) as lanes:
        results = lanes.send_all(group)
    assert [(r.outcome, r.code) for r in results] == [
        ("delivered", None),
        ("permanent", "invalid_number"),
        ("permanent", "http_400"),
        ("transient", "http_429"),
        ("transient", "timeout"),
        ("delivered", None),
        ("delivered", None),
    ]
    assert results[1].suppress and results[2].suppress and results[3].retry_after_s == 7.0
    keys = sorted(r.headers["idempotency-key"] for r in provider.requests)
    assert keys == ["k-done", "k-ok-1", "k-ok-2", "k-refused", "k-slow", "k-throttled"]
    # A narrower lane than the adapter's pool still gets every answer, in order.
    narrow = adapter_for(provider)
    with ChannelLanes(ChannelRouter([narrow]), {"sms": 2}) as lanes:
        many = lanes.send_all([make_sms(f"k-n{i}", body=f"n{i}") for i in range(5)])
    assert [r.outcome for r in many] == ["delivered"] * 5 and all(r.provider_id for r in many)
    assert sum(1 for r in provider.requests if r.headers["idempotency-key"].startswith("k-n")) == 5
    adapter.close()
    narrow.close()


def test_sms_send_many_under_a_rate_limit_and_after_close(provider: LocalHttpServer, tmp_path: Path) -> None:
    adapter = adapter_for(provider, limits=ProviderLimits(rate_per_s=1000, concurrency=4), state_dir=tmp_path)
    results = adapter.send_many([make_sms(f"k-r{i}") for i in range(6)])
    assert [r.outcome for r in results] == ["delivered"] * 6
    adapter.close()
    closed = adapter.send_many([make_sms("k-after-1"), make_sms("k-after-2")])
    assert [(r.outcome, r.code) for r in closed] == [("transient", "connection")] * 2


# -- the generic JSON gateway ----------------------------------------------------------------------


def gateway(request: Request) -> Reply:
    """A JSON SMS gateway: ``{"data": {"id": ...}}`` on success, ``{"error": {"code": ...}}`` on failure."""
    if request.headers.get("authorization") not in (
        "Bearer gw-token",
        "Basic " + base64.b64encode(b"u:p").decode(),
    ):
        return Reply(401, b'{"error": {"code": "unauthorised"}}')
    document = json.loads(request.body)
    if document["msisdn"] == "+14155550100":
        return Reply(422, b'{"error": {"code": "INVALID_DESTINATION"}}')
    if document["text"] == "spam":
        return Reply(422, b'{"error": {"code": "CONTENT_REJECTED"}}')
    return Reply(201, json.dumps({"data": {"id": 12345}}).encode())


def json_settings(server: LocalHttpServer, **overrides: object) -> JsonSmsSettings:
    options: dict[str, object] = {
        "url": server.url("/v2/sms"), "sender": "SHOP", "bearer_token": "gw-token", "to_field": "msisdn",
        "body_field": "text", "key_field": "reference", "id_field": "data.id", "error_field": "error.code",
        "recipient_errors": frozenset({"INVALID_DESTINATION"}), "extra_fields": {"type": "text"},
        "timeout_s": 2.0,
    }  # fmt: skip
    options.update(overrides)
    return JsonSmsSettings(**options)  # type: ignore[arg-type]


def test_json_gateway_gets_the_configured_document_and_auth() -> None:
    with LocalHttpServer(gateway, keep_alive=True) as server:
        adapter = JsonSmsAdapter(json_settings(server), rules=SmsRules(default_region="US"), state_dir=None)
        first = adapter.send(make_sms("k1"))
        second = adapter.send(make_sms("k2", body="Zoë 🛒"))
        again = adapter.send(make_sms("k1"))
        basic = JsonSmsAdapter(
            json_settings(server, bearer_token=None, username="u", password="p"), state_dir=None
        ).send(make_sms("k3", recipient="+14155550123"))
        adapter.close()
    assert first.ok and first.provider_id == "12345" and second.ok and again == first and basic.ok
    assert len(server.requests) == 3  # the resend of k1 called nobody
    request = server.requests[0]
    assert (
        request.headers["authorization"] == "Bearer gw-token" and request.headers["idempotency-key"] == "k1"
    )
    assert json.loads(request.body) == {
        "type": "text", "msisdn": "+14155550123", "from": "SHOP", "text": "Hi Ann", "reference": "k1",
    }  # fmt: skip
    assert json.loads(server.requests[1].body)["text"] == "Zoë 🛒"
    assert server.requests[2].headers["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


@pytest.mark.parametrize(
    ("recipient", "body", "outcome", "code", "suppress"),
    [
        ("+14155550100", "hi", "permanent", "http_422", True),  # the gateway's recipient error
        ("+14155550123", "spam", "permanent", "http_422", False),
        ("+1 555 0001", "hi", "permanent", "invalid_number", True),  # refused before any call
    ],
)
def test_json_gateway_answers_are_classified(
    recipient: str, body: str, outcome: str, code: str, suppress: bool
) -> None:
    with LocalHttpServer(gateway) as server:
        adapter = JsonSmsAdapter(json_settings(server), state_dir=None)
        result = adapter.send(make_sms(recipient=recipient, body=body))
        adapter.close()
    assert (result.outcome, result.code, result.suppress) == (outcome, code, suppress)


def test_json_gateway_settings_are_checked_and_secrets_kept_out_of_repr() -> None:
    settings = JsonSmsSettings(url="https://sms.example/send", sender="SHOP", bearer_token="tok-secret-1")
    assert "tok-secret-1" not in repr(settings)
    assert "pw-secret" not in repr(
        JsonSmsSettings(url="https://x.example", sender="S", username="u", password="pw-secret")
    )
    for bad, message in [
        ({"bearer_token": "t", "username": "u", "password": "p"}, "not both"),
        ({"username": "u"}, "both username and password"),
        ({"to_field": "body"}, "distinct"),
        ({"extra_fields": {"to": "x"}}, "may not set to"),
        ({"url": "sms.example"}, "http"),
        ({"sender": ""}, "sender"),
    ]:
        with pytest.raises(ValueError, match=message):
            JsonSmsSettings(**{"url": "https://sms.example/send", "sender": "SHOP", **bad})  # type: ignore[arg-type]
    twilio = TwilioSmsSettings(
        url="https://api.twilio.com/x", sender="+1", account_sid="AC1", auth_token="tw-secret"
    )
    assert "tw-secret" not in repr(twilio)
    with pytest.raises(TypeError, match="not both"):
        HttpSmsAdapter(twilio, sender="+2")


def test_lookup_reads_dotted_paths() -> None:
    answer = {"messages": [{"message-id": "m-1", "status": 0}], "ok": True, "empty": ""}
    assert lookup(answer, "messages.0.message-id") == "m-1" and lookup(answer, "messages.0.status") == "0"
    assert lookup(answer, "messages.1.message-id") is None and lookup(answer, "ok") is None
    assert lookup(answer, "messages") is None and lookup(answer, "empty") is None


def test_twilio_url_is_the_accounts_messages_endpoint() -> None:
    assert twilio_url("AC123") == "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
    assert "/Accounts/a%2Fb/" in twilio_url("a/b")
