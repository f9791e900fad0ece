"""Queued work that no generator will take is worked anyway, without a hook or a restart.

A generator gives up after a store failure past its retries, or on an error nobody foresaw; its
session's queue then waited for the next hook, and a completed session gets none. A message it
had claimed and could not give back stayed 'processing', claimed by no one. Here both states are
written into the live worker's database by another connection (as a crashed generator leaves
them), and the worker's periodic look must put them to work.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from workerkit import FAST_FLAGS, FakeRun, Worker, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shim")


def _strand(db_path: Path, session_id: int, status: str, attempts: int) -> int:
    payload = {"tool_name": "Read", "tool_input": {"file_path": "/x"}, "tool_response": "x",
               "cwd": "/"}  # fmt: skip
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as db, db:
        cur = db.execute(
            "INSERT INTO pending_messages(session_id, kind, payload, status, attempts, created) "
            "VALUES (?, 'observation', ?, ?, ?, ?)",
            (session_id, json.dumps(payload), status, attempts, time.time()),
        )
        return int(cur.lastrowid or 0)


def _status(db_path: Path, message_id: int) -> str:
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as db:
        return str(
            db.execute("SELECT status FROM pending_messages WHERE id=?", (message_id,)).fetchone()[
                0
            ]
        )


def test_queued_work_no_generator_holds_is_worked_without_a_hook(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    worker: Worker = workers(fake_run.shim("ok"), data_dir=data, flags=FAST_FLAGS)
    completed = worker.whole_session("completed", observations=0)
    worker.wait_session_done(completed)
    idle = worker.new_session("idle")  # its hooks so far queued nothing: no generator
    db_path = data / "worker.db"
    # A completed session's message left claimed (before, a generator started for that
    # session would have looped on it without end) and an active session's left queued.
    claimed = _strand(db_path, completed, "processing", attempts=1)
    queued = _strand(db_path, idle, "pending", attempts=0)
    wait_until(
        lambda: _status(db_path, claimed) == _status(db_path, queued) == "processed",
        what="both stranded messages worked",
    )
    reaper = worker.stats()["reaper"]
    assert reaper["stranded_woken"] >= 2, reaper
    assert "re-queued a message left claimed" in worker.log()
    assert worker.api().ok("GET", "/api/health")  # and the worker still answers
    worker.api().ok("POST", f"/sessions/{idle}/complete")
    worker.wait_session_done(idle)
    fake_run.assert_none_alive(timeout=10)


def test_a_message_left_claimed_does_not_spin_its_completed_sessions_generator(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """A hook starts the generator here (the periodic look is an hour away). Before, with the
    claimed message counted as still to do and none to claim, the generator of a completed
    session stepped again at once, for ever, never yielding: the worker used a whole core and
    answered nothing more."""
    data = tmp_path / "data"
    flags = ["--grace", "0.5", "--reap-interval", "3600", "--turn-timeout", "3"]
    worker: Worker = workers(fake_run.shim("ok"), data_dir=data, flags=flags)
    sid = worker.whole_session("completed", observations=0)
    worker.wait_session_done(sid)
    db_path = data / "worker.db"
    claimed = _strand(db_path, sid, "processing", attempts=1)
    worker.summarize("completed")  # the Stop hook again, on the completed session
    wait_until(lambda: _status(db_path, claimed) == "processed", what="the claimed message")
    wait_until(lambda: worker.status(sid)["queueLength"] == 0, what="the summary worked")
    assert worker.api().ok("GET", "/api/health")
    fake_run.assert_none_alive(timeout=10)
