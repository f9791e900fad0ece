"""Ctrl-C in a terminal: the soak stops, ends every process of the run, reports `interrupted`."""

from __future__ import annotations

import json
import sys

import pytest
from soak_helpers import run_pids, wait_for

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("worker")


def test_ctrl_c_leaves_nothing_behind(tmp_path, run_id):
    report_dir = tmp_path / "report"
    # The leaky worker guarantees live processes of the run at the moment of the interrupt,
    # including ones nobody would end without the harness.
    argv = [
        "-m",
        "harness",
        "soak",
        "--mode",
        "leaky",
        "--scenarios",
        "ok",
        "--sessions",
        "10000",
        "--concurrency",
        "2",
        "--run-id",
        run_id,
        "--report",
        str(report_dir),
        "--no-plot",
    ]
    child = pexpect.spawn(sys.executable, argv, timeout=120, dimensions=(40, 120))
    try:
        wait_for(lambda: len(run_pids(run_id)) >= 4, timeout=90, what="a few run processes")
        child.sendintr()  # ^C through the pty: SIGINT to the foreground group, as a user would
        child.expect(pexpect.EOF, timeout=120)
        child.close()
        assert child.exitstatus == 130, child.before
        assert run_pids(run_id) == [], "processes of the run survived Ctrl-C"
        report = json.loads((report_dir / "report.json").read_text())
        assert report["interrupted"] is True and report["verdict"] == "interrupted"
    finally:
        if child.isalive():
            child.kill(9)
            child.close(force=True)
        # Last resort so a failure here never leaks into the machine.
        from harness.cleanup import sweep_run

        sweep_run(run_id)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM/SIGHUP to a process: POSIX")
@pytest.mark.parametrize(
    ("sig", "scenario"),
    # SIGHUP: a closed terminal or a dropped ssh session. Before, the harness died on the spot
    # and the leaky worker's observers that ignore EOF lived on.
    [("SIGTERM", "ok"), ("SIGHUP", "ignore-eof")],
)
def test_a_termination_signal_leaves_nothing_behind(tmp_path, run_id, sig, scenario):
    """`timeout`, a cancelled CI job or `kill` send SIGTERM, a hangup SIGHUP: the same clean
    stop as Ctrl-C, and the run's record (harness/runs.py) goes with it."""
    import os
    import signal
    import subprocess

    report_dir = tmp_path / "report"
    argv = [sys.executable, "-m", "harness", "soak", "--mode", "leaky", "--scenarios", scenario]
    argv += ["--sessions", "10000", "--concurrency", "2", "--run-id", run_id]
    argv += ["--report", str(report_dir), "--no-plot", "--progress", "none"]
    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    harness = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: len(run_pids(run_id)) >= 4, timeout=90, what="a few run processes")
        harness.send_signal(getattr(signal, sig))
        assert harness.wait(timeout=120) == 130
        assert run_pids(run_id) == [], f"processes of the run survived {sig}"
        report = json.loads((report_dir / "report.json").read_text())
        assert report["interrupted"] is True and report["verdict"] == "interrupted"
        assert list((tmp_path / "runs").glob("*.json")) == [], "the run's record was left"
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        from harness.cleanup import sweep_run

        sweep_run(run_id)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(
            "pdeathsig",
            marks=pytest.mark.skipif(
                not sys.platform.startswith("linux"), reason="Linux parent-death signal"
            ),
        ),
        pytest.param(
            "lifeline",
            marks=pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipe lifeline"),
        ),
    ],
)
def test_harness_killed_outright_takes_the_worker_and_its_observers(tmp_path, run_id, how):
    """SIGKILL (the OOM killer, a CI runner torn down) leaves the harness no cleanup at all: the
    worker must die with it, and the fixed worker's guardian then ends the observers (these
    ignore EOF and SIGTERM). Before, the worker and its observers ran on.

    "lifeline" runs the macOS path on Linux (PROCTREE_FALLBACK: no parent-death signal, no
    subreaper): the worker reads EOF on the pipe the harness held and stops as on SIGTERM."""
    import os
    import signal
    import subprocess
    import tempfile
    from pathlib import Path

    import psutil

    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    if how == "lifeline":
        env["PROCTREE_FALLBACK"] = "1"
    argv = [sys.executable, "-m", "harness", "soak", "--scenarios", "ignore-eof+ignore-sigterm"]
    argv += ["--sessions", "10000", "--concurrency", "2", "--run-id", run_id]
    argv += ["--progress", "none", "--no-plot"]
    harness = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    worker: list[psutil.Process] = []
    try:
        wait_for(lambda: len(run_pids(run_id)) >= 3, timeout=90, what="a few run processes")
        worker = [
            p for p in psutil.Process(harness.pid).children() if "serve" in p.cmdline()
        ]  # fmt: skip
        assert worker, "the worker was not found under the harness"
        harness.send_signal(signal.SIGKILL)
        harness.wait(timeout=30)
        wait_for(lambda: not worker[0].is_running(), timeout=30, what="the worker to die")
        wait_for(lambda: run_pids(run_id) == [], timeout=60, what="the observers to be ended")
        # What the harness could not remove, its work folder, the next sweep does.
        sweep = [sys.executable, "-m", "harness", "sweep"]
        subprocess.run(sweep, env=env, stdin=subprocess.DEVNULL, timeout=120, check=True)
        assert not list(Path(tempfile.gettempdir()).glob(f"leakproof-soak-{run_id}-*"))
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        for p in worker:
            try:
                p.kill()
            except psutil.Error:
                pass
        from harness.cleanup import sweep_run

        sweep_run(run_id)
