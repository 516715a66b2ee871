"""Where templates come from: files under one root, and nothing outside it.

Contract: ``check_name`` raises ``SecurityError`` for a name that could leave the root (empty, absolute, a
drive, ``..``, backslashes, NUL); ``RootedLoader`` serves only such checked names and refuses a file that
resolves outside the root (a symlink pointing out), also with ``SecurityError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path, PurePosixPath

from jinja2 import FileSystemLoader
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError


def check_name(name: str) -> None:
    """Refuse template names that could leave the template root (raises ``SecurityError``)."""
    if not isinstance(name, str) or not name:
        raise SecurityError("a template name must be a non-empty string")
    _check_str_name(name)


@lru_cache(maxsize=4096)  # a pure function of the name, asked at every render (only successes are cached)
def _check_str_name(name: str) -> None:
    path = PurePosixPath(name)
    drive = re.match(r"[A-Za-z]:", name)
    if "\\" in name or "\x00" in name or path.is_absolute() or ".." in path.parts or drive:
        raise SecurityError(
            f"template name {name!r} leaves the template root (use a relative path without '..')"
        )


class RootedLoader(FileSystemLoader):
    """A FileSystemLoader that also refuses absolute names and files that resolve outside the root."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = root.resolve()

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        check_name(template)
        source, filename, uptodate = super().get_source(environment, template)
        # A symlink inside the root may point anywhere; what counts is where the file really is.
        if not Path(filename).resolve().is_relative_to(self.root):
            raise SecurityError(f"template {template!r} resolves outside the template root")
        return source, filename, uptodate
