"""A claude whose daemon kills the fixed worker's guardian and takes its argv.

The worker starts a replacement guardian while that impostor lives. The census took the
impostor (first seen) for the replacement and then counted the real replacement as the run's:
a FAIL blaming the worker's own helper. Only a process started as the first guardian was
(interpreter, environment) replaces it; the impostor is the run's and is ended with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from soak_helpers import alive, run_pids

pytest.importorskip("worker")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX daemon and signals")

CLAUDE = """#!{python}
import os, signal, sys, time
import psutil
worker = os.getppid()
argv = [sys.executable, "-m", "proctree.guardian", str(worker)]
def guardians():
    found = []
    for c in psutil.Process(worker).children():
        try:
            if c.cmdline() == argv and c.environ():
                found.append(c)
        except psutil.Error:  # the killed one, a zombie until the worker reaps it
            pass
    return found
try:
    first = os.open({marker!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except FileExistsError:
    first = None
if first is not None:  # once per run: kill the guardian, put an impostor in its place
    (guardian,) = guardians()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            guardian.kill()
            fd = os.open(os.devnull, os.O_RDWR)
            for f in (0, 1, 2):
                os.dup2(fd, f)
            os.chdir({fake_pkg!r})  # its proctree.guardian only sleeps
            os.execve(sys.executable, argv, {{}})
        os._exit(0)
    os.wait()
    # Our session goes on (and the impostor with it) until the worker has a new guardian.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(g.pid != guardian.pid for g in guardians()):
            os.write(first, b"replaced")
            time.sleep(3)  # the census (>= 2 samples a second) sees both side by side
            break
        time.sleep(0.05)
os.execv(sys.executable, [sys.executable, "-m", "fake_claude", *sys.argv[1:]])
"""


def test_an_impostor_guardian_is_the_runs_and_the_replacement_is_not(
    tmp_path: Path, run_id: str
) -> None:
    fake_pkg, impostor_pid = tmp_path / "impostor", tmp_path / "impostor.pid"
    (fake_pkg / "proctree").mkdir(parents=True)
    (fake_pkg / "proctree" / "__init__.py").write_text("")
    (fake_pkg / "proctree" / "guardian.py").write_text(
        f"import os, time\nPath = {str(impostor_pid)!r}\n"
        "open(Path, 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    )
    claude = tmp_path / "claude"
    claude.write_text(
        CLAUDE.format(python=sys.executable, marker=str(tmp_path / "done"), fake_pkg=str(fake_pkg))
    )
    claude.chmod(0o755)
    report_dir = tmp_path / "report"
    cmd = [sys.executable, "-m", "harness", "soak", "--claude", str(claude), "--run-id", run_id]
    cmd += ["--sessions", "3", "--concurrency", "1", "--grace", "2.0"]
    cmd += ["--progress", "none", "--no-plot", "--report", str(report_dir)]
    impostor = None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        report = json.loads((report_dir / "report.json").read_text())
        assert impostor_pid.exists(), (done.stdout, done.stderr)
        impostor = int(impostor_pid.read_text())
        assert (tmp_path / "done").read_text() == "replaced", "the worker started no new guardian"
        assert report["verdict"] == "PASS", (report["reasons"], report["leaked"], done.stdout)
        assert done.returncode == 0
        assert not alive(impostor), "the impostor outlived the run: it was not counted as the run's"
        assert run_pids(run_id) == []
    finally:
        if impostor is not None and alive(impostor):  # only if the harness failed to end it
            psutil.Process(impostor).kill()
