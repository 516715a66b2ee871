"""A small synthetic shop: customers with names and contact details, and a behaviour model.

The same model writes the bundled history (``examples/demo``) and, during ``orchestrator demo``, the
days that follow it, including how customers respond to the messages they receive. It is deliberately
simple and seeded: the demo must print the same figures on every machine.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

EVENT_TYPES = (
    "session_start",
    "product_view",
    "add_to_cart",
    "purchase",
    "email_open",
    "email_click",
    "wishlist_add",
    "nps_response",
)
CATEGORIES = ("shoes", "jackets", "bags", "watches", "sunglasses", "knitwear", "denim", "sneakers")
FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Femi",
    "Grace",
    "Hugo",
    "Ines",
    "Jon",
    "Kira",
    "Luis",
    "Maya",
    "Noor",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Vik",
    "Wen",
    "Yara",
)
TIMEZONES = (
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
)
HISTORY_END = datetime(2024, 3, 1, tzinfo=UTC)
HISTORY_DAYS = 45


@dataclass
class Population:
    """Per-customer behaviour rates, indexed like ``ids``."""

    ids: list[str]
    session_rate: np.ndarray  # expected sessions per day
    purchase_p: np.ndarray  # chance a session with a cart ends in a purchase
    favourite: np.ndarray  # index into CATEGORIES
    churn_day: np.ndarray  # day index (from history start) after which the customer goes quiet


def make_population(n: int, seed: int = 7) -> Population:
    rng = np.random.default_rng(seed)
    rate = rng.lognormal(mean=-2.5, sigma=0.9, size=n)
    churn = np.where(rng.random(n) < 0.35, rng.integers(10, HISTORY_DAYS, n), 10_000)
    return Population(
        ids=[f"C{i:05d}" for i in range(1, n + 1)],
        session_rate=rate,
        purchase_p=rng.uniform(0.15, 0.45, n),
        favourite=rng.integers(0, len(CATEGORIES), n),
        churn_day=churn,
    )


def customer_rows(pop: Population, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + 1)
    rows = []
    for i, cid in enumerate(pop.ids):
        name = FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]
        rows.append(
            {
                "customer_id": cid,
                "first_name": name,
                "email": f"{name.lower()}.{cid.lower()}@example.com",
                "phone": f"+4477009{i:05d}" if rng.random() < 0.7 else "",
                "push_token": f"tok-{cid}" if rng.random() < 0.55 else "",
                "timezone": TIMEZONES[int(rng.integers(len(TIMEZONES)))],
                "consent_email": "true" if rng.random() < 0.92 else "false",
                "consent_sms": "true" if rng.random() < 0.6 else "false",
                "consent_push": "true",
                "country": ("GB", "FR", "US", "NO", "JP")[int(rng.integers(5))],
            }
        )
    return rows


def simulate_day(
    pop: Population,
    day_start: datetime,
    day_index: int,
    rng: np.random.Generator,
    boost: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One day of events for everyone. ``boost`` multiplies each customer's activity (message response)."""
    churned = day_index >= pop.churn_day
    if boost is None:
        rate = pop.session_rate * np.where(churned, 0.03, 1.0)
    else:
        # A message can wake a quiet customer up a little, and makes an active one more active.
        rate = pop.session_rate * np.where(churned, np.where(boost > 1, 0.3, 0.03), 1.0) * boost
    sessions = rng.poisson(rate)
    events: list[dict[str, Any]] = []
    for i in np.flatnonzero(sessions):
        cid = pop.ids[i]
        for _ in range(int(sessions[i])):
            t = day_start + timedelta(seconds=float(rng.uniform(6 * 3600, 23 * 3600)))
            events.append(_event(cid, "session_start", t))
            fav = CATEGORIES[int(pop.favourite[i])]
            for _v in range(int(rng.poisson(2.5))):
                t += timedelta(seconds=float(rng.uniform(20, 240)))
                cat = fav if rng.random() < 0.6 else CATEGORIES[int(rng.integers(len(CATEGORIES)))]
                events.append(_event(cid, "product_view", t, category=cat))
                if rng.random() < 0.12:
                    events.append(_event(cid, "wishlist_add", t + timedelta(seconds=5), category=cat))
            if rng.random() < 0.25:
                t += timedelta(seconds=float(rng.uniform(30, 300)))
                cart = f"cart-{cid}-{day_index}-{int(rng.integers(1_000_000))}"
                events.append(_event(cid, "add_to_cart", t, category=fav, cart_id=cart))
                p = pop.purchase_p[i] * (1.0 if boost is None else min(float(boost[i]), 2.5))
                if rng.random() < min(p, 0.95):
                    t += timedelta(seconds=float(rng.uniform(60, 4 * 3600)))
                    amount = round(float(rng.lognormal(3.9, 0.6)), 2)
                    events.append(_event(cid, "purchase", t, amount=amount, cart_id=cart))
            if rng.random() < 0.03:
                events.append(
                    _event(cid, "nps_response", t + timedelta(minutes=3), score=int(rng.integers(0, 11)))
                )
    events.sort(key=lambda e: e["ts"])
    return events


def _event(cid: str, event: str, ts: datetime, **properties: Any) -> dict[str, Any]:
    stamp = ts.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"customer_id": cid, "event": event, "ts": stamp, "properties": properties}


def write_history(folder: Path, n: int = 1000, seed: int = 7) -> dict[str, int]:
    """Write ``customers.csv`` and ``events.jsonl`` covering the days before ``HISTORY_END``."""
    folder.mkdir(parents=True, exist_ok=True)
    pop = make_population(n, seed)
    rows = customer_rows(pop, seed)
    with (folder / "customers.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    rng = np.random.default_rng(seed + 2)
    start = HISTORY_END - timedelta(days=HISTORY_DAYS)
    count = 0
    with (folder / "events.jsonl").open("w") as f:
        for day in range(HISTORY_DAYS):
            for event in simulate_day(pop, start + timedelta(days=day), day, rng):
                f.write(json.dumps(event, separators=(",", ":")) + "\n")
                count += 1
    return {"customers": n, "events": count}
