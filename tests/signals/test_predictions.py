"""``p_alive(e)``, ``expected_purchases(e, H)`` and ``predicted_clv(e.p, H)``: worked out by hand on one
customer, and equal to the prediction package's summary and formulas on random purchases."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from orchestrator.predict import summarize
from orchestrator.signals import BetaGeo, Fit, GammaGamma
from orchestrator.signals import _lang as lang
from orchestrator.signals._evaluate import AggregateCache, Evaluator
from orchestrator.signals._frame import CustomerFrame, EventFrame

DAY = 86_400 * 1_000_000
D0 = (date(2024, 3, 4) - date(1970, 1, 1)).days * DAY
NOW = D0 + 28 * DAY + 12 * 3600 * 1_000_000  # noon, four weeks after D0
FIT = Fit(BetaGeo(r=0.5, alpha=2.0, a=0.5, b=1.5), GammaGamma(p=6.0, q=4.0, gamma=10.0))
FITS = {("buy", "amount"): FIT}


def frame(rows: list[tuple[int, int, str, float]], n: int) -> EventFrame:
    return EventFrame(
        customer=np.array([r[0] for r in rows]),
        ts=np.array([r[1] for r in rows], np.int64),
        type=np.array([["buy", "view"].index(r[2]) for r in rows], np.int32),
        type_names=["buy", "view"],
        n_customers=n,
        properties={"amount": np.array([r[3] for r in rows])},
    )


def values(text: str, events: EventFrame, fits: dict[tuple[str, str], Fit] = FITS) -> np.ndarray:
    customers = CustomerFrame(events.n_customers, np.ones(events.n_customers, bool))
    return Evaluator(events, customers, NOW, cache=AggregateCache(), fits=fits).values(lang.parse(text))


EVENTS = frame(
    [
        # 1: days 0 (10), 7 (20, and 5 the same day: one transaction of 25), 21 (40): x = 2, t_x = 3 weeks,
        # T = 4 weeks (to today, day 28), m_x = (25 + 40) / 2 = 32.5. A purchase later today is not seen.
        (1, D0, "buy", 10.0),
        (1, D0 + 7 * DAY, "buy", 20.0),
        (1, D0 + 7 * DAY + 3600 * 1_000_000, "buy", 5.0),
        (1, D0 + 21 * DAY, "buy", 40.0),
        (1, NOW + 1, "buy", 99.0),
        # 2: one purchase: no repeat, alive for sure; 3: views only, never bought: null.
        (2, D0 + 14 * DAY, "buy", 8.0),
        (3, D0, "view", 1.0),
    ],
    4,
)


def test_by_hand() -> None:
    # p_alive = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    odds = 0.5 / (1.5 + 2 - 1) * ((2.0 + 4) / (2.0 + 3)) ** (0.5 + 2)  # 0.2 * 1.2 ** 2.5 = 0.315488
    alive = values("p_alive(buy)", EVENTS)
    assert alive[1] == pytest.approx(1 / (1 + odds)) and alive[1] == pytest.approx(0.760174, abs=1e-6)
    assert alive[2] == 1.0
    assert np.isnan(alive[0]) and np.isnan(alive[3])
    # Gamma-Gamma: p * (gamma + x * m_x) / (p * x + q - 1) = 6 * (10 + 2 * 32.5) / (6 * 2 + 4 - 1) = 30
    ahead = values("expected_purchases(buy, 364d)", EVENTS)
    value = values("predicted_clv(buy.amount, 364d)", EVENTS)
    assert value[1] == pytest.approx(ahead[1] * 30.0)
    assert value[2] == pytest.approx(ahead[2] * 6 * 10 / (4 - 1))  # no repeat: the population's mean, 20
    assert np.isnan(ahead[3]) and np.isnan(value[3])
    # The horizon may be written as horizon=: the same.
    assert values("expected_purchases(buy, horizon=364d)", EVENTS)[1] == ahead[1]


def test_without_a_fit_every_value_is_null() -> None:
    for text in ("p_alive(buy)", "expected_purchases(buy, 30d)", "predicted_clv(buy.amount, 30d)"):
        assert np.isnan(values(text, EVENTS, fits={})).all(), text
    # A fit of the purchases valued by another property serves p_alive, not predicted_clv of this one.
    other = {("buy", "total"): FIT}
    assert values("p_alive(buy)", EVENTS, fits=other)[1] == pytest.approx(0.760174, abs=1e-6)
    assert np.isnan(values("predicted_clv(buy.amount, 30d)", EVENTS, fits=other)).all()


def test_no_purchase_at_all() -> None:
    views = frame([(1, D0, "view", 1.0), (2, D0 + DAY, "view", 2.0)], 3)
    for text in ("p_alive(buy)", "predicted_clv(buy.amount, 30d)"):
        assert np.isnan(values(text, views)).all(), text


@pytest.mark.parametrize("seed", range(3))
def test_equal_to_the_prediction_package(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 300, 4000
    customer = rng.integers(1, n, m)
    ts = NOW - rng.integers(1, 200 * DAY, m)
    amount = np.where(rng.random(m) < 0.9, rng.uniform(1, 100, m).round(2), np.nan)
    kinds = rng.random(m) < 0.3
    events = EventFrame(
        customer=customer,
        ts=ts,
        type=np.where(kinds, 0, 1).astype(np.int32),
        type_names=["buy", "view"],
        n_customers=n,
        properties={"amount": amount},
    )
    today = NOW // DAY
    summary = summarize(customer[kinds], ts[kinds], amount[kinds], today)
    bg, gg = FIT.beta_geo, FIT.gamma_gamma
    assert gg is not None
    alive = values("p_alive(buy)", events)
    ahead = values("expected_purchases(buy, 90d)", events)
    clv = values("predicted_clv(buy.amount, 90d)", events)
    x, t_x, age = summary.frequency, summary.recency, summary.age
    np.testing.assert_allclose(alive[summary.customer], bg.p_alive(x, t_x, age), rtol=1e-12)
    expected = bg.expected_purchases(90 / 7, x, t_x, age)
    np.testing.assert_allclose(ahead[summary.customer], expected, rtol=1e-12)
    np.testing.assert_allclose(
        clv[summary.customer], expected * gg.expected_spend(x, summary.monetary), rtol=1e-12
    )
    never = np.setdiff1d(np.arange(n), summary.customer)
    assert np.isnan(alive[never]).all() and len(summary.customer) > 200
