"""Finding a tree: children, group members, and processes that carry our mark or token."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable

import psutil

from . import _platform
from ._spawn import MARK_ENV


def mark_matches(value: str | None, mark: str) -> bool:
    """Exact mark, or a finer mark under it (`<mark>:<session>`), so a worker-wide sweep
    also finds per-session marks."""
    return value is not None and (value == mark or value.startswith(mark + ":"))


def carries(proc: psutil.Process, *, mark: str | None, token: str | None) -> bool:
    """True if the process has `token` in an argv element or `mark` in its environment."""
    if token:
        try:
            cmdline = proc.info["cmdline"] if hasattr(proc, "info") else proc.cmdline()
        except (psutil.Error, KeyError):
            cmdline = None
        if cmdline and any(token in arg for arg in cmdline):
            return True
    if mark:
        try:
            # environ() of another user's process (or on macOS, often any) is unreadable:
            # that is why argv tokens exist.
            return mark_matches(proc.environ().get(MARK_ENV), mark)
        except (psutil.Error, OSError):
            return False
    return False


def protected_pids() -> set[int]:
    """Ourselves and our ancestors: never part of a tree we end."""
    me = psutil.Process()
    pids = {me.pid}
    try:
        pids.update(p.pid for p in me.parents())
    except psutil.Error:
        pass
    return pids


def scan(
    *, mark: str | None = None, token: str | None = None, pgid: int | None = None
) -> list[psutil.Process]:
    """Every process (but us and our ancestors) carrying the mark/token or in process group pgid."""
    if not (mark or token or pgid is not None):
        return []
    skip = protected_pids()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "create_time", "cmdline"]):
        if proc.pid in skip or proc.pid == 0:
            continue
        if pgid is not None and _platform.group_of(proc.pid) == pgid:
            found.append(proc)
        elif carries(proc, mark=mark, token=token):
            found.append(proc)
    return found


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def adopted_children(known: Collection[int]) -> list[psutil.Process]:
    """Our direct children we did not spawn ourselves: with the subreaper bit, escapees."""
    try:
        kids = psutil.Process().children()
    except psutil.Error:
        return []
    return [k for k in kids if k.pid not in known]


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
    - processes whose environment carries `mark` or whose argv carries `token`;
    - if we are a subreaper and `known_children` (pids we spawned) is given: our other
      direct children, i.e. orphans that the kernel reparented to us.
    """
    seen: dict[int, psutil.Process] = {}
    skip = protected_pids() | {root_pid}

    def add(procs: Iterable[psutil.Process]) -> None:
        for p in procs:
            if p.pid not in skip and p.pid not in seen:
                seen[p.pid] = p
                # An escapee's own children are part of the tree too.

    add(children_of(root_pid))
    group = getattr(group, "group", group)  # accept a Containment
    members = _platform.group_members(group) if group is not None else None
    if members is not None:
        add(_procs(members))
    pgid = group if isinstance(group, int) else None
    add(scan(mark=mark, token=token, pgid=pgid))
    if known_children is not None and _platform.is_subreaper():
        add(adopted_children(set(known_children) | {root_pid}))
    for p in list(seen.values()):
        add(children_of(p.pid))
    return list(seen.values())


def _procs(pids: Iterable[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            out.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return out
