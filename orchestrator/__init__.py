"""Journey orchestration engine: behaviour signals, journeys as YAML, safe messaging and lift reports.

The package is laid out one stage per sub-package:

- ``language``: the journey language (YAML to typed journeys to runnable plans); no database, no runtime.
- ``signals``: the expression language over behaviour and its vectorised evaluator.
- ``store``: tables and set-based reads and writes (SQLite by default, any SQLAlchemy URL).
- ``ingest``: events and customer files into the store, rejecting bad rows with reasons.
- ``channels``: sandboxed templates and delivery adapters behind one protocol.
- ``holdout``: the deterministic holdout assignment (GrowthBook hash v2) the engine and reports share.
- ``measure``: statistics and lift reports (reads the store only).
- ``engine``: one tick (evaluate, enter, advance, convert, dispatch) and the daemon around it.
- ``http``: the HTTP face: a Segment-compatible event API, health, readiness and metrics.
- ``cli``: the command line face; the core never imports it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
