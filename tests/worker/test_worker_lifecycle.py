"""Graceful shutdown, the idle timeout, the periodic reaper sweep, and observer replacement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
from workerkit import FakeRun, Worker, wait_until

import proctree

STUBBORN_TREE = "ignore-eof+ignore-sigterm+grandchild:n=2,ignore=1,linger=1"


SHUTDOWNS = (
    ["CTRL_BREAK_EVENT", "admin"] if sys.platform == "win32" else ["SIGTERM", "SIGINT", "admin"]
)


@pytest.mark.parametrize("how", SHUTDOWNS)
def test_graceful_shutdown_ends_every_tree(fake_run: FakeRun, workers, how: str) -> None:
    worker: Worker = workers(fake_run.shim(STUBBORN_TREE))
    for i in range(2):
        sid = worker.new_session(f"sd-{i}")
        worker.prompt(sid, f"sd-{i}", "go")
    wait_until(lambda: len(fake_run.census()) == 6, what="two observer trees")
    decoy = fake_run.start_decoy(["--output-format", "stream-json", "--verbose"])
    if how == "admin":
        assert worker.api().ok("POST", "/api/admin/shutdown")["status"] == "shutting_down"
    else:
        worker.signal(getattr(signal, how))
    assert worker.wait_exit() == 0
    # Ended by the worker itself before it exited, not by anyone after.
    assert not fake_run.alive(), fake_run.alive()
    # Its guardian too: the worker cut the lifeline and waited for it (POSIX; none on Windows).
    if worker.guardian is not None:
        assert not proctree.is_alive(worker.guardian), "the guardian outlived its worker"
    assert not (worker.data_dir / "worker.json").exists()
    assert decoy.poll() is None, "the worker ended a claude it did not start"


@pytest.mark.skipif(sys.platform == "win32", reason="a second CTRL_BREAK is not a signal here")
def test_a_shutdown_says_what_it_waits_for(fake_run: FakeRun, workers) -> None:
    """Ending a stubborn observer takes two graces, in which the worker said nothing and a
    second Ctrl-C was dropped without a word: it says how many it ends and for how long, and
    that a second signal does not cut that short (it would leave them running)."""
    flags = ["--grace", "3", "--reap-interval", "0.5", "--turn-timeout", "3"]
    worker: Worker = workers(fake_run.shim(STUBBORN_TREE), flags=flags)
    sid = worker.new_session("sd-said")
    worker.prompt(sid, "sd-said", "go")
    wait_until(lambda: len(fake_run.census()) == 3, what="an observer tree")
    worker.signal(signal.SIGINT)
    wait_until(lambda: "ending 1 observer(s): up to 6.0 s" in worker.log(), what="the ending said")
    worker.signal(signal.SIGINT)  # within the 6 s the stubborn observer takes
    assert worker.wait_exit() == 0
    assert "SIGINT: already stopping; the worker exits once" in worker.log(), worker.log()
    assert not fake_run.alive(), fake_run.alive()


def test_idle_observer_is_ended(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(
        fake_run.shim(STUBBORN_TREE),
        flags=["--grace", "0.5", "--reap-interval", "0.5", "--idle-timeout", "1"],
    )
    sid = worker.new_session("idle-1")
    worker.prompt(sid, "idle-1", "then nothing")
    wait_until(lambda: len(fake_run.started("main")) == 1, what="the observer")
    # Never completed; the idle timeout ends the whole tree while the worker keeps serving.
    fake_run.assert_none_alive(timeout=30)
    rows = wait_until(
        lambda: (r := worker.processes()) and r[0]["state"] == "ended" and r,
        what="the registry to record the end",
    )
    assert len(rows) == 1 and rows[0]["how"].startswith("idle:")
    assert worker.status(sid)["status"] == "active"
    # New work for the idle session starts a fresh observer.
    worker.observe("idle-1", 1)
    wait_until(lambda: len(fake_run.started("main")) == 2, what="a fresh observer")


def test_reaper_sweeps_marked_strays_and_spares_unmarked(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    mark = worker.stats()["containment"]["mark"]
    stray_claude = fake_run.shim("ignore-eof+ignore-sigterm")
    # Something carrying this worker's mark but in no live observer's tree: what an escapee
    # that outlived its session looks like.
    stray = subprocess.Popen(
        [str(stray_claude), "--output-format", "stream-json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, proctree.MARK_ENV: f"{mark}:stray"},
        start_new_session=True,
    )
    # Same program, same argv, no mark: a user's own claude.
    decoy = fake_run.start_decoy(["--output-format", "stream-json"])
    try:
        wait_until(lambda: stray.poll() is not None, what="the sweep to end the stray")
        wait_until(lambda: worker.stats()["reaper"]["swept"] >= 1, what="the sweep to count it")
        assert decoy.poll() is None
        assert psutil.Process(decoy.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        if stray.poll() is None:
            stray.kill()
        stray.wait(timeout=30)


def test_failed_observer_is_replaced_never_doubled(fake_run: FakeRun, workers) -> None:
    # Every observer crashes on its second turn: the item goes back to the queue, the observer
    # is ended, the next one picks the item up.
    worker: Worker = workers(
        fake_run.shim("crash:at=mid-turn,turn=2,code=3"),
        flags=["--grace", "0.5", "--reap-interval", "0.5", "--max-attempts", "2"],
    )
    sid = worker.whole_session("crashy")
    worker.wait_session_done(sid)
    stats = worker.stats()
    assert stats["queue"] == {"processed": 5} and stats["observations"] == 3
    rows = sorted(worker.processes(), key=lambda r: r["started"])
    assert len(rows) >= 3 and all(r["state"] == "ended" for r in rows)
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert earlier["ended"] <= later["started"], "two observers lived at once"
    fake_run.assert_none_alive(timeout=10)


def test_work_after_complete_is_not_stranded(fake_run: FakeRun, workers) -> None:
    """A new prompt right after /complete (while the old observer is being ended) still runs."""
    worker: Worker = workers(fake_run.shim("ignore-eof+ignore-sigterm"))
    sid = worker.new_session("reopen")
    worker.prompt(sid, "reopen", "first")
    worker.observe("reopen", 1)
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.prompt(sid, "reopen", "second")  # reactivates the session
    worker.observe("reopen", 2)
    wait_until(lambda: worker.stats()["observations"] == 2, what="both observations stored")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    fake_run.assert_none_alive(timeout=10)
