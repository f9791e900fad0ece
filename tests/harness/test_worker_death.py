"""A worker that dies under test (here killed by its own child) is named as the cause, with how
it died, beside the verdict; and the run still leaves nothing behind."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.verdict import worker_death

pytest.importorskip("worker")


def test_worker_death_says_how():
    assert worker_death(None) == "the worker died during the run"
    assert worker_death(-9).endswith("(killed by SIGKILL)")
    assert worker_death(3).endswith("(exit code 3)")


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell claude")
def test_a_claude_that_kills_its_worker(tmp_path: Path, run_id: str) -> None:
    # Its lingering `sleep` carries a unique duration: only ours can match it.
    linger = f"{60 + secrets.randbelow(10**6) / 10**6:.6f}"
    claude = tmp_path / "claude"
    claude.write_text(f"#!/bin/sh\nkill -9 $PPID\nexec sleep {linger}\n")
    claude.chmod(0o755)
    report_dir = tmp_path / "report"
    cmd = [sys.executable, "-m", "harness", "soak", "--claude", str(claude), "--run-id", run_id]
    cmd += ["--sessions", "2", "--concurrency", "1", "--progress", "none", "--no-plot"]
    cmd += ["--report", str(report_dir)]

    def lingering() -> list[psutil.Process]:
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[-1:] == [linger]
        ]

    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        report = json.loads((report_dir / "report.json").read_text())
        assert done.returncode == 2 and report["verdict"] == "ERROR", done.stdout
        assert "the worker died during the run (killed by SIGKILL)" in report["reasons"]
        assert report["worker_alive"] is False and report["worker_exit"] == -9
        assert "failed sessions: 2" in done.stdout
        assert lingering() == [], "the dead worker's child outlived the run"
    finally:
        for p in lingering():
            p.kill()
