"""How long-running processes (the daemon) write their log: one line per record, as readable text or as
one JSON object, at a chosen level.

A record may carry structured fields (``extra={"fields": {...}}``): counts, timings, names. The JSON
format writes them beside the stable keys ``ts`` (UTC, ISO-8601 with milliseconds), ``level``, ``logger``
and ``msg``; the text format appends them to the message as ``key=value`` (values with spaces or quotes
quoted as JSON strings, lists joined by `` | ``, mappings as ``k:v,k:v``). A record may also carry
``text_fields``, a shorter set the text line shows instead (an idle tick says less in text than in JSON,
whose keys stay the same from line to line). A field never replaces a stable key.

Every line is one physical line: a message with line breaks is joined with `` | `` in text (JSON escapes
them); a traceback, which only ``--log-level debug`` records ever carry, follows a text line, and is the
``exc`` key of a JSON one.

Nothing here removes secrets or customer data: the lines are built from counts and names only, and URLs
go through ``mask_url`` first.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")

#: Keys every JSON line has, in this order; fields with these names are left out rather than replacing them.
STABLE_KEYS = ("ts", "level", "logger", "msg")

#: Libraries whose INFO lines would repeat per job or per request (APScheduler's "Running job", httpx's
#: "HTTP Request: POST <url>", a URL that may carry a token): kept to warnings and above.
CHATTY_LOGGERS = ("apscheduler", "httpx", "httpcore", "urllib3")

#: Query parameters of a URL whose values are masked (``password=...``, ``sslpassword``, ``token``...).
_SECRET_PARAMS = ("pass", "secret", "token", "credential", "apikey", "api_key")
MASK = "***"


def _timestamp(record: logging.LogRecord) -> str:
    instant = datetime.fromtimestamp(record.created, UTC)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord, attribute: str = "fields") -> Mapping[str, Any]:
    value = getattr(record, attribute, None)
    if value is None and attribute != "fields":
        value = getattr(record, "fields", None)
    return value if isinstance(value, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level`` (lower case), ``logger``, ``msg``, then the record's
    fields, then ``exc`` when the record carries a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            if key not in STABLE_KEYS:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """``TS LEVEL logger: message key=value ...`` on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = " | ".join(record.getMessage().splitlines())
        parts = [f"{_timestamp(record)} {record.levelname} {record.name}: {message}"]
        fields = _fields(record, "text_fields").items()
        parts.extend(f"{key}={text_value(value)}" for key, value in fields if key not in STABLE_KEYS)
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def text_value(value: object) -> str:
    """A field's value as the text format writes it after ``key=``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        text = ",".join(f"{k}:{v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = " | ".join(str(v) for v in value)
    elif value is None:
        return "-"
    else:
        text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return orjson.dumps(text).decode()
    return text


def setup_logging(log_format: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (default stderr) in ``log_format``
    (``text`` or ``json``), replacing the handlers the root logger had; ``CHATTY_LOGGERS`` keep to
    warnings. Raises ``ValueError`` for an unknown format or level."""
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; expected one of {', '.join(FORMATS)}")
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    number = logging.getLevelName(level.upper())
    root.setLevel(number)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))


def mask_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@host``) and any secret-looking query value
    (``password=``, ``sslpassword=``, ``token=``...) replaced by ``***``: fit for a log line."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    masked = url
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = userinfo.split(":", 1)[0] + ":" + MASK + "@" + host
            masked = masked.replace(parts.netloc, netloc, 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(_secret(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _secret(k) else v) for k, v in pairs], safe="*/")
            masked = masked.replace("?" + parts.query, "?" + query, 1)
    return masked


def _secret(name: str) -> bool:
    return any(s in name.lower() for s in _SECRET_PARAMS)
