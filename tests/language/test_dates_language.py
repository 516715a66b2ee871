"""``wait_until`` a date attribute at a local time, and its anniversaries (``every: year`` / ``month``): how
they compile, the mistakes reported at their place, the loop rule, and the words that describe them."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator.language import (
    SpecError,
    compile_journey,
    load_journey_text,
    step_words,
    transition_words,
    until_words,
)
from orchestrator.language._journey_file import compile_loaded

DAY_US = 86400 * 1_000_000

BIRTHDAY = """\
id: bday
version: 1
segment: consent_email
holdout: 0
steps:
  - id: birthday
    wait_until: {attribute: birthday, %s}
  - id: greet
    send: {channel: email, subject: "Happy birthday", template: t.txt}
  - branch: {if: consent_email, then: birthday, else: exit}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_journey_text(textwrap.dedent(text), "j.yaml")
    return [str(p) for p in info.value.problems]


def birthday_step(extra: str) -> object:
    return compile_journey(load_journey_text(BIRTHDAY % extra, "j.yaml").journey).steps[0]


def test_an_anniversary_compiles_with_its_time_zone_and_time() -> None:
    step = birthday_step('every: year, time: "09:30", default_timezone: Asia/Tokyo, offset: -2d')
    assert (step.attribute, step.every, step.time_of_day_s) == ("birthday", "year", 9 * 3600 + 30 * 60)
    assert (step.default_timezone, step.offset_us) == ("Asia/Tokyo", -2 * DAY_US)
    assert step.in_cycle  # the loop back through the wait is legal, and each visit has its own ledger key


def test_every_without_time_is_local_midnight_and_a_plain_date_wait_has_no_time() -> None:
    assert (birthday_step("every: month").time_of_day_s, birthday_step("every: month").every) == (0, "month")
    plain = compile_journey(
        load_journey_text(
            BIRTHDAY.replace("  - branch: {if: consent_email, then: birthday, else: exit}\n", "")
            % "offset: -7d",
            "j.yaml",
        ).journey
    ).steps[0]
    assert (plain.time_of_day_s, plain.every, plain.default_timezone) == (None, None, "UTC")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'every: week, time: "09:00"',
            "j.yaml:7:46: steps[0].wait_until.every: 'week' is not a period for every: write every: year "
            "(each anniversary of the date) or every: month (the same day each month)",
        ),
        (
            'every: year, time: "9am"',
            "j.yaml:7:58: steps[0].wait_until.time: '9am' is not a time of day: write HH:MM on a 24-hour "
            'clock, e.g. "10:00"',
        ),
        (
            'every: year, time: "24:00"',
            "j.yaml:7:58: steps[0].wait_until.time: '24:00' is not a time of day",
        ),
        (
            "every: year, offset: 12h",
            "j.yaml:7:17: steps[0].wait_until: with time or every, offset is a whole number of days (e.g. "
            "-7d)",
        ),
        (
            'time: "09:00", offset: 36h',
            "j.yaml:7:17: steps[0].wait_until: with time or every, offset is a whole number of days",
        ),
        (
            "every: year, weekdays: [mon]",
            "j.yaml:7:17: steps[0].wait_until: weekdays belong to wait_until: {time: ...} without an "
            "attribute",
        ),
        (
            "every: year, default_timezone: Mars/Base",
            "j.yaml:7:70: steps[0].wait_until.default_timezone: 'Mars/Base' is not an IANA time zone",
        ),
    ],
)
def test_mistakes_name_their_place_and_say_what_to_write(extra: str, expected: str) -> None:
    problems = errors(BIRTHDAY % extra)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_needs_an_attribute() -> None:
    text = BIRTHDAY.replace("attribute: birthday, %s", 'time: "09:00", every: year')
    assert errors(text) == [
        "j.yaml:7:17: steps[0].wait_until: offset, missing and every belong to wait_until: {attribute: ...}"
    ]


def test_a_loop_through_an_anniversary_is_legal_but_not_through_a_date_at_a_time() -> None:
    assert birthday_step('every: year, time: "09:00"').in_cycle
    assert errors(BIRTHDAY % 'time: "09:00"') == [
        "j.yaml:6:5: these steps loop without a wait: birthday -> greet -> step-3 -> birthday (a wait for a "
        "date lets a past date through at once; to wait for the next one, write every: year or every: month "
        "at birthday)"
    ]


def test_a_wait_without_every_keeps_its_digest() -> None:
    # The journey of test_steps_language.BASE, whose digest was 488a7e893bba81f5 before every existed: a
    # version already stored must still match its file.
    from test_steps_language import BASE

    assert compile_journey(load_journey_text(BASE, "j.yaml").journey).digest == "488a7e893bba81f5"
    every = BASE.replace("missing: exit}", "missing: exit, every: year}")
    assert compile_journey(load_journey_text(every, "j.yaml").journey).digest != "488a7e893bba81f5"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("offset: -7d", "birthday"),  # a plain date wait reads as before
        ('time: "09:00"', "09:00 on birthday"),
        ('every: year, time: "09:00"', "09:00 on the anniversary of birthday"),
        ("every: year", "00:00 on the anniversary of birthday"),
        ('every: year, time: "09:00", offset: -3d', "09:00, 3 days before the anniversary of birthday"),
        ('every: month, time: "08:15", offset: 1d', "08:15, 1 day after the day of birthday each month"),
    ],
)
def test_until_words(extra: str, words: str) -> None:
    text = BIRTHDAY % extra
    if "every" not in extra:
        text = text.replace("  - branch: {if: consent_email, then: birthday, else: exit}\n", "")
    journey = load_journey_text(text, "j.yaml").journey
    until = journey.steps[0].wait_until
    assert until is not None and until_words(until) == words
    assert step_words(journey.steps[0]) == f"wait until {words}"
    assert transition_words(journey.steps[0], "next", journey) == f"at {words}"
    assert transition_words(journey.steps[0], "no", journey) == "no birthday"


def test_the_diagram_labels_the_anniversary_wait_in_words() -> None:
    plan = compile_loaded(load_journey_text(BIRTHDAY % 'every: year, time: "09:00"', "j.yaml"))
    mermaid = plan.diagram()
    # Mermaid cannot have a colon in a label: the diagram writes a ratio sign instead.
    assert "birthday (wait until 09\u223600 on the anniversary of birthday)" in mermaid
    assert "at 09\u223600 on the anniversary of birthday" in mermaid
