"""Journeys that read predictions: ``p_alive(purchase)`` from the newest kept fit enters the customers the
formula picks; a journey whose prediction has no fit fails with the reason, and the others go on."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from orchestrator.signals import BetaGeo
from orchestrator.store import save_prediction_fit
from orchestrator.testing import World, at, customer, event

pytestmark = pytest.mark.backends("sqlite", "postgres")

NOW = at("2024-06-03T12:00:00Z")  # a Monday noon; day numbers below count back from it
DAY = timedelta(days=1)
PARAMETERS = {"r": 0.5, "alpha": 2.0, "a": 0.5, "b": 1.5, "p": 6.0, "q": 4.0, "gamma": 10.0}

AT_RISK = """\
id: at_risk
version: 1
holdout: 0
signal: p_alive(purchase) < 0.5
steps:
  - send: {channel: email, subject: "We miss you", template: mail.txt}
"""
VALUABLE = """\
id: valuable
version: 1
holdout: 0
signal: predicted_clv(purchase.amount, 365d) > 100
steps:
  - send: {channel: email, subject: "Thanks", template: mail.txt}
"""

# Purchase days (days before NOW's day) per customer, worked through the BG/NBD formula below.
HISTORIES = {
    "steady": [70, 56, 42, 28, 14, 7],  # buys often, lately too: likely alive
    "gone": [140, 133, 126, 119],  # bought weekly, then nothing for 17 weeks: likely gone
    "once": [30],  # no repeat purchase: alive for sure (1.0)
    "lapsed": [200, 190, 100],
}


def p_alive(days_ago: list[int]) -> float:
    """The formula by hand: x repeat days, t_x first to last, T first to today, in weeks."""
    first, last = max(days_ago), min(days_ago)
    x, t_x, age = len(days_ago) - 1, (first - last) / 7, first / 7
    return float(BetaGeo(0.5, 2.0, 0.5, 1.5).p_alive(np.array([x]), np.array([t_x]), np.array([age]))[0])


def set_up(world: World, journeys: dict[str, str]) -> None:
    world.write_files({**{f"journeys/{k}.yaml": v for k, v in journeys.items()}, "templates/mail.txt": "Hi"})
    world.clock.set(NOW)
    world.add_customers(*[customer(c) for c in [*HISTORIES, "browser"]])
    world.add_events(
        *[
            event(c, "purchase", NOW - d * DAY, amount=20.0 + d % 7)
            for c, days in HISTORIES.items()
            for d in days
        ],
        event("browser", "product_view", NOW - 3 * DAY),
    )


def test_p_alive_enters_whom_the_formula_picks(world: World) -> None:
    set_up(world, {"at_risk": AT_RISK})
    with world.store.begin() as conn:
        save_prediction_fit(conn, 0, "purchase", "amount", 19_000, PARAMETERS)
    report = world.tick()
    assert report.failed == {}
    expected = {c for c, days in HISTORIES.items() if p_alive(days) < 0.5}
    # gone 0.038; lapsed 0.509, just above; steady 0.872; once 1.0; the browser never bought (null).
    assert expected == {"gone"}
    assert {i.customer for i in world.instances()} == expected


def test_a_journey_without_its_fit_fails_and_the_others_go_on(world: World) -> None:
    set_up(world, {"at_risk": AT_RISK, "valuable": VALUABLE})
    with world.store.begin() as conn:  # BG/NBD only: p_alive has its fit, predicted_clv does not
        save_prediction_fit(conn, 0, "purchase", "amount", 19_000, {**PARAMETERS, "p": None})
    report = world.tick()
    assert set(report.failed) == {"valuable"}
    assert report.failed["valuable"].startswith(
        "MissingFit: predicted_clv(purchase.amount) reads a fit of the purchase models and the store has "
        "none with a Gamma-Gamma fit: run orchestrator predict fit --event purchase --value amount "
        "--save (at "
    )
    assert {i.customer for i in world.instances()} == {"gone"}
    # Once a full fit is kept, the journey runs at the next tick.
    with world.store.begin() as conn:
        save_prediction_fit(conn, 1, "purchase", "amount", 19_000, PARAMETERS)
    world.advance("1h")
    assert world.tick().failed == {}
    assert any(i.journey == "valuable" for i in world.instances())


PERSONAL = """\
id: personal
version: 1
holdout: 0
signal: p_alive(purchase) < 0.5
metrics:
  alive: p_alive(purchase)
  worth: predicted_clv(purchase.amount, 365d)
steps:
  - send: {channel: email, subject: "We miss you", template: personal.txt}
"""


def test_templates_read_predictions_through_the_journeys_metrics(world: World) -> None:
    set_up(world, {"personal": PERSONAL})
    world.write_files(
        {"templates/personal.txt": "alive {{ '%.4f' % metrics.alive }}, worth {{ '%.2f' % metrics.worth }}"}
    )
    with world.store.begin() as conn:
        save_prediction_fit(conn, 0, "purchase", "amount", 19_000, PARAMETERS)
    assert world.tick().failed == {}
    [message] = world.sent()
    assert message.customer_id == "gone"
    alive_text, worth_text = message.body.removeprefix("alive ").split(", worth ")
    assert float(alive_text) == pytest.approx(p_alive(HISTORIES["gone"]), abs=5e-5)
    assert float(worth_text) > 0.0
