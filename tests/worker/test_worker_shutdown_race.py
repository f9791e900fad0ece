"""Shutdown while a hook wakes a session: Python 3.11's asyncio.wait_for drops a cancellation
that arrives in the same loop iteration as its awaitable's completion. The session's generator
then went back to waiting for work (up to the idle timeout: 180 s by default) and the worker's
exit waited on it; after a SIGKILLed harness the worker stayed alive."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from worker.config import WorkerConfig
from worker.containment import Containment
from worker.sessions import SessionManager
from worker.store import Store

IDLE_TIMEOUT_S = 120.0  # what a lost cancellation would cost; the test allows 10 s


def test_a_wake_racing_shutdown_does_not_hold_it(tmp_path: Path) -> None:
    async def go() -> float:
        cfg = WorkerConfig(data_dir=tmp_path, idle_timeout=IDLE_TIMEOUT_S)
        store = Store(cfg.db_path)
        try:
            run_id = store.begin_run(os.getpid(), time.time(), "race-test", "fixed")
            manager = SessionManager(cfg, store, Containment("race-test", time.time()), run_id)
            sid, _ = await store.init_session("race", "proj", "hello")
            manager.notify(sid)  # a generator starts; with nothing queued it waits for work
            active = manager.sessions[sid]
            for _ in range(3):  # its first steps: nothing queued, the session active: it waits
                await asyncio.sleep(0)
            assert active.task is not None and not active.task.done()
            # The race: the wake-up and the cancel land in the same loop iteration.
            active.wake.set()
            t0 = time.monotonic()
            await asyncio.wait_for(manager.shutdown(), 10)
            assert active.task is not None and active.task.done()
            return time.monotonic() - t0
        finally:
            store.close()

    assert asyncio.run(go()) < 10
