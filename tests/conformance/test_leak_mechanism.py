"""The #603 leak mechanism, shown with the real Agent SDKs and the fake `claude`.

1. A parent that exits after its first result leaves a child that ignores stdin EOF and SIGTERM
   running (an orphan): the SDKs' exit-time cleanup is EOF plus SIGTERM, nothing stronger.
   The same parent with a well-behaved child leaves nothing, so the check can fail.
2. Inside a parent that lives on (a daemon), TS SDK 0.1.76 (claude-mem 9.0.0's) does nothing to
   the child when the caller leaves a streaming session: even a well-behaved child stays, idle,
   for the parent's lifetime. 0.3.x ends stdin and escalates, so the same child exits.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conformance_support import (
    TS_OLD,
    TS_SDKS,
    Driver,
    is_gone,
    node_driver,
    python_driver,
    read_ledger,
    run_processes,
    start_ledger_event,
    wait_for,
)

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        sys.platform == "win32", reason="POSIX signals (SIGTERM ignored by the child)"
    ),
]

MakeFake = Callable[..., tuple[Path, Path]]
STUBBORN = "ignore-eof+ignore-sigterm"
PARENTS = [*(f"ts:{sdk}" for sdk in TS_SDKS), "python:claude_agent_sdk"]
# TS 0.3.332-0.3.335 escalate SIGTERM 2 s and SIGKILL 7 s after close(); watch a while longer.
OBSERVE_S = 10.0


def _start_parent(parent: str, shim: Path, request: pytest.FixtureRequest) -> Driver:
    kind, _, name = parent.partition(":")
    if kind == "ts":
        request.getfixturevalue("node_sdks")
        return node_driver(name, "exit-after-result", shim)
    if importlib.util.find_spec("claude_agent_sdk") is None:
        reason = "claude_agent_sdk is not installed (tox -e conformance installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return python_driver("py_sdk_parent.py", shim, exit="return")


def _fake_process(ledger: Path, run_id: str) -> psutil.Process | None:
    """The fake main process the ledger recorded, or None if it has already exited."""
    start = wait_for(lambda: start_ledger_event(ledger, run_id), "the fake's ledger start line")
    try:
        proc = psutil.Process(start["pid"])
        # Identity is (pid, create_time): make sure this is the very process the fake recorded.
        if abs(proc.create_time() - start["create_time"]) > 0.05 or is_gone(proc):
            return None
    except psutil.NoSuchProcess:
        return None
    return proc


def _signals(ledger: Path) -> list[tuple[str, str]]:
    return [(e["name"], e["action"]) for e in read_ledger(ledger) if e["event"] == "signal"]


@pytest.mark.parametrize("parent", PARENTS)
def test_stubborn_child_outlives_its_parent(
    parent: str, make_fake: MakeFake, run_id: str, request: pytest.FixtureRequest
) -> None:
    shim, ledger = make_fake(STUBBORN)
    driver = _start_parent(parent, shim, request)
    res = driver.result()
    assert res.get("error") is None, res
    assert not psutil.pid_exists(driver.proc.pid) or is_gone(psutil.Process(driver.proc.pid))
    child = _fake_process(ledger, run_id)
    assert child is not None, f"the stubborn fake died: {read_ledger(ledger)}"
    # The SDK's cleanup did run (stdin EOF, SIGTERM) and was ignored. The SDK closes stdin and
    # signals at about the same moment: the fake may record the signal before it reads the EOF.
    wait_for(lambda: ("SIGTERM", "ignored") in _signals(ledger), "the SDK's SIGTERM")
    wait_for(lambda: any(e["event"] == "stdin_eof" for e in read_ledger(ledger)), "the stdin EOF")
    # ... so the child is still there, carrying our run id, with its parent gone: an orphan.
    assert not is_gone(child)
    assert child.pid in {p.pid for p in run_processes(run_id)}
    assert child.ppid() != driver.proc.pid
    assert not [e for e in read_ledger(ledger) if e["event"] == "exit"]
    # End it by PID (psutil refuses a reused PID), and see it go.
    child.kill()
    wait_for(lambda: is_gone(child), f"orphan {child.pid} to die after SIGKILL", timeout=30)
    assert run_processes(run_id) == []


@pytest.mark.parametrize("parent", PARENTS)
def test_well_behaved_child_ends_with_its_parent(
    parent: str, make_fake: MakeFake, run_id: str, request: pytest.FixtureRequest
) -> None:
    shim, ledger = make_fake("ok")
    driver = _start_parent(parent, shim, request)
    res = driver.result()
    assert res.get("error") is None, res
    wait_for(lambda: run_processes(run_id) == [], "the well-behaved child to exit with its parent")
    exits = [e for e in read_ledger(ledger) if e["event"] == "exit"]
    assert len(exits) == 1


@pytest.mark.usefixtures("node_sdks")
@pytest.mark.parametrize("sdk", TS_SDKS)
def test_leaving_a_streaming_session_inside_a_living_parent(
    sdk: str, make_fake: MakeFake, run_id: str, tmp_path: Path
) -> None:
    shim, ledger = make_fake("ok")
    marker = tmp_path / "session-left"
    driver = node_driver(
        sdk,
        "break-after-result",
        shim,
        releaseInput=False,  # claude-mem's input generator waits on its queue forever
        lingerMs=300_000,
        deadlineMs=400_000,
        markerFile=str(marker),
    )
    try:
        wait_for(marker.exists, "the driver to leave the session")
        if sdk == TS_OLD:
            child = _fake_process(ledger, run_id)
            assert child is not None, f"the fake exited: {read_ledger(ledger)}"
            # Nothing happens to the child: no EOF, no signal, while the parent lives. This is an
            # observation window (how long we watched), not a synchronisation sleep.
            end = time.monotonic() + OBSERVE_S
            while time.monotonic() < end:
                assert not is_gone(child), "0.1.76 unexpectedly ended the child"
                time.sleep(0.2)
            events = {e["event"] for e in read_ledger(ledger)}
            assert "stdin_eof" not in events and "signal" not in events, events
            assert driver.proc.poll() is None, "the parent must still be alive"
        else:
            wait_for(lambda: run_processes(run_id) == [], f"{sdk} to end the child")
            assert driver.proc.poll() is None, "the SDK, not the parent's exit, ended it"
            events = [e["event"] for e in read_ledger(ledger)]
            assert "stdin_eof" in events and events[-1] == "exit", events
    finally:
        driver.kill()  # SIGKILL: no exit handler runs, the child only sees its stdin close
    # A well-behaved child whose parent died still goes away, on stdin EOF alone.
    wait_for(lambda: run_processes(run_id) == [], "the child to exit once its parent is gone")
