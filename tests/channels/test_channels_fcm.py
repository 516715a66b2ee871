"""FCM HTTP v1 against local servers: a token server standing in for Google's OAuth2 endpoint (the service
account file's ``token_uri`` points at it, and it checks the signed JWT assertion) and an FCM server;
tokens are shared, refreshed before they expire (by a clock moved by hand) and after a 401."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from channel_servers import LocalHttpServer, closed_port
from fcm_servers import TokenServer, account, fcm_answer

from orchestrator.channels import FcmAdapter, FcmSettings, OutgoingMessage, PushRules
from orchestrator.clock import SimulatedClock


def push(key: str = "cart/v1/C1/7/push", token: str = "device-1", **overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "idempotency_key": key, "channel": "push", "recipient": token, "customer_id": "C1",
        "journey_id": "cart", "step": "push", "body": "Your cart misses you", "title": "Still there?",
        "link": "shop://cart",
    }  # fmt: skip
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
def servers() -> Iterator[tuple[TokenServer, LocalHttpServer]]:
    tokens = TokenServer()
    with tokens.server, LocalHttpServer(fcm_answer, keep_alive=True) as fcm:
        yield tokens, fcm


def adapter_for(
    tokens: TokenServer, fcm: LocalHttpServer, tmp_path: Path, clock: SimulatedClock | None = None
) -> FcmAdapter:
    file = tmp_path / "service-account.json"
    file.write_text(json.dumps(account(tokens.server.url("/token"))))
    settings = FcmSettings(
        service_account_file=file, url=fcm.url("/v1/projects/{project}/messages:send"), timeout_s=3
    )
    return FcmAdapter(settings, state_dir=None, clock=clock or SimulatedClock(datetime.now(UTC)))


def test_a_message_is_posted_with_a_service_account_token(
    servers: tuple[TokenServer, LocalHttpServer], tmp_path: Path
) -> None:
    tokens, fcm = servers
    adapter = adapter_for(tokens, fcm, tmp_path)
    results = [adapter.send(push(f"k{i}", f"device-{i}")) for i in range(3)]
    adapter.close()
    assert [r.provider_id for r in results] == [f"projects/shop-app/messages/device-{i}-0" for i in range(3)]
    assert tokens.issued == ["tok-1"]  # one token serves every message while it is fresh
    claims = tokens.claims[0]
    assert claims["iss"] == "push@shop-app.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    request = fcm.requests[0]
    assert request.path == "/v1/projects/shop-app/messages:send"
    assert request.headers["authorization"] == "Bearer tok-1" and request.headers["idempotency-key"] == "k0"
    body = json.loads(request.body)["message"]
    assert body["token"] == "device-0" and body["notification"] == {
        "title": "Still there?",
        "body": "Your cart misses you",
    }
    assert body["data"] == {"link": "shop://cart"}
    assert fcm.connections == 1  # the FCM connection is kept alive between messages


def test_the_token_is_refreshed_before_it_expires(
    servers: tuple[TokenServer, LocalHttpServer], tmp_path: Path
) -> None:
    tokens, fcm = servers
    clock = SimulatedClock(datetime.now(UTC))
    adapter = adapter_for(tokens, fcm, tmp_path, clock)
    assert adapter.send(push("k1")).ok
    clock.advance(timedelta(minutes=50))  # 10 minutes left: more than the 5-minute margin
    assert adapter.send(push("k2")).ok
    clock.advance(timedelta(minutes=6))  # 4 minutes left: replaced before it expires
    assert adapter.send(push("k3")).ok
    adapter.close()
    assert tokens.issued == ["tok-1", "tok-2"] and adapter.tokens.refreshes == 2
    assert [r.headers["authorization"] for r in fcm.requests] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_threads_share_one_token(servers: tuple[TokenServer, LocalHttpServer], tmp_path: Path) -> None:
    tokens, fcm = servers
    adapter = adapter_for(tokens, fcm, tmp_path)
    threads = [threading.Thread(target=adapter.send, args=(push(f"k{i}"),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    adapter.close()
    assert tokens.issued == ["tok-1"] and len(fcm.requests) == 8


def test_a_refused_token_is_replaced_and_the_message_sent_once_more(
    servers: tuple[TokenServer, LocalHttpServer], tmp_path: Path
) -> None:
    tokens, fcm = servers
    adapter = adapter_for(tokens, fcm, tmp_path)
    adapter.tokens._current = ("revoked", datetime.now(UTC) + timedelta(hours=1))  # FCM no longer takes it
    result = adapter.send(push("k1"))
    adapter.close()
    assert result.ok and tokens.issued == ["tok-1"]
    assert [r.headers["authorization"] for r in fcm.requests] == ["Bearer revoked", "Bearer tok-1"]


@pytest.mark.parametrize(
    ("token", "outcome", "code", "suppress"),
    [
        ("gone", "permanent", "http_404", True),
        ("malformed", "permanent", "http_400", True),
        ("busy", "transient", "http_429", False),
        ("forbidden", "transient", "fcm_auth", False),  # the account's permissions: fix the settings
    ],
)
def test_fcm_answers_are_classified(
    servers: tuple[TokenServer, LocalHttpServer],
    tmp_path: Path,
    token: str,
    outcome: str,
    code: str,
    suppress: bool,
) -> None:
    tokens, fcm = servers
    adapter = adapter_for(tokens, fcm, tmp_path)
    result = adapter.send(push(token=token))
    adapter.close()
    assert (result.outcome, result.code, result.suppress) == (outcome, code, suppress)
    if token == "busy":
        assert result.retry_after_s == 30


def test_no_token_server_is_a_transient_configuration_failure(tmp_path: Path) -> None:
    with LocalHttpServer(fcm_answer) as fcm:
        file = tmp_path / "sa.json"
        file.write_text(json.dumps(account(f"http://127.0.0.1:{closed_port()}/token")))
        settings = FcmSettings(
            service_account_file=file, url=fcm.url("/v1/projects/{project}/messages:send"), timeout_s=1
        )
        adapter = FcmAdapter(settings, state_dir=None)
        result = adapter.send(push())
        adapter.close()
    assert result.outcome == "transient" and result.code == "fcm_auth" and fcm.requests == []
    assert "BEGIN PRIVATE KEY" not in (result.error or "")


def test_settings_are_checked_and_keep_the_key_out_of_repr(tmp_path: Path) -> None:
    info = account("https://oauth2.example/token")
    settings = FcmSettings(service_account_info=info)
    assert "PRIVATE KEY" not in repr(settings) and settings.account()["project_id"] == "shop-app"
    with pytest.raises(ValueError, match="one of the two"):
        FcmSettings()
    with pytest.raises(ValueError, match="lacks private_key"):
        FcmSettings(service_account_info={**info, "private_key": ""}).account()
    with pytest.raises(ValueError, match="not a service_account"):
        FcmSettings(service_account_info={**info, "type": "authorized_user"}).account()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        FcmSettings(service_account_file=tmp_path / "bad.json").account()
    with pytest.raises(ValueError, match="cannot be used"):
        FcmAdapter(FcmSettings(service_account_info={**info, "private_key": "garbage"}), state_dir=None)
    with pytest.raises(ValueError, match="no FCM project"):
        FcmAdapter(FcmSettings(service_account_info={k: v for k, v in info.items() if k != "project_id"}))
    with pytest.raises(ValueError, match="fcm platform"):
        FcmAdapter(settings, rules=PushRules(platform="apns"), state_dir=None)
