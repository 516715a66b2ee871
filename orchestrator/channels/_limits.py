"""How hard a provider may be pushed: calls in flight per channel, and messages per second per provider.

``ProviderLimits`` is the part of every provider's settings that says it: ``concurrency``, the provider
calls one process keeps in flight (dispatch runs that many at once for the channel), and ``rate_per_s``,
the messages per second the provider accepts, held across every thread and every process on this host
that sends through the same provider account.

The rate limit is the failure listmonk had (issue 2974): a rate applied per worker multiplies by the number
of workers, the provider throttles (Amazon SES answers "454 Throttling failure") and sends fail. Here there
is one limit per provider, taken right before each provider call, whatever the number of threads or
processes:

- ``RateLimiter`` is a GCRA (generic cell rate algorithm, the virtual-scheduling form of a token bucket):
  its whole state is one instant, the theoretical arrival time ``tat`` of the next message. A call takes
  the slot ``max(now, tat - (burst - 1) / rate)`` and moves ``tat`` one interval ``1 / rate`` past it, then
  sleeps until its slot. Slots never overlap, so in any window of ``w`` seconds at most ``w * rate +
  burst`` calls start: the limit is never overshot, and with callers waiting it is met exactly.
- The instant lives in a small file (``state_dir``, one file per provider key), read and written under an
  exclusive ``fcntl.flock``; threads of one process first take a lock of their own (flock does not
  exclude threads sharing a file). Processes of one host share ``time.monotonic`` (a system-wide clock),
  so their slots interleave. Without ``state_dir`` (``None``) the limit holds within the process only.
- A call whose slot is more than ``max_wait_s`` away does not wait: it answers a transient
  ``rate_limited`` result (with the wait as ``retry_after_s``) and takes no slot. The dispatcher retries it
  later like any transient failure.

Limits: the file and the clock are per host. Processes on other hosts sharing a provider each need their own
share of its rate (divide ``rate_per_s`` between hosts) until a shared store backs the limiter. The start
of each call is paced; the operating system may delay one thread by a few milliseconds past its slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.channels._base import DeliveryResult

try:  # POSIX only; elsewhere the limit holds within one process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

MAX_WAIT_LIMIT_S = 600.0
_STATE = struct.Struct("<d")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ProviderLimits:
    """``concurrency``: provider calls in flight at once from one process (for SMTP, the size of the
    connection pool). ``rate_per_s``: messages per second for the provider across threads and processes of
    this host (``None``: no limit); ``burst``: how many may start back to back after a quiet spell (1: evenly
    spaced); ``max_wait_s``: the longest a send waits for its turn before it is put off as ``rate_limited``.
    """

    concurrency: int = 8
    rate_per_s: float | None = None
    burst: int = 1
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate_per_s is not None and not self.rate_per_s > 0:
            raise ValueError("rate_per_s must be > 0 (or left out for no limit)")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        if not 0 <= self.max_wait_s <= MAX_WAIT_LIMIT_S:
            raise ValueError(f"max_wait_s must be between 0 and {MAX_WAIT_LIMIT_S:g}")

    def limiter(self, key: str, state_dir: Path | bool | None = True) -> RateLimiter | None:
        """The rate limiter of the provider named ``key`` (``None`` without ``rate_per_s``). ``state_dir``:
        a folder, ``True`` for ``default_state_dir()``, ``None`` (or ``False``) for this process only."""
        if self.rate_per_s is None:
            return None
        folder = default_state_dir() if state_dir is True else (state_dir or None)
        return RateLimiter(
            self.rate_per_s, key=key, burst=self.burst, max_wait_s=self.max_wait_s, state_dir=folder
        )


def default_state_dir() -> Path:
    """Where rate limiter files live by default: a folder of this user's under the temporary folder
    (``$TMPDIR``), so every process of the user on this host shares each provider's limit."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"orchestrator-{uid}" / "rate-limits"


def state_file_name(key: str) -> str:
    """The file of provider ``key``: readable, and distinct for distinct keys (a hash is appended)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", key)[:60].strip("._") or "provider"
    return f"{readable}-{digest}.gcra"


class RateLimiter:
    """Paces calls to one provider at ``rate_per_s`` (see the module docstring). Thread-safe.

    ``monotonic`` and ``sleep`` can be replaced (tests drive them by hand); across processes they must be
    the system's ``time.monotonic``, which all processes of a host share.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        key: str,
        burst: int = 1,
        max_wait_s: float = 30.0,
        state_dir: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_s > 0:
            raise ValueError("rate_per_s must be > 0")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if not 0 <= max_wait_s <= MAX_WAIT_LIMIT_S:
            raise ValueError(f"max_wait_s must be between 0 and {MAX_WAIT_LIMIT_S:g}")
        self.rate_per_s = rate_per_s
        self.key = key
        self.burst = burst
        self.max_wait_s = max_wait_s
        self.interval_s = 1.0 / rate_per_s
        self._tolerance_s = (burst - 1) * self.interval_s
        # An instant further ahead than any caller could have reserved is stale (the host restarted and
        # its monotonic clock with it): it is reset rather than obeyed.
        self._horizon_s = self._tolerance_s + self.interval_s + MAX_WAIT_LIMIT_S
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = 0.0
        self._fd: int | None = None
        self.path: Path | None = None
        if state_dir is not None and fcntl is not None:
            folder = Path(state_dir)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = folder / state_file_name(key)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)

    def reserve(self) -> float | None:
        """Take the next slot: the ``monotonic`` instant this call may start at (now or later), or ``None``
        when it is more than ``max_wait_s`` away (no slot is taken then)."""
        return self._take()[0]

    def _take(self) -> tuple[float | None, float]:
        """(the slot taken or ``None``, the wait until the first free slot)."""
        with self._lock:
            if self._fd is None:
                slot, self._tat, wait = self._next(self._tat)
                return slot, wait
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(fd, _STATE.size, 0)
                tat = _STATE.unpack(raw)[0] if len(raw) == _STATE.size else 0.0
                slot, new_tat, wait = self._next(tat)
                if new_tat != tat:
                    os.pwrite(fd, _STATE.pack(new_tat), 0)
                return slot, wait
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _next(self, tat: float) -> tuple[float | None, float, float]:
        """(slot or ``None``, the new state, the wait until the slot) for the state ``tat``."""
        now = self._monotonic()
        if tat - now > self._horizon_s:
            tat = now
        slot = max(now, tat - self._tolerance_s)
        if slot - now > self.max_wait_s:
            return None, tat, slot - now
        return slot, max(tat, slot) + self.interval_s, slot - now

    def acquire(self) -> bool:
        """Wait for this call's slot; ``False`` (at once, no slot taken) when it is beyond ``max_wait_s``."""
        return self._acquire() is None

    def _acquire(self) -> float | None:
        """Wait for this call's slot and answer ``None``; or, without a slot, the wait it would need."""
        slot, wait = self._take()
        if slot is None:
            return wait
        left = slot - self._monotonic()
        if left > 0:
            self._sleep(left)
        return None

    def wait_turn(self, provider: str) -> DeliveryResult | None:
        """``acquire`` as adapters use it: ``None`` once the call may go, else the transient result that
        puts the message off (``retry_after_s``: when the next slot is free)."""
        wait = self._acquire()
        if wait is None:
            return None
        return DeliveryResult.retry(
            f"{provider} is at its limit of {self.rate_per_s:g} messages a second; the next turn is "
            f"{wait:.3g} s away, over the {self.max_wait_s:g} s a send may wait",
            code="rate_limited",
            retry_after_s=wait,
        )

    def close(self) -> None:
        """Release the state file (the slots already taken stay taken)."""
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
                self.path = None

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "this process"
        return f"RateLimiter({self.key!r}, {self.rate_per_s:g}/s, burst {self.burst}, shared in {where})"
