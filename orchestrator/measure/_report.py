"""The lift report of a journey, read from the store alone: the public names of its parts in one place.

``from orchestrator.measure._report import ...`` keeps working; each part states its own contract:

- ``entries``: a journey's entries as numpy columns from the store (``load_entries``, ``EntryRows``) and
  their export (``export_entries``);
- ``timeline``: the cumulative lift by entry day (``cumulative_lift``);
- ``journey``: the report itself (``journey_report``, ``JourneyReport``);
- ``text`` / ``html``: the report as terminal text (``format_table``) or a page.
"""

from __future__ import annotations

from orchestrator.measure._entry_rows import GLOBAL_HOLDOUT, EntryRows, export_entries, load_entries
from orchestrator.measure._journey import (
    CONVERSION,
    DEFAULT_PRE_PERIOD,
    REVENUE,
    JourneyLift,
    JourneyReport,
    journey_report,
)
from orchestrator.measure._text import format_table
from orchestrator.measure._timeline import DAY_US, TimelinePoint, cumulative_lift

__all__ = [
    "CONVERSION",
    "DAY_US",
    "DEFAULT_PRE_PERIOD",
    "GLOBAL_HOLDOUT",
    "REVENUE",
    "EntryRows",
    "JourneyLift",
    "JourneyReport",
    "TimelinePoint",
    "cumulative_lift",
    "export_entries",
    "format_table",
    "journey_report",
    "load_entries",
]
