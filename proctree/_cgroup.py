"""Linux: a cgroup v2 cell per contained child, where this process may create cgroups.

A process cannot leave its cgroup by setsid, a double fork, an empty environment or a new PID
namespace; only a write to another cgroup's `cgroup.procs`, which needs write access there. So
the members of a child's cell are exactly its tree, escapees included, found without any mark;
and `cgroup.kill` (Linux 5.14+) kills every member at once, forks in flight included.

Layout: `<cgroup2 mount><our own cgroup>/leakproof-<label>/<cell>` - one parent per daemon
(`enable_cgroups(label)`), one cell per child: proctree's own launcher makes it and moves
itself in before its exec (see _launcher); a child spawned without it (setpriv, a
preexec_fn, no options) is moved there by its parent right after its spawn. Moving a process
needs write access to the `cgroup.procs` of the common ancestor of where it is and where it
goes (our own cgroup): root has it, and so does a user whose subtree is delegated (systemd
`Delegate=yes`); elsewhere (a CI runner's unprivileged user, cgroup v1 only) there are no
cells and the other means (process group, mark, subreaper) do the work alone, as they also do
for whatever a child moved by its parent forks in the instant between its spawn and its move.

psutil has no cgroup interface: the files below are the kernel's documented one.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Collection
from pathlib import Path

import psutil

from ._identity import ProcId, identify

PARENT_PREFIX = "leakproof-"
# PROCTREE_CGROUPS=0 turns cells off: on a systemd machine, cgroups made inside a unit that is
# not delegated (Delegate=yes) are against systemd's rules, even for root.
OFF_ENV = "PROCTREE_CGROUPS"


def _mount() -> Path | None:
    for part in psutil.disk_partitions(all=True):
        if part.fstype == "cgroup2":
            return Path(part.mountpoint)
    return None


def _own_cgroup() -> str | None:
    return cgroup_of("self")


def cgroup_of(pid: int | str) -> str | None:
    """The v2 cgroup path of a process (the `0::` line; v1 lines name controllers), or None
    (gone, or no v2 hierarchy)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


class Jail:
    """One daemon's parent cgroup and the cells it made in it."""

    def __init__(self, parent: Path, mount: Path) -> None:
        self.parent = parent
        self.mount = mount
        self.pending: set[Path] = set()  # cells closed while not yet empty
        self._names = itertools.count(1)

    @classmethod
    def open(cls, label: str) -> Jail | None:
        """Our parent cgroup, made now; None where cells cannot work (see the module)."""
        mount, own = _mount(), _own_cgroup()
        if mount is None or own is None:
            return None
        base = mount / own.lstrip("/")
        parent = base / f"{PARENT_PREFIX}{label}"
        # Moving a child out of our cgroup is a write to its cgroup.procs.
        if not os.access(base / "cgroup.procs", os.W_OK):
            return None
        try:
            parent.mkdir()
        except FileExistsError:
            pass
        except OSError:
            return None
        if not (parent / "cgroup.kill").exists():  # a kernel older than 5.14
            _rmdir(parent)
            return None
        _remove_stale(base)
        return cls(parent, mount)

    def cell(self, name: str, pid: int) -> Path | None:
        """A new cell holding `pid`, or None if it cannot be made or the move fails."""
        self.tidy()
        cell = self.parent / name
        try:
            cell.mkdir()
            (cell / "cgroup.procs").write_text(str(pid))
        except OSError:
            _rmdir(cell)
            return None
        return cell

    def reserve(self) -> Path:
        """A new cell's prefix: the child's launcher makes `<prefix>-<its pid>` and moves
        itself in before its exec (see _launcher); if it cannot, the cell is missing or empty,
        and reads as holding nothing."""
        self.tidy()
        return self.parent / f"spawn-{next(self._names)}"

    def relative(self, cell: Path) -> str:
        return "/" + str(cell.relative_to(self.mount))

    def members(self, cell: Path) -> list[ProcId]:
        """The processes in the cell now, each checked to be in it after it was identified (a
        pid read from the list may have been reused by then)."""
        want = self.relative(cell)
        out = []
        for pid in _pids(cell):
            pid_id = identify(pid)
            where = cgroup_of(pid) if pid_id is not None else None
            if (
                pid_id is not None
                and where is not None
                and (
                    where == want or where.startswith(want + "/")  # or a cgroup made inside it
                )
            ):
                out.append(pid_id)
        return out

    def member_pids(self) -> set[int]:
        """Every pid in any of our cells now, unverified: for telling what is held by a cell
        (and so is that cell's tree) from what is not, never for signalling."""
        return {pid for cell in _subdirs(self.parent) or [] for pid in _pids(cell)}

    def close_cell(self, cell: Path) -> None:
        """Kill what is left in it and remove it (later, by tidy(), if it is not empty yet)."""
        if populated(cell):
            kill(cell)
        if not _rmdir_tree(cell):
            self.pending.add(cell)

    def tidy(self) -> None:
        """Before each new cell: remove the closed ones now empty, and make the parent again if
        another daemon's start took it, empty, for a gone daemon's and removed it (its owner
        check can misjudge: a label written by a process that read the boot time across a step
        of the clock, see bootclock); else no child of ours would get a cell from then on."""
        for cell in list(self.pending):
            if _rmdir_tree(cell) or not cell.exists():
                self.pending.discard(cell)
        try:
            self.parent.mkdir()
        except OSError:  # there (FileExistsError), or cannot be: a spawn goes without a cell
            pass

    def close(self) -> None:
        """Kill everything in every cell (recursive) and remove them and the parent; and the
        parents of gone daemons that have emptied since our start (see _remove_stale)."""
        kill(self.parent)
        remove_tree(self.parent, timeout=5.0)
        _remove_stale(self.parent.parent)


def remove_tree(parent: Path, timeout: float) -> bool:
    """Remove the cells under parent and parent itself, once their members are gone (a killed
    process leaves its cgroup as it exits, not when it is reaped); False at the deadline."""
    deadline = time.monotonic() + timeout
    while populated(parent) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _rmdir_tree(parent)


def _rmdir_tree(path: Path) -> bool:
    """Remove a cgroup and the ones made inside it, deepest first (a root child can make
    cgroups in its own cell; rmdir refuses a cgroup that has children)."""
    inner = _subdirs(path)
    if inner is None:
        return True
    return all([_rmdir_tree(p) for p in inner]) and _rmdir(path)


def _subdirs(path: Path) -> list[Path] | None:
    """The cgroups made inside `path`; None if it is gone. The listing gives each entry's type:
    no stat per control file (a cell holds dozens)."""
    try:
        with os.scandir(path) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return None
    except OSError:
        return []


def _remove_stale(base: Path, *, ending: Collection[str] = ()) -> None:
    """Parents of daemons that are gone (killed with their guardian): labelled
    `<pid>-<create_time>` (a daemon's mark), checked by identity. An empty one is removed. A
    populated one is killed first only if its label is in `ending` (end_stale()): another
    daemon's leftovers are its own next start's to reap, by their mark first, which records
    them; what carries no mark is known by its cell alone."""
    for parent in base.glob(f"{PARENT_PREFIX}*-*"):
        label = parent.name[len(PARENT_PREFIX) :]
        pid, _, created = label.partition("-")
        try:
            owner = ProcId(int(pid), float(created))
        except ValueError:
            continue  # not a daemon's label
        if owner.process() is not None:
            continue
        if populated(parent):
            if label not in ending:
                continue
            kill(parent)
            remove_tree(parent, timeout=2.0)
        else:
            remove_tree(parent, timeout=0.0)


def end_stale(labels: Collection[str], base: Path | None = None) -> int:
    """Kill what is left in the cells of the gone daemons labelled `labels` (earlier runs of
    the caller's own, killed with their guardians) and remove them: a daemon's cells hold its
    observers' trees and nothing else, marked or not. Their parents are in `base`, by default
    the caller's own cgroup (a daemon's next start). How many of them were ended."""
    if base is None:
        mount, own = _mount(), _own_cgroup()
        if mount is None or own is None:
            return 0
        base = mount / own.lstrip("/")
    if not labels:
        return 0
    wanted = [base / f"{PARENT_PREFIX}{label}" for label in labels]
    before = [p for p in wanted if populated(p)]
    _remove_stale(base, ending=set(labels))
    return sum(1 for p in before if not populated(p))


def _pids(cell: Path) -> list[int]:
    """The processes in the cell and in any cgroup made inside it."""
    out: list[int] = []
    for folder, _, _ in os.walk(cell):
        try:
            text = Path(folder, "cgroup.procs").read_text()
        except OSError:
            continue
        out += [int(x) for x in text.split()]
    return out


def populated(cell: Path) -> bool:
    try:
        for line in (cell / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
    except OSError:
        pass
    return False


def kill(cell: Path) -> bool:
    """SIGKILL every process in the cell and its descendants' cells, at once."""
    try:
        (cell / "cgroup.kill").write_text("1")
        return True
    except OSError:
        return False


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False  # still populated (EBUSY), or not ours to remove


# The daemon's jail, once enable() has made it (one per process, as the subreaper bit is).
_jail: Jail | None = None


def enable(label: str) -> Jail | None:
    global _jail
    if _jail is None:
        _jail = Jail.open(label)
    return _jail


def jail() -> Jail | None:
    return _jail


def disable() -> None:
    """Kill what is left in our cells and remove them (a daemon's orderly end)."""
    global _jail
    jail, _jail = _jail, None
    if jail is not None:
        jail.close()
