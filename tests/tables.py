"""Reading the command line's tables as piped (plain aligned columns, one row a line) in tests."""

from __future__ import annotations


def table(out: str, header: str) -> list[dict[str, str]]:
    """The rows of the table whose header line starts with ``header`` (its first column's name), as
    column -> cell. Columns are split at runs of two or more spaces: cells in these tests hold none."""
    import re

    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(header + " "))
    names = re.split(r"\s{2,}", lines[start].strip())
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(dict(zip(names, re.split(r"\s{2,}", line.strip()), strict=True)))
    return rows


def row(out: str, header: str, first: str) -> dict[str, str]:
    """The row of that table whose first cell is ``first``."""
    return next(r for r in table(out, header) if r[header] == first)
