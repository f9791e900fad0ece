"""A zombie the run cannot reap is not the run's failure.

On the macOS path (PROCTREE_FALLBACK here) the worker is no subreaper: an escapee is handed to
whatever reaps orphans above the harness, and when the worker's sweep kills it, it waits there
as a zombie until that reaper gets to it. PID 1 does so at its own pace (slowly on some
machines); here a parent that reaps nothing until the soak is over stands in for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from soak_helpers import run_pids

pytest.importorskip("worker")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a subreaper stands in for a slow init: Linux"
)

SLOW_REAPER = r"""
import os, subprocess, sys
import proctree
assert proctree.enable_subreaper(despite_fallback=True)
code = subprocess.Popen(sys.argv[1:]).wait()  # reaps the soak only, not what it was handed
while True:
    try:
        os.waitpid(-1, 0)  # now everything else, so that nothing is left for init
    except ChildProcessError:
        break
sys.exit(code)
"""


def test_escapees_dead_under_an_outside_reaper_are_listed_not_judged(
    tmp_path: Path, run_id: str
) -> None:
    report_dir = tmp_path / "report"
    soak = [sys.executable, "-m", "harness", "soak", "--scenarios", "escape", "--run-id", run_id]
    soak += ["--sessions", "3", "--concurrency", "3", "--grace", "4", "--worker-grace", "0.5"]
    soak += ["--reap-interval", "0.5", "--progress", "none", "--no-plot"]
    soak += ["--report", str(report_dir)]
    env = dict(os.environ, PROCTREE_FALLBACK="1")
    done = subprocess.run(
        [sys.executable, "-c", SLOW_REAPER, *soak],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((report_dir / "report.json").read_text())
    # The escapees did escape, were ended by the worker, and died where the run cannot reap.
    assert report["escaped"], report
    held = report["zombies_elsewhere"]
    assert held and all(z["status"] == "zombie" for z in held), held
    assert report["zombies"] == [] and report["leaked_count"] == 0, report["reasons"]
    assert done.returncode == 0 and report["verdict"] == "PASS", done.stdout + done.stderr
    assert run_pids(run_id) == []
