"""Helpers shared by the harness tests (imported as a plain module)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil

SLEEPER = "import time\nwhile True: time.sleep(1)"


def wait_for(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll until cond() is truthy; generous deadline for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def run_pids(run_id: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose argv mentions the run id anywhere."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == psutil.Process().pid:
            continue
        if any(run_id in a for a in (p.info["cmdline"] or [])):
            out.append(p.pid)
    return out


def alive(pid: int) -> bool:
    """pid is a live process (not a zombie awaiting its reaper)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def end_stand_in(worker: subprocess.Popen[Any], ours: list[psutil.Process]) -> None:
    """End a stand-in worker and what it started (by handle: identity checked)."""
    for proc in ours:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    worker.kill()
    worker.wait(timeout=30)
    psutil.wait_procs(ours, timeout=10)
