"""Linux: prctl (child subreaper, parent-death signal) through ctypes, pidfd signalling,
threads that outlive their process's main thread."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable

import psutil

# Imported on Linux only (_platform chooses by sys.platform); the assert also tells type
# checkers to skip this module when they check for Windows.
assert sys.platform != "win32"

from . import _launcher  # noqa: E402
from ._identity import ProcId  # noqa: E402
from ._posix import send_verified as _posix_send_verified  # noqa: E402

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc: ctypes.CDLL | None = None


def _prctl() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fn = _libc.prctl
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


def enable_subreaper() -> bool:
    return _prctl()(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def disable_subreaper() -> bool:
    return _prctl()(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) == 0


def is_subreaper() -> bool:
    val = ctypes.c_int(0)
    fn = _prctl()
    # PR_GET_CHILD_SUBREAPER writes through a pointer passed as the second argument.
    addr = ctypes.cast(ctypes.pointer(val), ctypes.c_void_p).value or 0
    rc = fn(PR_GET_CHILD_SUBREAPER, addr, 0, 0, 0)
    return rc == 0 and val.value != 0


def pdeathsig_preexec(parent_pid: int, subreaper: bool = False) -> Callable[[], None]:
    """A preexec_fn that asks for SIGKILL when the spawning thread dies (and with `subreaper`
    makes the child a child subreaper, kept across its exec: see _launcher).

    Everything is resolved before fork so the child only makes two syscalls. If the parent
    already died between fork and prctl, getppid() no longer names it: die at once.
    """
    prctl = _prctl()
    getppid = os.getppid
    kill = os.kill
    sigkill = int(signal.SIGKILL)

    def _set_pdeathsig() -> None:
        if subreaper and prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot become a subreaper")
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if getppid() != parent_pid:
            kill(os.getpid(), sigkill)

    return _set_pdeathsig


def child_pids(pid: int) -> list[int] | None:
    """The direct children of pid as the kernel lists them per thread, or None if it cannot.

    psutil finds children by reading every process's stat file; /proc/<pid>/task/<tid>/children
    (CONFIG_PROC_CHILDREN, in every mainstream kernel) costs a few reads however many
    processes run. None (missing file, no permission) tells the caller to ask psutil.
    """
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []  # no such process: no children
    except OSError:
        return None
    if str(pid) not in tids:
        # Not its own entry: a process may mount another's /proc entry over its own (root),
        # and its children files then list that one's children (PID 1's: every process).
        # psutil's look at every process's parent finds its own. (A leader's thread stays
        # listed until its whole group exits; were it not, psutil would answer all the same.)
        return None
    for tid in tids:
        try:
            kids.extend(thread_child_pids(pid, int(tid)))
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread exited meanwhile
            return None  # the kernel has no children file
        except (OSError, ValueError):
            return None
    return kids


def thread_child_pids(pid: int, tid: int) -> list[int]:
    """The children that thread `tid` of process `pid` forked (raises OSError if the kernel
    cannot say: the thread is gone, or there is no children file)."""
    with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
        return [int(x) for x in f.read().split()]


def live_thread(pid: int) -> int | None:
    """A thread of `pid` other than its main one, or None.

    When a process's main thread exits (pthread_exit) while others run on, the kernel shows the
    leader as a zombie until the last thread ends; the process still runs, and its cmdline,
    environment and memory read empty through the leader but not through a live thread.
    """
    try:
        tids = [t.id for t in psutil.Process(pid).threads()]
    except psutil.Error:
        return None
    return next((tid for tid in tids if tid != pid), None)


@functools.cache
def pdeathsig_launcher() -> tuple[str, str] | None:
    """(kind, path) of the program that sets the parent-death signal and execs, or None.

    kind "native": proctree's own launcher (_launcher.py), built once with the C compiler;
    kind "setpriv": util-linux >= 2.33. Either way the spawn needs no preexec_fn: with one,
    Python must fork the whole parent and run Python code in the child before exec (5-9 ms on
    the spawning thread, measured on a 60 MB worker) instead of a vfork (under 1 ms).
    """
    choice = os.environ.get(_launcher.CHOICE_ENV, "").strip().lower()
    if choice == "preexec":
        return None
    if choice != "setpriv" and (native := _launcher.native_launcher()) is not None:
        return "native", native
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return ("setpriv", path) if out.returncode == 0 and "--pdeathsig" in out.stdout else None


def native_launcher_in_use() -> bool:
    found = pdeathsig_launcher()
    return found is not None and found[0] == "native"


def pdeathsig_argv(
    argv: list[str],
    parent_pid: int,
    program: str,
    subreaper: bool = False,
    cell: str | None = None,
) -> list[str] | None:
    """argv run under the launcher with SIGKILL as its parent-death signal, or None.

    program: argv[0] as found on the child's PATH. The native launcher execs it directly and
    kills itself if parent_pid is no longer its parent after the prctl; setpriv cannot check,
    so a parent that dies in that instant leaves the child to the guardian's sweep.
    `subreaper`: the child is made a child subreaper too, which only proctree's own launcher
    does (None with setpriv: the caller falls back to a preexec_fn). `cell`: a cgroup the
    native launcher makes and enters before its exec (see _launcher); ignored by setpriv.
    """
    launcher = pdeathsig_launcher()
    if launcher is None:
        return None
    kind, path = launcher
    if kind == "native":
        # A bare name found through a relative PATH entry: only a PATH search in the child
        # would find it where the child runs (a name with a slash, which() gives back as is).
        if os.sep not in argv[0] and not os.path.isabs(program):
            return None
        flags = [*(["-s"] if subreaper else []), *(["-c", cell] if cell else [])]
        return [path, *flags, str(parent_pid), program, *argv]
    if subreaper:
        return None
    return [path, "--pdeathsig", "KILL", "--", *argv]


def send_verified(pid_id: ProcId, sig: int) -> bool:
    """Signal through a pidfd: once the fd is open and the identity checked, no reuse race."""
    pidfd_open = getattr(os, "pidfd_open", None)
    pidfd_send = getattr(signal, "pidfd_send_signal", None)
    if pidfd_open is None or pidfd_send is None:
        return _posix_send_verified(pid_id, sig)
    try:
        fd = pidfd_open(pid_id.pid)
    except (ProcessLookupError, PermissionError):
        return False
    except OSError:
        return _posix_send_verified(pid_id, sig)
    try:
        if pid_id.process() is None:
            return False
        pidfd_send(fd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(fd)
