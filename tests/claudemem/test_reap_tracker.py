"""Time-to-reap with real processes: measured when a process outlives its session, else None."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import proctree
from harness.targets.claude_mem_reap import ReapTracker

DEADLINE_S = 30.0


def _spawn(token: str) -> subprocess.Popen[bytes]:
    # A real process carrying the run token in argv, as the fake's observers do.
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", token],
        stdin=subprocess.PIPE,
    )


def _wait_seen(tracker: ReapTracker, n: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while len(tracker.seen) < n and time.monotonic() < deadline:
        tracker.sample()
        time.sleep(0.05)
    assert len(tracker.seen) == n


def _wait_past(moment: float) -> None:
    """Until the harness clock has passed `moment` (a few ms here)."""
    deadline = time.monotonic() + DEADLINE_S
    while proctree.now() <= moment and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proctree.now() > moment


def test_outliving_process_is_timed_and_prompt_one_is_not() -> None:
    token = "--fake-claude-run-id=" + secrets.token_hex(6)
    tracker = ReapTracker(token, interval=0.05)
    tracker.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tracker.session_started("s-clean")
        procs.append(_spawn(token))
        tracker.session_started("s-late")
        procs.append(_spawn(token))
        _wait_seen(tracker, 2)
        # s-clean's process ends before its session does (a worker that cleans up) ...
        tracker.session_ended("s-late")
        procs[0].communicate(b"")
        tracker.sample()
        tracker.session_ended("s-clean")
        # ... while the other outlives both sessions it may belong to, then is ended.
        report = tracker.report()
        assert report["outlived_session"] == 1 and report["not_reaped"] == 1
        procs[1].communicate(b"")
        deadline = time.monotonic() + DEADLINE_S
        while tracker.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        report = tracker.report()
    finally:
        tracker.stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert report["reaped"] == 1 and report["not_reaped"] == 0
    assert report["time_to_reap_s"]["max"] is not None and report["time_to_reap_s"]["max"] >= 0


def test_no_process_means_no_figure() -> None:
    tracker = ReapTracker("--fake-claude-run-id=" + secrets.token_hex(6))
    tracker.session_started("s")
    tracker.session_ended("s")
    tracker.sample()
    report = tracker.report()
    assert report["outlived_session"] == 0 and report["time_to_reap_s"]["max"] is None


def test_an_exit_noticed_after_the_session_end_is_not_an_outliving() -> None:
    """A process that exits before its session ends, but whose exit the next sample notices only
    after the end (a loaded machine), did not outlive it (CI: 13.x's one session counted 2)."""
    token = "--fake-claude-run-id=" + secrets.token_hex(6)
    tracker = ReapTracker(token)  # no thread: the samples below are the only looks
    proc = _spawn(token)
    try:
        tracker.session_started("s")
        _wait_seen(tracker, 1)
        proc.communicate(b"")  # gone, and reaped, before the session ends ...
        tracker.session_ended("s")
        tracker.sample()  # ... but noticed gone only now
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    report = tracker.report()
    assert report["outlived_session"] == 0, report
    assert report["outlived"] == []


def test_a_counted_process_is_named_in_the_report() -> None:
    token = "--fake-claude-run-id=" + secrets.token_hex(6)
    tracker = ReapTracker(token)
    proc = _spawn(token)
    try:
        tracker.session_started("s")
        _wait_seen(tracker, 1)
        tracker.session_ended("s")
        report = tracker.report()  # it is alive now, after the end
    finally:
        proc.kill()
        proc.wait()
    assert report["not_reaped"] == 1
    [named] = report["outlived"]
    assert named["pid"] == proc.pid and token in named["cmdline"]
    # Seen before the end, and alive after it (rounded to ms: maybe 0.0).
    assert named["first_seen_s"] <= 0 <= named["last_seen_s"] and named["gone_s"] is None


def test_a_process_started_after_every_session_ended_is_counted() -> None:
    """10.6.3 runs 2 observers at a time, and its SessionEnd hook never posts: a session that
    waited for a slot gets its observer only when another idles out, after the workload. Such a
    process was first seen while no session ran and was left out of every figure (alive > grace
    25 / 100 prompts where 50 were alive past the grace, time-to-reap max 180 s, not 360 s)."""
    token = "--fake-claude-run-id=" + secrets.token_hex(6)
    # No thread: the samples below are the only looks. A short interval: a process first seen
    # within one interval of a session's end is taken as that session's.
    tracker = ReapTracker(token, interval=0.01)
    for key in ("s1", "s2"):
        tracker.session_started(key)
    tracker.session_ended("s1")
    tracker.session_ended("s2")
    last_end = tracker.windows["s2"].end
    assert last_end is not None
    _wait_past(last_end + tracker.interval)
    proc = _spawn(token)  # after both ended, and out of their reach
    try:
        _wait_seen(tracker, 1)
        alive = tracker.report(grace=0.0)
        proc.communicate(b"")
        tracker.sample()
        gone = tracker.report(grace=0.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert alive["outlived_session"] == 1 and alive["not_reaped"] == 1, alive
    assert gone["reaped"] == 1 and gone["not_reaped"] == 0 and gone["past_grace"] == 1, gone
    # Timed from the latest session end, which precedes its start: a lower bound, never more.
    [named] = gone["outlived"]
    assert named["first_seen_s"] > 0
    assert gone["time_to_reap_s"]["max"] >= named["first_seen_s"]


def test_a_process_seen_before_any_session_is_not_counted() -> None:
    token = "--fake-claude-run-id=" + secrets.token_hex(6)
    tracker = ReapTracker(token, interval=0.01)
    proc = _spawn(token)
    try:
        _wait_seen(tracker, 1)
        _wait_past(max(r.first_seen for r in tracker.seen.values()) + tracker.interval)
        tracker.session_started("s")
        tracker.session_ended("s")
        report = tracker.report()
    finally:
        proc.kill()
        proc.wait()
    assert report["outlived_session"] == 0, report


# Its main thread exits while another thread runs on: the leader reads as a zombie (claude-mem
# observers built on such runtimes, the fake's `headless` scenario). argv[1]: the run token.
HEADLESS = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(600,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="a zombie leader with live threads: Linux")
def test_a_headless_observer_is_tied_to_its_session_by_its_cwd(tmp_path: Path) -> None:
    """Its cwd read through the leader fails as a zombie's: the observer in
    `observer-sessions/<sessionDbId>` was tied to no session, its leak reported under '-'."""
    token = "--fake-claude-run-id=" + secrets.token_hex(6)
    cwd = tmp_path / "observer-sessions" / "7"
    cwd.mkdir(parents=True)
    tracker = ReapTracker(token)  # no thread: the samples below are the only looks
    tracker.session_started("s")
    tracker.session_db_id("s", 7)
    proc = subprocess.Popen([sys.executable, "-c", HEADLESS, token], cwd=cwd)
    try:
        ps = psutil.Process(proc.pid)
        deadline = time.monotonic() + DEADLINE_S
        # First seen only once headless: the case where the leader's cwd cannot be read.
        while not (ps.status() == psutil.STATUS_ZOMBIE and ps.num_threads() == 2):
            assert time.monotonic() < deadline, "the main thread did not exit"
            time.sleep(0.01)
        _wait_seen(tracker, 1)
        owned = tracker.processes_of("s")
        tracker.session_ended("s")
        report = tracker.report()  # it runs on past the end of its session
    finally:
        proc.kill()
        proc.wait()
    assert [p.pid for p in owned] == [proc.pid], tracker.seen
    # Timed from its own session's end, not left out as unattributable.
    assert report["not_reaped"] == 1 and report["outlived"][0]["pid"] == proc.pid, report
