"""Whether a process still runs, and how to read one whose leader looks dead.

A zombie status alone does not mean a process has ended. On Linux, when a process's main
thread exits (pthread_exit) while other threads run on, the kernel shows the leader as a zombie
until the last thread ends: the process still runs, holds its memory and can fork, but its
cmdline and environment read empty through the leader and its RSS reads 0. A live thread
(psutil takes a thread id as a pid there) reads what the process is.
"""

from __future__ import annotations

import os

import psutil

from . import _platform
from ._identity import ProcId


def running_view(proc: psutil.Process) -> psutil.Process | None:
    """For a process that reads as a zombie but runs on in another thread: a handle on that
    thread, through which its status, cmdline, environment and memory read. None otherwise
    (it is not a zombie, or it really has ended, or it is gone)."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return _thread_view(proc.pid)


def _thread_view(pid: int) -> psutil.Process | None:
    tid = _platform.live_thread(pid)
    if tid is None:
        return None
    try:
        return psutil.Process(tid)
    except psutil.Error:
        return None  # the thread ended meanwhile


def status(proc: psutil.Process) -> str:
    """proc.status(), but a process whose main thread has exited while others run reads as
    its running thread does, not as a zombie. Raises what proc.status() raises."""
    state = proc.status()
    if state != psutil.STATUS_ZOMBIE:
        return state
    view = _thread_view(proc.pid)
    if view is None:
        return state
    try:
        return view.status()
    except psutil.Error:
        return state


def exited(proc: psutil.Process) -> bool:
    """True once the process has ended and waits only to be reaped (a zombie with no thread
    running). Raises what proc.status() raises (NoSuchProcess once it is gone)."""
    return status(proc) == psutil.STATUS_ZOMBIE


def cmdline(proc: psutil.Process) -> list[str]:
    """proc.cmdline(), read through a running thread if the leader looks dead ([] if it has
    really ended). Raises psutil.Error as proc.cmdline() does."""
    try:
        return proc.cmdline()
    except psutil.ZombieProcess:
        view = _thread_view(proc.pid)
        return view.cmdline() if view is not None else []


def listed_cmdline(proc: psutil.Process) -> list[str] | None:
    """The argv of a process that psutil.process_iter(["cmdline", "status"]) listed, from the
    info it read, or None if the process has ended (a zombie with no thread running). Reads
    again only for a zombie leader. Raises psutil.Error."""
    info = getattr(proc, "info", {})
    if info.get("status") != psutil.STATUS_ZOMBIE:
        return info.get("cmdline") or []
    return None if exited(proc) else cmdline(proc)


def shown_argv(proc: psutil.Process, argv: list[str]) -> list[str]:
    """The argv to name a process by in a report: as read, but a blank argv[0] (a process that
    zeroed its arguments, perl's `$0 = ""`, an exec with blank ones) becomes `[comm]`, as ps shows
    such a process, followed by whatever arguments are not blank; the executable's file name when
    comm reads blank too (perl's `$0 = ""` blanks both). Unchanged if no name can be read."""
    if argv and argv[0].strip():
        return argv
    name = ""
    try:
        name = proc.name()
        if not name.strip():
            name = os.path.basename(proc.exe())
    except psutil.Error:
        pass
    if not name.strip():
        return argv
    rest = argv[1:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    while rest and not rest[-1].strip():
        rest = rest[:-1]
    return [f"[{name}]", *rest]


def environ(proc: psutil.Process) -> dict[str, str]:
    """proc.environ(), read through a running thread if the leader looks dead."""
    try:
        return proc.environ()
    except (psutil.ZombieProcess, psutil.AccessDenied):
        # Root gets ESRCH from a zombie leader's environ, any other user EACCES (the kernel's
        # ptrace check finds no memory map): both read it through a running thread.
        view = running_view(proc)
        if view is None:
            raise
        return view.environ()


def is_alive(pid_id: ProcId) -> bool:
    """True if the same process (pid and create_time) still runs (see `exited`)."""
    proc = pid_id.process()
    if proc is None:
        return False
    try:
        return not exited(proc)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        # Exists with the right create_time; we just may not read its state.
        return True
