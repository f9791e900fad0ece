"""The soak's wait for an idle tree after its last session judges by samples it takes itself.

Before, it read the census thread's last sample: a run that drove all its sessions between two
of those (10 short sessions in 0.39 s, in CI) looked idle at once, and the final sample then found
an observer still ending: FAIL, "worker descendants did not return to idle baseline (2 > 1)"."""

from __future__ import annotations

import asyncio

import psutil
from soak_helpers import wait_for

from harness.census import Census, run_id_token
from harness.soak import _settle

# The "worker": after its first sample, starts one child of the run that ends by itself 1.5 s
# later and is reaped, as an observer ended after its session does.
WORKER = """
import subprocess, sys, time
sys.stdin.readline()  # go
token = sys.argv[1] + sys.argv[2]  # the run's token: the child's argv, not the worker's
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)", token]).wait()
time.sleep(600)
"""


def test_settle_waits_for_a_child_no_census_sample_saw(spawn, run_id) -> None:
    import subprocess

    flag = run_id_token(run_id).removesuffix(run_id)
    worker = spawn(WORKER, flag, run_id, stdin=subprocess.PIPE)
    census = Census(run_id, None, grace=5.0)  # its own thread is never started: no samples
    census.set_worker(worker.pid, psutil.Process(worker.pid).create_time())
    baseline = census.sample().descendants
    assert worker.stdin is not None
    worker.stdin.write(b"go\n")
    worker.stdin.flush()
    child = wait_for(lambda: psutil.Process(worker.pid).children(), what="the worker's child")[0]  # type: ignore[index]

    asyncio.run(_settle(census, baseline, grace=5.0))

    assert not child.is_running(), "the settle returned while a child of the run was alive"
    assert census.snapshot()["live_descendants"] <= baseline
