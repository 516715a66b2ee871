"""``orchestrator test [PATH]...``: run the journey test files (``*.test.yaml``) under the paths through
``orchestrator.testing.run_journey_tests`` and print what it found: each case passed or failed (every
failure as ``file:line: customer: expected ...; found: ...``), the transitions no test took, and a summary
line. Exit 0 when every case passed, 1 when one failed (or, with ``--require-coverage``, when a transition,
a goal or a journey went untested), 2 for bad usage."""

from __future__ import annotations

import json
import sys

from orchestrator.cli._errors import UsageError
from orchestrator.cli._settings import Args
from orchestrator.errors import UsageError as CoreUsageError


def run_test(args: Args) -> int:
    from orchestrator.testing import run_journey_tests

    try:
        report = run_journey_tests(args.paths)
    except CoreUsageError as exc:
        raise UsageError(str(exc)) from None
    if not report.cases:
        raise UsageError(f"no journey test files (*.test.yaml) found in {' '.join(args.paths)}")
    ok = report.ok(args.require_coverage)
    if args.format == "json":
        print(json.dumps({"ok": ok, **report.to_dict()}, indent=2))
        return 0 if ok else 1
    out = sys.stdout
    for case in report.cases:
        mark = "PASS" if case.passed else "FAIL"
        print(
            f"{mark}  {case.file}:{case.line}  {case.name}  ({case.ticks} ticks, {case.seconds:.2f}s)",
            file=out,
        )
        for failure in case.failures:
            print(f"      {failure}", file=out)
    for journey, (covered, total) in report.transitions.items():
        print(f"coverage: {journey}: {covered} of {total} paths taken", file=out)
    for gap in report.gaps:
        print(gap, file=out)
    for journey in report.untested:
        print(f"no tests: {journey}", file=out)
    gaps = len(report.gaps) + len(report.untested)
    summary = f"{report.passed} passed, {report.failed} failed"
    if gaps:
        summary += f", {gaps} coverage gap(s)" + (" (required)" if args.require_coverage else "")
    print(f"{summary} in {report.seconds:.2f}s", file=out)
    return 0 if ok else 1
