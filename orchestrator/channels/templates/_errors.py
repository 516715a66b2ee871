"""The one exception the renderer raises, and the internal one for a bound that was hit.

Contract: every failure to load, check or render a template reaches the caller as ``TemplateError`` with a
``kind``; ``LimitError`` never leaves the package (the renderer turns it into ``kind="limit"``).
"""

from __future__ import annotations

from jinja2.exceptions import SecurityError

from orchestrator.errors import InvalidInputError


class TemplateError(InvalidInputError):
    """Any failure to load, check or render a template.

    ``template`` is the template where it happened (an included file's name when it happened there, the
    ``name`` given to ``render_string`` for inline templates), ``line`` the 1-based line when known, and
    ``kind`` one of ``syntax``, ``undefined``, ``security``, ``limit``, ``not_found``, ``context``,
    ``runtime``.
    """

    def __init__(
        self, message: str, template: str | None = None, line: int | None = None, *, kind: str = "runtime"
    ) -> None:
        super().__init__(message, template, line)
        self.message = message
        self.template = template
        self.line = line
        self.kind = kind

    def __str__(self) -> str:
        where = self.template or "<template>"
        if self.line is not None:
            where = f"{where}, line {self.line}"
        return f"{where}: {self.message}"


class LimitError(SecurityError, InvalidInputError):
    """A resource bound was hit (size, range, iterations, time)."""
