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


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
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


# What execve runs besides a `#!` script: ELF, and Mach-O (thin, either byte order; fat).
_BINARY_MAGIC = (
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)
_BINFMT_MISC = "/proc/sys/fs/binfmt_misc"


def exec_problem(path: str) -> str | None:
    """Why execve would refuse this executable file with ENOEXEC (a script without `#!`, which
    a shell runs but a spawn cannot), or None. Unknown (None) where the kernel has binfmt_misc
    formats registered: those may run anything."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None  # unreadable yet executable: the spawn will say
    if head[:2] == b"#!" or head in _BINARY_MAGIC:
        return None
    try:
        registered = set(os.listdir(_BINFMT_MISC)) - {"register", "status"}
    except OSError:
        registered = set()
    if registered:
        return None
    return (
        "the kernel cannot run it: no '#!' line and not a binary (a shell runs such a script, "
        "a spawn fails with 'Exec format error')"
    )
