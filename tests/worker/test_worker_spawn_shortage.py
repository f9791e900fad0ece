"""A spawn that fails for want of file descriptors (or processes, or memory) is the system's
shortage, not the message's fault: the message waits in the queue, uncounted, and is processed
once the shortage is over; before, it was failed for good after --max-attempts spawns."""

from __future__ import annotations

import sys

import psutil
import pytest
from workerkit import FakeRun, Worker, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="psutil sets another process's rlimit on Linux"
)


def test_a_spawn_without_file_descriptors_waits_and_loses_nothing(
    fake_run: FakeRun, workers
) -> None:
    worker: Worker = workers(fake_run.shim("ok"))
    proc = psutil.Process(worker.pid)
    limits = proc.rlimit(psutil.RLIMIT_NOFILE)
    sid = worker.new_session("short")  # the hook's connection is open from here on
    # Room for the hooks' requests, not for an observer's three pipes.
    proc.rlimit(psutil.RLIMIT_NOFILE, (proc.num_fds() + 3, limits[1]))
    try:
        worker.prompt(sid, "short", "go")
        worker.summarize("short")
        # Three failed spawns: more than --max-attempts (2), after which the old code had
        # failed the message for good.
        wait_until(
            lambda: "resources: cannot start" in worker.log() and "(attempt 3)" in worker.log(),
            what="three spawns refused for want of file descriptors",
        )
        assert worker.status(sid)["queueLength"] == 2
    finally:
        proc.rlimit(psutil.RLIMIT_NOFILE, limits)
    wait_until(lambda: worker.status(sid)["queueLength"] == 0, what="the queue to drain")
    queue = worker.stats()["queue"]
    assert queue == {"processed": 2}, queue
    assert worker.stats()["observers"]["spawned"] == 1
