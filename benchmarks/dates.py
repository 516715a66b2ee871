#!/usr/bin/env python3
"""The cost of the waits for a date attribute, against a wait for a local time of day, for many instances.

    python benchmarks/dates.py [--instances 200000] [--repeat 3]

``--instances`` instances with random birthdays over 40 years (a date without time) in four time zones
(one missing: UTC) reach the step within 30 days. Each form is timed on warm caches, the best of
``--repeat`` runs: ``wait_until: {time: "09:00"}`` (the reference, ``next_local_times``), and the waits for
a date (``date_wakes``): plain, at a time, ``every: year`` and ``every: month``. Prints one JSON line with
seconds per form and each date form's ratio to the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.engine._localtime import date_wakes, next_local_times

NINE = 9 * 3600


def best(run: Callable[[], object], repeat: int) -> float:
    run()  # warm the caches, as a running engine's are
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(17)
    n = args.instances
    first = date(1960, 1, 1)
    days = rng.integers(0, 365 * 40, n).tolist()
    values = np.array([(first + timedelta(days=d)).isoformat() for d in days], dtype=object)
    names = np.array(["Asia/Tokyo", "America/New_York", "Europe/London", None], dtype=object)
    zones = names[rng.integers(0, len(names), n)]
    after = 1_717_200_000_000_000 + rng.integers(0, 30 * 86400 * 10**6, n)
    reference = best(lambda: next_local_times(after, zones, NINE, range(7)), args.repeat)
    forms: dict[str, dict[str, object]] = {
        "plain": {},
        "time": {"seconds_of_day": NINE},
        "every_year": {"every": "year", "seconds_of_day": NINE},
        "every_month": {"every": "month", "seconds_of_day": NINE},
    }
    out: dict[str, object] = {"instances": n, "time_of_day_s": round(reference, 4)}
    for name, options in forms.items():
        seconds = best(lambda o=options: date_wakes(values, zones, after, **o), args.repeat)  # type: ignore[misc]
        out[f"{name}_s"] = round(seconds, 4)
        out[f"{name}_ratio"] = round(seconds / reference, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
