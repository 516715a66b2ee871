"""Deployment files: the systemd units start commands the command line accepts, and the container image
builds, runs as a user other than root and works (built and run only where a docker or podman engine
answers; this machine has the docker client without an engine)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_each_unit_starts_a_command_the_cli_accepts(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = unit(path)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/orchestrator")
    assert service["User"] == "orchestrator" and service["NoNewPrivileges"] == "yes"
    # The same arguments with --help: parsed by the real command line (an unknown option is exit 2).
    assert main([*argv[1:], "--help"]) == 0
    assert f"Usage: orchestrator {argv[1]} " in capsys.readouterr().out
    if "ExecReload" in service:
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the daemon reloads on SIGHUP


def test_the_image_runs_as_an_unprivileged_user_with_the_daemon_by_default() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["orchestrator"]' in lines and 'CMD ["daemon"]' in lines
    assert any(line.startswith("FROM python:3.11-slim") for line in lines)


def _engine() -> str | None:
    for tool in ("docker", "podman"):
        if shutil.which(tool) is None:
            continue
        try:
            if subprocess.run([tool, "info"], capture_output=True, timeout=20).returncode == 0:
                return tool
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(_engine() is None, reason="no docker or podman engine answers here")
def test_the_image_builds_and_runs_a_workspace(tmp_path: Path) -> None:
    tool = _engine()
    assert tool is not None
    tag = f"orchestrator-test-{uuid.uuid4().hex[:8]}"
    subprocess.run([tool, "build", "-t", tag, str(ROOT)], check=True, timeout=1200)
    try:

        def run(*args: str) -> str:
            done = subprocess.run(
                [tool, "run", "--rm", "--entrypoint", "sh", tag, "-c", " && ".join(args)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert run("id -u").strip() != "0"
        out = run(
            "cd /home/orchestrator",
            "orchestrator init shop",
            "cd shop",
            "orchestrator validate",
            "orchestrator ingest sample/customers.csv sample/events.jsonl",
            "orchestrator run --once",
            "ls outbox/email",
        )
        assert "1 of 1 journey files valid" in out and ".eml" in out
    finally:
        subprocess.run([tool, "rmi", "-f", tag], capture_output=True, timeout=120)


def test_each_worker_of_the_unit_can_name_its_own_snapshot(tmp_path: Path) -> None:
    from orchestrator.config import load_config

    service = unit(ROOT / "deploy" / "systemd" / "orchestrator-worker@.service")["Service"]
    assert service["Environment"] == "ORCHESTRATOR_WORKER=%i"  # the instance name: 1 in worker@1
    path = tmp_path / "orchestrator.yaml"
    path.write_text("snapshot:\n  path: state/signals-${ORCHESTRATOR_WORKER}.snapshot\n")
    found = {
        load_config(path, environ={"ORCHESTRATOR_WORKER": name}).snapshot_path("postgresql://db/o")
        for name in ("1", "2")
    }
    assert found == {tmp_path / "state" / "signals-1.snapshot", tmp_path / "state" / "signals-2.snapshot"}
