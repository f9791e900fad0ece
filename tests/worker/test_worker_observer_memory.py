"""A failed turn leaves nothing of its reply behind, even before the garbage collector runs.

The fake floods between turns (`stdout-flood:at=after-result,forever=1`); the next turn reads
past the worker's bound on a reply and fails. Before, on Python < 3.12, asyncio.wait_for left
the failure in a reference cycle holding the turn's frames and, with them, the reply read so far
(~5 MB per failed turn, until a full collection: a flooded 12-session soak grew the worker by
277 MB). Between turns, lines wait as bytes, not as parsed objects."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest
from workerkit import FakeRun

from worker.agent import Observer, ObserverError

MAX_REPLY = 4 * 1024 * 1024
SDK_ARGV = ["--output-format", "stream-json", "--verbose", "--input-format", "stream-json"]


async def _a_failed_turn(claude: str) -> str:
    obs = await Observer.spawn(
        [claude, *SDK_ARGV], spawn_kwargs={}, max_line=MAX_REPLY, token=Observer.new_token()
    )
    try:
        await obs.initialize(60)
        await obs.turn("first", "s", 60)  # then the flood starts
        with pytest.raises(ObserverError, match="longer than"):
            await obs.turn("second", "s", 60)
        return "failed as it should"
    finally:
        obs.proc.kill()
        await obs.proc.wait()
        await obs.finish_streams()


def test_failed_turns_keep_no_reply_for_the_collector(fake_run: FakeRun) -> None:
    claude = str(fake_run.shim("stdout-flood:at=after-result,forever=1"))
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # what a long-running worker may go without for a long time: a full pass
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            asyncio.run(_a_failed_turn(claude))
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        if was_enabled:
            gc.enable()
    # Each failed turn read more than MAX_REPLY; at most a small remainder each may wait for
    # the collector (the observer's own task cycles), not the reply.
    assert left < MAX_REPLY // 2, f"{left / 2**20:.1f} MiB left for the collector after 3 turns"
