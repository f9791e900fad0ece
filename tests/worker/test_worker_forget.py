"""A session the worker holds nothing for is not kept in its memory.

A deleted session's generator is cancelled and its observer ended; nothing of it is left, so its
entry must go, as a drained session's does. Before, every DELETE of a session that had had a
generator left its entry (and the cancelled task with its frames) in `SessionManager.sessions`
for the worker's lifetime: over HTTP, 6,000 sessions initialised, given a prompt and deleted
grew a worker by 13.9 MB (0.5 MB without the prompt), without end. In-process, so that the
manager's table can be read."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from workerkit import FakeRun

from worker.config import WorkerConfig
from worker.containment import Containment
from worker.sessions import SessionManager
from worker.store import Store

PROMPT = {"userPrompt": "what is in the repo", "promptNumber": 1}


async def until(predicate, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.01)


def test_deleted_sessions_leave_no_entry(tmp_path: Path, fake_run: FakeRun) -> None:
    shim = fake_run.shim("ok")

    async def go() -> tuple[dict[int, object], list[int], int]:
        cfg = WorkerConfig(data_dir=tmp_path / "data", claude=str(shim), grace=0.5)
        store = Store(cfg.db_path, cfg.db_busy_timeout)
        store.on_event_loop()
        run_id = store.begin_run(os.getpid(), time.time(), "forget-test", "fixed")
        manager = SessionManager(cfg, store, Containment("forget-test", time.time()), run_id)
        try:
            ids = []
            for n in range(6):
                sid, _ = await store.init_session(f"forget-{n}", "proj", "hello")
                await store.enqueue(sid, "prompt", PROMPT)
                manager.notify(sid)
                ids.append(sid)
            # one deleted in its turn, the others before their observer started or while idle
            await until(lambda: manager.counters.spawned >= 1, "an observer to start")
            for sid in ids:
                await manager.delete(sid)
            left = dict(manager.sessions)
            # A hook for a deleted session after its DELETE still gets a generator.
            await store.enqueue(ids[0], "observation", {"tool_name": "late"})
            manager.notify(ids[0])
            await until(lambda: ids[0] not in manager.sessions, "the late item's generator")
            return left, ids, await store.pending_count(ids[0])
        finally:
            await manager.shutdown()
            store.close()

    left, ids, late_pending = asyncio.run(go())
    assert left == {}, f"entries kept for deleted sessions {sorted(left)} of {ids}"
    assert late_pending == 0
    fake_run.assert_none_alive()
