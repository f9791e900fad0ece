"""A claimed message goes back to the queue counted only when its turn failed.

The store being unavailable (another process holding its lock past --db-busy-timeout) or a cancel
is not the message's fault: its attempt must not count against --max-attempts, or an accepted
observation is failed for good with nothing wrong with it. A turn that did fail counts, also when
a cancel or the store comes in the way of saying so. In-process (a SessionManager of our own on
a real database and the fake), so that the lock is taken and let go at exact points."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from workerkit import FakeRun, queue_rows, write_locked

import worker.sessions
from worker.config import WorkerConfig
from worker.containment import Containment
from worker.sessions import SessionManager
from worker.store import Store

PROMPT = {"userPrompt": "what is in the repo", "promptNumber": 1}


async def until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def manager_for(
    tmp_path: Path, claude: Path, **settings: Any
) -> AsyncIterator[SessionManager]:
    cfg = WorkerConfig(data_dir=tmp_path / "data", claude=str(claude), grace=0.5, **settings)
    store = Store(cfg.db_path, cfg.db_busy_timeout)
    store.on_event_loop()
    run_id = store.begin_run(os.getpid(), time.time(), "claims-test", "fixed")
    manager = SessionManager(cfg, store, Containment("claims-test", time.time()), run_id)
    try:
        yield manager
    finally:
        await manager.shutdown()
        store.close()


async def prompt_in_turn(manager: SessionManager, fake_run: FakeRun) -> int:
    """A session with one prompt queued, its observer started on it; its id."""
    sid, _ = await manager.store.init_session("claims", "proj", "hello")
    await manager.store.enqueue(sid, "prompt", PROMPT)
    manager.notify(sid)
    await until(lambda: fake_run.started("main"), "the observer to start")
    return sid


def failed_and_waiting(manager: SessionManager, errors: int) -> Callable[[], bool]:
    """After `errors` session errors, a store call waits for the lock."""
    return lambda: manager.counters.session_errors >= errors and manager.store.waiting >= 1


def rows(manager: SessionManager) -> list[tuple[str, int]]:
    return queue_rows(manager.store.path)


def test_a_generator_that_gives_up_on_the_store_does_not_count_the_attempt(
    tmp_path: Path, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn succeeded, storing its reply failed past the retries: the generator gives up,
    and its message must go back uncounted (it was failed for good with --max-attempts 1)."""
    monkeypatch.setattr(worker.sessions, "STORE_RETRIES", 1)
    shim = fake_run.shim("slow:latency=1,jitter=0,first=0")

    async def go() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        async with manager_for(tmp_path, shim, max_attempts=1, db_busy_timeout=0.3) as manager:
            sid = await prompt_in_turn(manager, fake_run)
            with write_locked(manager.store.path):
                # gave up (a store error, then the generator's), its last give-back waiting
                await until(failed_and_waiting(manager, 2), "the generator to give up")
            active = manager.sessions[sid]
            await until(lambda: active.task is not None and active.task.done(), "it to end")
            after_give_up = rows(manager)
            manager.notify(sid)  # the next hook
            await until(lambda: rows(manager)[0][0] == "processed", "the message to be worked")
            return after_give_up, rows(manager)

    after_give_up, final = asyncio.run(go())
    assert after_give_up == [("pending", 0)]
    assert final == [("processed", 1)]
    fake_run.assert_none_alive()


def test_a_message_cancelled_by_a_delete_stays_cancelled(tmp_path: Path) -> None:
    """A late release (a generator that gave up, its claim given back at the next one's start)
    once brought a deleted session's message back to 'pending', and it was worked."""

    async def go() -> list[tuple[str, int]]:
        store = Store(tmp_path / "worker.db")
        store.on_event_loop()
        try:
            sid, _ = await store.init_session("gone", "proj", "hello")
            await store.enqueue(sid, "prompt", PROMPT)
            message = await store.next_message(sid)
            assert message is not None
            await store.cancel_pending(sid)
            await store.release_message(message, "the turn timed out", max_attempts=2)
            await store.unclaim(message)
            return queue_rows(store.path)
        finally:
            store.close()

    assert asyncio.run(go()) == [("cancelled", 1)]


def test_a_failed_turn_counts_though_a_cancel_comes_before_its_release_is_written(
    tmp_path: Path, fake_run: FakeRun
) -> None:
    """The turn timed out; its release waits for the lock when shutdown cancels the generator:
    the attempt still counts (it went back uncounted, and the next start tried it again)."""
    shim = fake_run.shim("hang:at=mid-turn,turn=0")

    async def go() -> list[tuple[str, int]]:
        async with manager_for(
            tmp_path, shim, max_attempts=1, turn_timeout=1, db_busy_timeout=30
        ) as manager:
            sid = await prompt_in_turn(manager, fake_run)
            with write_locked(manager.store.path):
                await until(failed_and_waiting(manager, 1), "the failed turn's release to wait")
                stopping = asyncio.ensure_future(manager.shutdown())
                active = manager.sessions[sid]
                await until(
                    lambda: active.winding_up and manager.store.waiting >= 1,
                    "the cancelled generator to give its message back",
                )
            await stopping
            return rows(manager)

    assert asyncio.run(go()) == [("failed", 1)]
    fake_run.assert_none_alive()


def test_a_claim_not_given_back_at_shutdown_is_tried_again_before_the_end(
    tmp_path: Path, fake_run: FakeRun, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock outlasts the generator's give-back: shutdown tries once more after ending the
    observers (before, the message stayed 'processing', its attempt counted at the next start,
    and nothing was logged)."""
    shim = fake_run.shim("slow:latency=5,jitter=0,first=0")

    def warned() -> bool:
        return any("not given back yet" in r.getMessage() for r in caplog.records)

    async def go() -> list[tuple[str, int]]:
        async with manager_for(tmp_path, shim, db_busy_timeout=0.3) as manager:
            await prompt_in_turn(manager, fake_run)
            with write_locked(manager.store.path):
                stopping = asyncio.ensure_future(manager.shutdown())
                await until(warned, "the give-back to fail under the lock")
            await stopping
            return rows(manager)

    with caplog.at_level(logging.WARNING, logger="worker.sessions"):
        assert asyncio.run(go()) == [("pending", 0)]
    fake_run.assert_none_alive()
