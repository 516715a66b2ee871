"""``--now`` as the commands that read the store take it: an ISO-8601 instant with a time zone."""

from __future__ import annotations

from orchestrator.cli._errors import UsageError


def as_of_us(now: str | None) -> int | None:
    """``--now`` as microseconds since the epoch (None when not given: the command's own default, most
    often the last tick's instant); ``UsageError`` saying why for text that is not such an instant."""
    from orchestrator.clock import parse_instant, to_us

    if not now:
        return None
    try:
        return to_us(parse_instant(now))
    except ValueError as exc:
        raise UsageError(f"--now {now!r} is not an ISO-8601 instant with a time zone: {exc}") from None
