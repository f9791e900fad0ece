"""Interrupts beyond the soak's own: a bench stops at Ctrl-C, and a second Ctrl-C (which cuts a
run's own cleanup short) still ends the worker, the run's processes and its work folder."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
from soak_helpers import alive, run_pids, wait_for

pytest.importorskip("worker")

from harness.cleanup import end_live_runs, live_run, run_over, sweep_run  # noqa: E402
from harness.soak_config import SoakConfig, write_run_shim  # noqa: E402
from harness.target import RunContext  # noqa: E402
from harness.targets.reference import ReferenceTarget  # noqa: E402
from harness.workload import make_session  # noqa: E402

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process: POSIX")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _argv(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@posix_only
def test_ctrl_c_during_a_bench_soak_ends_the_bench(tmp_path):
    """Before: the soak round ended `interrupted` and the bench went on to its next soak."""
    argv = [sys.executable, "-m", "harness", "bench", "--only", "latency"]
    argv += ["--latency-sessions", "100000", "--concurrency", "2"]
    bench = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    seen: dict[tuple[int, float], psutil.Process] = {}
    worker_argv: list[str] = []

    def soak_running() -> bool:
        for proc in _descendants(bench.pid):
            try:
                seen[(proc.pid, proc.create_time())] = proc
            except psutil.Error:
                continue
            args = _argv(proc)
            if "serve" in args and "--data-dir" in args:
                worker_argv[:] = args
        return bool(worker_argv) and len(seen) >= 4

    try:
        wait_for(soak_running, timeout=120, what="the bench's soak with its worker and observers")
        bench.send_signal(signal.SIGINT)
        out, _ = bench.communicate(timeout=120)
        assert bench.returncode == 130, out
        work_dir = Path(worker_argv[worker_argv.index("--data-dir") + 1]).parent
        run_id = re.fullmatch(r"leakproof-soak-([0-9a-f]+)-.*", work_dir.name).group(1)  # type: ignore[union-attr]
        wait_for(lambda: not [p for p in seen.values() if p.is_running()], timeout=30,
                 what="every process the bench started to be gone")  # fmt: skip
        assert run_pids(run_id) == []
        assert not work_dir.exists(), "the interrupted soak left its work folder"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for proc in seen.values():
            try:
                proc.kill()  # psutil checks the identity first
            except psutil.Error:
                pass


async def _start_with_observer(target: ReferenceTarget, work: Path, run_id: str, scenario: str):
    """A started worker with one live observer (its prompt driven, not ended)."""
    ledger = work / "ledger.jsonl"
    shim = write_run_shim(work, run_id, SoakConfig(scenarios=scenario, seed=1), ledger)
    handle = await target.start(RunContext(run_id, work, shim, ledger, 1))
    async with aiohttp.ClientSession() as http:
        await target.drive_prompt(make_session(0, run_id, 1, 1, 0), http, 1)
    # Blocking is fine here: the observer is the worker's, in another process.
    wait_for(lambda: len(run_pids(run_id)) >= 1, timeout=60, what="an observer of the run")
    return handle


@posix_only
def test_second_ctrl_c_ends_a_run_left_mid_cleanup(tmp_path, run_id):
    """The run is registered and never stopped, as when a second Ctrl-C lands in its cleanup."""
    work = tmp_path / "work"
    work.mkdir()
    target = ReferenceTarget(mode="leaky")
    live_run(run_id, target.stop_now, work)
    try:
        handle = asyncio.run(_start_with_observer(target, work, run_id, "ok"))
        assert end_live_runs() == [run_id]
        assert not _same(handle.pid, handle.create_time), "the worker survived"
        assert run_pids(run_id) == []
        assert not work.exists()
    finally:
        run_over(run_id)
        target.stop_now()
        sweep_run(run_id)


@posix_only
def test_stop_now_ends_a_worker_whose_stop_was_cut_short(tmp_path, run_id):
    """Before: stop() forgot the worker before waiting for it, so stop_now found nothing."""
    work = tmp_path / "work"
    work.mkdir()
    # The observer ignores SIGTERM and EOF, so the worker's shutdown waits out its grace.
    target = ReferenceTarget(mode="fixed", worker_grace=60.0)

    async def scenario() -> int:
        handle = await _start_with_observer(target, work, run_id, "ignore-eof+ignore-sigterm")
        stop = asyncio.ensure_future(target.stop())
        log = work / "worker-fixed" / "worker.log"
        deadline = time.monotonic() + 60
        while b"shutdown requested" not in log.read_bytes():  # stop() has sent its SIGTERM
            assert time.monotonic() < deadline, "the worker never began to shut down"
            await asyncio.sleep(0.05)
        assert not stop.done(), "the worker exited at once; this test needs a slow shutdown"
        stop.cancel()
        await asyncio.gather(stop, return_exceptions=True)
        return handle.pid

    try:
        pid = asyncio.run(scenario())
        target.stop_now()
        assert not alive(pid), "the worker survived stop_now"
        sweep_run(run_id)
        assert run_pids(run_id) == []
    finally:
        target.stop_now()
        sweep_run(run_id)


def _same(pid: int, create_time: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False
