"""What an ingest did: rows kept, rows rejected and why."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from orchestrator.errors import InvalidInputError


class IngestError(InvalidInputError, ValueError):
    """A problem with the whole input (unknown format or kind, missing required column): nothing loads."""


class Reject(NamedTuple):
    """One rejected row: its 1-based line (row number for Parquet, position for in-memory records), the
    reason category counted in ``IngestReport.reasons``, and a detail for the examples."""

    line: int
    reason: str
    detail: str = ""

    def message(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class IngestReport:
    """Counts of one ingest. ``accepted`` rows were stored; ``rejected`` rows were malformed;
    ``duplicates`` were valid events not stored because their key was stored already (the same file
    ingested again, a rerun after a crash, an event id seen before): every row is counted in exactly one
    of the three. ``reasons`` counts rejects by category; ``examples`` holds the first rejects in file
    order as ``(line, message)``; ``seconds`` is the wall time of the whole ingest."""

    source: str
    kind: str
    accepted: int = 0
    rejected: int = 0
    # Customer rows skipped because the customer already has a newer record (their updated_at is older).
    stale: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    # Where every reject is written as a JSON line, so that nothing rejected is lost from view.
    sink: TextIO | None = field(default=None, repr=False, compare=False)

    def add_rejects(self, rejects: Iterable[Reject], max_examples: int) -> None:
        """Count ``rejects`` (given in line order), keep the first ``max_examples`` of the whole ingest,
        and write each one to ``sink`` when there is one."""
        for r in rejects:
            self.rejected += 1
            self.reasons[r.reason] = self.reasons.get(r.reason, 0) + 1
            if len(self.examples) < max_examples:
                self.examples.append((r.line, r.message()))
            if self.sink is not None:
                record = {"source": self.source, "line": r.line, "reason": r.reason, "detail": r.detail}
                self.sink.write(json.dumps(record) + "\n")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "stale": self.stale,
            "duplicates": self.duplicates,
            "reasons": dict(self.reasons),
            "examples": [[line, message] for line, message in self.examples],
            "seconds": round(self.seconds, 4),
        }
