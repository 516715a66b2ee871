"""The SMTP adapter's connection pool against a real aiosmtpd server: sessions reused across messages and
threads, RSET after an aborted transaction, a dead pooled session replaced once (only before DATA), idle
sessions closed, PIPELINING when the server offers it, and the rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from channel_servers import LocalSmtpServer, SmtpRecorder

from orchestrator.channels import EmailSettings, OutgoingMessage, ProviderLimits, SmtpAdapter, SmtpSettings

SETTINGS = EmailSettings(sender="The Shop <news@shop.example>", message_id_domain="mail.shop.example")


def make_email(i: int, recipient: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=f"cart/v1/C{i}/7/remind",
        channel="email",
        recipient=recipient or f"c{i}@example.com",
        customer_id=f"C{i}",
        journey_id="cart",
        step="remind",
        subject="Your cart",
        body=f"Hello {i},\n.a line starting with a dot\nyour cart is waiting.\n",
        created_us=1_700_000_000_000_000,
    )


def adapter_for(server: LocalSmtpServer, **overrides: object) -> SmtpAdapter:
    options: dict[str, object] = {
        "security": "none",
        "timeout_s": 3.0,
        "limits": ProviderLimits(concurrency=2),
    }
    options.update(overrides)
    return SmtpAdapter(SmtpSettings("127.0.0.1", server.port, **options), SETTINGS, state_dir=None)  # type: ignore[arg-type]


@pytest.fixture
def smtp() -> Iterator[LocalSmtpServer]:
    with LocalSmtpServer(SmtpRecorder()) as server:
        yield server


def test_one_session_carries_many_messages(smtp: LocalSmtpServer) -> None:
    adapter = adapter_for(smtp)
    results = [adapter.send(make_email(i)) for i in range(10)]
    adapter.close()
    assert all(r.ok for r in results)
    assert smtp.handler.connections == 1 and adapter.pool.opened == 1
    assert [m.rcpt_tos for m in smtp.handler.messages] == [[f"c{i}@example.com"] for i in range(10)]
    # Dot-stuffing is undone by the server: the line that starts with a dot arrives as it was written.
    assert b"\r\n.a line starting with a dot\r\n" in smtp.handler.messages[0].content
    assert "RSET" not in smtp.handler.commands  # a finished transaction needs no reset


def test_threads_share_at_most_the_pool_size_of_sessions(smtp: LocalSmtpServer) -> None:
    adapter = adapter_for(smtp, limits=ProviderLimits(concurrency=3))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(adapter.send, [make_email(i) for i in range(60)]))
    adapter.close()
    assert all(r.ok for r in results)
    assert len(smtp.handler.messages) == 60 and len({m.content for m in smtp.handler.messages}) == 60
    assert 1 <= smtp.handler.connections <= 3 and adapter.pool.opened == smtp.handler.connections


def test_a_refused_recipient_is_reset_and_the_session_kept(smtp: LocalSmtpServer) -> None:
    smtp.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 user unknown"
    adapter = adapter_for(smtp)
    bounce = adapter.send(make_email(1, recipient="gone@example.com"))
    after = adapter.send(make_email(2))
    adapter.close()
    assert bounce.outcome == "permanent" and bounce.suppress and after.ok
    assert smtp.handler.commands[:4] == ["MAIL", "RCPT", "RSET", "MAIL"]
    assert smtp.handler.connections == 1 and [m.rcpt_tos for m in smtp.handler.messages] == [
        ["c2@example.com"]
    ]


def test_a_dead_pooled_session_is_replaced_once_before_data(smtp: LocalSmtpServer) -> None:
    smtp.handler.hang_up_after_message = True  # every session ends after its first message
    adapter = adapter_for(smtp, limits=ProviderLimits(concurrency=1))
    results = [adapter.send(make_email(i)) for i in range(3)]
    adapter.close()
    # Each later message found the pooled session gone before DATA and went out on a fresh one, once.
    assert all(r.ok for r in results)
    assert [m.rcpt_tos for m in smtp.handler.messages] == [[f"c{i}@example.com"] for i in range(3)]
    assert smtp.handler.connections == 3


def test_a_session_lost_after_data_is_never_retried(smtp: LocalSmtpServer) -> None:
    adapter = adapter_for(smtp, limits=ProviderLimits(concurrency=1))
    assert adapter.send(make_email(1)).ok  # the session is now pooled
    smtp.handler.hang_up_before_reply = True  # the server takes the next message and hangs up silently
    lost = adapter.send(make_email(2))
    adapter.close()
    # The server may have kept it: transient (retried later with the same Message-ID), not resent here.
    assert lost.outcome == "transient" and lost.code == "connection"
    assert [m.rcpt_tos for m in smtp.handler.messages] == [["c1@example.com"], ["c2@example.com"]]
    assert smtp.handler.connections == 1


def test_a_fresh_session_that_fails_is_not_retried() -> None:
    handler = SmtpRecorder()
    handler.hang_up_before_reply = True
    with LocalSmtpServer(handler) as server:
        adapter = adapter_for(server)
        result = adapter.send(make_email(1))
        adapter.close()
    assert result.outcome == "transient" and len(handler.messages) == 1 and handler.connections == 1


def test_idle_sessions_are_closed(smtp: LocalSmtpServer) -> None:
    adapter = adapter_for(smtp, idle_timeout_s=3600)
    assert adapter.send(make_email(1)).ok and adapter.pool.idle == 1
    assert adapter.pool.close_idle(older_than_s=3600) == 0  # still fresh
    assert adapter.pool.close_idle(older_than_s=0) == 1 and adapter.pool.idle == 0
    assert adapter.send(make_email(2)).ok  # a new session is opened
    adapter.close()
    assert adapter.pool.idle == 0 and smtp.handler.connections == 2


def test_a_session_is_renewed_after_its_message_limit(smtp: LocalSmtpServer) -> None:
    adapter = adapter_for(smtp, limits=ProviderLimits(concurrency=1), max_messages_per_connection=2)
    assert all(adapter.send(make_email(i)).ok for i in range(5))
    adapter.close()
    assert smtp.handler.connections == 3 and len(smtp.handler.messages) == 5


def test_pipelining_is_used_when_offered_and_refusals_still_classified() -> None:
    handler = SmtpRecorder(pipelining=True)
    handler.rcpt_replies["gone@example.com"] = "550 5.1.1 user unknown"
    handler.rcpt_replies["busy@example.com"] = "451 4.3.0 try later"
    with LocalSmtpServer(handler) as server:
        adapter = adapter_for(server)
        ok = adapter.send(make_email(1))
        bounce = adapter.send(make_email(2, recipient="gone@example.com"))
        busy = adapter.send(make_email(3, recipient="busy@example.com"))
        again = adapter.send(make_email(4))
        adapter.close()
    assert ok.ok and again.ok
    assert bounce.outcome == "permanent" and bounce.suppress and bounce.code == "smtp_550"
    assert busy.outcome == "transient" and busy.code == "smtp_451"
    assert [m.rcpt_tos for m in handler.messages] == [["c1@example.com"], ["c4@example.com"]]
    assert handler.connections == 1


def test_closed_adapter_refuses_to_send(smtp: LocalSmtpServer) -> None:
    adapter = adapter_for(smtp)
    adapter.close()
    result = adapter.send(make_email(1))
    assert result.outcome == "transient" and smtp.handler.messages == []


def test_the_rate_limit_is_shared_by_adapters_of_one_server_and_login(
    smtp: LocalSmtpServer, tmp_path: Path
) -> None:
    # One message per 1000 s and no waiting: the second message, from this adapter or another one sharing
    # the state folder (another process would too), is put off without reaching the server.
    limits = ProviderLimits(concurrency=2, rate_per_s=0.001, max_wait_s=0)
    settings = SmtpSettings("127.0.0.1", smtp.port, security="none", limits=limits)
    first, second = (
        SmtpAdapter(settings, SETTINGS, state_dir=tmp_path),
        SmtpAdapter(settings, SETTINGS, state_dir=tmp_path),
    )
    results = [first.send(make_email(1)), first.send(make_email(2)), second.send(make_email(3))]
    other_login = SmtpAdapter(
        SmtpSettings("127.0.0.1", smtp.port, security="none", username="u", password="p", limits=limits),
        SETTINGS,
        state_dir=tmp_path,
    )
    assert other_login._limiter is not None and first._limiter is not None
    assert other_login._limiter.path != first._limiter.path  # another account: its own limit
    for adapter in (first, second, other_login):
        adapter.close()
    assert results[0].ok and len(smtp.handler.messages) == 1
    for put_off in results[1:]:
        assert put_off.outcome == "transient" and put_off.code == "rate_limited"
        assert put_off.retry_after_s is not None and 990 < put_off.retry_after_s <= 1000
        assert "0.001 messages a second" in (put_off.error or "")


def test_settings_keep_the_password_out_of_repr_and_check_pool_options() -> None:
    settings = SmtpSettings("h", username="u", password="hunter2", limits=ProviderLimits(concurrency=3))
    assert "hunter2" not in repr(settings) and settings.limits.concurrency == 3
    assert SmtpAdapter(settings, SETTINGS, state_dir=None).concurrency == 3
    with pytest.raises(ValueError, match="idle_timeout_s"):
        SmtpSettings("h", idle_timeout_s=0)
    with pytest.raises(ValueError, match="max_messages_per_connection"):
        SmtpSettings("h", max_messages_per_connection=0)
    with pytest.raises(ValueError, match="concurrency"):
        ProviderLimits(concurrency=0)
