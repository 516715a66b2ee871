"""YAML limits: what a hostile or careless file can cost the daemon that loads it.

Every YAML file the engine reads (journeys, metrics.yaml, policy.yaml, events.yaml) goes through one
loader that refuses anchors, aliases and tags and bounds size, node count, depth, scalar length and
integers: each is one ``file:line:column`` error, reached fast and in little memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.language import SpecError, load_journey_text
from orchestrator.language._policy_file import load_policy_text
from orchestrator.language._shared_metrics import load_shared_metrics_text
from orchestrator.language._tracking_plan import load_catalog_text
from orchestrator.language._yamlio import LIMITS, load_yaml

# The billion laughs: nine levels of nine aliases, 9**9 strings once expanded.
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
CASES = {
    "bomb": (BOMB, "1:4: anchors and aliases (&name, *name) are not allowed"),
    "deep": ("a: " + "[" * 10_000 + "]" * 10_000, "values nested deeper than 32 levels"),
    "deep_block": ("".join("  " * i + "a:\n" for i in range(200)) + "  " * 200 + "b: 1\n", "nested deeper"),
    "digits": ("priority: " + "9" * 5000, "1:11: the whole number 99999999999999999999... (5000 characters)"),
    "int64": ("priority: 99999999999999999999", "1:11: the whole number 99999999999999999999 is out"),
    "long": ("name: " + "x" * 100_000, "1:7: a value longer than 32768 characters"),
    "size": ("# " + "x" * (LIMITS.max_bytes + 10), "1:1: the file is larger than 256 KB"),
    "nodes": ("a: [" + ", ".join(["1"] * 50_000) + "]", "the file has more than 10000 values"),
    "tag_map": ("steps: !!map {a: 1}", "1:8: tag tag:yaml.org,2002:map is not allowed"),
    "tag_seq": ("steps: !!seq [1]", "1:8: tag tag:yaml.org,2002:seq is not allowed"),
    "tag_custom": ("steps: !thing [1]", "1:8: tag !thing is not allowed"),
    "tag_str": ("id: !!str 12", "1:5: tag tag:yaml.org,2002:str is not allowed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_limit_is_one_located_error(case: str) -> None:
    text, expected = CASES[case]
    for load in (load_journey_text, load_policy_text, load_shared_metrics_text, load_catalog_text):
        with pytest.raises(SpecError) as info:
            load(text, "f.yaml")
        problems = [str(p) for p in info.value.problems]
        assert len(problems) == 1 and problems[0].startswith("f.yaml:"), problems
        assert expected in problems[0], problems


def test_integers_inside_the_limits_and_plain_files_still_load() -> None:
    data, _ = load_yaml("a: 9223372036854775807\nb: -9223372036854775808\nc: 0x1f\nd: [1, {e: f}]\n", "x")
    assert data == {"a": 2**63 - 1, "b": -(2**63), "c": 31, "d": [1, {"e": "f"}]}


_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (400 * 2**20, 400 * 2**20))
from orchestrator.language import SpecError, load_journey
from orchestrator.language._policy_file import load_policy
from orchestrator.language._shared_metrics import load_shared_metrics
out = []
loaders = [load_journey, load_policy, load_shared_metrics]
for loader, path in zip(loaders, sys.argv[1:]):
    started = time.perf_counter()
    try:
        loader(path)
        out.append(["loaded", 0.0])
    except SpecError as exc:
        out.append([str(exc), time.perf_counter() - started])
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps([out, peak_kb]))
"""


@pytest.mark.parametrize("case", ["bomb", "deep", "digits", "nodes"])
def test_hostile_files_fail_fast_in_little_memory(case: str, tmp_path: Path) -> None:
    """In a child process capped at 400 MB of address space: a clean error for each loader, no traceback,
    no MemoryError or RecursionError (the alias bomb used to run 25 s to a MemoryError at 2.5 GB)."""
    text, expected = CASES[case]
    paths = []
    for name in ("journey.yaml", "policy.yaml", "metrics.yaml"):
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), *paths], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results, peak_kb = json.loads(done.stdout)
    for (message, _seconds), path in zip(results, paths, strict=True):
        assert message.startswith(path + ":") and expected in message, message
        assert "Traceback" not in message
    assert time.perf_counter() - started < 30  # the whole child, interpreter start included (a busy machine)
    assert max(seconds for _, seconds in results) < 5
    assert peak_kb < 150 * 1024, peak_kb  # the interpreter and its imports (about 50 MB) included


def test_validate_reports_a_hostile_journey_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text(BOMB)
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(tmp_path / "j.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{tmp_path / 'j.yaml'}:1:4: anchors and aliases" in done.stderr
