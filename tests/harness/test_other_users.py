"""An ordinary user's harness meets root's process carrying its run token (a run id both chose
with `--run-id`): it must neither count it as the run's (a false leak: its soak failed naming
root's process) nor try to end it (psutil's AccessDenied, swallowed, after a SIGSTOP attempt).

Only root can start a process of another user, so root starts the decoy and runs the harness's
code as nobody; as any other user the test skips (test_owner.py covers proctree there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import proctree

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
# Run as nobody: what the run's census counts, what its scans find, what its exit sweep ends.
CHECK = """
import sys
from harness.census import Census
from harness.cleanup import run_processes, sweep_run
counted = Census(sys.argv[1], None, grace=1.0).sample().live_run
found = run_processes(sys.argv[1])
ended = sweep_run(sys.argv[1], timeout=5)
print(counted, len(found), len(ended))
"""

if sys.platform != "linux":
    pytest.skip("uids and /proc as on Linux", allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip(
        "only root can start a process of another user (test_owner.py runs as any user)",
        allow_module_level=True,
    )


def _as_nobody() -> dict:
    python = "/usr/bin/python3"  # the venv's may live under root's home, which nobody can enter
    site = str(Path(psutil.__file__).parent.parent)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([str(REPO), site])}
    # cwd "/": a test's own folders may sit under ones only root may enter (pytest's are 0700).
    kw = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "env": env, "cwd": "/"}
    version = sys.version_info[:2]
    same = f"import psutil, harness.cleanup, sys; assert sys.version_info[:2] == {version!r}"
    if not os.path.exists(python) or subprocess.run([python, "-c", same], **kw).returncode != 0:
        pytest.skip(f"{python} of this Python version cannot import the harness as nobody")
    return {"python": python, **kw}


def test_another_users_run_token_is_not_the_runs(run_id: str, popen) -> None:
    nobody = _as_nobody()
    python = nobody.pop("python")
    token = f"--fake-claude-run-id={run_id}"
    decoy = popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", token], stdin=subprocess.PIPE
    )
    done = subprocess.run(
        [python, "-c", CHECK, run_id], capture_output=True, text=True, timeout=120, **nobody
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "0"], done.stdout + done.stderr
    proc = psutil.Process(decoy.pid)
    assert not proctree.exited(proc) and proc.status() != psutil.STATUS_STOPPED
