"""A zombie the run cannot reap is not the run's failure.

On the macOS path (PROCTREE_FALLBACK here) the worker is no subreaper: an escapee is handed to
whatever reaps orphans above the harness, and when the worker's sweep kills it, it waits there
as a zombie until that reaper gets to it. PID 1 does so at its own pace (slowly on some
machines); here a parent that reaps nothing until the soak is over stands in for it. The soak
command is a subreaper itself (it adopts such orphans), so the soak runs as a library caller's
that does not adopt them (`SoakConfig.adopt_orphans`, False by default).
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

# A library caller's soak (no subreaper of its own): sys.argv = [run id, report folder].
LIBRARY_SOAK = r"""
import asyncio, sys
from pathlib import Path
from harness.soak import run_soak
from harness.soak_config import SoakConfig
from harness.targets import get_target
config = SoakConfig(
    scenarios="escape", run_id=sys.argv[1], sessions=3, concurrency=3, grace=4.0,
    worker_grace=0.5, reap_interval=0.5, progress="none", plot=False, report=Path(sys.argv[2]),
)
report = asyncio.run(run_soak(config, get_target(config.target, **config.target_kwargs())))
sys.exit(int(report["exit_code"]))
"""


def test_escapees_dead_under_an_outside_reaper_are_listed_not_judged(
    tmp_path: Path, run_id: str
) -> None:
    report_dir = tmp_path / "report"
    soak = [sys.executable, "-c", LIBRARY_SOAK, run_id, str(report_dir)]
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
