"""The providers benchmark runs end to end, briefly, and prints its one JSON line (speed is its own
business: nothing here depends on the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_providers_benchmark_prints_one_json_line_with_its_figures() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "providers.py"), "--seconds", "1",
         "--smtp-messages", "200", "--smtp-connections", "2", "--http-messages", "200",
         "--http-concurrency", "16", "--http-delay", "0.01", "--rate", "200"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    for key in ("smtp_per_s", "http_per_s", "rate_limit_error"):
        assert isinstance(figures[key], int | float) and figures[key] >= 0
    assert figures["smtp"]["messages"] == 200 and figures["smtp"]["connections"] <= 2
    assert figures["http"]["requests"] == 200 and figures["http"]["concurrency"] == 16
    assert figures["rate"]["threads"] == 4 and figures["rate"]["processes"] == 2
    assert figures["rate"]["sends"] > 0 and figures["targets"]["rate_limit_error"] == 0.02
