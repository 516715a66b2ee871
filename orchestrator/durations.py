"""Durations as written in journeys and expressions: ``90s``, ``15m``, ``4h``, ``3d``, ``2w``.

A duration always carries its unit; a bare number is refused because "wait: 3" is ambiguous.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
US_PER_SECOND = 1_000_000
#: The longest duration anywhere (100 years): far beyond any wait or window, and its microseconds fit a
#: signed 64-bit integer with room to add it to any instant.
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """Parse ``<number><unit>``; raise ``ValueError`` naming the accepted form otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 30s, 15m, 4h, 3d or 2w"
        )
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if not seconds <= MAX_SECONDS:
        shown = text.strip() if len(text.strip()) <= 24 else text.strip()[:20] + "..."
        raise ValueError(f"{shown!r} is longer than 100 years, the longest duration allowed")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit in ("d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
