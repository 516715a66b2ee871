"""The store is the only package that speaks SQL: no module of ``orchestrator`` outside
``orchestrator/store/`` holds SQL text or imports SQLAlchemy (or SQLModel). Everything else calls the
named functions ``orchestrator.store`` exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import orchestrator

PACKAGE = Path(orchestrator.__file__).parent
STORE = PACKAGE / "store"

#: Modules whose SQL other parts of the same restructure are still moving into the store (paths relative
#: to the package). Empty this set once those parts are merged: then no exception is left.
PENDING_SQL_MOVES: frozenset[str] = frozenset()

SQL_LIBRARIES = ("sqlalchemy", "sqlmodel")

# Upper-case keywords, as the project writes SQL, each with the word that makes it a statement rather
# than prose ("an UPDATE per step" is prose; "UPDATE messages SET" is a statement).
_SQL = re.compile(
    r"\bSELECT\b[\s\S]*?\bFROM\b"
    r"|^\s*SELECT\s"
    r"|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b"
    r"|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|ALTER|DROP)\s+(?:TEMP(?:ORARY)?\s+|UNIQUE\s+)?(?:TABLE|INDEX|VIEW)\b"
    r"|\bPRAGMA\s+\w+"
)


def looks_like_sql(value: str) -> bool:
    """Whether a string constant reads as an SQL statement."""
    return _SQL.search(value) is not None


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant of a module with its line; an f-string counts as one string, with its
    placeholders read as a plain word."""
    inside_fstrings: set[int] = set()
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [
                v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "x"
                for v in node.values
            ]
            inside_fstrings.update(id(v) for v in node.values)
            out.append((node.lineno, "".join(parts)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            out.append((node.lineno, node.value))
    return out


def sql_violations(source: str, name: str) -> list[str]:
    """What in ``source`` (a module called ``name``) speaks SQL: SQL text and imports of an SQL library."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] in SQL_LIBRARIES:
                found.append((node.lineno, f"{name}:{node.lineno}: imports {module}"))
    for line, value in _strings(tree):
        if looks_like_sql(value):
            found.append((line, f"{name}:{line}: SQL text {value.strip()[:60]!r}"))
    return [text for _, text in sorted(found)]


def modules_outside_store() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if STORE not in p.parents)


def test_no_sql_outside_the_store() -> None:
    found = []
    for path in modules_outside_store():
        name = path.relative_to(PACKAGE).as_posix()
        if name not in PENDING_SQL_MOVES:
            found += sql_violations(path.read_text(encoding="utf-8"), name)
    assert found == [], "SQL belongs in orchestrator/store/:\n" + "\n".join(found)


def test_pending_moves_name_modules_that_exist() -> None:
    # A stale entry would silently excuse a module that later takes its path.
    assert all((PACKAGE / name).is_file() for name in PENDING_SQL_MOVES)


def test_the_store_itself_is_scanned_as_speaking_sql() -> None:
    # The checker finds what the store holds, so an empty result elsewhere means something.
    found = sql_violations((STORE / "_status.py").read_text(encoding="utf-8"), "store/_status.py")
    assert any("imports sqlalchemy" in f for f in found)
    assert any("SQL text 'SELECT" in f for f in found)


def test_a_deliberate_violation_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "reports.py"
    module.write_text(
        "from sqlalchemy import text\n"
        "import sqlmodel.sql\n"
        "def read(conn, j):\n"
        "    table = 'messages'\n"
        "    conn.execute(text(f'SELECT id FROM {table} WHERE journey_id = :j'), {'j': j})\n"
        "    conn.execute(text('UPDATE messages SET status = :s'))\n"
        "    conn.execute(text('INSERT INTO ticks (now_us) VALUES (1)'))\n"
        "    conn.execute(text('DELETE FROM events'))\n"
        "    return ('SELECT i.id, i.customer_key ' + 'FROM journey_instances i')\n",
        encoding="utf-8",
    )
    found = sql_violations(module.read_text(encoding="utf-8"), "reports.py")
    assert found == [
        "reports.py:1: imports sqlalchemy",
        "reports.py:2: imports sqlmodel.sql",
        "reports.py:5: SQL text 'SELECT id FROM x WHERE journey_id = :j'",
        "reports.py:6: SQL text 'UPDATE messages SET status = :s'",
        "reports.py:7: SQL text 'INSERT INTO ticks (now_us) VALUES (1)'",
        "reports.py:8: SQL text 'DELETE FROM events'",
        "reports.py:9: SQL text 'SELECT i.id, i.customer_key'",
    ]


def test_prose_about_sql_is_not_taken_for_sql() -> None:
    assert not looks_like_sql("one set-based UPDATE per step mapping, selected from the due rows")
    assert not looks_like_sql("Select the customers from the frame")
    assert looks_like_sql("SELECT DISTINCT customer_key FROM messages")
