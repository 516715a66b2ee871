"""``orchestrator init DIR``: a new workspace that works at once.

It holds the config (``orchestrator.yaml``, every channel writing to ``outbox/`` until a provider is set
up), one journey (``journeys/welcome.yaml``) with its templates, a contact policy and a small sample of
customers and sign-ups, timed just before ``now`` so the first tick has someone to welcome. Existing files
are never overwritten: a folder that already holds any of them is refused, naming them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import orjson

from orchestrator.errors import SetupError

#: The files of a new workspace, by their path in it, and where each comes from in the package.
_FILES: dict[str, str] = {
    "orchestrator.yaml": "orchestrator.yaml",
    "journeys/welcome.yaml": "journeys/welcome.yaml",
    "journeys/policy.yaml": "journeys/policy.yaml",
    "journeys/welcome.test.yaml": "journeys/welcome.test.yaml",
    "templates/welcome/hello.txt": "templates/welcome/hello.txt",
    "templates/welcome/hello.html": "templates/welcome/hello.html",
    "templates/welcome/nudge.txt": "templates/welcome/nudge.txt",
    "sample/customers.csv": "sample/customers.csv",
    ".gitignore": "gitignore",
}
_SAMPLE_EVENTS = "sample/events.jsonl"


class WorkspaceExists(SetupError, FileExistsError):
    """The folder already holds files ``init`` would write."""


def init_workspace(folder: Path, now: datetime) -> list[Path]:
    """Create the workspace in ``folder`` (made if missing) and return the files written."""
    targets = [folder / name for name in [*_FILES, _SAMPLE_EVENTS]]
    existing = [str(path.relative_to(folder)) for path in targets if path.exists()]
    if existing:
        raise WorkspaceExists(f"{folder} already holds {', '.join(existing)}; nothing was written")
    source = resources.files("orchestrator.config") / "scaffold"
    written = []
    for name, origin in _FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.joinpath(origin).read_bytes())
        written.append(path)
    path = folder / _SAMPLE_EVENTS
    path.write_bytes(_sample_events(now))
    written.append(path)
    for empty in ("outbox", "inbox/events", "inbox/customers"):
        (folder / empty).mkdir(parents=True, exist_ok=True)
    return written


def _sample_events(now: datetime) -> bytes:
    """Three sign-ups in the hour before ``now`` (and a purchase by one of them), with message ids."""
    lines = []
    for i, (customer, minutes) in enumerate([("W001", 50), ("W002", 35), ("W003", 20)], start=1):
        instant = now - timedelta(minutes=minutes)
        lines.append(
            {"customer_id": customer, "event": "signup", "ts": _iso(instant), "message_id": f"sample-{i}"}
        )
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _iso(instant: datetime) -> str:
    return instant.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
