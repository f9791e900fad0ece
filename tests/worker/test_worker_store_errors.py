"""The database locked by another process (a backup, a sqlite3 shell): hooks get a 503 that says
so, and a session's generator waits and retries rather than dying with a message stuck in
'processing' (which no drain would ever see end)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from workerkit import (
    FakeRun,
    InThread,
    Worker,
    observation,
    queue_rows,
    wait_until,
    write_locked,
)

import proctree
from worker.store import Store

# A short busy timeout: a locked statement fails in 0.1 s instead of the default 5 s.
FLAGS = ["--grace", "0.5", "--reap-interval", "0.5", "--turn-timeout", "30",
         "--db-busy-timeout", "0.1"]  # fmt: skip


def test_the_generator_retries_a_locked_store_and_keeps_its_observer(
    fake_run: FakeRun, workers
) -> None:
    # Turn 1 takes ~4 s: long enough to lock the store while it runs, so storing its reply
    # (and the generator's next claim) meets the lock.
    shim = fake_run.shim("slow:latency=2,jitter=0,first=0,turn=1")
    worker: Worker = workers(shim, flags=FLAGS)
    sid = worker.new_session("locked-1")
    worker.prompt(sid, "locked-1", "what is in the repo")
    wait_until(lambda: fake_run.started("main"), what="the observer to start")
    with write_locked(worker.data_dir / "worker.db"):
        wait_until(
            lambda: "database is locked" in worker.log(),
            what="the generator to meet the lock",
        )
    # Unlocked: the message went back to the queue and is processed; no message is left
    # 'processing', and the same observer served it (the store's failure is not the observer's).
    st = wait_until(
        lambda: (s := worker.status(sid))["queueLength"] == 0 and s, what="the queue to drain"
    )
    assert st["status"] == "active"
    assert len(fake_run.started("main")) == 1
    turns = [e for e in fake_run.ledger_lines() if e["event"] == "turn"]
    assert len(turns) == 2, turns  # the first reply was lost to the lock, then done again
    # ... and the store's failure was not counted as the message's attempt (--max-attempts).
    assert queue_rows(worker.data_dir / "worker.db", "prompt") == [("processed", 1)]
    worker.summarize("locked-1")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    fake_run.assert_none_alive()


def test_a_hook_meeting_a_locked_store_gets_503_then_succeeds(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim("ok"), flags=FLAGS)
    body = {"contentSessionId": "locked-2", "project": "p", "prompt": "hi"}
    with write_locked(worker.data_dir / "worker.db"):
        status, reply = worker.api().request("POST", "/api/sessions/init", json_body=body)
        assert status == 503, (status, reply)
        assert "database is locked" in reply["error"] and "retry" in reply["error"]
    sid = int(worker.api().ok("POST", "/api/sessions/init", body)["sessionDbId"])
    assert worker.status(sid)["status"] == "active"
    assert "handler failed" not in worker.log()  # a known condition, not a traceback


def _ended_under_the_lock(fake_run: FakeRun, workers, reap_interval: str) -> Worker:
    """A session's observer reaches its idle timeout while another process holds the write
    lock: it must be ended all the same, its registry row unwritten (logged)."""
    flags = ["--grace", "0.5", "--reap-interval", reap_interval, "--idle-timeout", "1",
             "--db-busy-timeout", "0.1"]  # fmt: skip
    worker: Worker = workers(fake_run.shim("ok"), flags=flags)
    sid = worker.new_session("idle-locked")
    worker.prompt(sid, "idle-locked", "hello")
    wait_until(lambda: worker.status(sid)["queueLength"] == 0, what="the turn")
    (observer,) = fake_run.started("main")
    with write_locked(worker.data_dir / "worker.db"):
        wait_until(lambda: not fake_run.alive(), what="the observer ended under the lock")
        wait_until(lambda: "not marked ended" in worker.log(), what="the last write to fail")
        assert "not marked ending" in worker.log()
    assert not proctree.is_alive(observer)
    return worker


def test_an_observer_is_ended_even_when_its_registry_row_cannot_be_written(
    fake_run: FakeRun, workers
) -> None:
    """Before, the failed write came first and the tree was left running, for the sweeps to
    find (an hour away here)."""
    worker = _ended_under_the_lock(fake_run, workers, reap_interval="3600")
    # The row the lock kept open is written at the next reap interval (an hour away here).
    rows = worker.processes()
    assert [r["state"] for r in rows] == ["live"], rows
    assert worker.stats()["store"]["registry_rows_due"] == 1


def test_a_registry_row_the_lock_kept_open_is_written_once_it_is_gone(
    fake_run: FakeRun, workers
) -> None:
    """With a reap interval of 0.5 s the row is marked ended, with how its observer ended, once
    the lock is gone (before, only at the next start)."""
    worker = _ended_under_the_lock(fake_run, workers, reap_interval="0.5")
    (row,) = wait_until(
        lambda: [r for r in worker.processes() if r["state"] == "ended"],
        what="the row written after the lock",
    )
    assert row["how"].startswith("idle:"), row
    assert worker.stats()["store"]["registry_rows_due"] == 0
    assert "marked ended after all" in worker.log()


def test_a_database_made_before_the_reaped_column_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "worker.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER NOT NULL, "
        "create_time REAL NOT NULL, mark TEXT NOT NULL, mode TEXT NOT NULL, "
        "started REAL NOT NULL, ended REAL)"
    )
    db.execute("INSERT INTO runs(pid, create_time, mark, mode, started) VALUES (1, 1, 'm', 'f', 1)")
    db.commit()
    db.close()
    store = Store(path)

    async def go() -> None:
        assert [r["id"] for r in await store.unclean_runs(current_run=99)] == [1]
        await store.mark_reaped([1])
        assert await store.unclean_runs(current_run=99) == []

    try:
        asyncio.run(go())
    finally:
        store.close()


def test_a_hook_waiting_for_the_lock_does_not_stop_the_worker(fake_run: FakeRun, workers) -> None:
    """Another process holds the write lock: a hook's store call waits for it (up to
    --db-busy-timeout) without blocking the event loop, so the worker answers meanwhile, and
    the hook succeeds once the lock is gone, its observation stored once. Before, SQLite's busy
    handler slept in the loop's thread: nothing was answered until the lock or the timeout."""
    flags = ["--grace", "0.5", "--reap-interval", "0.5", "--db-busy-timeout", "120"]
    worker: Worker = workers(fake_run.shim("ok"), flags=flags)
    sid = worker.new_session("wait-lock")
    with write_locked(worker.data_dir / "worker.db"):
        hook = InThread(worker, "POST", "/api/sessions/observations", observation("wait-lock", 1))
        # (.get: a worker without the gauge fails here by not answering, not by a KeyError)
        stats = wait_until(
            lambda: (s := worker.stats()).get("store", {}).get("waiting_for_lock", 0) >= 1 and s,
            what="the hook to wait for the lock while the worker answers",
        )
        assert worker.api().ok("GET", "/api/health")["status"] == "ok"
        assert hook.thread.is_alive() and hook.reply is None  # still waiting, not failed
        assert stats["store"]["lock_timeouts"] == 0
    assert hook.join().reply is not None, hook.error
    assert hook.reply[0] == 200, hook.reply
    worker.summarize("wait-lock")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid)
    assert worker.stats()["observations"] == 1
    assert worker.stats()["store"]["lock_waits"] >= 1
    fake_run.assert_none_alive()


def test_a_store_that_stays_unavailable_is_not_logged_per_request(
    fake_run: FakeRun, workers
) -> None:
    # A full disk or a long lock fails every hook alike: the log said so once per request (300
    # lines for 300 hooks), drowning whatever else it had to say.
    worker: Worker = workers(fake_run.shim("ok"), flags=FLAGS)
    body = {"contentSessionId": "locked-3", "project": "p", "prompt": "hi"}
    with write_locked(worker.data_dir / "worker.db"):
        for _ in range(20):
            status, _reply = worker.api().request("POST", "/api/sessions/init", json_body=body)
            assert status == 503
    lines = [ln for ln in worker.log().splitlines() if "store unavailable" in ln]
    assert 1 <= len(lines) < 20, lines
    assert "database is locked" in lines[0]
    worker.api().ok("POST", "/api/sessions/init", body)  # and it serves again once unlocked
