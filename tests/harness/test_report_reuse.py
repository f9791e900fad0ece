"""A report folder used again: nothing of the earlier run may pass for this one's (its plot,
its kept work folder), and the report names no folder that is gone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("worker")


def _soak(report: Path, run_id: str, *flags: str) -> dict:
    argv = [sys.executable, "-m", "harness", "soak", "--scenarios", "ok", "--sessions", "3"]
    argv += ["--concurrency", "1", "--progress", "none", "--run-id", run_id]
    argv += ["--report", str(report), *flags]
    subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    return json.loads((report / "report.json").read_text())


def test_a_pass_after_a_fail_in_the_same_report_folder(tmp_path: Path, run_id: str) -> None:
    report = tmp_path / "report"
    first = _soak(report, run_id, "--mode", "leaky", "--grace", "1")
    assert first["verdict"] == "FAIL"
    assert (report / "work").is_dir() and (report / "rss.png").exists()
    second = _soak(report, run_id[::-1], "--no-plot")
    assert second["verdict"] == "PASS", second["reasons"]
    assert not (report / "rss.png").exists(), "the FAIL run's plot beside the PASS report"
    assert not (report / "work").exists(), "the FAIL run's evidence beside the PASS report"
    assert second["work_dir"] is None  # removed: not named


def test_a_users_own_work_folder_in_the_report_folder_is_never_touched(
    tmp_path: Path, run_id: str
) -> None:
    """`--report .` in a project with a `work/` of its own: a PASS removed it (taken for an
    earlier soak's kept work folder), a FAIL replaced it by the run's evidence."""
    report = tmp_path / "report"
    (report / "work").mkdir(parents=True)
    (report / "work" / "mine.txt").write_text("precious")
    assert _soak(report, run_id)["verdict"] == "PASS"
    assert (report / "work" / "mine.txt").read_text() == "precious"
    failed = _soak(report, run_id[::-1], "--mode", "leaky", "--grace", "1")
    assert failed["verdict"] == "FAIL"
    assert (report / "work" / "mine.txt").read_text() == "precious"
    assert failed["work_dir"] == str(report / f"work-{run_id[::-1]}")
    assert (report / f"work-{run_id[::-1]}" / "worker-leaky").is_dir()
    assert _soak(report, run_id, "--no-plot")["verdict"] == "PASS"  # the soak's own goes
    assert not (report / f"work-{run_id[::-1]}").exists()
    assert (report / "work" / "mine.txt").read_text() == "precious"


def test_an_earlier_verdict_is_gone_before_the_run_starts(tmp_path: Path, run_id: str) -> None:
    """A Ctrl-C (or a kill) before the end left the earlier run's PASS report in place, read
    as this run's; a report.json that cannot be written was found only after the whole run."""
    from harness.soak_config import report_dir_problem

    report = tmp_path / "report"
    report.mkdir()
    for name in ("report.json", "junit.xml", "leaks.txt", "rss.png"):
        (report / name).write_text("an earlier run's")
    (report / "notes.txt").write_text("mine")
    assert report_dir_problem(report, run_id) is None
    placeholder = json.loads((report / "report.json").read_text())
    assert placeholder["verdict"] == "running" and placeholder["run_id"] == run_id
    assert sorted(p.name for p in report.iterdir()) == ["notes.txt", "report.json"]
    blocked = tmp_path / "blocked"
    (blocked / "report.json").mkdir(parents=True)
    problem = report_dir_problem(blocked, run_id)
    assert problem is not None and "cannot write the report" in problem


def test_a_run_whose_observers_never_answered_says_so_and_keeps_the_log(
    tmp_path: Path, run_id: str
) -> None:
    """`--claude /bin/true` (or a scenario every fake dies of) passed with nothing said: every
    queued message failed, so only the ending of claudes that never worked was tested."""
    true = shutil.which("true")
    if true is None:
        pytest.skip("no `true` program here")
    report = tmp_path / "report"
    argv = [sys.executable, "-m", "harness", "soak", "--claude", true, "--sessions", "2"]
    argv += ["--progress", "none", "--no-plot", "--run-id", run_id, "--report", str(report)]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    result = json.loads((report / "report.json").read_text())
    assert result["verdict"] == "PASS" and done.returncode == 0  # nothing leaked: still true
    assert result["messages"]["processed"] == 0 and result["messages"]["failed"] > 0
    (warning,) = [w for w in result["warnings"] if "no queued message was processed" in w]
    assert true in warning and warning in done.stdout.decode()
    assert (
        result["work_dir"] and (Path(result["work_dir"]) / "worker-fixed" / "worker.log").is_file()
    )
    good = _soak(report, run_id[::-1])
    assert good["messages"]["processed"] > 0 and good["warnings"] == []
