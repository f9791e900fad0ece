"""Linux: prctl (child subreaper, parent-death signal) through ctypes, pidfd signalling."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

from ._identity import ProcId
from ._posix import send_verified as _posix_send_verified

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


def pdeathsig_preexec(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn that asks for SIGKILL when the spawning thread dies.

    Everything is resolved before fork so the child only makes two syscalls. If the parent
    already died between fork and prctl, getppid() no longer names it: die at once.
    """
    prctl = _prctl()
    getppid = os.getppid
    kill = os.kill
    sigkill = int(signal.SIGKILL)

    def _set_pdeathsig() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if getppid() != parent_pid:
            kill(os.getpid(), sigkill)

    return _set_pdeathsig


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
