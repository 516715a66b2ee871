"""Sandboxed message templates: rendering that nothing in a template can escape from.

Templates are written by people who are not engineers and are rendered once per customer, so a template
must not be able to reach Python internals, the file system or the network, must not mutate the data it
is given, and must not be able to exhaust memory or time. The layers, from outside in:

- the context is checked before rendering: plain data only (dict, list, tuple, str, int, float, bool, None,
  datetime, date), so no ORM object, callable or module ever reaches a template;
- Jinja's ``ImmutableSandboxedEnvironment`` refuses private and internal attributes (``__class__``,
  ``__globals__``...), unsafe ``str.format`` fields and calls to mutating methods (``list.append``,
  ``dict.update``), with ``StrictUndefined`` so a missing variable is an error, not an empty string;
- the loader only serves files under the template root (no ``..``, no absolute names, no symlinks out);
- resource bounds: every value a template builds is measured (roughly, the characters it would print) and
  refused above ``max_value_chars``, *before* the work is done for the operations that amplify (``*``,
  ``**``, ``%``, ``str.format``, ``center``/``ljust``/``replace``/``join``... and the filters that take a
  size); ``range()`` is capped at ``max_range``; loop iterations and calls (macros, methods) are counted
  against ``max_iterations``; the characters printed (including into ``{% set %}`` blocks and macros) are
  counted; the output is streamed and stopped at ``max_output_chars``; and a deadline of ``timeout_s`` is
  checked at every loop iteration, call, operator and printed value.

The bounds are enforced by rewriting the parsed template (each ``for`` iterable, printed value, ``~``
concatenation and literal passes through a guard), so they hold for included and imported templates too.
Every failure surfaces as one ``TemplateError`` carrying the template name and line.

The modules, each with its own contract: ``_renderer`` (the public ``TemplateRenderer``), ``_context`` (the
plain-data check of contexts), ``_sandbox`` (the environment and what templates may print and call),
``_rewrite`` (the guards inserted into each parsed template), ``_sizes`` (worst-case sizes of values and
operations), ``_limits`` (the per-render budget), ``_loader`` (files under the root only) and ``_errors``.
Only the names below are the package's API.
"""

from orchestrator.channels.templates._context import PreparedContext
from orchestrator.channels.templates._errors import TemplateError
from orchestrator.channels.templates._renderer import TemplateRenderer

__all__ = ["PreparedContext", "TemplateError", "TemplateRenderer"]
