"""`python -m harness`: subcommands dispatch, bad input is a harness error (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import SUBCOMMANDS, main
from harness.soak_config import scenario_spec


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_soak_help_says_how_to_pick_the_claude_mem_build():
    """It said `(reference, ...)`: nothing named claude-mem or the variables that choose it."""
    out = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "reference, or claude-mem" in text
    assert "LEAKPROOF_CLAUDE_MEM=VERSION" in text and "LEAKPROOF_CLAUDE_MEM_PLUGIN=PATH" in text


def test_unknown_target_is_a_harness_error(capsys):
    assert main(["soak", "--target", "no-such-target", "--progress", "none"]) == 2
    assert "unknown target" in capsys.readouterr().err


def test_bare_weights_mean_a_mix():
    assert scenario_spec("ok=4,escape=1") == "mix:ok=4,escape=1"
    assert scenario_spec("mix:ok=4") == "mix:ok=4"
    assert scenario_spec("ignore-eof+grandchild:n=2") == "ignore-eof+grandchild:n=2"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--claude-mem-setting", "A=1"], "is for --target claude-mem"),
        (["--target", "claude-mem", "--claude-mem-setting", "A"], "needs KEY=VALUE, not 'A'"),
        (["--target", "claude-mem", "--turn-timeout", "30"], "is the reference worker's"),
    ],
)
def test_claude_mem_settings_are_checked_before_the_run(args: list[str], said: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "soak", "--sessions", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert said in proc.stderr
