"""Shutdown while another process holds the database's write lock (a backup, a sqlite3 shell).

Store calls wait for such a lock without blocking the event loop (worker/store.py). At shutdown
that must neither cut the generators' giving back of their work short, nor leave a waiting hook
without an answer, nor turn a lock still held at the very end into a failed exit."""

from __future__ import annotations

import signal
import sys

import pytest
import workerkit as kit
from workerkit import FakeRun, Worker, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to the worker")


def test_messages_in_progress_go_back_uncounted_though_the_lock_outlasts_a_recancel(
    fake_run: FakeRun, workers
) -> None:
    """SIGTERM mid-turn, the lock held: each generator gives its message back once the lock is
    gone. Before, shutdown cancelled every generator again after 1 s, which cut the give-back
    waiting for the lock: the messages stayed 'processing', the attempt counted at the next
    start (helper-33)."""
    flags = ["--grace", "0.5", "--reap-interval", "1", "--db-busy-timeout", "60"]
    worker: Worker = workers(fake_run.shim("slow:latency=5,jitter=0,first=0"), flags=flags)
    for name in ("a", "b"):
        sid = worker.new_session(f"down-{name}")
        worker.prompt(sid, f"down-{name}", "what is in the repo")
    wait_until(lambda: len(fake_run.started("main")) == 2, what="both observers mid-turn")
    with kit.write_locked(worker.data_dir / "worker.db"):
        worker.stop()
        # Past shutdown's 1 s between cancels: the give-back has waited 2 s.
        wait_until(
            lambda: "unclaim has waited" in worker.log(), what="a give-back waiting for the lock"
        )
    assert worker.wait_exit() == 0
    assert kit.queue_rows(worker.data_dir / "worker.db", "prompt") == [
        ("pending", 0),
        ("pending", 0),
    ]
    assert "Traceback" not in worker.log()
    fake_run.assert_none_alive()


def test_a_hook_waiting_for_the_lock_at_shutdown_is_answered_503(
    fake_run: FakeRun, workers
) -> None:
    """Before, the server stopped under it: the connection closed with no answer at all."""
    flags = ["--grace", "0.5", "--reap-interval", "1", "--db-busy-timeout", "60"]
    worker: Worker = workers(fake_run.shim("ok"), flags=flags)
    worker.new_session("down-hook")
    with kit.write_locked(worker.data_dir / "worker.db"):
        hook = kit.InThread(
            worker, "POST", "/api/sessions/observations", kit.observation("down-hook", 1)
        )
        wait_until(
            lambda: worker.stats()["store"]["waiting_for_lock"] >= 1,
            what="the hook to wait for the lock",
        )
        worker.stop()
        assert hook.join().reply is not None, hook.error
        status, body = hook.reply
        assert status == 503 and "retry later" in body["error"], hook.reply
    assert worker.wait_exit() == 0


def test_a_lock_held_through_shutdown_does_not_fail_the_exit(fake_run: FakeRun, workers) -> None:
    """The run cannot be marked ended: said in the log, and the worker stops cleanly all the
    same (before: exit 1 with a traceback, worker.json left behind, the store never closed)."""
    flags = ["--grace", "0.5", "--reap-interval", "1", "--db-busy-timeout", "0.5"]
    worker: Worker = workers(fake_run.shim("ok"), flags=flags)
    info = worker.data_dir / "worker.json"
    assert info.exists()
    with kit.write_locked(worker.data_dir / "worker.db"):
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
        assert not info.exists()
        log = worker.log()
        assert "the run could not be marked ended" in log and "worker stopped" in log, log
