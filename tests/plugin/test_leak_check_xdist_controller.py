"""The leak check in an xdist controller, run for real: inner `-n 2` sessions whose conftest
hooks start real processes in the controller, in the workers, or both."""

from __future__ import annotations

import re
import sys

import pytest
from leakcheck_helpers import wait_until_gone
from test_leak_check import INNER_ARGS

pytest_plugins = ["pytester"]

# Every inner conftest starts with this: a sleeper carrying the outer test's marker, its pid
# written where the outer test reads it, and whether this process is an xdist worker.
PRELUDE = """
import subprocess, sys
from pathlib import Path

MARKER = {marker!r}
OUT = Path({out!r})
IN_WORKER = []

def pytest_configure(config):
    # Not PYTEST_XDIST_WORKER: an outer xdist run's sets it in the inner controller too.
    IN_WORKER.append(hasattr(config, "workerinput"))

def sleeper(name):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", MARKER])
    (OUT / (name + ".pid")).write_text(str(proc.pid))
    return proc
"""

CONTROLLER_SPAWNS = {
    # After the last test: xdist's own pytest_sessionfinish ends the workers meanwhile.
    "sessionfinish": """
def pytest_sessionfinish(session):
    if not IN_WORKER[-1]:
        sleeper("controller")
""",
    # While the workers run tests: the controller runs the reporting hooks of each.
    "logreport": """
def pytest_runtest_logreport(report):
    if not IN_WORKER[-1] and not (OUT / "controller.pid").exists():
        sleeper("controller")
""",
}

TESTS = """
import subprocess, sys

def test_one():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_two():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


def _inner(pytester: pytest.Pytester, marker: str, conftest: str) -> pytest.RunResult:
    out = pytester.path / "out"
    out.mkdir()
    pytester.makeconftest(PRELUDE.format(marker=marker, out=str(out)) + conftest)
    pytester.makepyfile(test_inner=TESTS)
    return pytester.runpytest_subprocess("-n", "2", "--leak-check", *INNER_ARGS, timeout=120)


@pytest.mark.parametrize("hook", sorted(CONTROLLER_SPAWNS))
def test_what_a_hook_in_the_xdist_controller_leaves_is_named_killed_and_fails_the_run(
    pytester: pytest.Pytester, marker: str, hook: str
) -> None:
    """The controller checked nothing of its own: what a conftest hook run there started after
    the tests began outlived a passing `-n 2` run, where without xdist it fails the run."""
    result = _inner(pytester, marker, CONTROLLER_SPAWNS[hook])
    text = result.stdout.str()
    pid = int((pytester.path / "out" / "controller.pid").read_text())
    result.assert_outcomes(passed=2)
    # The controller's own report: no worker's [gwN] prefix.
    assert re.search(r"^leak-check: 1 process\(es\) still running at session end:$", text, re.M)
    assert "started by no test: a hook or plugin run in the xdist controller" in text, text
    assert re.search(rf"^\s+{pid}\s+\d+\s+[\d.]+s\s+.*{marker}$", text, re.M), text
    assert "leak-check killed them." in text
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert wait_until_gone(marker) == []


BOTH_SPAWN = """
def pytest_runtest_logfinish(nodeid, location):
    if not (OUT / f"{nodeid.rsplit(':', 1)[-1]}-{IN_WORKER[-1]}.pid").exists():
        sleeper(f"{nodeid.rsplit(':', 1)[-1]}-{IN_WORKER[-1]}")
"""


def test_the_controller_and_its_workers_each_report_their_own(
    pytester: pytest.Pytester, marker: str
) -> None:
    """A hook run in every process: each worker reports what it started (relayed, [gwN]), the
    controller what it started, and none reports another's."""
    result = _inner(pytester, marker, BOTH_SPAWN)
    text = result.stdout.str()
    out = pytester.path / "out"
    mine = {int((out / f"{test}-False.pid").read_text()) for test in ("test_one", "test_two")}
    theirs = {int((out / f"{test}-True.pid").read_text()) for test in ("test_one", "test_two")}
    own = text.split("\nleak-check: 2 process(es) still running at session end:\n", 1)
    assert len(own) == 2, text
    table = own[1].split("leak-check killed them.", 1)[0]
    assert {int(pid) for pid in re.findall(r"^\s+(\d+)\s", table, re.M)} == mine, text
    relayed = {int(pid) for pid in re.findall(r"^\[gw\d\]\s+(\d+)\s", text, re.M)}
    assert relayed == theirs, text
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert wait_until_gone(marker) == []


ORDINARY = """
def pytest_sessionstart(session):
    # Before the tests: the session's own, as without xdist (stopped at unconfigure).
    session.config.server = sleeper(f"server-{IN_WORKER[-1]}")

def pytest_unconfigure(config):
    config.server.kill()
    config.server.wait()
    if IN_WORKER[-1]:
        # After the worker's session: judged by nobody, as without xdist; it outlives the
        # worker, and a subreaper controller adopts it.
        sleeper("after-worker")
"""


@pytest.mark.parametrize("subreaper", [False, True], ids=["plain", "subreaper"])
def test_an_ordinary_xdist_run_is_not_failed_by_its_controller(
    pytester: pytest.Pytester, marker: str, subreaper: bool
) -> None:
    """No false positive: the workers (exiting as the controller's check begins), what they
    leave to their parent when they exit, and what the controller started before the tests are
    not the controller's leaks."""
    if subreaper and sys.platform != "linux":
        pytest.skip("a child subreaper is Linux-only")
    if subreaper:
        pytester.makeini("[pytest]\naddopts = --leak-check-subreaper\n")
    result = _inner(pytester, marker, ORDINARY)
    text = result.stdout.str()
    result.assert_outcomes(passed=2)
    assert "still running at session end" not in text, text
    assert result.ret == pytest.ExitCode.OK
