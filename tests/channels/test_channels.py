"""Delivery types, the router, the in-memory adapter and the file outbox."""

from __future__ import annotations

import email
import json
import os
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from orchestrator.channels import (
    Adapter,
    ChannelRouter,
    DeliveryResult,
    EmailSettings,
    HttpPushAdapter,
    HttpSmsAdapter,
    MemoryAdapter,
    NoAdapterError,
    OutboxAdapter,
    OutgoingMessage,
    PushRules,
    SmsRules,
    SmtpAdapter,
    SmtpSettings,
    UnsubscribeLinks,
    WebhookAdapter,
)
from orchestrator.channels._outbox import TEMP_PREFIX, file_stem, message_id_for
from orchestrator.channels._signing import Keyring


def make_message(
    key: str = "c1:welcome:s1:1", channel: str = "email", **overrides: object
) -> OutgoingMessage:
    fields: dict[str, object] = {
        "idempotency_key": key,
        "channel": channel,
        "recipient": {"email": "ann@example.com", "sms": "+15550001", "push": "device-token-1"}[channel],
        "customer_id": "c1",
        "journey_id": "welcome",
        "step": "s1",
        "body": "Hello Ann,\nwelcome aboard.",
        "created_us": 1_700_000_000_000_000,
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# -- types and router -------------------------------------------------------------------------------


def test_outgoing_message_round_trips_through_dict() -> None:
    message = make_message(subject="Hi", html="<p>Hi</p>")
    data = message.to_dict()
    assert data["subject"] == "Hi" and data["channel"] == "email"
    assert OutgoingMessage.from_dict(data) == message
    with pytest.raises(ValueError, match="unknown OutgoingMessage fields: colour"):
        OutgoingMessage.from_dict({**data, "colour": "red"})


def test_outgoing_message_refuses_unknown_channel_and_empty_key() -> None:
    fields = make_message().to_dict()
    with pytest.raises(ValueError, match="fax"):
        OutgoingMessage(**{**fields, "channel": "fax"})
    with pytest.raises(ValueError, match="idempotency_key"):
        make_message(key="")


def test_delivery_result_constructors() -> None:
    assert DeliveryResult.sent("p1") == DeliveryResult("sent", provider_id="p1")
    assert DeliveryResult.retry("timeout") == DeliveryResult("retry", error="timeout")
    assert DeliveryResult.failed("bad number") == DeliveryResult("failed", error="bad number")
    assert DeliveryResult.sent("p1").ok and not DeliveryResult.retry("x").ok
    with pytest.raises(ValueError, match="maybe"):
        DeliveryResult("maybe")  # type: ignore[arg-type]


def test_router_routes_by_channel_and_names_missing_channel(tmp_path: Path) -> None:
    sms = MemoryAdapter(channels=["sms"])
    outbox = OutboxAdapter(tmp_path)
    router = ChannelRouter()
    router.register(sms)
    router.register(outbox, channels=["email"])
    assert router.route("sms") is sms
    assert router.route("email") is outbox
    assert router.channels == frozenset({"sms", "email"})
    with pytest.raises(NoAdapterError, match=r"channel 'push'.*routed channels: email, sms"):
        router.route("push")
    result = router.send(make_message(channel="sms"))
    assert result.status == "sent" and len(sms.sent) == 1


def test_router_refuses_ambiguous_or_impossible_registration(tmp_path: Path) -> None:
    router = ChannelRouter([MemoryAdapter(channels=["email"])])
    with pytest.raises(ValueError, match="already routed"):
        router.register(OutboxAdapter(tmp_path), channels=["email"])
    with pytest.raises(ValueError, match="does not serve channel 'push'"):
        router.register(MemoryAdapter(channels=["sms"]), channels=["push"])


def test_adapters_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryAdapter(), Adapter)
    assert isinstance(OutboxAdapter(tmp_path), Adapter)


# -- memory adapter --------------------------------------------------------------------------------


def test_memory_adapter_honours_idempotency_keys() -> None:
    adapter = MemoryAdapter()
    first = adapter.send(make_message("k1"))
    again = adapter.send(make_message("k1", body="changed"))
    other = adapter.send(make_message("k2"))
    assert first == again == DeliveryResult.sent("mem-1")
    assert other == DeliveryResult.sent("mem-2")
    assert [m.idempotency_key for m in adapter.sent] == ["k1", "k2"]
    assert adapter.sent[0].body == "Hello Ann,\nwelcome aboard."  # the repeat did not replace the original
    assert len(adapter.attempts) == 3


def test_memory_adapter_failure_injection() -> None:
    adapter = MemoryAdapter()
    adapter.fail_next(2, status="retry", error="provider timeout")
    adapter.fail_next(1, status="failed", error="invalid recipient")
    results = [adapter.send(make_message("k1")) for _ in range(4)]
    assert results[:3] == [
        DeliveryResult.retry("provider timeout"),
        DeliveryResult.retry("provider timeout"),
        DeliveryResult.failed("invalid recipient"),
    ]
    assert results[3] == DeliveryResult.sent("mem-1")
    assert len(adapter.sent) == 1 and len(adapter.attempts) == 4
    with pytest.raises(ValueError):
        adapter.fail_next(1, status="sent")  # type: ignore[arg-type]


def test_memory_adapter_refuses_channels_it_does_not_serve() -> None:
    adapter = MemoryAdapter(channels=["sms"])
    result = adapter.send(make_message(channel="email"))
    assert result.status == "failed" and "email" in (result.error or "")
    assert adapter.sent == []


def test_memory_adapter_for_customer_and_clear() -> None:
    adapter = MemoryAdapter()
    adapter.send(make_message("k1"))
    adapter.send(make_message("k2", customer_id="c2"))
    assert [m.idempotency_key for m in adapter.for_customer("c2")] == ["k2"]
    adapter.fail_next(1)
    adapter.clear()
    assert adapter.sent == [] and adapter.attempts == []
    assert adapter.send(make_message("k1")) == DeliveryResult.sent("mem-1")  # no pending failure survived


# -- file outbox -----------------------------------------------------------------------------------


def test_outbox_email_is_a_parseable_multipart_message(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    message = make_message(subject="Welcome, Ann", html="<p>Hello <b>Ann</b></p>")
    result = outbox.send(message)
    path = tmp_path / "email" / result.provider_id  # type: ignore[operator]
    assert result.status == "sent" and path.suffix == ".eml" and path == outbox.path_for(message)

    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == "ann@example.com"
    assert parsed["Subject"] == "Welcome, Ann"
    assert parsed["Message-ID"] == message_id_for(message.idempotency_key)
    assert parsed["X-Idempotency-Key"] == message.idempotency_key
    assert parsed["Date"] is not None and parsed["From"] is not None
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().rstrip("\n") == "Hello Ann,\nwelcome aboard."
    assert parts[1].get_content().rstrip("\n") == "<p>Hello <b>Ann</b></p>"


def test_outbox_email_without_html_is_plain_text(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    result = outbox.send(make_message(subject="Plain"))
    parsed = email.message_from_bytes(
        (tmp_path / "email" / str(result.provider_id)).read_bytes(), policy=policy.default
    )
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().rstrip("\n") == "Hello Ann,\nwelcome aboard."


def test_outbox_message_id_is_stable_and_distinct_per_key() -> None:
    assert message_id_for("k1") == message_id_for("k1")
    assert message_id_for("k1") != message_id_for("k2")
    assert re.fullmatch(r"<[0-9a-f]{32}@[\w.-]+>", message_id_for("k1"))


def test_outbox_sms_file(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    message = make_message("sms-key", channel="sms", body="Your code is 1234")
    result = outbox.send(message)
    path = tmp_path / "sms" / str(result.provider_id)
    assert path.suffix == ".txt"
    assert path.read_text(encoding="utf-8") == "To: +15550001\nKey: sms-key\n\nYour code is 1234"


def test_outbox_push_file(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    message = make_message(
        "push-key", channel="push", title="Come back", body="Your cart misses you", link="app://cart"
    )
    result = outbox.send(message)
    path = tmp_path / "push" / str(result.provider_id)
    assert path.suffix == ".json"
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "idempotency_key": "push-key",
        "recipient": "device-token-1",
        "title": "Come back",
        "body": "Your cart misses you",
        "link": "app://cart",
    }


def test_outbox_resend_with_same_key_leaves_one_untouched_file(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    first = outbox.send(make_message("k1", subject="First"))
    before = all_files(tmp_path)
    content = before[0].read_bytes()
    second = outbox.send(make_message("k1", subject="Second"))
    assert first == second and first.status == "sent"
    assert all_files(tmp_path) == before and len(before) == 1
    assert before[0].read_bytes() == content  # the resend wrote nothing


def test_outbox_leaves_no_temp_files(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    for i, channel in enumerate(["email", "sms", "push"] * 3):
        assert outbox.send(make_message(f"k{i}", channel=channel, subject="s")).status == "sent"
    names = [p.name for p in all_files(tmp_path)]
    assert len(names) == 9
    assert not [n for n in names if n.startswith(TEMP_PREFIX) or n.endswith(".part")]


def test_outbox_failed_write_is_retry_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = OutboxAdapter(tmp_path)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    result = outbox.send(make_message("k1", channel="sms"))
    assert result.status == "retry" and "No space left" in (result.error or "")
    assert all_files(tmp_path) == []  # neither the temp file nor a half-written target remains
    monkeypatch.undo()
    assert outbox.send(make_message("k1", channel="sms")).status == "sent"
    assert len(all_files(tmp_path)) == 1


def test_outbox_sanitises_keys_and_keeps_them_distinct(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    keys = ["a/b", "a_b", "a b", "a\\b", "../../etc/passwd", ".hidden", "ключ", "x" * 300]
    ids = [outbox.send(make_message(key, channel="sms")).provider_id for key in keys]
    assert len(set(ids)) == len(keys)
    files = all_files(tmp_path)
    assert len(files) == len(keys)
    for path in files:
        assert path.parent == tmp_path / "sms"  # nothing escaped the channel folder
        assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name)
        assert not path.name.startswith(".")
        assert len(path.name) < 120
    assert file_stem("a/b").startswith("a_b-") and file_stem("a/b") != file_stem("a_b")


def test_outbox_refuses_header_injection_and_bad_addresses(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path)
    injected = outbox.send(make_message("k1", recipient="ann@example.com\r\nBcc: all@example.com"))
    assert injected.status == "failed" and "line break" in (injected.error or "")
    not_an_address = outbox.send(make_message("k2", recipient="ann"))
    assert not_an_address.status == "failed"
    bad_subject = outbox.send(make_message("k3", subject="Hi\nBcc: all@example.com"))
    assert bad_subject.status == "failed"
    assert all_files(tmp_path) == []


# -- the outbox with the real adapters' rules -------------------------------------------------------


def test_outbox_email_is_composed_like_the_smtp_one(tmp_path: Path) -> None:
    links = UnsubscribeLinks(keys=Keyring.single("outbox-secret-0123456789"), url="https://shop.example/u")
    settings = EmailSettings(sender="The Shop <news@shop.example>", unsubscribe=links)
    outbox = OutboxAdapter(tmp_path, email=settings)
    html = "<html><head><style>p { color: red }</style></head><body><p>Hi</p></body></html>"
    result = outbox.send(make_message(subject="Hi", html=html))
    parsed = email.message_from_bytes(
        (tmp_path / "email" / str(result.provider_id)).read_bytes(), policy=policy.default
    )
    assert isinstance(parsed, EmailMessage)
    assert parsed["From"] == "The Shop <news@shop.example>"
    assert str(parsed["List-Unsubscribe"]) == f"<{links.https_url('c1')}>"
    assert links.https_url("c1", "email").startswith("https://shop.example/u/")  # type: ignore[union-attr]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Customer-Id"] == "c1" and parsed["X-Journey"] == "welcome/s1"
    html_part = list(parsed.iter_parts())[1].get_content()
    assert '<p style="color: red;">Hi</p>' in html_part


def test_outbox_with_sms_rules_normalises_and_refuses(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path, sms=SmsRules(default_region="US", max_segments=1))
    ok = outbox.send(make_message("k1", channel="sms", recipient="(415) 555-0123", body="Hi €"))
    assert (tmp_path / "sms" / str(ok.provider_id)).read_text(encoding="utf-8") == (
        "To: +14155550123\nKey: k1\nSegments: 1 (GSM-7)\n\nHi €"
    )
    invalid = outbox.send(make_message("k2", channel="sms", recipient="+1 555 0001"))
    too_long = outbox.send(make_message("k3", channel="sms", recipient="+14155550123", body="д" * 71))
    assert invalid.status == "failed" and invalid.suppress and invalid.code == "invalid_number"
    assert too_long.status == "failed" and too_long.code == "too_long" and not too_long.suppress
    assert len(all_files(tmp_path)) == 1


def test_outbox_with_push_rules_writes_the_payload_and_refuses_big_ones(tmp_path: Path) -> None:
    outbox = OutboxAdapter(tmp_path, push=PushRules(), durable=False)
    message = make_message("p1", channel="push", title="T", body="B", link="app://x", data={"k": "v"})
    result = outbox.send(message)
    document = json.loads((tmp_path / "push" / str(result.provider_id)).read_text(encoding="utf-8"))
    assert document["data"] == {"k": "v"}
    assert document["payload"] == PushRules().payload(message)
    big = outbox.send(make_message("p2", channel="push", body="x" * 5000))
    assert big.status == "failed" and big.code == "payload_too_large"
    assert len(all_files(tmp_path)) == 1


def test_outbox_files_are_private(tmp_path: Path) -> None:
    result = OutboxAdapter(tmp_path).send(make_message(channel="sms"))
    assert (tmp_path / "sms" / str(result.provider_id)).stat().st_mode & 0o077 == 0  # customer data


def test_network_adapters_satisfy_the_protocol() -> None:
    settings = EmailSettings(sender="news@shop.example")
    adapters = [
        SmtpAdapter(SmtpSettings("127.0.0.1"), settings),
        HttpSmsAdapter("http://127.0.0.1:9/", sender="x", account_sid="a", auth_token="b"),
        HttpPushAdapter("http://127.0.0.1:9/"),
        WebhookAdapter("http://127.0.0.1:9/", secret="s" * 16),
    ]
    for adapter in adapters:
        assert isinstance(adapter, Adapter)
    router = ChannelRouter(adapters[:3])
    assert router.channels == frozenset({"email", "sms", "push"})
