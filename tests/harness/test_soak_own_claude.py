"""`soak --claude`: a user's own claude whose daemons carry nothing we could match them by.

Its daemon forks twice, starts a session, clears its environment (the worker's mark) and names
itself `-` (no run id in argv). Only the process tree tells whose it is. The harness must find
it through its own subreaper, also when the worker under test runs the macOS path
(PROCTREE_FALLBACK, which must not blind the judge too), and must end it after the run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from soak_helpers import run_pids

from harness.text import printable_argv

pytest.importorskip("worker")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the harness adopts orphans on Linux only"
)

SLEEP = shutil.which("sleep") or "/bin/sleep"


def _daemonizing_claude(
    tmp_path: Path, argv: list[bytes], detach: str = "setsid", linger: float = 0.0
) -> Path:
    """A claude that first leaves a fully scrubbed daemon running `sleep` with `argv`: in a
    session of its own (`detach="setsid"`) or only a process group of its own, in the claude's
    session (`"setpgid"`); the claude then waits `linger` seconds before it answers."""
    script = tmp_path / "claude"
    script.write_text(
        f"""#!{sys.executable}
import os, sys, time
pid = os.fork()
if pid == 0:
    os.{detach}({"" if detach == "setsid" else "0, 0"})
    if os.fork() == 0:
        fd = os.open(os.devnull, os.O_RDWR)
        for f in (0, 1, 2):
            os.dup2(fd, f)
        os.closerange(3, 1024)
        os.execve({SLEEP!r}, {argv!r}, {{}})
    os._exit(0)
os.waitpid(pid, 0)
time.sleep({linger})
os.execv(sys.executable, [sys.executable, "-m", "fake_claude", *sys.argv[1:]])
"""
    )
    script.chmod(0o755)
    return script


def _daemons(argv: list[bytes]) -> list[psutil.Process]:
    want = _texts(argv)
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["cmdline"] == want and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


@pytest.mark.parametrize("fallback", [False, True], ids=["native", "macos-path"])
def test_scrubbed_daemons_are_judged_and_never_outlive_the_run(
    tmp_path: Path, run_id: str, fallback: bool
) -> None:
    # A lifetime that bounds the damage if this test fails; unique, so that only ours match.
    # The undecodable byte and the escape also check that such a name is reported readably.
    argv = [b"-\xff\x1b[0m", f"{60 + secrets.randbelow(10**6) / 10**6:.6f}".encode()]
    claude = _daemonizing_claude(tmp_path, argv)
    report_dir = tmp_path / "report"
    env = dict(os.environ, PROCTREE_FALLBACK="1" if fallback else "0")
    sessions = 3
    cmd = [sys.executable, "-m", "harness", "soak", "--claude", str(claude), "--run-id", run_id]
    cmd += ["--sessions", str(sessions), "--concurrency", "3", "--grace", "1.0"]
    cmd += ["--progress", "none", "--no-plot", "--report", str(report_dir)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        report = json.loads((report_dir / "report.json").read_text())
        named = [e["cmdline"] for e in report["leaked"]]
        if fallback:
            # Without a subreaper the worker cannot find them: the soak must say so.
            assert done.returncode == 1 and report["verdict"] == "FAIL", done.stdout
            assert named.count(printable_argv(_texts(argv))) == sessions, named
            assert "-\\xff\\x1b[0m" in (report_dir / "leaks.txt").read_text()
        else:
            assert done.returncode == 0 and report["verdict"] == "PASS", done.stdout
        assert _daemons(argv) == [], "a daemon outlived the run"
        assert run_pids(run_id) == []
    finally:
        for p in _daemons(argv):  # only if the harness failed to: by their unique argv
            p.kill()


def test_a_daemon_left_in_its_claudes_session_is_named_with_that_session(
    tmp_path: Path, run_id: str
) -> None:
    """On the macOS path the worker ends its observer's process group; a daemon that made a
    group of its own but stayed in the observer's POSIX session outlives it, first seen by the
    census as the harness's orphan. Its session's leader, the observer, says whose it is: each
    leak names its session (one claude per session, all four at once, so time alone could
    not tell). The claude lingers so that a sample sees it alive after its daemon's birth."""
    argv = [b"sleep-in-session", f"{60 + secrets.randbelow(10**6) / 10**6:.6f}".encode()]
    claude = _daemonizing_claude(tmp_path, argv, detach="setpgid", linger=3.0)
    report_dir = tmp_path / "report"
    env = dict(os.environ, PROCTREE_FALLBACK="1")
    cmd = [sys.executable, "-m", "harness", "soak", "--claude", str(claude), "--run-id", run_id]
    cmd += ["--sessions", "4", "--concurrency", "4", "--prompts", "1", "--grace", "2"]
    cmd += ["--progress", "none", "--no-plot", "--report", str(report_dir)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        report = json.loads((report_dir / "report.json").read_text())
        assert done.returncode == 1 and report["verdict"] == "FAIL", done.stdout
        want = printable_argv(_texts(argv))
        sessions = [e["session"] for e in report["leaked"] if e["cmdline"] == want]
        assert len(sessions) == 4, report["leaked"]
        assert set(sessions) == {f"soak-{run_id}-{i:06d}" for i in range(4)}, report["leaked"]
        assert _daemons(argv) == [], "a daemon outlived the run"
    finally:
        for p in _daemons(argv):  # only if the harness failed to: by their unique argv
            p.kill()


def _texts(argv: list[bytes]) -> list[str]:
    return [a.decode("utf-8", "surrogateescape") for a in argv]
