"""`soak --claude` with a claude of real size and speed: the limits made for the fake (a 10 s
turn, a 1 GB peak) must not fail or hollow out a clean run of it, and what the worker ran with
is said. The turn limit is the user's to set (`--turn-timeout`); with none left to answer, the
warning names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.cli import build_parser
from harness.soak import config_from_args
from harness.soak_config import DEFAULT_PEAK_BUDGET_MB

pytest.importorskip("worker")


def _config(*flags: str):  # type: ignore[no-untyped-def]
    argv = ["soak", *flags]
    return config_from_args(build_parser(argv).parse_args(argv))


def test_the_peak_budget_is_the_fakes_unless_given() -> None:
    fake = _config()
    assert fake.rss_peak == DEFAULT_PEAK_BUDGET_MB
    assert fake.rss_stop_mb() == 2 * DEFAULT_PEAK_BUDGET_MB
    own = _config("--claude", sys.executable)
    assert own.rss_peak is None, "a real claude's size times the concurrency is no leak"
    half = psutil.virtual_memory().total / 2**20 / 2
    assert own.rss_stop_mb() == pytest.approx(half), "a leaking worker still may not take it all"
    given = _config("--claude", sys.executable, "--rss-peak", "500")
    assert (given.rss_peak, given.rss_stop_mb()) == (500.0, 1000.0)
    stop = _config("--claude", sys.executable, "--rss-stop", "0")
    assert (stop.rss_peak, stop.rss_stop_mb()) == (None, None)


def _slow_claude(tmp_path: Path) -> Path:
    """The fake, each message of its turns 1.2 s late (a model's pace, scaled down)."""
    script = tmp_path / "claude"
    script.write_text(
        f"""#!{sys.executable}
import os, sys
os.environ["FAKE_CLAUDE_SCENARIO"] = "slow:first=0,latency=1.2,jitter=0"
os.execv(sys.executable, [sys.executable, "-m", "fake_claude", *sys.argv[1:]])
"""
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("turn_timeout", [None, 1.0], ids=["default", "one-second"])
def test_the_turn_limit_reaches_the_worker(
    tmp_path: Path, run_id: str, turn_timeout: float | None
) -> None:
    report_dir = tmp_path / "report"
    cmd = [sys.executable, "-m", "harness", "soak", "--claude", str(_slow_claude(tmp_path))]
    cmd += ["--run-id", run_id, "--sessions", "1", "--prompts", "1", "--observations", "0"]
    cmd += ["--progress", "none", "--no-plot", "--report", str(report_dir)]
    if turn_timeout is not None:
        cmd += ["--turn-timeout", f"{turn_timeout:g}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    report = json.loads((report_dir / "report.json").read_text())
    assert done.returncode == 0 and report["verdict"] == "PASS", done.stdout + done.stderr
    said = [w for w in report["warnings"] if "no queued message was processed" in w]
    if turn_timeout is None:
        assert report["config"]["turn_timeout"] == 120.0
        assert report["messages"]["processed"] >= 1 and said == [], report["messages"]
    else:
        assert report["config"]["turn_timeout"] == turn_timeout
        assert report["messages"]["processed"] == 0, report["messages"]
        assert len(said) == 1 and "--turn-timeout (1 s)" in said[0], report["warnings"]
        # Kept for the reader of the warning, and said without a ledger: --claude writes none.
        assert "work folder kept (worker log, database): " in done.stdout, done.stdout
