"""Values read from the environment: ``${NAME}`` references in the workspace config.

A secret (a password, token, signing key) is never written in ``orchestrator.yaml`` itself: the config
names an environment variable, ``${SMTP_PASSWORD}``, and the value is read when the config is loaded. A
literal value in a secret field is refused, so a config file can be committed and shared without leaking
anything. Other text fields may also use ``${NAME}`` or ``${NAME:-default}`` (for example the store URL
per environment).

A ``Secret`` keeps the variable's name and its value; its ``repr`` and ``str`` never show the value, and
``reveal()`` is the one way to read it (only the adapter that sends it calls it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(r"^\$\{(" + _NAME + r")\}$")
_ANY_REFERENCE = re.compile(r"\$\{(" + _NAME + r")(?::-([^}]*))?\}")
#: What a config's environment variables may hold: no control characters but tab.
_BAD_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Secret:
    """A value read from the environment variable ``name``; ``value`` is None when the variable is unset
    or empty. Never printed: ``repr``/``str`` show only the name and whether it is set."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str | None) -> None:
        self.name = name
        self._value = value or None

    @property
    def is_set(self) -> bool:
        return self._value is not None

    def reveal(self) -> str:
        """The secret itself; ``LookupError`` naming the variable when it is not set."""
        if self._value is None:
            raise LookupError(f"the environment variable {self.name} is not set")
        return self._value

    def shown(self) -> str:
        """How the effective config prints it: the reference and whether it is set, never the value."""
        return f"${{{self.name}}} ({'set' if self.is_set else 'not set'})"

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, {'set' if self.is_set else 'not set'})"

    __str__ = shown

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self.name, self._value) == (other.name, other._value)

    def __hash__(self) -> int:
        return hash(self.name)


def _environ(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context if isinstance(info.context, Mapping) else {}
    environ = context.get("environ")
    return environ if isinstance(environ, Mapping) else {}


def _secret(value: Any, info: ValidationInfo) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError("a secret is a reference to an environment variable, e.g. ${SMTP_PASSWORD}")
    match = _REFERENCE.fullmatch(value.strip())
    if match is None:
        # Never echo the value: it may be the secret itself.
        raise ValueError(
            "secrets are never written in the config: name an environment variable instead, "
            "e.g. ${SMTP_PASSWORD}"
        )
    name = match.group(1)
    found = _environ(info).get(name)
    if found is not None and _BAD_CHARS.search(found):
        raise ValueError(f"the environment variable {name} holds a control character")
    return Secret(name, found)


def expand(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with each ``${NAME}`` or ``${NAME:-default}`` replaced from ``environ``; ``ValueError``
    naming the first variable that is unset and has no default."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found:
            if _BAD_CHARS.search(found):
                raise ValueError(f"the environment variable {name} holds a control character")
            return found
        if default is not None:
            return default
        raise ValueError(
            f"the environment variable {name} is not set (write ${{{name}:-default}} for a default)"
        )

    return _ANY_REFERENCE.sub(one, text)


def _text(value: Any, info: ValidationInfo) -> Any:
    return expand(value, _environ(info)) if isinstance(value, str) and "${" in value else value


#: A secret field: only ``${NAME}`` is accepted.
SecretRef = Annotated[Secret, BeforeValidator(_secret)]
#: A text field that may use ``${NAME}`` or ``${NAME:-default}``.
EnvText = Annotated[str, BeforeValidator(_text)]


def references(text: str) -> list[str]:
    """The environment variables a text names."""
    return [match.group(1) for match in _ANY_REFERENCE.finditer(text)]
