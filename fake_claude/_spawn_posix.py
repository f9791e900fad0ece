"""POSIX spawning: posix_spawn for grandchildren, a double fork + setsid for escapees."""

from __future__ import annotations

import os
import signal
import sys

# POSIX only (its importers choose it by sys.platform); the assert also tells type checkers
# to skip this module when they check for Windows.
assert sys.platform != "win32"

# The write end of each grandchild's stdin pipe; held until this process dies, so a grandchild
# sees EOF exactly when its fake parent is gone (as an MCP server on stdio does).
_keep: list[int] = []


def spawn_grandchild(argv: list[str], env: dict[str, str] | None = None) -> int:
    """A child on a stdin pipe we hold; with `env`, that environment and a session of its own."""
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ if env is None else env,
            setsid=env is not None,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, r, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
            ],
            setsigdef=(signal.SIGCHLD,),
        )
    finally:
        os.close(r)
        os.close(devnull)
    _keep.append(w)
    # Reap exited grandchildren automatically; real CLIs do not leave zombies behind either.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    return pid


def spawn_escapee(argv: list[str], env: dict[str, str] | None = None, uncell: bool = False) -> None:
    """Double fork: the daemon ends up in its own session, reparented away from us; with `env`,
    in that environment instead of ours; `uncell` (Linux, privileged): from the cgroup v2 root,
    out of any cgroup cell its parent was put in."""
    pid = os.fork()
    if pid == 0:  # intermediate
        try:
            if uncell:
                leave_cgroup()
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, 1 << 16)
            os.chdir("/")
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            if env is None:
                os.execv(argv[0], argv)
            else:
                os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # already reaped through SIGCHLD=SIG_IGN


def leave_cgroup() -> None:
    """Move this process into the cgroup v2 root, as a claude running as root can: a write of
    "0" (this process) to the root's cgroup.procs. Best effort: without the privilege, or
    without cgroup v2, nothing happens."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields, _, fs = line.partition(" - ")
                if fs.split(" ", 1)[0] == "cgroup2":
                    mount = fields.split()[4]
                    break
            else:
                return
        with open(os.path.join(mount, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write("0")
    except OSError:
        pass
