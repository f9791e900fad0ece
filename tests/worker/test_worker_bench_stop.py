"""`python -m worker.bench` stopped from outside (SIGTERM from `timeout` or a cancelled job, or
SIGKILL) leaves no worker and no observer behind. Before, its worker was a plain child: SIGTERM
skipped the bench's cleanup and the worker served on, its observers with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
from workerkit import REPO, FakeRun, wait_until

# A module-level skip, not a skipif mark: the parametrization below names signal.SIGKILL, which
# Windows' signal module lacks, so importing this module there failed the whole collection.
if sys.platform == "win32":
    pytest.skip("POSIX signals", allow_module_level=True)


def _start(
    fake_run: FakeRun, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], psutil.Process]:
    # Slow observers and many sessions: the bench is mid-run when it is stopped.
    claude = fake_run.shim("slow:latency=0.5,jitter=0,first=0")
    argv = [sys.executable, "-m", "worker.bench", "--claude", str(claude), "--sessions", "200"]
    bench = subprocess.Popen(
        argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip

    def worker() -> psutil.Process | None:
        for child in psutil.Process(bench.pid).children():
            try:
                if "serve" in child.cmdline():
                    return child
            except psutil.Error:
                continue
        return None

    found = wait_until(worker, what="the bench's worker")
    wait_until(lambda: fake_run.started("main"), what="an observer to start")
    return bench, found


@pytest.mark.parametrize(
    ("sig", "fallback"),
    [(signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True)],
    ids=["sigterm", "sigkill", "sigkill-lifeline"],
)
def test_a_stopped_bench_leaves_nothing(fake_run: FakeRun, sig: int, fallback: bool) -> None:
    if sig == signal.SIGKILL and not fallback and not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    env = dict(os.environ, PROCTREE_FALLBACK="1" if fallback else "0")
    bench, worker = _start(fake_run, env)
    try:
        bench.send_signal(sig)
        code = bench.wait(timeout=120)
        if sig == signal.SIGTERM:
            assert code == 130, bench.stderr.read() if bench.stderr else ""
        wait_until(lambda: not worker.is_running(), what="the worker to stop")
        fake_run.assert_none_alive()
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        if worker.is_running():
            worker.kill()
