"""orchestrator.testing as a user meets it: the customer and clock helpers, the World's readers and
assertions on a small journey, and the pytest plugin's backends marker and ``--backend`` (its public names
are pinned in test_public_api)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import phonenumbers
import pytest

from orchestrator.testing import T0, SimClock, World, at, customer, event, phone_for, postgres_bin

pytest_plugins = ["pytester"]

CART = """\
id: cart
version: 1
signal: since(add_to_cart) <= 1d and since(purchase) >= since(add_to_cart)
holdout: 50
steps:
  - wait: 2h
  - id: reminder
    send: {channel: sms, template: reminder.txt}
goal: {event: purchase, within: 3d, revenue: amount}
"""


def test_a_customer_is_opted_in_with_valid_addresses_and_none_leaves_an_attribute_out() -> None:
    ann = customer("ann", country="GB")
    assert ann == {
        "id": "ann",
        "email": "ann@example.com",
        "phone": phone_for("ann"),
        "consent_email": True,
        "consent_sms": True,
        "consent_push": True,
        "country": "GB",
    }
    for cid in ("ann", "bob", "c1", "x"):
        assert phonenumbers.is_valid_number(phonenumbers.parse(phone_for(cid)))
    assert "phone" not in customer("bob", phone=None)
    assert customer("cy", consent_sms=False)["consent_sms"] is False


def test_the_clock_starts_at_t0_and_advances_by_duration_text_or_timedelta() -> None:
    clock = SimClock()
    assert clock.now() == T0 == at("2024-05-01T09:00:00Z")
    assert clock.advance("2h") == T0 + timedelta(hours=2)
    assert clock.advance(timedelta(minutes=30)) == T0 + timedelta(hours=2, minutes=30)
    with pytest.raises(ValueError, match="not a duration"):
        clock.advance("2")


def held_out_and_treated(world: World) -> tuple[str, str]:
    arms = {i.customer: i.holdout for i in world.instances()}
    return next(c for c, h in arms.items() if h), next(c for c, h in arms.items() if not h)


@pytest.mark.backends("sqlite", "postgres")
def test_a_world_runs_a_journey_and_reads_back_what_happened(world: World) -> None:
    world.write_files({"journeys/cart.yaml": CART, "templates/reminder.txt": "Hi {{ customer.id }}"})
    ids = [f"c{i}" for i in range(8)]
    world.add_customers(*(customer(c) for c in ids))
    world.add_events(*(event(c, "add_to_cart", T0 - timedelta(minutes=5)) for c in ids))
    world.run_for("3h")
    assert world.clock.now() == T0 + timedelta(hours=4)  # the next instant due for a tick
    held, treated = held_out_and_treated(world)
    world.assert_held_out(held)
    world.assert_held_out(treated, "cart", held_out=False)
    world.assert_sent(treated, "reminder", count=1)
    world.assert_not_sent(held)
    (message,) = world.sent(treated)
    assert (message.channel, message.recipient, message.body) == ("sms", phone_for(treated), f"Hi {treated}")
    assert [m.customer_id for m in world.adapter.sent] == [m.customer_id for m in world.sent()]
    assert {m.status for m in world.messages(treated)} == {"sent"}
    assert world.sends()[treated] == [("reminder", T0 + timedelta(hours=2))]

    world.add_events(event(treated, "purchase", world.clock.now(), amount=12.5))
    world.advance("1h")
    world.tick()
    (conversion,) = world.conversions()
    assert (conversion.customer_id, conversion.holdout, conversion.revenue) == (treated, False, 12.5)
    assert [i.status for i in world.instances(treated)] == ["completed"]  # it had finished its steps
    assert world.suppressions() == []


def test_the_assertions_say_what_was_found(world: World) -> None:
    world.write_files({"journeys/cart.yaml": CART, "templates/reminder.txt": "Hi"})
    world.add_customers(customer("ann"))
    world.tick()
    with pytest.raises(AssertionError, match=r"expected at least one message sent to ann, found 0; nothing"):
        world.assert_sent("ann")
    with pytest.raises(AssertionError, match="ann never entered cart"):
        world.assert_held_out("ann", "cart")


def test_a_rejected_event_fails_the_test(world: World) -> None:
    with pytest.raises(AssertionError, match="1 event"):
        world.add_events({"customer_id": "ann", "event": "x"})


PLUGIN_TESTS = """
import pytest

pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_uses_the_store(backend, store_url):
    assert store_url.startswith("sqlite" if backend == "sqlite" else "postgresql")


@pytest.mark.backends("sqlite")
def test_on_sqlite_only(backend):
    assert backend == "sqlite"


def test_without_a_store():
    pass
"""

UNMARKED = """
def test_default(backend):
    print("backend", backend)
"""


def test_the_backends_marker_runs_a_test_once_per_backend_marking_postgres(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_marked=PLUGIN_TESTS)
    every = pytester.runpytest("--collect-only", "-q")
    assert every.ret == 0
    assert [line for line in every.outlines if "::" in line] == [
        "test_marked.py::test_uses_the_store[sqlite]",
        "test_marked.py::test_uses_the_store[postgres]",
        "test_marked.py::test_on_sqlite_only[sqlite]",
        "test_marked.py::test_without_a_store",  # asks for no backend: nothing to run twice
    ]
    postgres = pytester.runpytest("--collect-only", "-q", "-m", "postgres")
    assert [line for line in postgres.outlines if "::" in line] == [
        "test_marked.py::test_uses_the_store[postgres]"
    ]


def test_backend_option_sets_the_backend_of_unmarked_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unmarked=UNMARKED)
    assert "backend sqlite" in pytester.runpytest("-s").stdout.str()
    assert "backend postgres" in pytester.runpytest("-s", "--backend", "postgres").stdout.str()
    marked = pytester.runpytest("--collect-only", "-q", "-m", "postgres", "--backend", "postgres")
    assert [line for line in marked.outlines if "::" in line] == ["test_unmarked.py::test_default"]
    refused = pytester.runpytest("--backend", "oracle")
    assert refused.ret != 0 and "invalid choice" in refused.stderr.str()


def test_a_backends_marker_naming_an_unknown_backend_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="import pytest\n\n@pytest.mark.backends('oracle')\ndef test_x(backend):\n    pass\n"
    )
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret != 0 and "backends marker" in result.stdout.str() + result.stderr.str()


def readme_example() -> str:
    """The Python block of the README's "Testing your journeys" section."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Testing your journeys", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("backend_option", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_readme_example_passes(pytester: pytest.Pytester, backend_option: str) -> None:
    if backend_option == "postgres" and postgres_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL binaries not installed")
    pytester.makepyfile(test_cart=readme_example())
    result = pytester.runpytest("-p", "no:cacheprovider", "--backend", backend_option)
    result.assert_outcomes(passed=1)
