"""--mcp-servers against a worker that passes --strict-mcp-config (claude-mem 13.x): the fakes
start no MCP server, so no MCP server's leak is tested, and the report says so and why. The
census counts from a ledger written by real fake runs, with and without the flag."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fake_claude.mcp_server import mcp_config
from fake_claude.shim import command_for
from harness.census import Census
from harness.report_assembly import mcp_warning
from harness.soak_config import SoakConfig


def _ledger_of_runs(tmp_path: Path, run_id: str, *runs: list[str]) -> Path:
    """The ledger of real one-shot fakes (`claude -p`, each given the user's MCP config of one
    server, as a soak with --mcp-servers 1 gives them), one per argv tail in `runs`."""
    ledger = tmp_path / "ledger.jsonl"
    user = tmp_path / "user-mcp.json"
    user.write_text(json.dumps(mcp_config(1)), encoding="utf-8")
    settings = {"scenario": "ok", "seed": "1", "ledger": str(ledger), "run_id": run_id}
    argv, env = command_for({**settings, "user_mcp_config": str(user)})
    for extra in runs:
        done = subprocess.run(
            [*argv, "-p", "hi", "--output-format", "json", *extra],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,  # it exits on its own at once; a deadline only for a broken fake
        )
        assert done.returncode == 0, done.stderr
    return ledger


def _census(ledger: Path, run_id: str) -> Census:
    census = Census(run_id, ledger, grace=1.0)
    census.read_ledger()
    return census


def test_strict_mcp_starts_and_no_mcp_server_are_warned_of(tmp_path, run_id):
    strict = ["--strict-mcp-config"]
    census = _census(_ledger_of_runs(tmp_path, run_id, strict, strict), run_id)
    assert (census.claude_starts, census.strict_mcp_starts, census.mcp_server_starts) == (2, 2, 0)
    warning = mcp_warning(SoakConfig(mcp_servers=1), census) or ""
    assert "--mcp-servers 1 was asked for, but no MCP server was started" in warning
    assert "--strict-mcp-config in 2 of its 2 start(s)" in warning
    assert mcp_warning(SoakConfig(), census) is None  # none asked for: nothing missed


def test_no_warning_once_the_fakes_start_their_mcp_servers(tmp_path, run_id):
    # One start loads the user's MCP config: MCP server leaks were tested (of that observer).
    census = _census(_ledger_of_runs(tmp_path, run_id, [], ["--strict-mcp-config"]), run_id)
    assert (census.claude_starts, census.strict_mcp_starts, census.mcp_server_starts) == (2, 1, 1)
    assert mcp_warning(SoakConfig(mcp_servers=1), census) is None
