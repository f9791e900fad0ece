"""POSIX primitives shared by Linux and macOS: sessions, process groups, signals, reaping."""

from __future__ import annotations

import os
import re
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


# The kernel reads a script's `#!` line from the file's first bytes (BINPRM_BUF_SIZE) and
# runs an interpreter that is itself a script, a few levels deep.
_SHEBANG_BYTES = 256
_SHEBANG_DEPTH = 4


def exec_problem(path: str, _depth: int = 0) -> str | None:
    """Why execve would refuse this executable file (ENOEXEC: a script without `#!`, which a
    shell runs but a spawn cannot; ENOENT: a `#!` interpreter that is not there, often one
    named with a CR by a script saved with CRLF line endings), or None. Unknown (None) where
    the kernel has binfmt_misc formats registered: those may run anything."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SHEBANG_BYTES)
    except OSError:
        return None  # unreadable yet executable: the spawn will say
    if head[:2] == b"#!":
        return _interpreter_problem(head, _depth)
    if head[:4] in _BINARY_MAGIC:
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


def _interpreter_problem(head: bytes, depth: int) -> str | None:
    """Why the interpreter a `#!` line names cannot run (see exec_problem), or None. A relative
    one is looked up from the spawner's working folder, unknown here: nothing is said."""
    # The kernel takes the name up to the first blank or newline: a CR stays in it.
    found = re.match(rb"#![ \t]*([^ \t\n\0]+)", head)
    if found is None:
        return None  # `#!` alone: the spawn will say
    name = os.fsdecode(found.group(1))
    if not os.path.isabs(name) or depth >= _SHEBANG_DEPTH:
        return None
    if not (os.path.isfile(name) and os.access(name, os.X_OK)):
        crlf = " (CRLF line endings: the name ends in a carriage return)" if "\r" in name else ""
        return (
            f"the kernel cannot run it: its '#!' interpreter {name!r} is not an executable "
            f"file{crlf}, so every spawn of it fails"
        )
    inner = exec_problem(name, depth + 1)
    return f"its '#!' interpreter {name!r}: {inner}" if inner else None
