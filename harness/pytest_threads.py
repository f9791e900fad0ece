"""Threads a checked test leaves running, for the pytest plugin's blame.

A process takes the leak-check token from the environment at the moment it is spawned, and the
environment names the test running then. A thread that an earlier test started and left running
can spawn during a later test: the token then names the later test, which did not start it. So
the plugin notes the threads each test leaves behind; a leak found after one of them was alive
is either put on that test, where the kernel still says which thread forked it (Linux, while the
thread lives: /proc/self/task/<tid>/children), or reported with that doubt spelled out.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

# The plugin's own sampler thread: not a test's.
OWN_THREAD_NAMES = ("leak-check",)


@dataclass(frozen=True)
class Lingering:
    owner: str  # the label of the test (or higher-scoped fixture) that started it
    thread: threading.Thread
    by_test: bool = True  # a fixture's thread is meant to outlive the tests that use it

    @property
    def name(self) -> str:
        return self.thread.name


class LingeringThreads:
    def __init__(self) -> None:
        self._by_ident: dict[int, Lingering] = {}

    @staticmethod
    def snapshot() -> frozenset[int]:
        return frozenset(t.ident for t in threading.enumerate() if t.ident is not None)

    def left_by(self, owner: str, before: frozenset[int], *, by_test: bool = True) -> None:
        """Note the threads started since `before` (taken at the owner's start) still running;
        one already noted keeps its owner (a fixture's, set up within a test's window)."""
        for t in threading.enumerate():
            if t.ident is None or t.ident in before or t.ident in self._by_ident:
                continue
            if t.name in OWN_THREAD_NAMES or t is threading.current_thread():
                continue
            if t.is_alive():
                self._by_ident[t.ident] = Lingering(owner, t, by_test)

    def alive_besides(self, owner: str) -> list[Lingering]:
        """Threads that tests other than `owner` left running and that are still alive (a
        fixture's threads are its own business: judged with the fixture, as its processes)."""
        for ident in [i for i, lt in self._by_ident.items() if not lt.thread.is_alive()]:
            del self._by_ident[ident]
        return [lt for lt in self._by_ident.values() if lt.by_test and lt.owner != owner]

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` s in all for the threads tests left running to end: at the
        session's end, what such a thread starts a moment after its test (a late spawn) is
        then there to be found, not started after the last look and left running."""
        import time

        deadline = time.monotonic() + timeout
        for lt in list(self._by_ident.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if lt.thread.is_alive() and lt.thread is not threading.current_thread():
                lt.thread.join(left)

    @staticmethod
    def forked_by(suspects: list[Lingering], pid: int) -> tuple[Lingering | None, bool]:
        """Which of these threads forked `pid`, or the pytest child it descends from, where the
        kernel says (Linux, both alive); and whether the kernel rules them all out: that child
        is listed under none of them while every one of them still runs (a thread that ended
        had its children moved to another thread of pytest, so only live ones can be cleared).
        A forkserver's child is never cleared: any thread may have asked for it; nor is any
        child of a pytest that adopts orphans (a subreaper, or pid 1): the kernel lists an
        orphan it adopted under its first live thread, whoever forked it."""
        # A block on sys.platform, as mypy reads it: proctree._linux is checked for Linux only.
        if sys.platform == "linux":
            # here: the plugin imports cheaply
            from proctree._linux import is_subreaper, thread_child_pids

            me = os.getpid()
            top = _pytests_child(pid, me)
            if top is None:
                return None, False
            adopts = me == 1 or is_subreaper()
            read_all = True  # a thread whose children could not be read is not ruled out
            for lt in suspects:
                tid = lt.thread.native_id
                try:
                    if tid is not None and top in thread_child_pids(me, tid):
                        return (lt, True) if lt.thread.is_alive() else (None, False)
                except (OSError, ValueError):
                    read_all = False
                read_all = read_all and tid is not None
            # Read first, then checked alive: a thread alive now was alive at its reading.
            certain = read_all and not adopts and all(lt.thread.is_alive() for lt in suspects)
            return None, certain
        return None, False


def _pytests_child(pid: int, me: int) -> int | None:
    """The child of pytest (pid `me`) that `pid` is or descends from, through live processes
    none of which is a lifetime helper; None where the chain is broken (an orphan) or passes a
    helper (a forkserver forks for whichever thread asks it)."""
    import psutil

    from harness.leak_procs import names_a_helper, shown_cmdline

    try:
        proc = psutil.Process(pid)
        while True:
            if names_a_helper(shown_cmdline(proc)):
                return None
            ppid = proc.ppid()
            if ppid == me:
                return proc.pid
            if ppid <= 1:
                return None
            proc = psutil.Process(ppid)
    except psutil.Error:
        return None


def doubt(suspects: list[Lingering]) -> str:
    """The note for a leak that a lingering thread may have started."""
    names = ", ".join(f"{lt.owner} ({lt.name!r})" for lt in suspects[:5])
    more = f" and {len(suspects) - 5} more" if len(suspects) > 5 else ""
    return (
        "note: threads left running by earlier tests were alive while this test ran; a process "
        "such a thread starts carries the token of the test running then, so these may be "
        f"theirs: {names}{more}"
    )
