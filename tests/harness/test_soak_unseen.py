"""A process of the run the census never judged, still running after the worker's stop: the exit
sweep ends it, and the verdict must count it (it said PASS while killing such processes).

The blind spot here is a lineage that forks and exits every few milliseconds under `soak
--claude` (no ledger): each pid is its own record, younger than the grace whenever the census
looks, so none is ever judged, while the lineage outlives its session and the run. Any other
blind spot ends the same way, which is what this checks.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from soak_helpers import run_pids

from harness.report import UNSEEN_REASON

pytest.importorskip("worker")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the harness adopts orphans on Linux only"
)

HOP_S = 0.005  # each member's life
LINEAGE_S = 60  # it ends by itself after this: a failing test leaves no pid-eater for long


def _hopping_claude(tmp_path: Path) -> Path:
    """A claude that leaves a fork-and-exit lineage behind, then serves as the fake does and
    exits by itself after its second turn (a leaky worker never ends it)."""
    script = tmp_path / "claude"
    script.write_text(
        f"""#!{sys.executable}
import os, sys, time
if os.fork() == 0:
    os.setsid()
    end = time.monotonic() + {LINEAGE_S}
    while time.monotonic() < end:
        time.sleep({HOP_S})
        if os.fork():
            os._exit(0)
    os._exit(0)
os.environ["FAKE_CLAUDE_SCENARIO"] = "crash:at=after-result,turn=2,code=0"
os.execv(sys.executable, [sys.executable, "-m", "fake_claude", *sys.argv[1:]])
"""
    )
    script.chmod(0o755)
    return script


def test_a_lineage_the_census_never_judged_fails_the_run(tmp_path: Path, run_id: str) -> None:
    claude = _hopping_claude(tmp_path)
    report_dir = tmp_path / "report"
    cmd = [sys.executable, "-m", "harness", "soak", "--mode", "leaky", "--claude", str(claude)]
    cmd += ["--run-id", run_id, "--sessions", "2", "--concurrency", "1", "--grace", "1.0"]
    cmd += ["--prompts", "1", "--observations", "0"]  # two turns: the claude exits after them
    cmd += ["--progress", "none", "--no-plot", "--report", str(report_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        report = json.loads((report_dir / "report.json").read_text())
        assert report["completed"] == 2, done.stdout + done.stderr
        unseen = [e for e in report["leaked"] if e["reason"] == UNSEEN_REASON]
        assert done.returncode == 1 and report["verdict"] == "FAIL", done.stdout
        assert any("outlived the worker's stop" in r for r in report["reasons"]), report
        assert unseen and all(e["status"] == "killed" for e in unseen), report["leaked"]
        # A member caught as it exits (its memory released, not yet a zombie) has no argv left
        # to read: it is named by its program, as ps does, `[claude]`.
        assert all(
            str(claude) in e["cmdline"] or e["cmdline"] == [f"[{claude.name}]"] for e in unseen
        ), unseen
        assert str(unseen[0]["pid"]) in (report_dir / "leaks.txt").read_text()
        assert run_pids(str(claude)) == [], "the lineage outlived the run"
    finally:
        for pid in run_pids(str(claude)):  # only if the harness failed to: by this test's path
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                proc.suspend()
                proc.kill()
