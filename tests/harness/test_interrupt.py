"""Ctrl-C in a terminal: the soak stops, ends every process of the run, reports `interrupted`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from soak_helpers import run_pids, wait_for

from harness.report import UNSEEN_REASON

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("worker")


@contextlib.contextmanager
def _running(argv: list[str], run_id: str, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """The harness, once the run has a few processes; whatever happens, nothing of it is left."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    harness = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **popen)
    try:
        wait_for(lambda: len(run_pids(run_id)) >= 4, timeout=90, what="a few run processes")
        yield harness
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        from harness.cleanup import sweep_run

        sweep_run(run_id)  # last resort: a failure here never leaks into the machine


def _ended_cleanly(run_id: str, report_dir: Path, how: str) -> None:
    assert run_pids(run_id) == [], f"processes of the run survived {how}"
    report = json.loads((report_dir / "report.json").read_text())
    assert report["interrupted"] is True and report["verdict"] == "interrupted"
    # What the interrupt's sweep ended was in flight, not found outliving the worker's stop.
    assert not [e for e in report["leaked"] if e["reason"] == UNSEEN_REASON], report["leaked"]


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
        _ended_cleanly(run_id, report_dir, "Ctrl-C")
    finally:
        if child.isalive():
            child.kill(9)
            child.close(force=True)
        # Last resort so a failure here never leaks into the machine.
        from harness.cleanup import sweep_run

        sweep_run(run_id)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process: POSIX")
def test_ctrl_c_after_the_reader_of_its_output_went_away(tmp_path, run_id):
    """Under tox the harness writes into tox's pipes, and tox may exit first on Ctrl-C. Before,
    the next write raised BrokenPipeError in the middle of the cleanup: exit 1, the report left
    `running`, the work folder left in the temporary folder."""
    report_dir = tmp_path / "report"
    argv = _soak_argv(run_id, report_dir, "ok")
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with _running(argv, run_id, **popen) as harness:
        harness.send_signal(signal.SIGINT)
        assert harness.stdout is not None and harness.stderr is not None
        harness.stdout.close()
        harness.stderr.close()
        assert harness.wait(timeout=120) == 130
        _ended_cleanly(run_id, report_dir, "Ctrl-C with its pipes closed")
        work = list(Path(tempfile.gettempdir()).glob(f"leakproof-soak-{run_id}-*"))
        assert work == [], "the run's work folder was left"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process: POSIX")
def test_what_the_interrupts_cleanup_ended_is_no_cleanup_latency(tmp_path, run_id):
    """Sessions over, their leaky observers within --grace: the harness's own cleanup ends them
    after the interrupt, which is not the worker ending them. Before, it was measured as the
    worker's cleanup latency (p50 4540 ms after a Ctrl-C)."""
    report_dir = tmp_path / "report"
    argv = _soak_argv(run_id, report_dir, "ok")
    argv[argv.index("--progress") + 1] = "plain"
    argv += ["--grace", "300"]
    with _running(argv, run_id, stderr=subprocess.PIPE, text=True) as harness:
        assert harness.stderr is not None
        for line in harness.stderr:  # the progress lines: "sessions ended N/TOTAL ..."
            done = re.search(r"sessions ended (\d+)/", line)
            if done and int(done.group(1)) >= 3:
                break
        harness.send_signal(signal.SIGINT)
        harness.stderr.read()
        assert harness.wait(timeout=120) == 130
        _ended_cleanly(run_id, report_dir, "Ctrl-C")
        report = json.loads((report_dir / "report.json").read_text())
        latency = report["cleanup_latency_ms"]
        assert latency["n"] == 0 and latency["not_measured"] >= 3, latency


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM/SIGHUP to a process: POSIX")
@pytest.mark.parametrize(
    ("sig", "scenario"),
    # SIGHUP: a closed terminal or a dropped ssh session. Before, the harness died on the spot
    # and the leaky worker's observers that ignore EOF lived on.
    # The third: observers that outlive the worker's stop, ended by the sweep (in flight: no
    # leak of the kind only the run's last judgement may name).
    [("SIGTERM", "ok"), ("SIGHUP", "ignore-eof"), ("SIGTERM", "ignore-eof+ignore-sigterm")],
)
def test_a_termination_signal_leaves_nothing_behind(tmp_path, run_id, sig, scenario):
    """`timeout`, a cancelled CI job or `kill` send SIGTERM, a hangup SIGHUP: the same clean
    stop as Ctrl-C, and the run's record (harness/runs.py) goes with it."""
    report_dir = tmp_path / "report"
    argv = _soak_argv(run_id, report_dir, scenario)
    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    with _running(argv, run_id, env=env) as harness:
        harness.send_signal(getattr(signal, sig))
        assert harness.wait(timeout=120) == 130
        _ended_cleanly(run_id, report_dir, sig)
        assert list((tmp_path / "runs").glob("*.json")) == [], "the run's record was left"


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
    import tempfile

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


def _soak_argv(run_id: str, report_dir: Path, scenario: str) -> list[str]:
    argv = [sys.executable, "-m", "harness", "soak", "--mode", "leaky", "--scenarios", scenario]
    argv += ["--sessions", "10000", "--concurrency", "2", "--run-id", run_id]
    return argv + ["--report", str(report_dir), "--no-plot", "--progress", "none"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a process: POSIX")
def test_sigterm_stops_a_harness_started_with_sigint_ignored(tmp_path, run_id):
    """`soak ... &` in a script starts it with SIGINT ignored. SIGTERM took the Ctrl-C path by
    raising SIGINT, which did nothing then: the run went on to its end."""
    report_dir = tmp_path / "report"
    # SIG_IGN survives exec: the harness starts as a shell's background job would.
    launch = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    launch += "os.execv(sys.executable, sys.argv[1:])"
    argv = [sys.executable, "-c", launch, *_soak_argv(run_id, report_dir, "ok")]
    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    with _running(argv, run_id, env=env) as harness:
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=120) == 130
        _ended_cleanly(run_id, report_dir, "SIGTERM")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a process: POSIX")
def test_sigterm_with_sigint_ignored_prints_the_interrupted_runs_summary(tmp_path, run_id):
    """With SIGINT ignored asyncio installs no Ctrl-C handler: SIGTERM raises KeyboardInterrupt
    wherever the loop is, and asyncio.run, having let the run end itself and write its report,
    re-raised it: the summary was dropped and only "soak interrupted" was said."""
    report_dir = tmp_path / "report"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    launch = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    launch += "os.execv(sys.executable, sys.argv[1:])"
    argv = [sys.executable, "-c", launch, *_soak_argv(run_id, report_dir, "ok")]
    argv[argv.index("--progress") + 1] = "plain"  # a line per interval: sessions done
    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    with (
        out.open("w") as out_file,
        err.open("w") as err_file,
        _running(argv, run_id, env=env, stdout=out_file, stderr=err_file) as harness,
    ):
        # Some sessions done first, so the summary has something to count.
        done = re.compile(r" sessions ended [1-9]")
        wait_for(lambda: done.search(err.read_text()), timeout=90, what="sessions ended")
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=120) == 130, err.read_text()
    _ended_cleanly(run_id, report_dir, "SIGTERM with SIGINT ignored")
    report = json.loads((report_dir / "report.json").read_text())
    printed = out.read_text()
    summary = f"soak interrupted: target={report['target']} mode={report['mode']} sessions "
    assert summary + f"{report['completed']}/{report['sessions']} " in printed, printed
    assert report["completed"] > 0
    assert f"report: {report_dir}/report.json" in printed


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a process: POSIX")
def test_signals_during_the_cleanup_wait_for_it(tmp_path, run_id):
    """A second SIGTERM (or Ctrl-C) cut the cleanup short: the run's processes known only to
    the census were left running, and no report was written. Now it is acknowledged and the
    cleanup and the report finish."""
    report_dir = tmp_path / "report"
    err = tmp_path / "stderr.txt"
    # Observers that ignore EOF and SIGTERM: a cleanup long enough for signals to land in it.
    argv = _soak_argv(run_id, report_dir, "ignore-eof+ignore-sigterm")
    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    acknowledged = "SIGTERM noted; ending the run's processes and writing its report first"
    with err.open("w") as err_file, _running(argv, run_id, env=env, stderr=err_file) as harness:
        harness.send_signal(signal.SIGTERM)
        # More, until one has landed in the cleanup (it says so) or the harness is done.
        deadline = time.monotonic() + 60
        while harness.poll() is None and acknowledged not in err.read_text():
            assert time.monotonic() < deadline, "the harness neither ended nor acknowledged"
            harness.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        assert harness.wait(timeout=120) == 130, err.read_text()
        assert acknowledged in err.read_text()
        _ended_cleanly(run_id, report_dir, "two SIGTERMs")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a process: POSIX")
def test_the_last_progress_line_counts_as_the_report_does(tmp_path, run_id):
    """The sessions in flight at an interrupt are cancelled, not done: the progress line's last
    count said 16/10000 where the summary said 12 completed and 0 failed."""
    report_dir = tmp_path / "report"
    err, out = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    argv = _soak_argv(run_id, report_dir, "ok")
    argv[argv.index("--progress") + 1] = "plain"
    env = {**os.environ, "LEAKPROOF_RUNS_DIR": str(tmp_path / "runs")}
    with (
        err.open("w") as err_file,
        out.open("w") as out_file,
        _running(argv, run_id, env=env, stderr=err_file, stdout=out_file) as harness,
    ):
        # Sessions in flight at the signal: the run has processes (see _running) and goes on.
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=120) == 130
    report = json.loads((report_dir / "report.json").read_text())
    last = [line for line in err.read_text().splitlines() if line.startswith("[soak")][-1]
    ended = report["completed"] + report["failed"]
    assert f" sessions ended {ended}/10000 (failed {report['failed']}" in last, last
    assert last.endswith("| interrupted"), last
    # The summary's sessions and its cleanup-latency line add up: the latter counts every
    # session that ended, those cut off by the interrupt too (it said "sessions 60/200" beside
    # "n=53 ... 11 more").
    summary = out.read_text()
    counted = re.search(
        r"sessions (\d+)/10000 \(failed (\d+)(?:, (\d+) more started and cut off)?\)", summary
    )
    assert counted, summary
    said = sum(int(n or 0) for n in counted.groups())
    latency = report["cleanup_latency_ms"]
    assert said == report["started"] == latency["n"] + latency["not_measured"], (summary, latency)
