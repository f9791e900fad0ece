"""Finding a tree: children, group members, and processes that carry our mark or token.

One pass over the process table per call: a ppid map for the recursion, and the costlier
reads (argv, environment, pgid) only for processes young enough to belong to the tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable

import psutil

from . import _liveness, _platform
from ._identity import CREATE_TIME_TOLERANCE, create_time
from ._owner import not_ours
from ._spawn import MARK_ENV


def mark_matches(value: str | None, mark: str) -> bool:
    """Exact mark, or a finer mark under it (`<mark>:<session>`), so a worker-wide sweep
    also finds per-session marks."""
    return value is not None and (value == mark or value.startswith(mark + ":"))


def carries(proc: psutil.Process, *, mark: str | None, token: str | None) -> bool:
    """True if the process has `token` in an argv element or `mark` in its environment, and
    may be ours (not another user's, unless we are root: see _owner)."""
    return _carries(proc, mark=mark, token=token) and not not_ours(proc)


def _carries(proc: psutil.Process, *, mark: str | None, token: str | None) -> bool:
    if token:
        try:
            cmdline = _liveness.cmdline(proc)
        except (psutil.Error, OSError):
            cmdline = None
        if cmdline and any(token in arg for arg in cmdline):
            return True
    # environ() of another user's process (on macOS, often of any) is unreadable: that is
    # why argv tokens exist.
    return bool(mark) and mark_matches(marker_of(proc), mark or "")


def protected_pids() -> set[int]:
    """Ourselves and our ancestors: never part of a tree we end."""
    me = psutil.Process()
    pids = {me.pid}
    try:
        pids.update(p.pid for p in me.parents())
    except psutil.Error:
        pass
    return pids


class _Table:
    """One snapshot of the process table: pid -> (ppid, create_time, Process)."""

    def __init__(self) -> None:
        self.procs: dict[int, psutil.Process] = {}
        self.ppid: dict[int, int] = {}
        self.ctime: dict[int, float] = {}
        self.kids: dict[int, list[int]] = {}
        for p in psutil.process_iter(["ppid"]):
            try:
                ctime = create_time(p)
            except psutil.Error:
                continue
            ppid = p.info["ppid"] or 0
            self.procs[p.pid] = p
            self.ppid[p.pid] = ppid
            self.ctime[p.pid] = ctime
            self.kids.setdefault(ppid, []).append(p.pid)

    def subtree(self, root_pid: int) -> list[int]:
        return _walk(root_pid, self.children)

    def children(self, pid: int) -> list[int]:
        """pid's children in this snapshot. One older than pid is not its child: Windows
        keeps a dead parent's pid as the ppid, and a reused pid would adopt it (psutil's
        children() checks this too); on POSIX a parent is always older than its child."""
        born = self.ctime.get(pid)
        kids = self.kids.get(pid, [])
        if born is None:
            return kids
        return [k for k in kids if self.ctime[k] >= born - CREATE_TIME_TOLERANCE]

    def matching(
        self,
        *,
        mark: str | None,
        token: str | None,
        pgid: int | None,
        since: float | None,
    ) -> list[int]:
        if not (mark or token or pgid is not None):
            return []
        floor = None if since is None else since - CREATE_TIME_TOLERANCE
        found = []
        # Newest first: a lineage that forks and exits lives under its latest pid, which may be
        # gone if read last, after the snapshot's older processes.
        for pid in sorted(self.procs, key=self.ctime.__getitem__, reverse=True):
            if pid == 0 or (floor is not None and self.ctime[pid] < floor):
                continue
            if pgid is not None and _platform.group_of(pid) == pgid:
                found.append(pid)
            elif (mark or token) and carries(self.procs[pid], mark=mark, token=token):
                found.append(pid)
        return sorted(found)


def scan(
    *,
    mark: str | None = None,
    token: str | None = None,
    pgid: int | None = None,
    since: float | None = None,
) -> list[psutil.Process]:
    """Every process (but us and our ancestors) carrying the mark/token or in process group
    pgid; with `since`, only those created at or after that time."""
    if not (mark or token or pgid is not None):
        return []
    table = _Table()
    skip = protected_pids()
    pids = table.matching(mark=mark, token=token, pgid=pgid, since=since)
    return [table.procs[p] for p in pids if p not in skip]


def adopted_children(known: Collection[int]) -> list[psutil.Process]:
    """Our direct children we did not spawn ourselves: with the subreaper bit, escapees."""
    return _procs(p for p in _platform.child_pids(os.getpid()) if p not in known)


def subtree_pids(root_pid: int) -> list[int]:
    """Descendants of root_pid found child by child, without reading the whole process table
    (the cheap way where the OS lists children; a pid may exit or be reused meanwhile, so
    callers verify identities)."""
    return _walk(root_pid, _platform.child_pids)


def _walk(root_pid: int, children: Callable[[int], Iterable[int]]) -> list[int]:
    """Every pid below root_pid, given a function that lists one pid's children."""
    out: list[int] = []
    seen = {root_pid}
    stack = list(children(root_pid))
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        stack.extend(children(pid))
    return out


def marker_of(proc: psutil.Process) -> str | None:
    """The mark in a process's environment, if it carries one and we may read it."""
    try:
        return _liveness.environ(proc).get(MARK_ENV)
    except (psutil.Error, OSError):
        return None


def descendants(
    root_pid: int,
    *,
    mark: str | None = None,
    token: str | None = None,
    group: object = None,
    known_children: Collection[int] | None = None,
) -> list[psutil.Process]:
    """The tree under root_pid, including reparented escapees where they can be found.

    - children of root_pid, recursively;
    - members of `group` (pgid; Windows: the job's process list);
    - processes whose environment carries `mark` or whose argv carries `token` (only those
      created after the root: nothing older can descend from it);
    - if we are a subreaper and `known_children` (pids we spawned) is given: our other
      direct children, i.e. orphans that the kernel reparented to us;
    and the children of all of these.
    """
    table = _Table()
    skip = protected_pids() | {root_pid}
    found: list[int] = table.subtree(root_pid)
    group = getattr(group, "group", group)  # accept a Containment
    members = _platform.group_members(group) if group is not None else None
    if members is not None:
        found += members
    pgid = group if isinstance(group, int) else None
    since = table.ctime.get(root_pid)
    found += table.matching(mark=mark, token=token, pgid=pgid, since=since)
    if known_children is not None and _platform.is_subreaper():
        me = os.getpid()
        exclude = set(known_children) | {root_pid}
        found += [p for p in table.kids.get(me, ()) if p not in exclude]
    out: dict[int, psutil.Process | None] = {}
    for pid in found:
        for q in (pid, *table.subtree(pid)):
            if q not in skip and q not in out:
                proc = table.procs.get(q)
                out[q] = proc if proc is not None else _proc(q)
    return [p for p in out.values() if p is not None]


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _procs(pids: Iterable[int]) -> list[psutil.Process]:
    return [p for p in map(_proc, pids) if p is not None]
