"""A --grace shorter than the fixed worker's own escalation is called out, and rightly so: with it,
observers that ignore EOF and SIGTERM count as leaked; with a grace above it, they do not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.report_assembly import grace_warning
from harness.soak_config import SoakConfig

pytest.importorskip("worker")


def test_warning_only_for_the_fixed_reference_worker():
    short = {"grace": 1.0, "worker_grace": 1.5}
    assert grace_warning(SoakConfig(**short)) is not None
    assert grace_warning(SoakConfig(mode="leaky", **short)) is None  # it ends nothing anyway
    assert grace_warning(SoakConfig(target="claude-mem", **short)) is None
    assert grace_warning(SoakConfig(grace=4.0, worker_grace=1.5)) is None


@pytest.mark.parametrize(("grace", "warned"), [(1.0, True), (5.0, False)])
def test_the_warning_predicts_the_verdict(tmp_path, run_id, grace, warned):
    report_dir = tmp_path / "report"
    argv = [sys.executable, "-m", "harness", "soak", "--scenarios", "ignore-eof+ignore-sigterm"]
    argv += ["--worker-grace", "1.5", "--grace", str(grace), "--sessions", "2"]
    argv += ["--concurrency", "1", "--run-id", run_id, "--report", str(report_dir)]
    argv += ["--no-plot", "--progress", "none"]
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
    )
    report = json.loads((report_dir / "report.json").read_text())
    assert ("warning: --grace" in done.stderr) is warned, done.stderr
    assert bool(report["warnings"]) is warned
    if warned:
        assert report["verdict"] == "FAIL" and report["leaked_count"] >= 1, report["reasons"]
        assert "warning: --grace" in done.stdout  # the summary repeats it beside the verdict
    else:
        assert report["verdict"] == "PASS", report["reasons"]
