"""A stopwatch for the parts of a tick: the seconds each part took, summed over the tick, in the order the
parts first ran (what ``TickReport.timings`` holds)."""

from __future__ import annotations

import time
from collections.abc import Mapping


class Stopwatch:
    """Seconds by part. ``lap(part)`` adds the time since the last lap (or since the stopwatch started or
    was restarted) to ``part``; ``add`` and ``add_all`` add seconds measured elsewhere."""

    def __init__(self, *parts: str) -> None:
        """Start now; ``parts`` are listed first, at 0 seconds until they run."""
        self.seconds: dict[str, float] = dict.fromkeys(parts, 0.0)
        self.started = self._since = time.perf_counter()

    def restart(self) -> None:
        """Count the next lap from now."""
        self._since = time.perf_counter()

    def lap(self, part: str) -> None:
        """Add the time since the last lap, start or restart to ``part``."""
        now = time.perf_counter()
        self.add(part, now - self._since)
        self._since = now

    def elapsed(self) -> float:
        """Seconds since the stopwatch started."""
        return time.perf_counter() - self.started

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def add_all(self, seconds: Mapping[str, float], prefix: str = "") -> None:
        """Add each part of ``seconds``, its name prefixed with ``prefix``."""
        for part, value in seconds.items():
            self.add(prefix + part, value)
