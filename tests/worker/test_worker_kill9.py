"""kill -9 of the fixed worker: children go with it (Linux), a restart on the same data dir reaps
exactly the survivors of the previous run, a `claude` we started by hand survives everything,
and no committed item is lost or processed twice."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import psutil
import pytest
from workerkit import FakeRun, Worker, wait_until

import proctree

STUBBORN = "ignore-eof+ignore-sigterm"
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only"
)


def open_sessions(worker: Worker, n: int, prefix: str) -> list[int]:
    sids = []
    for i in range(n):
        sid = worker.new_session(f"{prefix}-{i}")
        worker.prompt(sid, f"{prefix}-{i}", "go")
        sids.append(sid)
    return sids


def start_decoy(fake_run: FakeRun) -> psutil.Process:
    """A `claude` the user runs by hand, with the observer's very argv but not ours."""
    decoy = fake_run.start_decoy(["--output-format", "stream-json", "--verbose"])
    proc = psutil.Process(decoy.pid)
    wait_until(lambda: proc.is_running(), what="the decoy to run")
    return proc


@linux_only
def test_kill9_takes_stubborn_children_within_2s(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim(STUBBORN))
    open_sessions(worker, 3, "k9")
    wait_until(lambda: len(fake_run.census()) == 3, what="three live observers")
    worker.kill9()
    killed_at = time.monotonic()
    wait_until(lambda: not fake_run.census(), timeout=2.0, what="children gone within 2 s")
    assert time.monotonic() - killed_at <= 2.0
    fake_run.assert_none_alive(timeout=2.0)


@pytest.mark.parametrize("fallback", [False, True], ids=["native", "fallback"])
def test_restart_reaps_survivors_and_spares_the_decoy(
    fake_run: FakeRun, workers, tmp_path: Path, fallback: bool
) -> None:
    # fallback: no pdeathsig and no subreaper (the macOS path): the observers themselves survive
    # the kill -9 and only the restart's registry match ends them.
    env = {proctree.FALLBACK_ENV: "1"} if fallback else {}
    data = tmp_path / "data"
    claude = fake_run.shim(STUBBORN + "+grandchild:n=2,ignore=1,linger=1")
    first: Worker = workers(claude, data_dir=data, env=env)
    open_sessions(first, 2, "rs")
    wait_until(lambda: len(fake_run.census()) == 6, what="2 observers with 2 grandchildren each")
    decoy = start_decoy(fake_run)
    first.kill9()
    # The grandchildren (and in fallback the observers too) survive their worker's death.
    survivors = wait_until(
        lambda: (s := fake_run.census()) and len(s) == (6 if fallback else 4) and s,
        timeout=10,
        what="the survivors of the kill -9",
    )
    assert survivors

    second: Worker = workers(claude, data_dir=data, env=env)
    # Reaping happens before worker.json is written: nothing of the old run is left now.
    assert not fake_run.census(), fake_run.alive()
    fake_run.assert_none_alive(timeout=5)
    assert second.stats()["reaper"]["at_start"] >= len(survivors)
    old_rows = second.processes()  # the second run has no session: every row is the first's
    assert len(old_rows) == 2
    # Observers that outlived their worker were reaped by the restart; on Linux the
    # parent-death signal took them with the worker already.
    want = "reaped" if fallback or not sys.platform.startswith("linux") else "ended"
    assert all(r["state"] == want for r in old_rows), old_rows
    # The decoy outlives the restart and two more periodic sweeps.
    sweeps = second.stats()["reaper"]["sweeps"]
    wait_until(lambda: second.stats()["reaper"]["sweeps"] >= sweeps + 2, what="two sweeps")
    assert decoy.is_running() and decoy.status() != psutil.STATUS_ZOMBIE


def test_nothing_lost_across_kill9(fake_run: FakeRun, workers, tmp_path: Path) -> None:
    data = tmp_path / "data"
    claude = fake_run.shim("slow:first=0.1,latency=0.15,jitter=0")
    first: Worker = workers(claude, data_dir=data)
    sessions = 2
    per_session = 8
    sids = open_sessions(first, sessions, "nl")
    for i in range(per_session):
        for s in range(sessions):
            first.observe(f"nl-{s}", i)
    for s in range(sessions):
        first.summarize(f"nl-{s}")
    # Every item above got a 2xx: it is committed. Kill while most are still queued.
    assert first.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] > 0
    first.kill9()
    turns_before = sum(1 for e in fake_run.ledger_lines() if e["event"] == "turn")

    second: Worker = workers(claude, data_dir=data)
    wait_until(
        lambda: second.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] == 0,
        what="the queue to drain after the restart",
    )
    for sid in sids:
        second.api().ok("POST", f"/sessions/{sid}/complete")
        second.wait_session_done(sid)

    db = sqlite3.connect(f"file:{data / 'worker.db'}?mode=ro", uri=True)
    try:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM pending_messages GROUP BY 1"))
        observations = db.execute("SELECT message_id FROM observations").fetchall()
        summaries = db.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
    finally:
        db.close()
    items = sessions * (1 + per_session + 1)  # prompt + observations + summary
    assert statuses == {"processed": items}
    assert len(observations) == sessions * per_session
    assert len({m for (m,) in observations}) == len(observations)
    assert summaries == sessions
    # Processed items were not sent again: at most the one in flight per session is repeated.
    turns = sum(1 for e in fake_run.ledger_lines() if e["event"] == "turn")
    assert items <= turns <= items + sessions, (turns, turns_before)
    fake_run.assert_none_alive(timeout=10)
