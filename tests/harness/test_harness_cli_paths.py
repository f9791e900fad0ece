"""`python -m harness` as a user runs it: a short soak end to end from the command line (summary,
plain progress, report folder, exit code), and argument errors that must exit 2 and say why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from soak_helpers import run_pids


def _harness(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"},
    )


def test_soak_from_the_command_line_passes_and_reports(tmp_path, run_id):
    report_dir = tmp_path / "report"
    try:
        out = _harness(
            "soak",
            "--target",
            "reference",
            "--mode",
            "fixed",
            "--sessions",
            "2",
            "--prompts",
            "1",
            "--observations",
            "1",
            "--concurrency",
            "2",
            "--scenarios",
            "ok",
            "--grace",
            "5",
            "--progress",
            "plain",
            "--no-plot",
            "--run-id",
            run_id,
            "--report",
            str(report_dir),
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("soak PASS: target=reference mode=fixed sessions 2/2")
        assert "cleanup latency ms:" in out.stdout
        assert f"report: {report_dir}/report.json" in out.stdout
        assert "[soak " in out.stderr  # plain progress lines go to stderr, at least the last one
        report = json.loads((report_dir / "report.json").read_text())
        assert report["verdict"] == "PASS" and report["run_id"] == run_id
        assert report["completed"] == 2 and report["leaked_count"] == 0
        assert not (report_dir / "rss.png").exists()
    finally:
        leftovers = run_pids(run_id)
        for pid in leftovers:  # only processes carrying this test's own run id
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    assert leftovers == []


def test_argument_errors_exit_2_and_name_the_problem():
    no_command = _harness(timeout=60)
    assert no_command.returncode == 2 and "COMMAND" in no_command.stderr
    unknown = _harness("explode", timeout=60)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    bad_mode = _harness("soak", "--mode", "sloppy", timeout=60)
    assert bad_mode.returncode == 2 and "--mode" in bad_mode.stderr
    bad_number = _harness("soak", "--sessions", "many", timeout=60)
    assert bad_number.returncode == 2 and "--sessions" in bad_number.stderr
    bad_target = _harness("soak", "--target", "nowhere", "--progress", "none", timeout=60)
    assert bad_target.returncode == 2 and "harness soak:" in bad_target.stderr


@pytest.mark.parametrize("blocked", ["rss.png", "report.json"])
def test_a_report_that_cannot_be_written_is_refused_before_the_run(tmp_path, run_id, blocked):
    """Before: a traceback, exit 1 (the code of FAIL), a report.json.tmp left in the folder
    and the run's work folder left in the temp dir; then a harness error found only after the
    whole run. Now found before anything starts (the run's start clears the earlier report)."""
    import tempfile
    from pathlib import Path

    report_dir = tmp_path / "report"
    (report_dir / blocked).mkdir(parents=True)  # a folder where the file must go
    argv = ["soak", "--sessions", "2", "--prompts", "1", "--scenarios", "ok", "--grace", "5"]
    argv += ["--progress", "none", "--run-id", run_id, "--report", str(report_dir)]
    try:
        out = _harness(*argv)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        assert out.stdout == ""  # no run
        assert f"--report {report_dir}: cannot write the report there" in out.stderr
        assert not list(report_dir.glob("*.tmp")), "a half-written report was left"
        assert not list(Path(tempfile.gettempdir()).glob(f"leakproof-soak-{run_id}-*"))
    finally:
        assert run_pids(run_id) == []


@pytest.mark.parametrize(
    ("target", "unset"), [("nowhere", ()), ("claude-mem", ("LEAKPROOF_CLAUDE_MEM",))]
)
def test_a_target_that_cannot_be_made_leaves_the_report_folder_alone(tmp_path, target, unset):
    """`soak --target claude-mem --report DIR` without LEAKPROOF_CLAUDE_MEM (or an unknown
    target) exited 2 but had already marked DIR's report.json "running", for a run that never
    started, in place of the verdict it held."""
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    earlier = '{"verdict": "PASS", "run_id": "0123456789ab"}\n'
    (report_dir / "report.json").write_text(earlier)
    argv = ["soak", "--target", target, "--sessions", "1", "--progress", "none"]
    env = {k: v for k, v in os.environ.items() if k not in (*unset, "LEAKPROOF_CLAUDE_MEM_PLUGIN")}
    out = subprocess.run(
        [sys.executable, "-m", "harness", *argv, "--report", str(report_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2 and "harness soak:" in out.stderr, out.stderr
    assert (report_dir / "report.json").read_text() == earlier
