"""One interface over the platform modules; the rest of proctree only talks to this."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Collection
from pathlib import Path

import psutil

from . import _cgroup
from ._caps import capabilities, fallback_forced
from ._identity import ProcId

WINDOWS = sys.platform == "win32"
LINUX = sys.platform.startswith("linux")
DARWIN = sys.platform == "darwin"

# sys.platform itself, not the names above, so that a type checker follows the branches.
if sys.platform == "win32":
    from . import _windows as _win
else:
    from . import _posix

    if sys.platform.startswith("linux"):
        from . import _linux as _native
    else:
        from . import _darwin as _native  # macOS and other POSIX: no subreaper, no pdeathsig

Group = object  # an int pgid on POSIX, a _windows.Job on Windows


def enable_subreaper(*, despite_fallback: bool = False) -> bool:
    """despite_fallback: for an observer (the soak's census), not for the code under test,
    which is what the fallback switch is meant to put on the macOS path."""
    if sys.platform.startswith("linux"):
        if not despite_fallback and not capabilities().has_subreaper:
            return False
        return _native.enable_subreaper()
    return False


def is_subreaper() -> bool:
    if sys.platform.startswith("linux"):
        return _native.is_subreaper()
    return False


def spawn_plan(
    parent_pid: int, argv: list[str] | None, path: str | None, subreaper: bool = False
) -> tuple[list[str] | None, dict[str, object], bool, Path | None]:
    """The command to run, the Popen kwargs that contain it, whether the child will be a
    child subreaper, and the cgroup cell it enters itself (None: after_spawn moves it).

    Linux: the parent-death signal through a launcher that sets it and execs argv (no
    preexec_fn, so Python can vfork); a preexec_fn when there is no argv to wrap, no
    launcher, or argv[0] is not found (then Popen raises its usual error, not the launcher).
    `path`: the PATH argv[0] is looked up in (the child's). `subreaper` (Linux): the child
    is made a child subreaper before its exec, so what its descendants orphan stays in its
    tree (see _launcher); where subreapers are off (the fallback) it is not. With cells
    enabled, proctree's own launcher enters the child's cell before its exec.
    """
    if sys.platform == "win32":
        return argv, _win.popen_kwargs(), False, None
    else:  # an else, not a fall-through: a type checker then skips this for Windows
        kwargs = _posix.popen_kwargs()
        caps = capabilities()
        if sys.platform.startswith("linux") and caps.has_pdeathsig:
            subreaper = subreaper and caps.has_subreaper
            wrapped = cell = None
            program = shutil.which(argv[0], path=path) if argv else None
            if argv and program is not None:
                jail = _cgroup.jail()
                if jail is not None and _native.native_launcher_in_use():
                    cell = jail.reserve()
                wrapped = _native.pdeathsig_argv(
                    argv, parent_pid, program, subreaper, None if cell is None else str(cell)
                )
            if wrapped is not None:
                return wrapped, kwargs, subreaper, cell
            kwargs["preexec_fn"] = _native.pdeathsig_preexec(parent_pid, subreaper)
            return argv, kwargs, subreaper, None
        return argv, kwargs, False, None


def pdeathsig_method() -> str | None:
    """How spawn_options sets the parent-death signal here ("native PATH", "setpriv PATH",
    "preexec_fn"), or None where it is not set. The first call builds proctree's launcher
    if it must: a daemon calls this at start, so that its first spawn does not wait."""
    if sys.platform.startswith("linux") and capabilities().has_pdeathsig:
        launcher = _native.pdeathsig_launcher()
        return "preexec_fn" if launcher is None else " ".join(launcher)
    return None


def child_pids(pid: int) -> list[int]:
    """Direct children of pid (none if it is gone)."""
    if sys.platform.startswith("linux"):
        kids = _native.child_pids(pid)
        if kids is not None:
            return kids
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def after_spawn(pid: int) -> Group | None:
    if sys.platform == "win32":
        return _win.after_spawn(pid)
    else:
        # start_new_session made the child its group's leader; if it is already gone its
        # grandchildren may still hold the group, whose id is then still the child's pid.
        pgid = _posix.group_of(pid)
        return pid if pgid is None else pgid


def group_of(pid: int) -> int | None:
    if sys.platform == "win32":
        return None
    else:
        return _posix.group_of(pid)


def session_of(pid: int) -> int | None:
    """The POSIX session id: its leader's pid. No process joins an existing session (setsid
    only makes a new one), so every member descends from the leader, and while any member
    lives the kernel gives that pid to no other process. None on Windows or once gone."""
    if sys.platform == "win32":
        return None
    else:
        return _posix.session_of(pid)


def _send_posix(pid_id: ProcId, sig: int) -> bool:
    if sys.platform == "win32":
        raise NotImplementedError("POSIX signals")
    elif sys.platform.startswith("linux"):
        return _native.send_verified(pid_id, sig)
    else:
        return _posix.send_verified(pid_id, sig)


def send_term(pid_id: ProcId) -> bool:
    """The polite stage: SIGTERM on POSIX, CTRL_BREAK_EVENT on Windows."""
    if sys.platform == "win32":
        # No per-process polite signal: CTRL_BREAK to a pid that leads no console group
        # would reach the whole console (us included). term_group handles the root's group.
        return False
    return _send_posix(pid_id, signal.SIGTERM)


def send_kill(pid_id: ProcId) -> bool:
    if sys.platform == "win32":
        return _win.send_verified(pid_id, 9)
    return _send_posix(pid_id, signal.SIGKILL)


def send_stop(pid_id: ProcId) -> bool:
    """POSIX: stop the process: stopped, it forks no more until it is killed (Windows: no)."""
    if sys.platform == "win32":
        return False
    return _send_posix(pid_id, signal.SIGSTOP)


def send_cont(pid_id: ProcId) -> bool:
    """POSIX: resume a stopped process: a signal sent to it meanwhile (SIGTERM) is acted on
    only once it runs again (Windows: no)."""
    if sys.platform == "win32":
        return False
    return _send_posix(pid_id, signal.SIGCONT)


def group_pids(group: Group) -> list[int]:
    """POSIX: the pids in process group `group` now (one getpgid per process)."""
    if sys.platform == "win32" or not isinstance(group, int):
        return []
    else:
        return [pid for pid in psutil.pids() if _posix.group_of(pid) == group]


def group_members(group: Group) -> list[int] | None:
    """Member pids where the OS lists them directly (a job), else None (scan for pgid)."""
    if sys.platform == "win32" and isinstance(group, _win.Job):
        return group.pids()
    return None


def group_empty(group: Group) -> bool:
    """True if nothing is left in a POSIX process group (False where it cannot tell)."""
    if sys.platform == "win32":
        return False
    else:
        return isinstance(group, int) and _posix.group_empty(group)


def term_group(group: Group, verified_member: ProcId | None) -> bool:
    if sys.platform == "win32":
        # No SIGTERM; CTRL_BREAK goes to the console group whose id is the root's pid.
        return verified_member is not None and _win.soft_signal_group(verified_member)
    else:
        return isinstance(group, int) and _posix.signal_group(group, signal.SIGTERM)


def kill_group(group: Group) -> bool:
    if sys.platform == "win32":
        return isinstance(group, _win.Job) and group.terminate()
    else:
        return isinstance(group, int) and _posix.signal_group(group, signal.SIGKILL)


def close_group(group: Group) -> None:
    if sys.platform == "win32" and isinstance(group, _win.Job):
        group.close()


def enable_cgroups(label: str, *, despite_fallback: bool = False) -> bool:
    """Linux: give each contained child a cgroup cell of its own (see _cgroup), where we may
    create cgroups; False elsewhere, under the fallback, or with PROCTREE_CGROUPS=0."""
    if os.environ.get(_cgroup.OFF_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    if sys.platform.startswith("linux") and (despite_fallback or not fallback_forced()):
        return _cgroup.enable(label) is not None
    return False


def disable_cgroups() -> None:
    """Kill what is left in our cells and remove them and our parent cgroup."""
    _cgroup.disable()


def end_stale_cells(labels: Collection[str], base: Path | None = None) -> int:
    """Linux: kill and remove what is left in the cells of the gone daemons whose
    enable_cgroups() labels these were (earlier runs of ours, killed with their guardians);
    how many daemons' cells were ended. Call it after reaping their marked survivors, which
    records them first. Their parents are in our own cgroup (we have cells too), or in `base`
    (the folder holding what a daemon's cgroups_enabled() named: a daemon we started)."""
    if base is None and _cgroup.jail() is None:
        return 0
    return _cgroup.end_stale(labels, base)


def cgroups_enabled() -> Path | None:
    """Our parent cgroup, if enable_cgroups() made one."""
    jail = _cgroup.jail()
    return jail.parent if jail is not None else None


def cgroup_cell(pid: int, name: str) -> Path | None:
    """A new cell holding `pid`, if cells are enabled and the move works."""
    jail = _cgroup.jail()
    return jail.cell(name, pid) if jail is not None else None


def cell_pids() -> set[int]:
    """The pids in any of our cells (unverified; empty without cells)."""
    jail = _cgroup.jail()
    return jail.member_pids() if jail is not None else set()


def cell_populated(cell: Path) -> bool:
    return _cgroup.populated(cell)


def cell_members(cell: Path) -> list[ProcId]:
    jail = _cgroup.jail()
    return jail.members(cell) if jail is not None else []


def kill_cell(cell: Path) -> bool:
    return _cgroup.kill(cell)


def close_cell(cell: Path) -> None:
    jail = _cgroup.jail()
    if jail is not None:
        jail.close_cell(cell)


def live_thread(pid: int) -> int | None:
    """A thread of `pid` that runs on after its main thread exited (see _linux.live_thread);
    None where a process cannot outlive its main thread as a zombie (macOS, Windows)."""
    if sys.platform.startswith("linux"):
        return _native.live_thread(pid)
    return None


def reap_zombies(exclude: Collection[int] = ()) -> list[int]:
    if sys.platform == "win32":
        return []
    else:
        return _posix.reap_zombies(child_pids(os.getpid()), exclude)


def reap_pid(pid: int) -> bool:
    """Reap one exited child of ours, if it is one."""
    if sys.platform == "win32":
        return False
    try:
        got, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return got == pid


PreexecFn = Callable[[], None]


def exec_problem(path: str) -> str | None:
    """Why a spawn of this executable file would fail at its exec (POSIX: no `#!` line and not
    a binary), or None; None on Windows, where what runs is told by the file's name."""
    if sys.platform != "win32":
        return _posix.exec_problem(path)
    return None
