"""Process helpers for the leak-check plugin's tests: find and wait for processes by marker."""

from __future__ import annotations

import time

import psutil


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose argv carries this test's marker."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if marker in (proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def wait_until_gone(marker: str, deadline_s: float = 30.0) -> list[psutil.Process]:
    """Poll until no process carries marker; returns the ones still alive at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        alive = processes_with(marker)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)
