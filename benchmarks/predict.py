#!/usr/bin/env python3
"""How long the churn and lifetime-value models take to fit and to score, at scale.

    python benchmarks/predict.py [--sizes 100000 1000000] [--seed 5]

Customers are drawn from the models' own story with the CDNOW parameters (r = 0.243, alpha = 4.414,
a = 0.793, b = 2.426; p = 6.25, q = 3.74, gamma = 15.44; ages spread over 39 weeks): a buying rate and a
drop-out chance per customer, purchases as a Poisson process until the customer drops out, a mean value per
customer and purchase values around it. Each size is fitted once (BG/NBD and Gamma-Gamma, MAP, as
``orchestrator predict fit`` does, after a warm-up fit that compiles the models), and every customer of the
largest size is scored (probability alive, expected purchases in 52 weeks, expected value of a purchase).
Prints one JSON line per size, then one line with ``fit_seconds_100k``, ``fit_seconds_1m`` and
``score_seconds_1m`` (where those sizes were run), the fitted parameters against the true ones, and the
reference: numpy's sort of as many floats as customers, timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# The project, not this folder: benchmarks/coverage.py would stand in for the coverage package that numba
# (under PyMC) imports when it is there.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from orchestrator.predict import PurchaseSummary, fit_models  # noqa: E402

TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "gamma": 15.44}


def simulate(n: int, seed: int) -> PurchaseSummary:
    """``n`` customers' summaries drawn from BG/NBD and Gamma-Gamma with the ``TRUE`` parameters."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(0.0, 39.0, n)
    rate = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    drop = rng.beta(TRUE["a"], TRUE["b"], n)
    arrivals = rng.poisson(rate * age)  # repeat purchases had the customer never dropped out
    lasting = rng.geometric(drop)  # the repeat purchase after which the customer drops out
    x = np.minimum(arrivals, lasting)
    # Given N arrivals on [0, T], the x-th is T times the x-th of N sorted uniforms: Beta(x, N - x + 1).
    has = x > 0
    recency = np.zeros(n)
    recency[has] = age[has] * rng.beta(x[has], arrivals[has] - x[has] + 1)
    mean_value = 1.0 / rng.gamma(TRUE["q"], 1.0 / TRUE["gamma"], n)  # nu ~ Gamma(q, gamma); E[z] = p / nu
    monetary = np.full(n, np.nan)
    monetary[has] = rng.gamma(TRUE["p"] * x[has], mean_value[has] / x[has])  # mean of x Gamma(p, nu) values
    return PurchaseSummary(
        customer=np.arange(n, dtype=np.int64),
        frequency=x.astype(np.float64),
        recency=recency,
        age=age,
        monetary=monetary,
        holdout=None,
        calibration_end_day=0,
        holdout_end_day=None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    fit_models(simulate(2_000, args.seed))  # compiles the models: not what a size costs
    totals: dict[str, float] = {}
    largest = None
    for n in args.sizes:
        summary = simulate(n, args.seed + n)
        started = time.perf_counter()
        fitted = fit_models(summary)
        fit_s = time.perf_counter() - started
        bg, gg = fitted.beta_geo, fitted.gamma_gamma
        assert gg is not None
        found = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "p": gg.p, "q": gg.q, "gamma": gg.gamma}
        started = time.perf_counter()
        np.sort(np.random.default_rng(1).random(n))
        reference_s = time.perf_counter() - started
        line = {
            "customers": n,
            "repeat_customers": fitted.repeat_customers,
            "fit_seconds": round(fit_s, 3),
            "reference_seconds": round(reference_s, 4),
            "fit_over_reference": round(fit_s / reference_s, 1),
            "parameters": {k: round(v, 4) for k, v in found.items()},
            "true": TRUE,
        }
        print(json.dumps(line), flush=True)
        label = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"
        totals[f"fit_seconds_{label}"] = round(fit_s, 3)
        largest = (n, label, summary, fitted)
    if largest is not None:
        n, label, summary, fitted = largest
        started = time.perf_counter()
        bg, gg = fitted.beta_geo, fitted.gamma_gamma
        assert gg is not None
        alive = bg.p_alive(summary.frequency, summary.recency, summary.age)
        ahead = bg.expected_purchases(52.0, summary.frequency, summary.recency, summary.age)
        value = ahead * gg.expected_spend(summary.frequency, summary.monetary)
        totals[f"score_seconds_{label}"] = round(time.perf_counter() - started, 3)
        assert np.isfinite(alive).all() and np.isfinite(value).all()
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
