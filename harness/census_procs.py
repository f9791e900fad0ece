"""Reads of one process the census makes outside its records: identity, RSS, argv, liveness."""

from __future__ import annotations

import contextlib
import time

import psutil

import proctree

MID_EXEC_WAIT_S = 1.0  # how long a new process's blank argv is taken for an exec under way


def read_cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def verified(pid: int, create_time: float) -> psutil.Process:
    """The worker's process by its identity (proctree's), raising if it is gone or reused."""
    proc = proctree.ProcId(pid, create_time).process()
    if proc is None:
        raise psutil.NoSuchProcess(pid, msg="worker identity changed")
    return proc


def rss_of(proc: psutil.Process) -> int:
    """Its RSS; 0 while an exec swaps the address space (the caller keeps its last value).
    A process whose main thread has exited reads 0 through the leader: read a live thread."""
    rss = proc.memory_info().rss
    if not rss and (view := proctree.running_view(proc)) is not None:
        with contextlib.suppress(psutil.Error):
            rss = view.memory_info().rss
    return rss


def signature(
    proc: psutil.Process, cmdline: list[str]
) -> tuple[tuple[str, ...], frozenset[tuple[str, str]] | None]:
    """How a process was started: its argv and environment (None where it cannot be read)."""
    try:
        env: frozenset[tuple[str, str]] | None = frozenset(proc.environ().items())
    except psutil.Error:
        env = None
    return tuple(cmdline), env


def after_exec(proc: psutil.Process) -> list[str]:
    """Its argv, waiting up to MID_EXEC_WAIT_S while it reads empty: a helper caught in its
    exec (a worker that has just started its guardian) would otherwise leave an empty
    signature, and its replacement, started alike, would be taken for the run's (a CI
    failure of test_only_the_workers_own_guardian_is_a_helper)."""
    deadline = time.monotonic() + MID_EXEC_WAIT_S
    while True:
        cmdline = read_cmdline(proc)
        if cmdline or time.monotonic() >= deadline or not running(proc):
            return cmdline
        time.sleep(0.01)


def parents_first(
    fresh: list[tuple[float, int, psutil.Process, int | None]],
) -> list[tuple[float, int, psutil.Process, int | None]]:
    """Oldest first, but each process after its parent when both are new: by their links, as
    neither create time (10 ms ticks) nor pid (pids wrap: a child 300 of a parent 32767) can
    order a parent and the child it forked at once."""
    by_pid = {entry[1]: entry for entry in sorted(fresh, key=lambda e: (e[0], e[1]))}
    out: list[tuple[float, int, psutil.Process, int | None]] = []
    placed: set[int] = set()
    for pid in by_pid:
        chain: list[int] = []
        at: int | None = pid
        while at is not None and at in by_pid and at not in placed:
            placed.add(at)  # also ends a loop of links read at different moments
            chain.append(at)
            at = by_pid[at][3]
        out += [by_pid[p] for p in reversed(chain)]
    return out


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and not proctree.exited(proc)
    except psutil.Error:
        return False
