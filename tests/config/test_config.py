"""The workspace config (``orchestrator.yaml``): located errors, secrets from the environment only,
the effective config without secrets, and ``init``'s workspace."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config import (
    ConfigError,
    SmtpChannel,
    WorkspaceExists,
    effective_yaml,
    find_config,
    init_workspace,
    load_config,
    routes_of,
)
from orchestrator.engine._workspace import Routes, validate_paths

SECRET_VALUE = "hunter2-very-secret-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    return path


def problems(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(start=tmp_path)
    assert config.path is None and config.store is None
    assert config.journeys == tmp_path.resolve() / "journeys"
    assert set(config.channels()) == {"email", "sms", "push", "webhook"}
    assert {section.provider for section in config.channels().values()} == {"outbox"}
    assert config.tick_seconds == 60 and config.global_holdout == 0


def test_mistakes_are_located_with_suggestions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tikc: 1m\n"
        "channels:\n"
        "  email:\n"
        "    provider: smtp\n"
        "    hots: mail.example\n"
        "  sms: {provider: twillio}\n"
        "webhooks:\n"
        "  crm:\n"
        "    url: ftp://crm.example\n"
        "    secret: ${CRM}\n"
        "log: {format: xml}\n"
        "tick: 0s\n",
    )
    found = problems(path)
    text = "\n".join(found)
    assert f"{path}:1:1: unknown key 'tikc'; did you mean 'tick'?" in found
    assert f"{path}:5:5: channels.email: unknown key 'hots'; did you mean 'host'?" in found
    assert f"{path}:4:5: missing required key 'host' in channels.email" in text
    assert f"{path}:6:8: channels.sms: unknown provider" in text
    assert f"{path}:9:10: webhooks.crm.url: write an http:// or https:// URL" in text
    assert f"{path}:11:15: log.format:" in text
    assert f"{path}:12:7: tick: the tick interval is between 1s and 1d" in text


def test_a_literal_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "store: postgresql+psycopg://app:" + SECRET_VALUE + "@db/orch\n"
        "channels:\n"
        "  email:\n"
        "    provider: smtp\n"
        "    host: mail.example\n"
        "    username: app\n"
        "    password: " + SECRET_VALUE + "\n",
    )
    found = problems(path)
    assert any(p.startswith(f"{path}:1:8: store: the URL holds a password") for p in found)
    literal = f"{path}:7:15: channels.email.password: secrets are never written"
    assert any(p.startswith(literal) for p in found)
    assert SECRET_VALUE not in "\n".join(found)


def test_secrets_come_from_the_environment_and_are_never_shown(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "store: postgresql+psycopg://app:${PGPASSWORD}@db/orch\n"
        "channels:\n"
        "  email:\n"
        "    provider: smtp\n"
        "    host: ${SMTP_HOST:-localhost}\n"
        "    username: app\n"
        "    password: ${SMTP_PASSWORD}\n",
    )
    env = {"PGPASSWORD": SECRET_VALUE, "SMTP_PASSWORD": SECRET_VALUE}
    config = load_config(path, environ=env, require_secrets=True)
    email = config.channels()["email"]
    assert isinstance(email, SmtpChannel) and email.host == "localhost"
    assert email.password is not None and email.password.reveal() == SECRET_VALUE
    assert config.store == f"postgresql+psycopg://app:{SECRET_VALUE}@db/orch"
    shown = effective_yaml(config)
    assert SECRET_VALUE not in shown
    assert SECRET_VALUE not in repr(config) and SECRET_VALUE not in str(email)
    assert "postgresql+psycopg://app:***@db/orch" in shown
    assert "${SMTP_PASSWORD} (set)" in shown


def test_an_unset_secret_is_a_problem_only_where_it_is_needed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "channels:\n"
        "  email:\n"
        "    provider: smtp\n"
        "    host: mail.example\n"
        "    username: app\n"
        "    password: ${SMTP_PASSWORD}\n"
        "http:\n"
        "  api_keys:\n"
        "    - id: web\n"
        "      key: ${WRITE_KEY}\n",
    )
    config = load_config(path, environ={})  # the config command shows it unset
    assert "${SMTP_PASSWORD} (not set)" in effective_yaml(config)
    found = problems(path, environ={}, require_secrets=True)  # a command that sends needs it
    unset = "channels.email.password: the environment variable SMTP_PASSWORD is not set"
    assert found == [f"{path}:6:15: {unset}"]
    # An unset API key only means that key is not accepted.
    load_config(path, environ={"SMTP_PASSWORD": "x"}, require_secrets=True)


def test_paths_and_sqlite_stores_are_relative_to_the_file(tmp_path: Path) -> None:
    write(tmp_path, "store: sqlite:///data/engine.db\njourneys: flows\noutbox: out\n")
    below = tmp_path / "flows" / "deeper"
    below.mkdir(parents=True)
    assert find_config(below) == (tmp_path / "orchestrator.yaml").resolve()
    config = load_config(start=below)
    root = tmp_path.resolve()
    assert config.store == f"sqlite:///{root}/data/engine.db"
    assert config.journeys == root / "flows" and config.outbox == root / "out"


def test_a_webhook_provider_needs_named_endpoints(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  webhook: {provider: http}\n")
    assert any("none is named" in p for p in problems(path))


def test_init_makes_a_valid_workspace_and_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    written = init_workspace(folder, datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert folder / "orchestrator.yaml" in written
    config = load_config(start=folder)
    assert config.path == (folder / "orchestrator.yaml").resolve()
    files, found = validate_paths([str(config.journeys)], config.templates)
    assert files and not found
    assert '"ts":"2026-01-05T' in (folder / "sample" / "events.jsonl").read_text()
    before = (folder / "orchestrator.yaml").read_text()
    with pytest.raises(WorkspaceExists, match=r"orchestrator\.yaml"):
        init_workspace(folder, datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert (folder / "orchestrator.yaml").read_text() == before


def test_validate_refuses_sends_the_config_cannot_deliver(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    init_workspace(folder, datetime(2026, 1, 5, 12, tzinfo=UTC))
    journey = folder / "journeys" / "welcome.yaml"
    text = journey.read_text()
    journey.write_text(
        text.replace(
            "  - id: nudge\n",
            "  - id: crm\n    send:\n      channel: webhook\n      endpoint: crn\n"
            "      template: welcome/nudge.txt\n  - id: nudge\n",
        )
    )
    (folder / "orchestrator.yaml").write_text(
        "channels:\n  webhook:\n    provider: http\n"
        "webhooks:\n  crm:\n    url: https://crm.example/hook\n    secret: ${CRM_SECRET}\n"
    )
    config = load_config(start=folder)
    channels, endpoints = routes_of(config)
    _, found = validate_paths([str(config.journeys)], None, Routes(channels, endpoints))
    text = "\n".join(str(p) for p in found)
    assert "no provider is set up for channel 'email'" in text
    assert "webhook endpoint 'crn' is not named under webhooks: in the workspace config (named: crm)" in text
    assert "did you mean 'crm'?" in text


def test_the_weekly_report_is_checked_at_its_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reports:\n"
        "  weekly:\n"
        "    to: [ana@shop.example, not-an-address, ana@shop.example]\n"
        "    day: mondey\n"
        "    at: 25:00\n"
        "    timezone: Mars/Olympus_Mons\n"
        "    console_url: ftp://ops.example\n"
        "    every: 1w\n",
    )
    found = problems(path)
    text = "\n".join(found)
    assert f"{path}:3:9: reports.weekly.to: 'not-an-address' is not an email address" in text
    assert f"{path}:4:10: reports.weekly.day: the day is one of monday, tuesday," in text
    assert f'{path}:5:9: reports.weekly.at: write the local time as "HH:MM"' in text
    assert f"{path}:6:15: reports.weekly.timezone: 'Mars/Olympus_Mons' is not a time zone" in text
    assert f"{path}:7:18: reports.weekly.console_url: write an http:// or https:// URL" in text
    assert f"{path}:8:5: reports.weekly: unknown key 'every'" in text
    twice = write(tmp_path, "reports:\n  weekly:\n    to: [ana@shop.example, ANA@shop.example]\n")
    assert any("an address is listed twice" in p for p in problems(twice))
    nobody = write(tmp_path, "reports:\n  weekly:\n    to: []\n")
    assert any("reports.weekly.to" in p for p in problems(nobody))
    no_email = write(
        tmp_path, "channels:\n  sms: {provider: outbox}\nreports:\n  weekly:\n    to: [a@shop.example]\n"
    )
    assert any("reports.weekly is sent through channels.email" in p for p in problems(no_email))
    good = write(
        tmp_path,
        'reports:\n  weekly:\n    to: [ana@shop.example]\n    day: Friday\n    at: "17:30"\n'
        "    timezone: Europe/Paris\n",
    )
    weekly = load_config(good).file.reports.weekly
    assert weekly is not None and (weekly.weekday, weekly.seconds_of_day, weekly.day) == (
        4,
        17 * 3600 + 1800,
        "friday",
    )
    assert "reports:\n  weekly:\n    to:\n    - ana@shop.example\n    day: friday\n" in effective_yaml(
        load_config(good)
    )
    assert load_config(write(tmp_path, "tick: 1m\n")).file.reports.weekly is None


def test_the_snapshot_section_is_checked_at_its_lines_and_resolved_per_store(tmp_path: Path) -> None:
    path = write(tmp_path, "tick: 1m\nsnapshot:\n  every: 0s\n  path: state/\n  enable: false\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:3:") and "snapshot interval is between 1s and 1d" in p for p in found)
    assert any(p.startswith(f"{path}:4:") and "write the snapshot's file name" in p for p in found)
    assert any(p.startswith(f"{path}:5:") and "enabled" in p for p in found)  # the closest known key

    # Default: beside a SQLite store's file, none on PostgreSQL or in memory.
    config = load_config(write(tmp_path, "store: sqlite:///data/o.db\n"))
    root = tmp_path.resolve()
    assert config.snapshot_path() == root / "data" / "o.db.signals"
    assert config.snapshot_every_seconds == 600
    assert config.snapshot_path("sqlite:////var/o.db") == Path("/var/o.db.signals")
    assert config.snapshot_path("postgresql://db/o") is None
    assert config.snapshot_path("sqlite:///:memory:") is None
    shown = f"snapshot:\n  enabled: true\n  path: {root / 'data' / 'o.db.signals'}\n  every: 10m\n"
    assert shown in effective_yaml(config)

    # A path of its own (relative to the file), per worker from the environment; or off.
    config = load_config(
        write(tmp_path, "snapshot:\n  path: state/signals-${ORCHESTRATOR_WORKER}.snapshot\n  every: 30s\n"),
        environ={"ORCHESTRATOR_WORKER": "2"},
    )
    assert config.snapshot_path("postgresql://db/o") == root / "state" / "signals-2.snapshot"
    assert config.snapshot_every_seconds == 30
    config = load_config(write(tmp_path, "snapshot:\n  enabled: false\n"))
    assert config.snapshot_path() is None
    assert "snapshot:\n  enabled: false\n  path: null\n" in effective_yaml(config)


def test_init_writes_the_snapshot_section_commented(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    init_workspace(folder, datetime(2026, 1, 5, 12, tzinfo=UTC))
    text = (folder / "orchestrator.yaml").read_text()
    assert "# snapshot:\n#   enabled: true\n#   every: 10m\n" in text
    lines = text.splitlines()
    start = lines.index("# snapshot:")
    block = [line.removeprefix("# ") for line in lines[start : start + 4]]
    (folder / "orchestrator.yaml").write_text(text.replace("# snapshot:\n", "\n".join(block) + "\n# x:\n"))
    config = load_config(start=folder, environ={"ORCHESTRATOR_WORKER": "3"})
    assert config.snapshot_path("postgresql://db/o") == folder.resolve() / "state" / "signals-3.snapshot"


def test_the_workers_section_is_checked_and_written_commented_by_init(tmp_path: Path) -> None:
    path = write(tmp_path, "tick: 1m\nworkers:\n  partitions: -1\n  lease: 0s\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:3:") and "greater than or equal to 0" in p for p in found)
    assert any(p.startswith(f"{path}:4:") and "the lease is between 1s and 1d" in p for p in found)
    found = problems(write(tmp_path, "tick: 5m\nworkers:\n  partitions: 64\n  lease: 2m\n"))
    assert any(
        "workers.lease must be longer than the tick interval" in p and "2m for a tick of 5m" in p
        for p in found
    )

    config = load_config(write(tmp_path, "store: sqlite:///o.db\n"))
    assert config.partitions == 0  # by default every worker holds every customer
    config = load_config(write(tmp_path, "workers:\n  partitions: 64\n  lease: 90s\n"))
    assert (config.partitions, config.worker_lease_seconds) == (64, 90.0)
    assert "workers:\n  partitions: 64\n  lease: 90s\n" in effective_yaml(config)

    folder = tmp_path / "shop"
    init_workspace(folder, datetime(2026, 1, 5, 12, tzinfo=UTC))
    text = (folder / "orchestrator.yaml").read_text()
    assert "# workers:\n#   partitions: 64\n#   lease: 2m\n" in text
    (folder / "orchestrator.yaml").write_text(
        text.replace(
            "# workers:\n#   partitions: 64\n#   lease: 2m\n", "workers:\n  partitions: 64\n  lease: 2m\n"
        )
    )
    assert load_config(start=folder).partitions == 64
