"""The console's config section (``http.console``): keys from the environment, long enough to sign
sessions with, unique ids; the session's length and the secure-cookie switch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, WorkspaceConfig, effective_yaml, load_config

KEY = "a-console-key-long-enough-0123"
SECTION = """\
http:
  console:
    keys:
      - id: ops
        key: ${CONSOLE_KEY}
"""


def config_at(tmp_path: Path, text: str, **environ: str) -> WorkspaceConfig:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    return load_config(path, environ=environ)


def problems(tmp_path: Path, text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config_at(tmp_path, text, **environ)
    return "\n".join(str(p) for p in caught.value.problems)


def test_the_console_is_off_unless_configured(tmp_path: Path) -> None:
    assert config_at(tmp_path, "store: sqlite:///x.db\n").file.http.console is None


def test_console_keys_come_from_the_environment_and_are_never_shown(tmp_path: Path) -> None:
    config = config_at(tmp_path, SECTION + "    session: 2h\n    secure_cookie: true\n", CONSOLE_KEY=KEY)
    console = config.file.http.console
    assert console is not None
    assert console.keys[0].key.reveal() == KEY
    assert console.session == timedelta(hours=2) and console.secure_cookie
    shown = effective_yaml(config)
    assert KEY not in shown and "${CONSOLE_KEY} (set)" in shown
    # Unset, the key accepts nothing, and the config still loads (the console then refuses every login).
    unset = config_at(tmp_path, SECTION).file.http.console
    assert unset is not None and not unset.keys[0].key.is_set


def test_a_short_key_a_literal_key_and_twice_the_same_id_are_refused(tmp_path: Path) -> None:
    short = problems(tmp_path, SECTION, CONSOLE_KEY="short-key")
    assert "the console key 'ops' (${CONSOLE_KEY}) is too short: at least 16 characters" in short
    assert "short-key" not in short
    literal = problems(tmp_path, SECTION.replace("${CONSOLE_KEY}", KEY))
    assert "secrets are never written in the config" in literal and KEY not in literal
    twice = SECTION + "      - id: ops\n        key: ${OTHER_KEY}\n"
    assert "each console key needs its own id" in problems(tmp_path, twice, CONSOLE_KEY=KEY)
    assert "keys" in problems(tmp_path, "http:\n  console:\n    keys: []\n")
    assert "longer than zero" in problems(tmp_path, SECTION + "    session: 0s\n", CONSOLE_KEY=KEY)
