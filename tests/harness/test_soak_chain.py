"""Soaks of the fake's `chain` scenario: descendants several levels below an observer that carry
neither the run id nor a ledger line (`quiet=1`), as a program the fake runs would.

Each test runs the soak command (a process of its own, as a user does) and then looks for what
is left by the environment the fake hands down (FAKE_CLAUDE_RUN_ID), which such a process keeps.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

pytest.importorskip("worker")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the chain's quiet levels are found on Linux"
)


def _of_run(run_id: str) -> list[psutil.Process]:
    """Live processes that inherited the run's id in their environment."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("FAKE_CLAUDE_RUN_ID") == run_id:
                found.append(p)
        except psutil.Error:
            continue
    return found


Soak = Callable[..., tuple[int, dict, str]]


@pytest.fixture
def soak(tmp_path: Path, run_id: str) -> Iterator[Soak]:
    """Runs the soak command: (exit code, report.json, leaks.txt). At teardown, whatever of the
    run is still alive (only if the harness failed to end it) is killed by the run's own id."""

    def run(mode: str, scenario: str, grace: float = 2.0) -> tuple[int, dict, str]:
        report_dir = tmp_path / "report"
        cmd = [sys.executable, "-m", "harness", "soak", "--mode", mode, "--run-id", run_id]
        cmd += ["--sessions", "2", "--concurrency", "1", "--prompts", "1", "--grace", str(grace)]
        cmd += ["--scenarios", scenario, "--progress", "none", "--no-plot"]
        cmd += ["--report", str(report_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        report = json.loads((report_dir / "report.json").read_text())
        return done.returncode, report, (report_dir / "leaks.txt").read_text()

    try:
        yield run
    finally:
        for p in _of_run(run_id):
            p.kill()


def test_a_quiet_daemonizing_chain_of_the_leaky_worker_is_named_and_ended(
    soak: Soak, run_id: str
) -> None:
    # Each level starts the next and exits at once: the leaf is an orphan long before any
    # sample, and under the leaky worker (no subreaper) it went to init, unseen.
    code, report, leaks = soak("leaky", "chain:depth=3,exit=1,quiet=1")
    assert code == 1 and report["verdict"] == "FAIL"
    leaves = [e for e in report["leaked"] if e["cmdline"][-4:-2] == ["--level", "3"]]
    assert len(leaves) == 2, report["leaked"]  # one per observer (2 sessions, 1 prompt)
    assert all(e["ppid"] and e["rss"] for e in leaves), leaves
    assert leaks.count("--level 3") == 2, leaks
    assert _of_run(run_id) == [], "a process of the run outlived it"


def test_a_leak_whose_argv_reads_blank_is_named_by_its_program(soak: Soak, run_id: str) -> None:
    # The leaf zeroes its argv at its start; the grace gives a loaded machine time for that
    # before the leak is judged (and its facts read).
    code, report, leaks = soak("leaky", "chain:depth=2,leaf=blank", 5.0)
    assert code == 1 and report["verdict"] == "FAIL"
    assert all(any(e["cmdline"]) for e in report["leaked"]), report["leaked"]
    named = [
        e
        for e in report["leaked"]
        if e["cmdline"] and re.fullmatch(r"\[python[^]]*\]", e["cmdline"][0])
    ]
    assert len(named) == 2 and all(len(e["cmdline"]) == 1 for e in named), report["leaked"]
    assert all(f" {e['cmdline'][0]}\n" in leaks for e in named), leaks
    assert _of_run(run_id) == [], "a process of the run outlived it"


def test_every_level_of_a_deep_chain_is_of_its_observers_session(soak: Soak, run_id: str) -> None:
    # Found by descent alone (quiet=1), each level is the parent of the next, all idling.
    code, report, _ = soak("leaky", "chain:depth=4,quiet=1")
    assert code == 1 and report["verdict"] == "FAIL"
    levels = [e for e in report["leaked"] if "--level" in e["cmdline"]]
    assert len(levels) == 8, report["leaked"]  # 4 per observer (2 sessions, 1 prompt)
    sessions = sorted(e["session"] for e in report["leaked"] if e["role"] == "main")
    assert len(set(sessions)) == 2 and None not in sessions, report["leaked"]
    assert Counter(e["session"] for e in levels) == Counter(sessions * 4), levels
    assert _of_run(run_id) == [], "a process of the run outlived it"


def test_a_leak_is_named_with_the_parent_it_had_when_judged(soak: Soak, run_id: str) -> None:
    # The exit sweep kills the observers and the levels after their judgement; each level's
    # PPID must still link it to the level above it (and level 1 to its observer).
    code, report, leaks = soak("leaky", "chain:depth=3,quiet=1")
    assert code == 1 and report["verdict"] == "FAIL"
    mains = {e["pid"] for e in report["leaked"] if e["role"] == "main"}
    levels = {e["pid"]: e for e in report["leaked"] if "--level" in e["cmdline"]}
    assert len(mains) == 2 and len(levels) == 6, report["leaked"]
    for e in levels.values():
        level = int(e["cmdline"][e["cmdline"].index("--level") + 1])
        parent = levels.get(e["ppid"])
        above = 0 if e["ppid"] in mains else int(parent["cmdline"][-3]) if parent else None
        assert above == level - 1, (e, report["leaked"])
    assert _of_run(run_id) == [], "a process of the run outlived it"


def test_a_zombie_held_by_a_leak_is_named_by_its_program(soak: Soak, run_id: str) -> None:
    # The leaf forks two children that exit at once, and never reaps them.
    code, report, _ = soak("leaky", "chain:depth=1,zombie=2")
    assert code == 1 and report["verdict"] == "FAIL"
    assert len(report["zombies"]) == 4, report["zombies"]  # 2 per observer, 2 sessions
    assert all(any(z["cmdline"]) for z in report["zombies"]), report["zombies"]
    assert _of_run(run_id) == [], "a process of the run outlived it"
