"""POSIX primitives shared by Linux and macOS: sessions, process groups, signals, reaping."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Collection

from ._identity import ProcId

# POSIX only (its importers choose it by sys.platform); the assert also tells type checkers
# to skip this module when they check for Windows.
assert sys.platform != "win32"

TERM = signal.SIGTERM
KILL = signal.SIGKILL


def popen_kwargs() -> dict[str, object]:
    # A new session makes the child a group leader with no controlling terminal:
    # killpg reaches the whole group and a terminal's ^C does not.
    return {"start_new_session": True}


def group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def send_verified(pid_id: ProcId, sig: int) -> bool:
    """Signal the process only if it is still the one we identified."""
    proc = pid_id.process()
    if proc is None:
        return False
    try:
        os.kill(pid_id.pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_empty(pgid: int) -> bool:
    """True if no process is in group pgid (signal 0 checks without sending anything)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a member we may not signal: not empty
    return False


def reap_zombies(children: Collection[int], exclude: Collection[int] = ()) -> list[int]:
    """Reap those of our `children` that exited, except `exclude` (pids asyncio or a Popen
    will wait for)."""
    reaped: list[int] = []
    skip = set(exclude)
    for pid in children:
        if pid in skip or not _peek_exited(pid):
            continue
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            reaped.append(done)
    return reaped


def _peek_exited(pid: int) -> bool:
    """Look (WNOWAIT) before reaping, so we never take a status of a child still running."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return True
    try:
        res = waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return res is not None


def noop_preexec() -> Callable[[], None] | None:
    return None
