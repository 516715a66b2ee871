"""The spool layout of the file outbox: one JSON-lines file per group, the same messages as the per-message
layout byte for byte once unpacked, and the same idempotency (a key already spooled is answered ``sent``
with the same provider id and not written again)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.channels import (
    ChannelLanes,
    ChannelRouter,
    OutboxAdapter,
    OutgoingMessage,
    PushRules,
    SmsRules,
    build_router,
)
from orchestrator.channels._spool import (
    read_spool,
    spool_keys,
    spool_paths,
    spooled_keys,
    spooled_messages,
    unpack_spools,
)
from orchestrator.clock import SimulatedClock
from orchestrator.config import load_config
from orchestrator.testing import T0


def message(i: int, channel: str, *, first: bool = False, **extra: object) -> OutgoingMessage:
    recipient = {"email": f"c{i}@example.com", "sms": "+14155550100", "push": f"token-{i}", "webhook": "crm"}
    fields: dict[str, object] = {
        "idempotency_key": f"j/v1/c{i}/{i}/{channel}",
        "channel": channel,
        "recipient": recipient[channel],
        "customer_id": f"c{i}",
        "journey_id": "j",
        "step": "s",
        "body": f"Hi Näme{i} \u2014 your cart misses you.\n" if channel != "webhook" else f'{{"c": {i}}}',
        "created_us": 1_700_000_000_000_000 + i,
        "first_attempt": first,
    }
    if channel == "email":
        fields |= {"subject": f"Hello {i}", "html": f"<p>Hi <b>{i}</b> \u2603</p>"}
    if channel == "push":
        fields |= {"title": f"For you {i}", "link": f"app://offers/{i}", "data": {"k": str(i)}}
    fields |= extra
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "spool" not in p.relative_to(folder).parts
    }


MESSAGES = [message(i, channel) for i in range(12) for channel in ("email", "sms", "push", "webhook")]
# A key with characters a file name cannot hold, and a lone surrogate in a body: both still round-trip.
MESSAGES += [
    message(100, "sms", idempotency_key="a/b c:é\u2028x"),
    message(101, "sms", body="broken \udcff surrogate"),
]


@pytest.mark.parametrize("rules", [False, True])
def test_spool_then_unpack_gives_the_files_layout_byte_for_byte(tmp_path: Path, rules: bool) -> None:
    options: dict[str, object] = {"sms": SmsRules(), "push": PushRules()} if rules else {}
    files = OutboxAdapter(tmp_path / "files", durable=False, **options)  # type: ignore[arg-type]
    spool = OutboxAdapter(tmp_path / "spool", layout="spool", **options)  # type: ignore[arg-type]
    expected = [files.send(m) for m in MESSAGES]
    got = spool.send_many(MESSAGES[:20], 1) + spool.send_many(MESSAGES[20:], 1)
    sent = sum(r.status == "sent" for r in got)
    assert got == expected and sent >= len(MESSAGES) - (2 if rules else 0)
    assert files_under(tmp_path / "spool") == {}  # nothing but spools so far
    assert len(spool_paths(tmp_path / "spool")) == 8  # one spool per channel per group
    assert unpack_spools(tmp_path / "spool") == sent
    unpacked = files_under(tmp_path / "spool")
    assert unpacked == files_under(tmp_path / "files") and len(unpacked) == sent
    assert unpack_spools(tmp_path / "spool") == 0  # the files are there: nothing written twice


def test_spool_is_jsonl_with_a_header_of_its_keys_and_reads_back(tmp_path: Path) -> None:
    adapter = OutboxAdapter(tmp_path, layout="spool", durable=False)
    sms = [message(i, "sms", first=True) for i in range(5)]
    results = adapter.send_many(sms, 1)
    [path] = spool_paths(tmp_path)
    assert path.parent == tmp_path / "spool" / "sms" and path.suffix == ".jsonl"
    assert len(path.read_bytes().splitlines()) == 6  # the header, then one line per message
    assert spool_keys(path) == [m.idempotency_key for m in sms]
    read = list(read_spool(path))
    assert [(r.key, r.channel, r.file) for r in read] == [
        (m.idempotency_key, "sms", str(res.provider_id)) for m, res in zip(sms, results, strict=True)
    ]
    assert read[0].data.decode().endswith(sms[0].body)
    assert [r.key for r in spooled_messages(tmp_path, "sms")] == spool_keys(path)
    assert spooled_keys(tmp_path, "sms") == set(spool_keys(path)) and spooled_keys(tmp_path, "push") == set()
    assert not [p for p in (tmp_path / "spool" / "sms").iterdir() if p.name.startswith(".tmp-")]


def test_a_retried_key_is_answered_sent_with_the_same_id_and_not_spooled_again(tmp_path: Path) -> None:
    first = OutboxAdapter(tmp_path, layout="spool", durable=False)
    batch = [message(i, "sms", first=True) for i in range(4)]
    answers = first.send_many(batch, 1)
    # A new process (a fresh adapter) retries two of them after a crash, with one new message.
    again = OutboxAdapter(tmp_path, layout="spool", durable=False)
    retried = [message(1, "sms"), message(3, "sms"), message(9, "sms")]
    second = again.send_many(retried, 1)
    assert second[:2] == [answers[1], answers[3]] and second[2].status == "sent"
    keys = [m.key for m in spooled_messages(tmp_path)]
    assert sorted(keys) == sorted({m.idempotency_key for m in batch + retried}) and len(keys) == 5
    # The same adapter remembers what it spooled; a key written as a file (the other layout) counts too.
    assert again.send(message(9, "sms")) == second[2]
    OutboxAdapter(tmp_path, durable=False).send(message(20, "sms"))
    assert again.send(message(20, "sms")).status == "sent"
    assert len(list(spooled_messages(tmp_path))) == 5
    # A key repeated within one group is written once.
    assert len({r.provider_id for r in again.send_many([message(30, "sms"), message(30, "sms")], 1)}) == 1
    assert len(list(spooled_messages(tmp_path))) == 6


def test_first_attempt_skips_the_lookup(tmp_path: Path) -> None:
    # The promise is the dispatcher's: a key it marks first_attempt was never handed over before. Breaking
    # it shows the lookup was skipped (a second copy), which is what makes first attempts cheap.
    adapter = OutboxAdapter(tmp_path, layout="spool", durable=False)
    adapter.send_many([message(1, "sms", first=True)], 1)
    adapter.send_many([message(1, "sms", first=True)], 1)
    assert len(list(spooled_messages(tmp_path))) == 2
    adapter.send_many([message(1, "sms")], 1)
    assert len(list(spooled_messages(tmp_path))) == 2


def test_spool_refuses_what_the_files_layout_refuses_and_a_write_error_is_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = OutboxAdapter(tmp_path, layout="spool", sms=SmsRules())
    bad = message(1, "sms", recipient="not a number")
    good = message(2, "sms")
    results = adapter.send_many([bad, good], 1)
    assert [r.status for r in results] == ["failed", "sent"]
    assert [m.key for m in spooled_messages(tmp_path)] == [good.idempotency_key]

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    results = adapter.send_many([message(3, "sms"), message(4, "push")], 1)
    assert [r.status for r in results] == ["retry", "retry"] and "No space left" in str(results[0].error)
    assert len(spool_paths(tmp_path)) == 1
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_lanes_hand_a_group_to_the_spool_in_one_call(tmp_path: Path) -> None:
    adapter = OutboxAdapter(tmp_path, layout="spool", durable=False)
    with ChannelLanes(ChannelRouter([adapter])) as lanes:
        assert lanes.group("sms") == 1000 and lanes.group("email") == 1000
        results = lanes.send_all([message(i, "sms", first=True) for i in range(50)])
    assert {r.status for r in results} == {"sent"} and len(spool_paths(tmp_path)) == 1
    with ChannelLanes(ChannelRouter([OutboxAdapter(tmp_path / "f")])) as lanes:
        assert lanes.group("sms") == 0


def test_layout_in_the_config_and_unpack_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        "channels:\n  sms: {provider: outbox, layout: spool}\n  push: {provider: outbox}\n"
    )
    config = load_config(tmp_path / "orchestrator.yaml")
    router = build_router(config, outbox=tmp_path / "outbox", clock=SimulatedClock(T0), state_dir=None)
    sms, push = router.route("sms"), router.route("push")
    assert isinstance(sms, OutboxAdapter) and sms.layout == "spool"
    assert isinstance(push, OutboxAdapter) and push.layout == "files"
    router.send(message(1, "sms"))
    router.send(message(1, "push"))
    assert [p.parent.name for p in spool_paths(tmp_path / "outbox")] == ["sms"]
    assert [p.name for p in (tmp_path / "outbox").iterdir()] and not (tmp_path / "outbox" / "sms").exists()
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "outbox-unpack", "--outbox", str(tmp_path / "outbox")],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "wrote 1 message file" in run.stdout
    assert len(list((tmp_path / "outbox" / "sms").iterdir())) == 1

    (tmp_path / "orchestrator.yaml").write_text("channels:\n  sms: {provider: outbox, layout: heap}\n")
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode != 0 and "layout" in run.stderr and "orchestrator.yaml:2" in run.stderr


def test_a_retry_that_cannot_read_the_spools_is_retried_later_not_spooled_twice(tmp_path: Path) -> None:
    adapter = OutboxAdapter(tmp_path, layout="spool", durable=False)
    adapter.send_many([message(1, "sms", first=True)], 1)
    broken = tmp_path / "spool" / "sms" / "00000000000000000000-1-00000-000000000.jsonl"
    broken.write_bytes(b"not a spool\n")
    [result] = adapter.send_many([message(1, "sms")], 1)
    assert result.status == "retry" and "could not read the spools" in str(result.error)
    broken.unlink()
    assert adapter.send_many([message(1, "sms")], 1)[0].status == "sent"
    assert len(list(spooled_messages(tmp_path))) == 1
