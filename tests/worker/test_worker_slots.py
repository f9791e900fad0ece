"""--max-observers: at most N observers alive at once across sessions, and no work lost for it.

Counted twice, from two sides: the worker's registry (spawn to tree ended) and the fake's own
ledger (its start to its exit), each an interval within the slot the worker held for it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from workerkit import FAST_FLAGS, REPO, FakeRun, Worker, wait_until

from worker.config import WorkerConfig
from worker.containment import Containment
from worker.sessions import SessionManager
from worker.store import Store

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shim")


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _lifetimes(fake_run: FakeRun) -> list[tuple[float, float]]:
    """Each main fake's [start, exit] from its ledger: what the worker's claims do not decide."""
    lines = fake_run.ledger_lines()
    starts = {e["pid"]: e["ts"] for e in lines if e["event"] == "start" and e["role"] == "main"}
    exits = {e["pid"]: e["ts"] for e in lines if e["event"] == "exit" and e["pid"] in starts}
    assert set(exits) == set(starts), "a fake left no exit line: its end is unknown"
    return [(starts[pid], exits[pid]) for pid in starts]


def test_observers_never_outnumber_the_cap_and_every_item_is_worked(
    fake_run: FakeRun, workers
) -> None:
    # Five sessions queue their work at once; turns take a while, so they would overlap.
    worker: Worker = workers(
        fake_run.shim("slow:latency=0.2"), flags=[*FAST_FLAGS, "--max-observers", "2"]
    )
    sids = [worker.whole_session(f"capped-{i}", observations=2) for i in range(5)]
    for sid in sids:
        worker.wait_session_done(sid)
    stats = worker.stats()
    assert stats["queue"] == {"processed": 5 * 4} and stats["observations"] == 5 * 2
    observers = stats["observers"]
    assert observers["limit"] == 2 and observers["in_slots"] == 0, observers
    assert observers["peak_in_slots"] == 2, "the sessions never needed two at once"
    rows: list[dict[str, Any]] = worker.processes()
    assert rows and all(r["state"] == "ended" for r in rows), rows
    assert _most_at_once([(r["started"], r["ended"]) for r in rows]) == 2, rows
    assert _most_at_once(_lifetimes(fake_run)) <= 2
    fake_run.assert_none_alive(timeout=10)


def test_an_idle_observer_gives_its_slot_and_its_session_resumes(
    fake_run: FakeRun, workers
) -> None:
    worker: Worker = workers(fake_run.shim("ok"), flags=[*FAST_FLAGS, "--max-observers", "1"])
    first = worker.new_session("first")
    worker.prompt(first, "first", "go")
    wait_until(lambda: worker.status(first)["queueLength"] == 0, what="the first turn")
    # The first session's observer now idles (the idle timeout is minutes): the second needs
    # the one slot, so the idle observer is ended for it.
    second = worker.new_session("second")
    worker.prompt(second, "second", "go")
    wait_until(lambda: worker.status(second)["queueLength"] == 0, what="the second turn")
    worker.observe("first", 1)  # and back: the second's observer gives way in turn
    wait_until(lambda: worker.status(first)["queueLength"] == 0, what="the first's new turn")
    for sid in (first, second):
        worker.api().ok("POST", f"/sessions/{sid}/complete")
        worker.wait_session_done(sid)
    rows = sorted(worker.processes(), key=lambda r: r["started"])
    assert [(r["session_db_id"], r["how"].split(":")[0]) for r in rows] == [
        (first, "evicted"),
        (second, "evicted"),
        (first, "completed"),
    ], rows
    assert _most_at_once([(r["started"], r["ended"]) for r in rows]) == 1, rows
    # The first session's second observer resumes the conversation of its first.
    starts = {e["pid"]: e for e in fake_run.ledger_lines() if e["event"] == "start"}
    before, after = starts[rows[0]["pid"]], starts[rows[2]["pid"]]
    argv = after["argv"]
    assert argv[argv.index("--resume") + 1] == before["session_id"], argv
    assert worker.stats()["queue"] == {"processed": 3}
    fake_run.assert_none_alive(timeout=10)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_cap_below_one_is_refused_at_start(value: str, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "serve", "--max-observers", value, "--claude",
         sys.executable, "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"--max-observers {value}: must be >= 1" in done.stderr, done.stderr


def test_a_session_deleted_while_its_spawn_waits_gives_its_slot_back(tmp_path) -> None:
    """The slot is taken before the spawn lock (held by a sweep): a delete then cancels the
    generator while it waits for the lock, and the slot must come back, or a few such deletes
    would leave no slot for anyone."""

    async def go() -> tuple[int, int]:
        cfg = WorkerConfig(data_dir=tmp_path, claude=sys.executable, max_observers=1)
        store = Store(cfg.db_path)
        try:
            run_id = store.begin_run(os.getpid(), time.time(), "slot-test", "fixed")
            manager = SessionManager(cfg, store, Containment("slot-test", time.time()), run_id)
            sid, _ = await store.init_session("slot", "proj", "hello")
            await store.enqueue(sid, "prompt", {"userPrompt": "hello", "promptNumber": 1})
            async with manager.spawn_lock:  # as a sweep holds it
                manager.notify(sid)
                deadline = time.monotonic() + 30
                while manager.slots.used == 0:  # the generator took the slot, waits for the lock
                    assert time.monotonic() < deadline, "the generator never took the slot"
                    await asyncio.sleep(0.01)
                await manager.delete(sid)
            await manager.shutdown()
            return manager.slots.used, manager.counters.spawned
        finally:
            store.close()

    used, spawned = asyncio.run(go())
    assert (used, spawned) == (0, 0)


@pytest.mark.parametrize("cells", ["cells", "no-cells"])
def test_a_delete_during_an_idle_ending_lets_that_ending_finish(
    fake_run: FakeRun, workers, cells: str
) -> None:
    """The generator is ending its stubborn observer for idleness (grace 3 s per stage) when
    DELETE cancels it. Before, the cancel cut the ending short: without cells the observer ran
    on (its slot already free, so a second one started beside it), and either way its row
    stayed `ending`. Now the ending runs to its end and DELETE waits for it."""
    env = {"PROCTREE_CGROUPS": "0"} if cells == "no-cells" else None
    flags = ["--grace", "3", "--reap-interval", "3600", "--idle-timeout", "1",
             "--max-observers", "1"]  # fmt: skip
    worker: Worker = workers(fake_run.shim("ignore-eof+ignore-sigterm"), flags=flags, env=env)
    sid = worker.new_session("idle-then-deleted")
    worker.prompt(sid, "idle-then-deleted", "go")
    wait_until(
        lambda: [r["state"] for r in worker.processes()] == ["ending"], what="the idle ending"
    )
    worker.api().ok("DELETE", f"/sessions/{sid}")
    # DELETE answered once the ending was over: the tree is gone, its row closed, its slot free.
    assert not fake_run.alive(), fake_run.alive()
    (row,) = worker.processes()
    assert row["state"] == "ended" and row["how"].startswith("idle:"), row
    assert worker.stats()["observers"]["in_slots"] == 0


def test_a_session_whose_queue_never_empties_gives_way_to_a_waiting_one(
    fake_run: FakeRun, workers
) -> None:
    """One slot; the first session has a long queue, the second one prompt. Before, the second
    waited until the first's queue was empty (85 s in a helper's run with a steady feed); now
    the first's observer gives its slot up once it has held it --observer-share seconds while
    another waits, and its session queues behind."""
    flags = [*FAST_FLAGS, "--max-observers", "1", "--observer-share", "1"]
    worker: Worker = workers(fake_run.shim("slow:latency=0.2"), flags=flags)
    busy = worker.new_session("busy")
    worker.prompt(busy, "busy", "go")
    items = 12  # some 5 s of turns: more than the share
    for i in range(items):
        worker.observe("busy", i)
    wait_until(lambda: worker.stats()["observers"]["in_slots"] == 1, what="the busy observer")
    waiting = worker.new_session("waiting")
    worker.prompt(waiting, "waiting", "me too")
    wait_until(lambda: worker.status(waiting)["queueLength"] == 0, what="the waiting prompt")
    # Served while the busy session still had work queued, not after it.
    assert worker.status(busy)["queueLength"] > 0
    wait_until(lambda: worker.status(busy)["queueLength"] == 0, what="the busy queue")
    rows = sorted(worker.processes(), key=lambda r: r["started"])
    assert [(r["session_db_id"], (r["how"] or "").split(":")[0]) for r in rows[:2]] == [
        (busy, "yielded"),
        (waiting, "evicted"),
    ], rows
    assert _most_at_once([(r["started"], r["ended"] or time.time()) for r in rows]) == 1, rows
    assert worker.stats()["queue"]["processed"] == 1 + items + 1
