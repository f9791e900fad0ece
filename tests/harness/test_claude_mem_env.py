"""The environment the real claude-mem worker is started with (no claude-mem needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.targets.claude_mem import ClaudeMemTarget


def test_worker_env_has_no_terminal_size_nor_user_claude_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-xdist runs tests with COLUMNS=80. Inherited, it truncates the `ps -eo pid,ppid,args`
    that claude-mem's reapers parse, and a long `claude ... --output-format` line never matches
    (10.6.3's orphan reaper then missed its decoy in tests/claudemem/test_pidns_10x.py)."""
    for key, value in {"COLUMNS": "80", "LINES": "24", "CLAUDE_CONFIG_DIR": "/x"}.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    target = ClaudeMemTarget(version="13.25.3", cache=tmp_path / "cache")
    env = target._env(home, tmp_path / "bun" / "bun", tmp_path / "bin" / "claude")
    assert not {"COLUMNS", "LINES", "CLAUDE_CONFIG_DIR"} & set(env)
    assert env["HOME"] == str(home)
    assert env["PATH"].split(os.pathsep)[:2] == [str(tmp_path / "bin"), str(tmp_path / "bun")]


@pytest.mark.parametrize("key", ["CLAUDE_MEM_DATA_DIR", "CLAUDE_CODE_PATH"])
def test_settings_the_run_owns_are_refused(key: str) -> None:
    """`--claude-mem-setting CLAUDE_MEM_DATA_DIR=~/.claude-mem` was written into the run's
    settings.json: 13.x then kept its database, logs and settings in the user's real
    ~/.claude-mem (and read its settings.json: port, CLAUDE_CODE_PATH), which the docs say is
    never read or written."""
    with pytest.raises(ValueError, match=f"--claude-mem-setting {key}: set by the harness"):
        ClaudeMemTarget(version="13.25.3", settings={key: str(Path.home() / ".claude-mem")})
