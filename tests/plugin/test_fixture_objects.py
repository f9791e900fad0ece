"""Processes a higher-scoped fixture's object starts while a test uses it (a session-wide
ProcessPoolExecutor starts its workers on the first submit, a Pool with maxtasksperchild
replaces them): the fixture's, judged at its teardown, not the test's that was running."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_leak_check import INNER_ARGS, teardown_errors, write_tests

import proctree

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and forkserver: POSIX")

# Each pool worker writes its pid, so that the outer test ends whatever the inner run left
# (a fork's argv is the inner pytest's, with no marker in it).
MARK = """
import concurrent.futures as cf
import multiprocessing as mp

def mark():
    (OUT / f"worker-{os.getpid()}.pid").write_text(str(os.getpid()))
"""

POOLS = (
    MARK
    + """

def pid(_):
    return os.getpid()

@pytest.fixture(scope="module", params=["fork", "spawn", "forkserver"])
def executor(request):
    ctx = mp.get_context(request.param)
    with cf.ProcessPoolExecutor(2, mp_context=ctx, initializer=mark) as ex:
        yield ex

@pytest.fixture(scope="session")
def pool():
    # maxtasksperchild: its handler thread replaces each worker after one task.
    with mp.get_context("fork").Pool(2, initializer=mark, maxtasksperchild=1) as pool:
        yield {"pool": pool}

def test_first_submit(executor):
    assert executor.submit(pid, 0).result(timeout=60) > 0

def test_more_workers(executor):
    assert len(set(executor.map(pid, range(8), timeout=60))) >= 1

def test_replaced_workers(pool):
    pool["pool"].map(pid, range(4), chunksize=1)

def test_replaced_again(pool):
    pool["pool"].map(pid, range(4), chunksize=1)
"""
)


@pytest.fixture
def out(pytester: pytest.Pytester) -> Iterator[Path]:
    """The inner run's folder of worker pids: whatever of them still runs is killed after."""
    began = proctree.now()
    folder = pytester.path / "out"
    yield folder
    for path in folder.glob("worker-*.pid"):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(int(path.read_text()))
            if proctree.create_time(proc) >= began - 1:
                proc.kill()


def workers_left(out: Path) -> list[int]:
    """The inner run's pool workers still running a moment after it ended (none, if it ended
    them), waited for with a deadline: a killed one may not be gone yet."""
    deadline = time.monotonic() + 30
    while True:
        alive = [int(p.read_text()) for p in out.glob("worker-*.pid")]
        alive = [pid for pid in alive if psutil.pid_exists(pid) and not _exited(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _exited(pid: int) -> bool:
    try:
        return proctree.exited(psutil.Process(pid))
    except psutil.Error:
        return True


def test_a_fixtures_pool_started_lazily_is_the_fixtures(
    pytester: pytest.Pytester, marker: str, out: Path
) -> None:
    """Every test that made a fixture's pool start a worker failed for it (and the leak check
    waited its whole timeout), though the fixture ends the pool at its teardown."""
    write_tests(pytester, marker, POOLS)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=300)
    output = result.stdout.str()
    assert teardown_errors(output) == {}, output
    assert "still running" not in output, output
    result.assert_outcomes(passed=8)
    assert result.ret == pytest.ExitCode.OK
    assert list(out.glob("worker-*.pid")), "no pool worker ran"
    assert workers_left(out) == []


LEAKY_FIXTURE = (
    MARK
    + """
KEPT = []

@pytest.fixture(scope="module")
def executor():
    KEPT.append(cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=mark))
    yield KEPT[-1]
    # never shut down (and kept alive): its worker outlives the fixture

def test_uses_it(executor):
    assert executor.submit(abs, -1).result(timeout=60) == 1

def test_after():
    pass
"""
)


def test_a_fixtures_pool_it_never_ends_is_its_leak(
    pytester: pytest.Pytester, marker: str, out: Path
) -> None:
    """The worker the first test made the fixture's executor start is the fixture's: reported
    at the fixture's teardown, under its name, not under the test's at the test's."""
    write_tests(pytester, marker, LEAKY_FIXTURE)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=300)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_after"}, result.stdout.str()
    assert "started by fixture 'executor' (module), torn down after" in errors["test_after"]
    assert workers_left(out) == []


# A session fixture whose value refers to pytest's config: through pytest's own objects (here
# the config's stash, where a plugin keeps its state) a process a test started is reachable.
CONFIG_FIXTURE = """
PROCS = pytest.StashKey[list]()

@pytest.fixture(scope="session")
def settings(pytestconfig):
    pytestconfig.stash[PROCS] = []
    return {"config": pytestconfig}

def test_leaks(settings, request):
    request.config.stash[PROCS].append(sleeper(600, "leak"))

def test_after(settings):
    pass
"""


def test_what_a_fixture_reaches_through_pytest_is_not_its(
    pytester: pytest.Pytester, marker: str
) -> None:
    write_tests(pytester, marker, CONFIG_FIXTURE)
    result = pytester.runpytest_subprocess("--leak-check", *INNER_ARGS, timeout=300)
    errors = teardown_errors(result.stdout.str())
    assert set(errors) == {"test_leaks"}, result.stdout.str()
    assert "started by test_inner.py::test_leaks:" in errors["test_leaks"]
