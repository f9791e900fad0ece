"""Process helpers for the leak-check plugin's tests: find and wait for processes by marker."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

import proctree


def processes_with(marker: str) -> list[psutil.Process]:
    """Running processes whose argv carries this test's marker (a zombie leader whose other
    threads run on included: read through one of them)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = proctree.listed_cmdline(proc)  # None: it has exited
        except psutil.Error:
            continue
        if cmdline is not None and marker in cmdline:
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


def wait_until(cond: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    """Poll cond until it holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
