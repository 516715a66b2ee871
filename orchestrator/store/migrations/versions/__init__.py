"""The revisions of the store's schema, one module per revision (``0001_first_schema`` onwards).

Alembic loads them from this folder by path; nothing imports them by name.
"""

__all__: list[str] = []
