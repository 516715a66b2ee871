"""The renderer's public API: render template files and inline templates, inspect them, report failures.

Contract: ``TemplateRenderer`` renders only in the bounded sandbox (``sandbox.SandboxEnvironment``), only
files under its root (``loader.RootedLoader``), only contexts of plain data (``context.checked_context``),
and streams the output up to ``max_output_chars``. Every failure, whatever raised it, reaches the caller
as one ``TemplateError`` naming the template (the included or imported file where it happened) and line.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, Template, nodes, select_autoescape
from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplatesNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import new_context

from orchestrator.channels.templates._context import PreparedContext, checked_context
from orchestrator.channels.templates._errors import LimitError, TemplateError
from orchestrator.channels.templates._limits import CURRENT_BUDGET, Budget, Limits
from orchestrator.channels.templates._loader import RootedLoader, check_name
from orchestrator.channels.templates._sandbox import SandboxEnvironment


def _is_literal(source: str) -> bool:
    """Whether ``source`` is plain text that renders as itself: no ``{`` (which every tag, expression and
    comment starts with) and no line break (a last one is dropped, and ``\r\n`` becomes ``\n``)."""
    return "{" not in source and "\n" not in source and "\r" not in source


class TemplateRenderer:
    """Renders templates under ``root`` (and inline ones) in the bounded sandbox; see the package docstring.

    Template names are relative paths under ``root`` (``emails/welcome.html``); names ending ``.html`` are
    autoescaped, others are not. Thread-safe: one renderer can serve every dispatcher thread.

    Bounds, per render: ``max_output_chars`` of output; ``max_value_chars`` for any value the template
    builds, for the context, and for all characters printed including into ``set`` blocks and macros;
    ``max_range`` items per ``range()``; ``max_iterations`` loop iterations plus calls; ``max_call_depth``
    nested calls (macros calling macros); ``timeout_s`` of wall time.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_output_chars: int = 100_000,
        max_value_chars: int = 1_000_000,
        max_range: int = 10_000,
        max_iterations: int = 100_000,
        max_call_depth: int = 64,
        timeout_s: float = 2.0,
    ) -> None:
        self.root = Path(root)
        self.limits = Limits(
            max_output_chars=max_output_chars,
            max_value_chars=max(max_value_chars, max_output_chars),
            max_range=max_range,
            max_iterations=max_iterations,
            timeout_s=timeout_s,
            max_call_depth=max_call_depth,
        )
        self._loader = RootedLoader(self.root)
        self._env = SandboxEnvironment(
            self.limits,
            loader=self._loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(
                enabled_extensions=("html",), disabled_extensions=(), default_for_string=False, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._flat_globals: weakref.WeakKeyDictionary[Template, dict[str, Any]] = weakref.WeakKeyDictionary()
        # Inline templates (subjects, titles) are rendered once per customer: compile each source once.
        self._compile_inline = lru_cache(maxsize=512)(self._compile_inline_uncached)

    # -- rendering ------------------------------------------------------------------------------------

    def prepare(self, context: Mapping[str, Any]) -> PreparedContext:
        """Check ``context`` once for several renders (the parts of one message); ``TemplateError`` if it is
        not plain data of bounded size. ``render`` and ``render_string`` accept the result in place of a
        mapping and skip the check."""
        return PreparedContext(
            checked_context(context, self.limits.max_value_chars, "<context>"), self.limits
        )

    def render(
        self,
        name: str,
        context: Mapping[str, Any] | PreparedContext,
        *,
        loaded: dict[str, Template] | None = None,
    ) -> str:
        """Render template file ``name`` with ``context`` (plain data only); ``TemplateError`` on failure.

        ``loaded``, when given, keeps the compiled templates of the caller's scope (one dispatch batch):
        a template found there is rendered without asking the loader whether its file changed (a stat
        per render); one not there is loaded, checked and put there."""
        data = self._context_data(context, name)
        template = loaded.get(name) if loaded is not None else None
        if template is None:
            self._checked_name(name)
            try:
                template = self._env.get_template(name)
            except Exception as exc:
                raise self._error(exc, name) from exc
            if loaded is not None:
                loaded[name] = template
        return self._run(template, data, name)

    def render_string(
        self, source: str, context: Mapping[str, Any] | PreparedContext, *, name: str = "<inline>"
    ) -> str:
        """Render an inline template (e.g. an email subject from YAML); ``name`` appears in errors and, when
        it ends ``.html``, turns autoescaping on. Inline templates may include files under the root."""
        data = self._context_data(context, name)
        if _is_literal(source) and len(source) <= self.limits.max_output_chars:
            return source  # one line without a tag renders as itself (most subjects): no run needed
        try:
            template = self._compile_inline(source, name)
        except Exception as exc:
            raise self._error(exc, name) from exc
        return self._run(template, data, name)

    def _compile_inline_uncached(self, source: str, name: str) -> Template:
        code = self._env.compile(source, name=name, filename=name)
        return self._env.template_class.from_code(self._env, code, self._env.make_globals(None), None)

    def _globals(self, template: Template) -> dict[str, Any]:
        """The template's globals as one plain dict, made once per template: Jinja keeps them as a
        ``ChainMap`` that every render would walk key by key (most of the cost of a small render)."""
        flat = self._flat_globals.get(template)
        if flat is None:
            flat = dict(template.globals)
            self._flat_globals[template] = flat
        return flat

    def _run(self, template: Template, data: dict[str, Any], name: str) -> str:
        budget = Budget(self.limits)
        token = CURRENT_BUDGET.set(budget)
        limit = self.limits.max_output_chars
        chunks: list[str] = []
        size = 0
        # What ``template.generate(data)`` does, with the globals already flat: the same context.
        context = new_context(
            self._env, template.name, template.blocks, data, False, self._globals(template), None
        )
        stream: Any = template.root_render_func(context)  # closed below so a stopped render cleans up
        try:
            # Stream and count: output past the limit stops the render instead of being built in memory.
            # (The deadline is checked by the guards inside the template, at every value and iteration.)
            append = chunks.append
            try:
                for chunk in stream:
                    size += len(chunk)
                    if size > limit:
                        raise LimitError(f"output is longer than the limit of {limit} characters")
                    append(chunk)
            except Exception:
                # As ``generate`` does: the traceback rewritten to show the template's own lines.
                self._env.handle_exception()
        except Exception as exc:
            raise self._error(exc, name) from exc
        finally:
            stream.close()
            CURRENT_BUDGET.reset(token)
        return "".join(chunks)

    # -- inspection -----------------------------------------------------------------------------------

    def variables(self, name: str) -> list[tuple[str, int]]:
        """The variables template file ``name`` needs from its context, with the line of their first use.

        Undeclared top-level names only: loop variables, ``{% set %}`` names, macro arguments and the
        sandbox's globals (``range``, ``dict``...) are left out. Sorted by line, then name. Variables used
        only by included templates are not listed (ask for those templates).
        """
        return self._variables(self.source(name), name)

    def string_variables(self, source: str) -> list[tuple[str, int]]:
        """``variables`` for an inline template."""
        return self._variables(source, "<inline>")

    def _variables(self, source: str, name: str) -> list[tuple[str, int]]:
        try:
            tree = self._env.parse(source, name=name)
            undeclared = find_undeclared_variables(tree) - set(self._env.globals)
        except Exception as exc:
            raise self._error(exc, name) from exc
        first: dict[str, int] = {}
        for node in tree.find_all(nodes.Name):
            if node.ctx == "load" and node.name in undeclared:
                first[node.name] = min(first.get(node.name, node.lineno), node.lineno)
        return sorted(first.items(), key=lambda item: (item[1], item[0]))

    @property
    def environment(self) -> SandboxEnvironment:
        """The sandbox templates render in: its globals, filters and tests are all a template can use
        (``language._templates_check`` reads them to refuse, before anything runs, what would fail here)."""
        return self._env

    def exists(self, name: str) -> bool:
        """Whether template file ``name`` exists under the root (False for names that would leave it)."""
        try:
            self._loader.get_source(self._env, name)
        except (TemplateNotFound, SecurityError):
            return False
        return True

    def source(self, name: str) -> str:
        """The source text of template file ``name``; ``TemplateError`` if missing or outside the root."""
        self._checked_name(name)
        try:
            return self._loader.get_source(self._env, name)[0]
        except Exception as exc:
            raise self._error(exc, name) from exc

    # -- checks and errors ----------------------------------------------------------------------------

    def _checked_name(self, name: str) -> None:
        try:
            check_name(name)
        except SecurityError as exc:
            raise TemplateError(str(exc), name, None, kind="security") from None

    def _context_data(self, context: Mapping[str, Any] | PreparedContext, template: str) -> dict[str, Any]:
        if isinstance(context, PreparedContext) and context.limits is self.limits:
            return context.data
        return checked_context(context, self.limits.max_value_chars, template)

    def _error(self, exc: BaseException, template: str) -> TemplateError:
        """Translate any exception raised while loading or rendering into a ``TemplateError``."""
        if isinstance(exc, TemplateError):
            return exc
        where, line = self._location(exc.__traceback__, template)
        if isinstance(exc, TemplateSyntaxError):
            name = exc.name or where
            return TemplateError(f"syntax error: {exc.message}", name, exc.lineno, kind="syntax")
        if isinstance(exc, TemplatesNotFound):
            names = ", ".join(repr(n) for n in exc.templates)
            return TemplateError(
                f"none of the templates {names} found under the template root", where, line, kind="not_found"
            )
        if isinstance(exc, TemplateNotFound):
            return TemplateError(
                f"template {exc.name!r} not found under the template root", where, line, kind="not_found"
            )
        if isinstance(exc, LimitError):
            return TemplateError(f"limit exceeded: {exc}", where, line, kind="limit")
        if isinstance(exc, SecurityError):
            return TemplateError(f"security violation: {exc}", where, line, kind="security")
        if isinstance(exc, UndefinedError):
            return TemplateError(f"undefined variable: {exc.message}", where, line, kind="undefined")
        if isinstance(exc, RecursionError):
            return TemplateError(
                "limit exceeded: recursion too deep (recursive include or macro?)", where, line, kind="limit"
            )
        if isinstance(exc, MemoryError):
            return TemplateError("limit exceeded: out of memory", where, line, kind="limit")
        return TemplateError(f"{type(exc).__name__}: {exc}", where, line, kind="runtime")

    def _location(self, tb: TracebackType | None, template: str) -> tuple[str, int | None]:
        """The innermost template frame of a traceback: (template name, line).

        Jinja rewrites tracebacks so template code appears as frames whose globals carry
        ``__jinja_exception__``, with the template file name and line.
        """
        found: tuple[str, int] | None = None
        while tb is not None:
            if "__jinja_exception__" in tb.tb_frame.f_globals:
                found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        if found is None:
            return template, None
        filename, line = found
        return self._template_name(filename, template), line

    def _template_name(self, filename: str, fallback: str) -> str:
        path = Path(filename)
        if path.is_absolute():
            try:
                return path.resolve().relative_to(self._loader.root).as_posix()
            except ValueError:
                return filename
        return fallback if filename in ("<template>", "<unknown>") else filename
