"""What the engine takes from ingest, stated on the engine's side: ingest implements it, the faces wire it.

The engine never imports ``orchestrator.ingest``. Two things cross between them:

- ``CommittedEvents``: a chunk of events just committed by this process, handed to the signal state
  (``SignalState.accept``) so that the next tick does not read them back from the store;
- ``Ingestor``: input the daemon takes in before each tick (the inbox folder: ``orchestrator.ingest.Inbox``),
  handing each committed chunk of events on as it commits and answering what it took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from orchestrator.store import Store


class CommittedEvents(Protocol):
    """The events one chunk committed, with store ids ``first_id..last_id`` in row order. ``event_codes``
    index ``event_names``; ``properties`` is each event's JSON object text as stored."""

    @property
    def first_id(self) -> int: ...

    @property
    def last_id(self) -> int: ...

    @property
    def customer_keys(self) -> np.ndarray: ...

    @property
    def event_names(self) -> Sequence[str]: ...

    @property
    def event_codes(self) -> np.ndarray: ...

    @property
    def ts_us(self) -> np.ndarray: ...

    @property
    def properties(self) -> Sequence[str]: ...


#: Told of each chunk of events as it commits.
EventsHandler = Callable[[CommittedEvents], object]


class IngestCount(Protocol):
    """What one ingested file came to: its ``kind`` (``events`` or ``customers``), the rows ``accepted`` and
    ``rejected``."""

    @property
    def kind(self) -> str: ...

    @property
    def accepted(self) -> int: ...

    @property
    def rejected(self) -> int: ...


class Ingestor(Protocol):
    """Input the daemon takes in before each tick."""

    @property
    def source(self) -> str:
        """Where the input is read from, as the daemon's start line shows it."""
        ...

    def drain(self, store: Store, now_us: int, on_events: EventsHandler) -> Sequence[IngestCount]:
        """Take in everything waiting into ``store`` at ``now_us``, telling ``on_events`` of each chunk
        of events as it commits; one count per file taken. Database errors propagate."""
        ...
