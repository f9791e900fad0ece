"""A report folder used again: nothing of the earlier run may pass for this one's (its plot,
its kept work folder), and the report names no folder that is gone."""

from __future__ import annotations

import json
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
