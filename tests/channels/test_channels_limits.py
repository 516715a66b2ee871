"""Provider limits: the GCRA rate limiter (by a hand-driven clock, across threads, and across processes
sharing its state file), the lanes that bound provider calls in flight per channel, and closing a router."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from itertools import pairwise
from pathlib import Path

import pytest

from orchestrator.channels import (
    ChannelLanes,
    ChannelRouter,
    DeliveryResult,
    MemoryAdapter,
    OutgoingMessage,
    ProviderLimits,
    RateLimiter,
)
from orchestrator.channels._limits import default_state_dir, state_file_name

ROOT = Path(__file__).resolve().parents[2]


class HandClock:
    """A monotonic clock moved by hand; ``sleep`` moves it and records the wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def limiter(clock: HandClock, rate: float, **options: object) -> RateLimiter:
    return RateLimiter(rate, key="p", monotonic=clock.monotonic, sleep=clock.sleep, **options)  # type: ignore[arg-type]


def test_slots_are_evenly_spaced_at_the_rate() -> None:
    clock = HandClock()
    gcra = limiter(clock, 10)
    assert [gcra.reserve() for _ in range(4)] == pytest.approx([1000.0, 1000.1, 1000.2, 1000.3])
    clock.now = 1010.0  # a quiet spell earns no credit beyond the burst
    assert [gcra.reserve() for _ in range(2)] == pytest.approx([1010.0, 1010.1])


def test_burst_lets_a_few_start_together_then_paces_them() -> None:
    clock = HandClock()
    gcra = limiter(clock, 10, burst=3)
    assert [gcra.reserve() for _ in range(5)] == pytest.approx([1000.0, 1000.0, 1000.0, 1000.1, 1000.2])


def test_acquire_waits_for_its_slot_and_a_too_long_wait_is_refused_without_a_slot() -> None:
    clock = HandClock()
    gcra = limiter(clock, 1, max_wait_s=2)
    assert [gcra.reserve() for _ in range(3)] == [1000.0, 1001.0, 1002.0]
    refused = gcra.wait_turn("SMS provider x")
    assert refused is not None and refused.code == "rate_limited"
    assert (
        refused.retry_after_s == pytest.approx(3.0) and refused.outcome == "transient" and clock.waits == []
    )
    clock.now = 1001.5  # the refusal took no slot: 1003 is the next, 1.5 s away
    assert gcra.acquire()
    assert clock.waits == [pytest.approx(1.5)] and clock.now == pytest.approx(1003.0)
    assert gcra.wait_turn("p") is None and clock.now == pytest.approx(1004.0)


def test_separate_limiters_per_worker_overshoot_one_shared_limiter_does_not(tmp_path: Path) -> None:
    # listmonk issue 2974: a rate per worker multiplies by the workers. Two limiters with their own state
    # hand out the same instant twice; two sharing a state file (two processes) never do.
    clock = HandClock()
    apart = [limiter(clock, 10), limiter(clock, 10)]
    assert apart[0].reserve() == apart[1].reserve() == 1000.0
    shared = [limiter(clock, 10, state_dir=tmp_path), limiter(clock, 10, state_dir=tmp_path)]
    slots = [shared[i % 2].reserve() for i in range(6)]
    assert slots == pytest.approx([1000.0 + i / 10 for i in range(6)])
    for gcra in shared:
        gcra.close()


def test_a_stale_state_from_before_a_restart_is_reset(tmp_path: Path) -> None:
    clock = HandClock()
    gcra = limiter(clock, 10, state_dir=tmp_path)
    assert gcra.path is not None and gcra.path.name == state_file_name("p")
    gcra.path.write_bytes(struct.pack("<d", 1e9))  # far ahead of this host's monotonic clock
    assert gcra.reserve() == 1000.0
    assert (gcra.path.stat().st_mode & 0o777) == 0o600
    gcra.close()


def test_threads_never_share_a_slot(tmp_path: Path) -> None:
    gcra = RateLimiter(50_000, key="threads", state_dir=tmp_path, max_wait_s=60)
    slots: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [gcra.reserve() for _ in range(500)]
        with lock:
            slots.extend(s for s in mine if s is not None)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gcra.close()
    slots.sort()
    assert len(slots) == 2000
    assert min(b - a for a, b in pairwise(slots)) >= gcra.interval_s * (1 - 1e-6)


WORKER = """
import json, sys, threading
from pathlib import Path
from orchestrator.channels._limits import RateLimiter
gcra = RateLimiter(20_000, key="shared-provider", state_dir=Path(sys.argv[1]), max_wait_s=60)
slots, lock = [], threading.Lock()
def take():
    mine = [gcra.reserve() for _ in range(300)]
    with lock:
        slots.extend(mine)
threads = [threading.Thread(target=take) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(slots))
"""


def test_processes_sharing_a_provider_take_distinct_slots(tmp_path: Path) -> None:
    # Three processes of two threads each: every slot handed out is at least one interval from the others
    # (time.monotonic is one clock for the whole host).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    slots: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        slots.extend(json.loads(out))
    assert len(slots) == 1800 and None not in slots
    slots.sort()
    assert min(b - a for a, b in pairwise(slots)) >= (1 / 20_000) * (1 - 1e-6)


def test_provider_limits_build_a_limiter_only_with_a_rate(tmp_path: Path) -> None:
    assert ProviderLimits().limiter("k") is None
    local = ProviderLimits(rate_per_s=5).limiter("k", None)
    assert local is not None and local.path is None
    shared = ProviderLimits(rate_per_s=5, burst=2).limiter("k", tmp_path)
    assert shared is not None and shared.path is not None and shared.path.parent == tmp_path
    assert shared.burst == 2 and "5/s" in repr(shared)
    shared.close()
    assert default_state_dir().name == "rate-limits"
    for bad in ({"rate_per_s": 0}, {"burst": 0}, {"max_wait_s": -1}, {"max_wait_s": 10_000}):
        with pytest.raises(ValueError):
            ProviderLimits(**bad)  # type: ignore[arg-type]


# -- lanes ------------------------------------------------------------------------------------------


def message(i: int, channel: str = "sms") -> OutgoingMessage:
    recipient = {"sms": "+14155550123", "email": "a@example.com", "push": "t", "webhook": "crm"}[channel]
    return OutgoingMessage(
        idempotency_key=f"k{i}-{channel}", channel=channel, recipient=recipient, customer_id="c",
        journey_id="j", step="s", body="hi",
    )  # fmt: skip


class Gathering(MemoryAdapter):
    """Each call waits until ``width`` calls are in flight together (a barrier): it only passes when the
    lanes really run that many at once; ``most`` is the largest number seen in flight."""

    def __init__(self, channels: list[str], width: int, concurrency: int | None = None) -> None:
        super().__init__(channels)
        self.barrier = threading.Barrier(width)
        self.in_flight = 0
        self.most = 0
        self.count_lock = threading.Lock()
        if concurrency is not None:
            self.concurrency = concurrency

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        with self.count_lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            self.barrier.wait(timeout=10)
            return super().send(message)
        finally:
            with self.count_lock:
                self.in_flight -= 1


def test_lanes_run_each_channel_at_its_width_and_answer_in_order() -> None:
    sms = Gathering(["sms"], width=6, concurrency=6)  # the adapter's own concurrency
    push = Gathering(["push"], width=3)  # named in the mapping
    router = ChannelRouter([sms, push])
    messages = [message(i, "sms" if i % 3 else "push") for i in range(36)]
    with ChannelLanes(router, {"push": 3}, default=2) as lanes:
        assert (lanes.width("sms"), lanes.width("push"), lanes.width("email")) == (6, 3, 2)
        results = lanes.send_all(messages)
    assert [r.provider_id for r in results] == [
        (sms if m.channel == "sms" else push)._provider_ids[m.idempotency_key] for m in messages
    ]
    assert sms.most == 6 and push.most == 3  # every call passed its barrier: the lanes were that wide


def test_a_channel_one_call_wide_runs_in_the_caller_and_errors_become_transient() -> None:
    threads: list[str] = []

    class Recording(MemoryAdapter):
        def send(self, m: OutgoingMessage) -> DeliveryResult:
            threads.append(threading.current_thread().name)
            if m.body == "boom":
                raise RuntimeError("adapter bug")
            return super().send(m)

    router = ChannelRouter([Recording(["email"])])
    with ChannelLanes(router, {"email": 1}) as lanes:
        results = lanes.send_all([message(1, "email"), message(2, "email"), message(3, "sms")])
        broken = lanes.send_all([OutgoingMessage(**{**message(4, "email").to_dict(), "body": "boom"})])
    assert [r.ok for r in results] == [True, True, False]
    assert results[2].code == "adapter_error" and "no delivery adapter" in (results[2].error or "")
    assert broken[0].code == "adapter_error" and "adapter bug" in (broken[0].error or "")
    assert set(threads) == {threading.current_thread().name}
    with pytest.raises(ValueError, match="at least 1"):
        ChannelLanes(router, {"email": 0})


def test_router_close_closes_each_adapter_once_and_reports_failures() -> None:
    closed: list[str] = []

    class Closing(MemoryAdapter):
        def __init__(self, name: str, channels: list[str], fail: bool = False) -> None:
            super().__init__(channels)
            self.name, self.fail = name, fail

        def close(self) -> None:
            closed.append(self.name)
            if self.fail:
                raise OSError("socket already gone")

    both = Closing("both", ["email", "sms"])
    router = ChannelRouter([both, Closing("push", ["push"], fail=True), MemoryAdapter(["webhook"])])
    with pytest.raises(RuntimeError, match="socket already gone"):
        router.close()
    assert sorted(closed) == ["both", "push"]
    assert router.adapters[0] is both and len(router.adapters) == 3
