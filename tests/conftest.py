"""Suite-wide guard: no process started by this test run may outlive it.

Every process the suite starts inherits ``LEAKPROOF_TEST_SESSION=<token>`` (set here before xdist
starts its workers). At the end of the session (in the xdist controller, after the workers are gone)
any live process carrying the token is a survivor: it is listed (pid, ppid, age, command line, and
the fake's ``--fake-claude-run-id=`` when it has one), killed, and the run fails. The per-test
``--leak-check`` plugin catches most leaks earlier and names the test; this is the last line, and it
also covers Ctrl-C.

The suite's temporary folders (its own, pytest's, and the work folders the harness keeps for failed
soaks, which many tests provoke on purpose) go to one folder per session via TMPDIR: removed when
the session passes, kept and named when it fails.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import tempfile
import time

import psutil
import pytest

import proctree
from harness.cleanup import end_all
from harness.runs import RUNS_DIR_ENV

SESSION_VAR = "LEAKPROOF_TEST_SESSION"
OUTER_TMP_VAR = "LEAKPROOF_OUTER_TMPDIR"
RUN_ID_FLAG = "--fake-claude-run-id="
_DEADLINE_S = 5.0  # xdist workers and slow exits get this long to go before they count
_started_key = pytest.StashKey[float]()
_tmp_key = pytest.StashKey[str]()


# A suite started in the background of a non-interactive shell (`pytest ... &`) inherits SIGINT
# ignored, and so would every program its tests interrupt with Ctrl-C, which then runs on: the
# tests of Ctrl-C need the default back. (Each xdist worker imports this file too.)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PACKAGES = ("proctree", "harness", "worker", "fake_claude")


def _shadowed() -> list[str]:
    """Our packages that resolve to no file of theirs: a namespace package, i.e. a folder of the
    same name (tests/proctree) found instead of the package."""
    specs = {name: importlib.util.find_spec(name) for name in PACKAGES}
    return [name for name, spec in specs.items() if spec is not None and not spec.has_location]


def pytest_configure(config: pytest.Config) -> None:
    if shadowed := _shadowed():
        # Found once with an editable install and a bare `pytest` (before pyproject's pythonpath):
        # the tests ran against test folders, crashed in their clean-up, and the end-of-session
        # check below crashed too, so the processes they had started were left running.
        raise pytest.UsageError(
            f"{', '.join(shadowed)} import(s) as a namespace package, not this project's code "
            "(a test folder of the same name?): nothing was run. Try `python -m pytest`."
        )
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        os.environ[SESSION_VAR] = secrets.token_hex(8)
        config.stash[_started_key] = proctree.now()  # on create_time's clock
        if config.option.basetemp is None:  # an explicit --basetemp says where things go
            # Locks shared with other sessions (the npm install's) stay in the outer one.
            os.environ.setdefault(OUTER_TMP_VAR, tempfile.gettempdir())
            tmp = tempfile.mkdtemp(prefix="leakproof-tests-")
            config.stash[_tmp_key] = os.environ["TMPDIR"] = tmp
            tempfile.tempdir = None  # gettempdir() caches; xdist workers inherit TMPDIR
            # The records of runs under way (harness/runs.py) stay in the session too: the
            # tests that kill a harness outright leave stale ones, which are not the user's.
            os.environ.setdefault(RUNS_DIR_ENV, os.path.join(tmp, "runs"))


def _remove_session_tmp(config: pytest.Config, passed: bool) -> None:
    tmp = config.stash.get(_tmp_key, None)
    if tmp is None:
        return
    if passed:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"temporary folders of this failed run kept in {tmp}")


def _survivors(token: str, since: float) -> list[psutil.Process]:
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        info = proc.info
        try:
            if info["pid"] == me or proctree.create_time(proc) + 1 < since:
                continue
        except psutil.Error:
            continue
        if _carries(proc, token) and not _exited(proc, info["status"]):
            found.append(proc)
    return found


def _exited(proc: psutil.Process, status: str | None) -> bool:
    try:
        return status == psutil.STATUS_ZOMBIE and proctree.exited(proc)
    except psutil.Error:
        return True  # gone meanwhile


def _carries(proc: psutil.Process, token: str) -> bool:
    try:
        # through a live thread if its main thread has exited (the leader then reads empty)
        return proctree.environ(proc).get(SESSION_VAR) == token
    except (psutil.Error, OSError):
        return False  # gone, or not ours to read


def _describe(proc: psutil.Process) -> str:
    try:
        with proc.oneshot():
            argv = proctree.cmdline(proc)
            run_ids = [arg[len(RUN_ID_FLAG) :] for arg in argv if arg.startswith(RUN_ID_FLAG)]
            age = proctree.now() - proctree.create_time(proc)
            tail = f"  [run id {run_ids[0]}]" if run_ids else ""
            return f"  {proc.pid:>7} {proc.ppid():>7} {age:>7.1f}s  {' '.join(argv)[:300]}{tail}"
    except psutil.Error:
        return f"  {proc.pid:>7} (gone while being described)"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or _started_key not in config.stash:
        return
    token, since = os.environ[SESSION_VAR], config.stash[_started_key]
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    deadline = time.monotonic() + (1.0 if interrupted else _DEADLINE_S)
    while (survivors := _survivors(token, since)) and time.monotonic() < deadline:
        time.sleep(0.1)
    described = [_describe(proc) for proc in survivors]
    # Also what a scan can miss: a lineage that forks and exits (see end_all).
    killed = end_all(lambda: _survivors(token, since), lambda p: _carries(p, token))
    if not killed:
        _remove_session_tmp(config, passed=session.exitstatus == pytest.ExitCode.OK)
        return
    listed = {proc.pid for proc in survivors}
    lines = [f"{len(killed)} process(es) of this test run survived it (killed):"]
    lines += [f"  {'PID':>7} {'PPID':>7} {'AGE':>8}  COMMAND", *described]
    late = [k["pid"] for k in killed if k["pid"] not in listed]
    lines += [f"  {pid:>7} (found while ending the rest)" for pid in late]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _remove_session_tmp(config, passed=False)


HOP_QUIET_S = 0.5  # 50 hops of the tests' 10 ms hoppers


@pytest.fixture
def stops_growing():
    """stops_growing(path) -> True once the file has not grown for HOP_QUIET_S (within a
    deadline). Tests of lineages that fork and exit watch the file each new pid writes to:
    a lineage that still lives keeps writing, while a scan could miss it between two pids."""

    def check(path, quiet: float = HOP_QUIET_S, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = path.stat().st_size
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
            time.sleep(0.01)
        return False

    return check
