"""Measurement: lift statistics and lift reports (reads the store only).

The holdout assignment both the engine and the reports use is ``orchestrator.holdout``.

- ``stats`` gathers the statistics, pure functions over numpy arrays: ``numbers`` (intervals, input
  checks, delta method), ``rates`` (per-arm totals, rate lifts), ``means`` (Welch mean lifts), ``power``
  (MDE, sample-ratio check), ``sequential`` (always-valid intervals), ``cuped``, and ``analysis``
  (``analyze``, segments).
- ``report`` gathers a journey's report: ``entry_rows`` (per-entry columns from the store, their export),
  ``timeline`` (cumulative lift by day), ``journey`` (``journey_report``).
- ``text`` / ``html``: plain text and self-contained HTML pages for any analysis and journey report, both
  writing figures through ``formats``.
"""
