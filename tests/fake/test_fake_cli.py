"""The command line: version, one-shot print mode, tolerant flags, the shim."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fake_helpers import DEADLINE, POSIX, RUN_ID_FLAG

from fake_claude.shim import write_shim


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, **kw)


def test_version_default_and_override(tmp_path, run_id):
    shim = write_shim(tmp_path, {"run_id": run_id})
    for flag in ("-v", "--version"):
        out = run([str(shim), flag])
        assert out.returncode == 0
        assert out.stdout == "2.1.332 (Claude Code)\n"
    other = write_shim(tmp_path / "o", {"run_id": run_id, "version": "9.8.7"})
    # claude-mem 13.x probes like this, with another flag in front.
    out = run([str(other), "--permission-mode", "dontAsk", "--version"])
    assert out.stdout == "9.8.7 (Claude Code)\n"


def test_module_and_console_script_entry_points(run_id):
    out = run([sys.executable, "-m", "fake_claude", "--version"])
    assert out.stdout.strip() == "2.1.332 (Claude Code)"
    script = os.path.join(os.path.dirname(sys.executable), "fake-claude")
    if POSIX and os.path.exists(script):
        assert run([script, "-v"]).stdout.strip() == "2.1.332 (Claude Code)"


@pytest.mark.parametrize("fmt", ["text", "json", "stream-json"])
def test_print_mode_formats(tmp_path, run_id, fmt):
    shim = write_shim(tmp_path, {"run_id": run_id, "ledger": str(tmp_path / "l.jsonl")})
    out = run([str(shim), "-p", "--output-format", fmt, "--weird-flag=1", "describe the tree"])
    assert out.returncode == 0, out.stderr
    if fmt == "text":
        assert "describe the tree" in out.stdout
    elif fmt == "json":
        res = json.loads(out.stdout)
        assert res["type"] == "result" and res["is_error"] is False
        assert "describe the tree" in res["result"]
    else:
        kinds = [json.loads(line)["type"] for line in out.stdout.splitlines()]
        assert kinds == ["system", "assistant", "result"]


def test_print_mode_reads_prompt_from_stdin(tmp_path, run_id):
    shim = write_shim(tmp_path, {"run_id": run_id})
    out = run([str(shim), "--print"], input="prompt from stdin")
    assert out.returncode == 0
    assert "prompt from stdin" in out.stdout


@pytest.mark.parametrize("fmt", ["text", "stream-json"])
def test_print_mode_into_a_closed_pipe_exits_quietly(tmp_path, run_id, fmt):
    """`claude -p ... | head -1`: the reader leaves. Before: a StdoutClosed traceback."""
    shim = write_shim(tmp_path, {"run_id": run_id, "ledger": str(tmp_path / "l.jsonl")})
    proc = subprocess.Popen(
        [str(shim), "-p", "--output-format", fmt],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.close()  # gone before the fake writes a byte: its first write fails
    _, err = proc.communicate(b"the prompt, from stdin", timeout=DEADLINE)
    assert proc.returncode == 1, err
    assert b"Traceback" not in err, err


def test_unknown_flags_in_every_form_are_tolerated(tmp_path, run_id):
    shim = write_shim(tmp_path, {"run_id": run_id})
    # A conversation to go on with: `--resume=ID` below is read as --resume's value.
    first = run([str(shim), "-p", "hello", "--output-format", "json"])
    session_id = json.loads(first.stdout)["session_id"]
    argv = [
        str(shim),
        "--output-format=stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--setting-sources",
        "",  # TS SDK 0.1.76 / claude-mem 9.0.0 pass an empty value here
        "--no-such-flag",
        "value",
        "--another-new-flag=x=y",
        "--bare-unknown",
        f"--resume={session_id}",
        "--model",
        "claude-sonnet-4-5",
    ]
    init = {"type": "control_request", "request_id": "r", "request": {"subtype": "initialize"}}
    user = {"type": "user", "message": {"role": "user", "content": "hi"}}
    stdin = json.dumps(init) + "\n" + json.dumps(user) + "\n"
    out = run(argv, input=stdin)
    assert out.returncode == 0, out.stderr
    msgs = [json.loads(line) for line in out.stdout.splitlines()]
    result = [m for m in msgs if m["type"] == "result"][0]
    assert result["session_id"] == session_id


def test_shim_bakes_settings_and_run_id(tmp_path, run_id):
    ledger = tmp_path / "ledger.jsonl"
    shim = write_shim(
        tmp_path / "bin", {"FAKE_CLAUDE_SCENARIO": "ok", "ledger": str(ledger), "run_id": run_id}
    )
    assert shim.name == ("claude" if POSIX else "claude.cmd")
    text = shim.read_text()
    assert f"{RUN_ID_FLAG}{run_id}" in text
    assert "FAKE_CLAUDE_SCENARIO" in text and str(ledger) in text
    if POSIX:
        assert text.startswith("#!/bin/sh\n")
        assert os.access(shim, os.X_OK)
        # The interpreter is named by absolute path: PATH plays no part.
        exec_line = [line for line in text.splitlines() if line.startswith("exec ")][0]
        assert exec_line.split()[1].startswith("/")
    out = run([str(shim), "-p", "x"], env={"PATH": ""} if POSIX else None)
    assert out.returncode == 0, out.stderr


def test_shim_cli_prints_path(tmp_path, run_id):
    out = run(
        [
            sys.executable,
            "-m",
            "fake_claude",
            "shim",
            str(tmp_path / "d"),
            "--scenario",
            "slow",
            "--seed",
            "7",
            "--run-id",
            run_id,
        ]
    )
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    assert os.path.isfile(path)
    text = open(path).read()
    assert "FAKE_CLAUDE_SEED" in text and f"{RUN_ID_FLAG}{run_id}" in text


def test_bad_scenario_is_reported(tmp_path, run_id):
    shim = write_shim(tmp_path, {"run_id": run_id, "scenario": "no-such-thing"})
    out = run([str(shim), "--input-format", "stream-json"], input="")
    assert out.returncode == 2
    assert "unknown scenario" in out.stderr


@pytest.mark.skipif(not POSIX, reason="the self-check's signal checks are POSIX")
def test_selfcheck_passes(run_id):
    out = run([sys.executable, "-m", "fake_claude", "selfcheck"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASS") == 4


def test_selfcheck_help_runs_no_check():
    # Before, every argument was ignored: `selfcheck --help` ran the checks.
    out = run([sys.executable, "-m", "fake_claude", "selfcheck", "--help"])
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m fake_claude selfcheck")
    assert "PASS" not in out.stdout
    assert run([sys.executable, "-m", "fake_claude", "selfcheck", "--bogus"]).returncode == 2


def test_bench_prints_ratios(run_id):
    # Figures, not a timed assertion: the bench must run and report both ratios per variant.
    out = run([sys.executable, "-m", "fake_claude.bench", "--runs", "2"])
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(("shim", "python -m"))]
    assert len(rows) == 2
    for row in rows:
        assert "ms" in row and "MiB" in row
