"""The daemon's log formats (``orchestrator.logs``): one line per record, JSON with stable keys or text
with ``key=value`` fields, and URLs with their secrets masked."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from orchestrator.logs import mask_url, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def emit(log_format: str, level: str = "info") -> list[str]:
    stream = io.StringIO()
    setup_logging(log_format, level, stream)
    log = logging.getLogger("orchestrator.test")
    log.debug("hidden at info")
    log.info("tick", extra={"fields": {"number": 3, "sent": 2, "at": "2024-05-01T09:00:00Z"}})
    log.info("short", extra={"fields": {"number": 4, "sent": 0}, "text_fields": {"number": 4}})
    log.error(
        "not reloaded: %d problem(s)",
        2,
        extra={"fields": {"problems": ['a.yaml:1:2: bad "x"', "b.yaml:3:4: worse"], "msg": "ignored"}},
    )
    log.warning("two\nlines", extra={"fields": {"versions": {"welcome": 2, "hello": 1}, "inbox": None}})
    logging.getLogger("apscheduler.executors.default").info("Running job")  # chatty: kept to warnings
    return stream.getvalue().splitlines()


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_have_stable_keys_then_the_fields() -> None:
    lines = [orjson.loads(line) for line in emit("json")]
    assert len(lines) == 4
    assert all(list(line)[:4] == ["ts", "level", "logger", "msg"] for line in lines)
    tick, short, error, warning = lines
    assert tick["level"] == "info" and tick["logger"] == "orchestrator.test" and tick["msg"] == "tick"
    assert tick["ts"].endswith("Z") and len(tick["ts"]) == len("2024-05-01T09:00:00.000Z")
    assert (tick["number"], tick["sent"], tick["at"]) == (3, 2, "2024-05-01T09:00:00Z")
    assert short["sent"] == 0  # the text-only short form does not shorten JSON
    assert error["msg"] == "not reloaded: 2 problem(s)"  # a field never replaces a stable key
    assert error["problems"] == ['a.yaml:1:2: bad "x"', "b.yaml:3:4: worse"]
    assert warning["msg"] == "two\nlines" and warning["versions"] == {"welcome": 2, "hello": 1}
    assert warning["inbox"] is None


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_are_one_line_each_with_key_value_fields() -> None:
    lines = emit("text")
    assert len(lines) == 4
    tick, short, error, warning = lines
    assert tick.endswith(" INFO orchestrator.test: tick number=3 sent=2 at=2024-05-01T09:00:00Z")
    assert short.endswith(" INFO orchestrator.test: short number=4")
    assert error.endswith(
        ' ERROR orchestrator.test: not reloaded: 2 problem(s) problems="a.yaml:1:2: bad \\"x\\" | '
        'b.yaml:3:4: worse"'
    )
    assert warning.endswith(" WARNING orchestrator.test: two | lines versions=welcome:2,hello:1 inbox=-")


@pytest.mark.usefixtures("restore_logging")
def test_the_level_and_the_format_are_checked() -> None:
    assert len(emit("text", "error")) == 1
    assert len(emit("json", "debug")) == 5
    with pytest.raises(ValueError, match="unknown log format 'xml'; expected one of text, json"):
        setup_logging("xml")
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("text", "loud")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///orchestrator.db", "sqlite:///orchestrator.db"),
        ("sqlite://", "sqlite://"),
        ("postgresql://app@db/journeys", "postgresql://app@db/journeys"),
        ("postgresql://app:s3cr%40t@db:5432/journeys", "postgresql://app:***@db:5432/journeys"),
        (
            "postgresql:///journeys?host=/run/pg&password=hunter2&sslmode=require",
            "postgresql:///journeys?host=/run/pg&password=***&sslmode=require",
        ),
        ("https://api.example/v1?api_key=abc&x=1", "https://api.example/v1?api_key=***&x=1"),
    ],
)
def test_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    assert mask_url(url) == shown
