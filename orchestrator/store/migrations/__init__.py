"""The store's schema migrations (Alembic): ``env.py``, the revision template and ``versions/``.

Revisions are numbered ``0001``, ``0002``, ... in the order the schema changed; ``0001`` is the first
released schema and the newest is today's ``store/_tables.py``. ``store._schema`` applies them when a store
is opened. To write the next one, change ``tables.py``, then let Alembic draft it against a store at the
newest revision::

    alembic -c orchestrator/store/migrations/alembic.ini revision --autogenerate --rev-id 0011 -m "what"

Revisions up to ``0010`` also say whether a store made before the migrations existed has their changes
(``applied``), and their steps skip what such a store already has (``migrations.ops``); later revisions
need neither.
"""

from __future__ import annotations

from pathlib import Path

#: The folder Alembic reads (``script_location``).
FOLDER = Path(__file__).parent

__all__ = ["FOLDER"]
