"""Ending a tree: close stdin -> grace -> SIGTERM group and tree -> grace -> SIGKILL -> reap.

Every signal goes to a (pid, create_time) verified at that moment; a process group is only
signalled while a verified process of ours is still in it (a pgid cannot be reused while the
group has a member). Before SIGKILL the tree is stopped: a process that forks and exits again
and again has a new pid by the time its old one is signalled, unless it can fork no more.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import psutil

from . import _platform
from ._identity import CREATE_TIME_TOLERANCE, ProcId, identify, of_process
from ._identity import create_time as _create_time
from ._liveness import environ, exited, is_alive
from ._scan import (
    adopted_children,
    carries,
    descendants,
    mark_matches,
    protected_pids,
    scan,
    subtree_pids,
)
from ._spawn import MARK_ENV

# After SIGKILL a process is gone in milliseconds unless stuck in the kernel (D state).
KILL_WAIT = 5.0
_POLL_MIN = 0.005
_POLL_MAX = 0.05
# Stop-then-refresh rounds before SIGKILL: each round stops what the last one found; a stopped
# process forks no more, so one round per generation born since the last refresh.
FREEZE_ROUNDS = 5
# Extra looks when a refresh finds nothing (see _Tree.refresh); as subreaper, while children
# of ours keep exiting during the looks, up to CHURN_LOOKS (each lists our children only).
CHASE_LOOKS = 2
CHURN_LOOKS = 20
# born_since: looks in a row while newcomers vanish before they can be read.
BORN_PASSES = 4


@dataclass
class TerminationResult:
    root: ProcId
    stdin: list[ProcId] = field(default_factory=list)  # gone after stdin was closed
    term: list[ProcId] = field(default_factory=list)  # gone after SIGTERM / CTRL_BREAK
    kill: list[ProcId] = field(default_factory=list)  # gone after SIGKILL / job termination
    survivors: list[ProcId] = field(default_factory=list)
    reaped: list[int] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ended(self) -> list[ProcId]:
        return self.stdin + self.term + self.kill

    @property
    def clean(self) -> bool:
        return not self.survivors


def _drop_dead(pending: list[ProcId]) -> list[ProcId]:
    """pending without its leading dead: a poll stops at the first one alive. While one
    lives the wait goes on, so reading the others then is wasted (hundreds of processes that
    ignore SIGTERM made every poll of a grace read every one of them)."""
    for k, pid_id in enumerate(pending):
        if is_alive(pid_id):
            return pending[k:]
    return []


def wait_gone(ids: Iterable[ProcId], timeout: float) -> set[ProcId]:
    """Poll until all are gone (exited or zombie) or the deadline passes; return the living."""
    pending = _drop_dead(list(ids))
    deadline = time.monotonic() + timeout
    delay = _POLL_MIN
    while pending and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _POLL_MAX)
        pending = _drop_dead(pending)
    return {i for i in pending if is_alive(i)}


def _close(close_stdin: Any) -> None:
    if close_stdin is True:  # already closed by the caller (e.g. in the event loop)
        return
    try:
        if callable(close_stdin):
            close_stdin()
        else:
            close_stdin.close()
    except (OSError, ValueError, RuntimeError):
        # EPIPE, already closed, closed loop: the child's stdin is closed either way.
        pass


class _Tree:
    """The verified set of processes that belong to one root, refreshed at every stage."""

    def __init__(
        self,
        root: ProcId,
        group: Any,
        mark: str | None,
        token: str | None,
        known_children: Collection[int] | None = None,
        own_child: bool = False,
        others: Collection[int] = (),
    ) -> None:
        self.root = root
        # Our children that belong to someone else (not adopted), kept as given: a live view
        # (the worker's) also covers children spawned while this tree is being ended, which
        # must be neither reaped here nor taken for the tree's churn.
        self.others = others
        self.known_children = known_children
        self.group = getattr(group, "group", group)  # accept a Containment
        # Linux: the root's cgroup cell, whose members are all of its tree (see _cgroup).
        self.cell = getattr(group, "cgroup", None)
        self.mark = mark
        self.token = token
        self.known: set[ProcId] = set()
        self.gone: set[ProcId] = set()  # known once, dead since (reaped at the end)
        self.churn = False  # the last look saw a child of ours exit (see refresh)
        # As subreaper, whatever of root's tree outlives its parent is handed to us: the
        # tree is root's subtree plus our adopted children that carry its mark (or, unmarked,
        # sit in its group). Found child by child, with no scan of the process table.
        # (Unmarked, where `known_children` asks for our other children too: the scan.)
        self.local = (
            own_child and _platform.is_subreaper() and (mark is not None or known_children is None)
        )

    def group_verified(self) -> ProcId | None:
        """A living process of ours that is in the group right now, if any."""
        if self.group is None:
            return None
        if not isinstance(self.group, int):
            # A job object we created: the kernel lists only what it holds, all of it ours.
            return self.root
        for pid_id in [self.root, *self.known]:
            if is_alive(pid_id) and _platform.group_of(pid_id.pid) == self.group:
                return pid_id
        return self._member_of_group()

    def _member_of_group(self) -> ProcId | None:
        """A live process in our group that is provably ours: it carries our mark or token,
        or (as subreaper) it is a child of ours. Every pid we knew may be gone while the group
        lives on: a process that forks and exits keeps it populated under ever new pids."""
        if not isinstance(self.group, int):
            return None
        me = os.getpid()
        member, vanished = _group_member(
            self.group,
            self.root.create_time - CREATE_TIME_TOLERANCE,
            lambda proc: self._carries(proc) or (self.local and proc.ppid() == me),
        )
        # A member gone before it could be read says the group lives on under new pids (a
        # lineage that forks and exits, read too slowly on a loaded machine): look on.
        self.churn = self.churn or vanished
        if member is not None:
            self.known.add(member)
        return member

    def refresh(self) -> set[ProcId]:
        if self.cell is not None:
            self.known.update(_platform.cell_members(self.cell))
        listed = None if self.local else set(psutil.pids())
        self.churn = False  # as subreaper, _refresh_local sets it at each look
        alive = self._refresh_local() if self.local else self._refresh_scan()
        if alive and listed is not None:
            # The scan reads one snapshot of the table: what a member forked while it read (a
            # lineage that forks and exits moves on meanwhile) is only among the pids born since.
            alive, listed = self._look_born(listed)
        looks = 0
        while not alive:
            member = self._member_of_group()  # see there: nothing we knew, yet the group lives
            if member is not None:
                return {member}
            # Nothing found. A lineage that forks and exits can be between two pids at any one
            # look (the old one gone before we read it, the new one born after the listing);
            # a short look at what was born since finds the new one. A sign that such a lineage
            # may be about (as subreaper, a child of ours that exited during the look; else a
            # member of our group, or a newcomer, gone before it could be read): look on.
            looks += 1
            if looks > (CHURN_LOOKS if self.churn else CHASE_LOOKS):
                break
            if self.local:
                alive = self._refresh_local()
            else:
                alive, listed = self._look_born(listed or set())
        return alive

    def _look_born(self, listed: set[int]) -> tuple[set[ProcId], set[int]]:
        """A look at what was born since `listed`: what is alive of the tree, the new listing."""
        born, listed, vanished = _born_since(listed, self.root.create_time, self._born_ours)
        self.known.update(born)
        alive = self.alive()
        # Found and gone again at once is the lineage moving on, as is a newcomer gone before it
        # could be read.
        self.churn = self.churn or vanished or (bool(born) and not alive)
        return alive, listed

    def _carries(self, proc: psutil.Process) -> bool:
        return carries(proc, mark=self.mark, token=self.token)

    def _born_ours(self, proc: psutil.Process) -> bool:
        """A newborn is the tree's if a process we know forked it or it carries our mark."""
        return proc.ppid() in {i.pid for i in self.known} or self._carries(proc)

    def _refresh_scan(self) -> set[ProcId]:
        group = self.group if self.group_verified() is not None else None
        if is_alive(self.root):
            self.known.add(self.root)
            procs = descendants(
                self.root.pid,
                mark=self.mark,
                token=self.token,
                group=group,
                known_children=self.known_children,
            )
        else:
            # Root gone: its pid may be reused, so no children() of it; what is left is in
            # the verified group or carries the mark/token.
            procs = _orphans(group, self.mark, self.token, self.root.create_time)
            if self.known_children is not None and _platform.is_subreaper():
                procs += adopted_children(set(self.known_children) | {self.root.pid})
        for p in procs:
            pid_id = of_process(p)
            if pid_id is not None:
                self.known.add(pid_id)
        return self.alive()

    def _refresh_local(self) -> set[ProcId]:
        # Our exited children but the ones others wait for: orphans of our trees handed to us.
        # Reaped now, or a lineage that forks and exits piles up hundreds for each look here.
        # One reaped is churn too: reaped here, it is no longer there for _adopted_marks to see
        # exit, and a look that then finds nothing would stop after CHASE_LOOKS.
        reaped = _platform.reap_zombies({self.root.pid, *self.others})
        pids: list[int] = []
        if is_alive(self.root):
            self.known.add(self.root)
            pids += subtree_pids(self.root.pid)
        pgid = self.group if isinstance(self.group, int) else None
        children: list[tuple[psutil.Process, str | None]] = []
        churn = False
        if self.mark is not None or pgid is not None:  # else no adoptee can be of this tree
            children, churn = _adopted_marks(
                {self.root.pid, *self.others}, self.cell is not None, self.mark
            )
        self.churn = churn or bool(reaped)
        for proc, marker in children:
            if mark_matches(marker, self.mark or "") or (
                marker is None and pgid is not None and _platform.group_of(proc.pid) == pgid
            ):
                pids += [proc.pid, *subtree_pids(proc.pid)]
        floor = self.root.create_time - CREATE_TIME_TOLERANCE  # nothing older is of this tree
        for pid in pids:
            pid_id = identify(pid)
            if pid_id is not None and pid_id.create_time >= floor:
                self.known.add(pid_id)
        return self.alive()

    def alive(self) -> set[ProcId]:
        alive = {i for i in self.known if is_alive(i)}
        # The dead are set apart, so each look checks only the living: a lineage that forks
        # and exits would otherwise grow `known` by every pid it ever had.
        self.gone |= self.known - alive
        self.known = alive
        return alive

    def signal(self, kill: bool) -> None:
        member = self.group_verified()
        if kill and self.cell is not None:
            _platform.kill_cell(self.cell)  # all members at once, forks in flight included
        if kill:
            stop_spreading(self.alive(), self.refresh)
        if member is not None:
            if kill:
                _platform.kill_group(self.group)
            elif is_alive(self.root):
                # Windows: CTRL_BREAK only to the root, the leader of its console group.
                _platform.term_group(self.group, self.root)
            elif not _platform.WINDOWS:
                _platform.term_group(self.group, member)
        for pid_id in self.alive():
            if kill:
                _platform.send_kill(pid_id)
            elif not _platform.WINDOWS:
                _platform.send_term(pid_id)


def stop_spreading(found: set[ProcId], find: Callable[[], set[ProcId]]) -> set[ProcId]:
    """Stop every process in `found`, then look (`find`) for what they forked before they
    stopped, until nothing new turns up; return all of them. Stopped, a lineage that forks and
    exits holds still for SIGKILL (see the module's docstring). POSIX; Windows ends jobs whole.
    """
    found = set(found)
    if _platform.WINDOWS:
        return found
    stopped: set[ProcId] = set()
    for _ in range(FREEZE_ROUNDS):
        fresh = found - stopped
        if not fresh:
            break
        for pid_id in fresh:
            _platform.send_stop(pid_id)
        stopped |= fresh
        found |= find()
    return found


def group_member(pgid: int, since: float, ours: Callable[[psutil.Process], bool]) -> ProcId | None:
    """A live process in group `pgid`, created at or after `since`, for which `ours` holds."""
    return _group_member(pgid, since, ours)[0]


def _group_member(
    pgid: int, since: float, ours: Callable[[psutil.Process], bool]
) -> tuple[ProcId | None, bool]:
    """group_member, and whether a listed member was gone before it could be read."""
    if _platform.group_empty(pgid):
        return None, False
    vanished = False
    # Newest first, as in born_since: a lineage that forks and exits lives under its latest pid,
    # behind the zombies of its earlier ones until their reaper (init, maybe slow) collects them.
    for pid in sorted(_platform.group_pids(pgid), reverse=True):
        try:
            proc = psutil.Process(pid)
            if _create_time(proc) < since or exited(proc):
                continue
            if not ours(proc):
                continue
        except psutil.NoSuchProcess:
            vanished = True
            continue
        except psutil.Error:
            continue
        pid_id = of_process(proc)
        if pid_id is not None:
            return pid_id, vanished
        vanished = True
    return None, vanished


def look_or_born(
    look: Callable[[], set[ProcId]],
    since: float,
    ours: Callable[[psutil.Process], bool],
    looks: int = CHASE_LOOKS,
) -> set[ProcId]:
    """`look()`; if it finds nothing, up to `looks` short looks at the processes born since
    (those `ours` accepts): a process that forks and exits may have been between two pids."""
    listed = set(psutil.pids())
    found = look()
    for _ in range(looks):
        if found:
            break
        born, listed = born_since(listed, since, ours)
        found = set(born)
    return found


def born_since(
    listed: Collection[int], since: float, ours: Callable[[psutil.Process], bool]
) -> tuple[list[ProcId], set[int]]:
    """Processes born after the listing `listed` (and after `since`, a create_time) for which
    `ours` holds, and the new listing. A second, short look after a scan that found nothing:
    a process that forks and exits may have been between two pids during the scan.

    Newest first, since such a lineage lives under its latest pid; and when a newcomer was gone
    before it could be read (on a loaded machine, often the lineage's pid of a moment ago), up
    to BORN_PASSES looks at what was born since the last listing."""
    found, known, _ = _born_since(listed, since, ours)
    return found, known


def _born_since(
    listed: Collection[int], since: float, ours: Callable[[psutil.Process], bool]
) -> tuple[list[ProcId], set[int], bool]:
    """born_since, and whether the last pass saw a newcomer gone before it could be read."""
    floor = since - CREATE_TIME_TOLERANCE
    found: list[ProcId] = []
    known = set(listed)
    for _ in range(BORN_PASSES):
        now = set(psutil.pids())
        vanished = False
        # pids grow until they wrap: descending order reads the newest first (mostly)
        for pid in sorted(now - known, reverse=True):
            try:
                proc = psutil.Process(pid)
                if _create_time(proc) < floor or not ours(proc):
                    continue
            except psutil.NoSuchProcess:  # zombies too: exited before we could tell
                vanished = True
                continue
            except psutil.Error:
                continue
            pid_id = of_process(proc)
            if pid_id is not None and is_alive(pid_id):
                found.append(pid_id)
            else:
                vanished = True
        known = now
        if found or not vanished:
            break
    return found, known, vanished


def _orphans(group: Any, mark: str | None, token: str | None, since: float) -> list[psutil.Process]:
    """What is left in a (verified) group or carries the mark/token; nothing older than the
    root can be part of its tree."""
    members = _platform.group_members(group) if group is not None else None
    pgid = group if isinstance(group, int) else None
    found = scan(mark=mark, token=token, pgid=pgid, since=since)
    if members:
        for pid in members:
            try:
                found.append(psutil.Process(pid))
            except psutil.Error:
                pass
    return found


# One wait of the escalation: (processes, timeout); resumed with those still alive.
_Wait = tuple[set[ProcId], float]
_Steps = Generator[_Wait, set[ProcId], TerminationResult]


def _escalate(
    root: ProcId,
    *,
    grace: float,
    group: Any = None,
    mark: str | None = None,
    token: str | None = None,
    close_stdin: Any = None,
    kill_wait: float = KILL_WAIT,
    dont_reap: Collection[int] = (),
    known_children: Collection[int] | None = None,
    own_child: bool = False,
) -> _Steps:
    """The escalation's steps; it yields each wait to its driver, so that the blocking version
    sleeps in its thread and the asyncio one in the event loop (a thread held per tree for
    the length of its graces would let a burst of endings queue behind each other)."""
    started = time.monotonic()
    res = TerminationResult(root=root)
    tree = _Tree(root, group, mark, token, known_children, own_child, dont_reap)
    before = tree.refresh()

    if close_stdin is not None:
        t = time.monotonic()
        _close(close_stdin)
        if root in before:
            yield {root}, grace
        after = tree.refresh()
        res.stdin = sorted(before - after)
        before = after
        res.stage_seconds["stdin"] = time.monotonic() - t

    if before:
        t = time.monotonic()
        tree.signal(kill=False)
        after = yield before, grace
        after |= tree.refresh()  # anything forked meanwhile
        res.term = sorted(before - after)
        before = after
        res.stage_seconds["term"] = time.monotonic() - t

    if before:
        t = time.monotonic()
        deadline = t + kill_wait
        targets = set(before)
        alive = before
        while alive and time.monotonic() < deadline:
            tree.signal(kill=True)
            alive = yield alive, min(0.5, max(0.0, deadline - time.monotonic()))
            new = tree.refresh()  # forked meanwhile
            targets |= new
            alive |= new
        res.kill = sorted(targets - alive)
        res.survivors = sorted(alive)
        res.stage_seconds["kill"] = time.monotonic() - t

    keep = set(dont_reap) | {root.pid}
    for pid_id in tree.known | tree.gone:
        if pid_id.pid not in keep and _platform.reap_pid(pid_id.pid):
            res.reaped.append(pid_id.pid)
    res.elapsed = time.monotonic() - started
    return res


def terminate_tree(root: ProcId, **options: Any) -> TerminationResult:
    """End root and everything under it; return who went at which stage.

    Keywords: grace (required, seconds per stage), group (a pgid, a job, or a Containment),
    mark / token (what its escapees carry), close_stdin, kill_wait, dont_reap,
    known_children, own_child.
    close_stdin: None (skip that stage), a callable, an object with .close(), or True when
    the caller already closed it (then only the grace is waited). The root itself is never
    reaped here - its Popen/asyncio owner collects its exit status - nor are `dont_reap` pids.
    known_children: the pids this process spawned itself; if given and we are a subreaper,
    our other direct children (orphans the kernel handed to us) are ended too.
    own_child: root is a child of this process (spawned, or adopted as subreaper); as
    subreaper its tree is then found without scanning the process table (see _Tree): root's
    subtree and our adopted children carrying the mark or in the group. `dont_reap` then also
    names our children that are not part of it (others' roots, helpers), whose environment
    need not be read.
    Blocking, thread-safe (no shared state); from asyncio use aterminate_tree.
    """
    steps = _escalate(root, **options)
    done, value = _step(steps, None)
    while not done:
        ids, timeout = value
        done, value = _step(steps, wait_gone(ids, timeout))
    return value


def _step(steps: _Steps, alive: set[ProcId] | None) -> Any:
    """(False, the next wait) or (True, the result). StopIteration cannot cross a future."""
    try:
        return False, steps.send(alive)  # type: ignore[arg-type]
    except StopIteration as stop:
        return True, stop.value


async def await_gone(ids: Iterable[ProcId], timeout: float) -> set[ProcId]:
    """wait_gone without holding a thread: the polls sleep in the event loop."""
    pending = _drop_dead(list(ids))
    deadline = time.monotonic() + timeout
    delay = _POLL_MIN
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _POLL_MAX)
        pending = _drop_dead(pending)
    return {i for i in pending if is_alive(i)}


async def aterminate_tree(
    root: ProcId,
    *,
    close_stdin: Any = None,
    root_exited: Awaitable[Any] | None = None,
    executor: Executor | None = None,
    **options: Any,
) -> TerminationResult:
    """terminate_tree for asyncio (same keywords): stdin is closed in the loop, each step
    between waits (scans, signals) runs in a thread, and the waits themselves in the loop.

    executor: where the steps run (default: the loop's default executor). A caller that ends
    many trees at once can keep their steps from queueing ahead of its other endings'.

    root_exited: completes when the loop has reaped root (the caller spawned it with asyncio).
    The stdin stage then waits on it instead of polling; and where the rest of the tree can be
    checked without a scan (own_child, subreaper, a pgid), a root that exits leaving nothing
    behind is done at once, in the loop: the common case costs no thread and no scan.
    """
    if close_stdin is not None and close_stdin is not True:
        _close(close_stdin)
        close_stdin = True
    waited: float | None = None
    exited = False
    if root_exited is not None and close_stdin is True and _quick_checkable(options):
        started = time.monotonic()
        exit_future = asyncio.ensure_future(root_exited)
        done, _ = await asyncio.wait({exit_future}, timeout=options["grace"])
        exited = bool(done) and not exit_future.cancelled() and not exit_future.exception()
        if exited or not done:
            waited = time.monotonic() - started
            known = {root.pid, *options.get("dont_reap", ())}
            if exited and _left_nothing(options, known):
                return TerminationResult(
                    root=root, stdin=[root], stage_seconds={"stdin": waited}, elapsed=waited
                )
            close_stdin = None  # the stdin stage is over: its grace was waited here
    elif asyncio.iscoroutine(root_exited):
        root_exited.close()  # not needed here: never leave it un-awaited
    steps = _escalate(root, close_stdin=close_stdin, **options)
    loop = asyncio.get_running_loop()
    finished, value = await loop.run_in_executor(executor, _step, steps, None)
    while not finished:
        ids, timeout = value
        alive = await await_gone(ids, timeout)
        finished, value = await loop.run_in_executor(executor, _step, steps, alive)
    if waited is not None:
        if exited and root not in value.stdin:
            value.stdin.insert(0, root)
        value.stage_seconds["stdin"] = waited
        value.elapsed += waited
    return value


def _group_of(options: dict[str, Any]) -> Any:
    group = options.get("group")
    return getattr(group, "group", group)  # accept a Containment


def _quick_checkable(options: dict[str, Any]) -> bool:
    """Whether what a root left behind can be found without a scan (see _left_nothing)."""
    return (
        bool(options.get("own_child"))
        and options.get("mark") is not None
        and isinstance(_group_of(options), int)
        and _platform.is_subreaper()
    )


def _left_nothing(options: dict[str, Any], known: Collection[int]) -> bool:
    """After root's reap: nothing in its group or its cell, and no child of ours we did not
    spawn that carries its mark (as subreaper, what left the group and outlived its parent was
    handed to us before root's exit was reported; those held in our other cells are theirs).
    The same test _Tree._refresh_local makes, without a thread: anything it would find sends
    the caller to the full escalation."""
    mark = options["mark"]
    cell = getattr(options.get("group"), "cgroup", None)
    if not _platform.group_empty(_group_of(options)):
        return False
    if cell is not None and _platform.cell_populated(cell):
        return False
    children, churn = _adopted_marks(known, cell is not None, mark)
    # churn: one of them exited while we looked; a lineage that forks and exits may have a pid
    # we did not list (see _Tree.refresh), so the full escalation looks closer.
    return not churn and not any(mark_matches(marker, mark) for _, marker in children)


# The mark each adopted child carried when its environment was read, by pid with its
# create_time: an adoptee is read once, not at every look of every ending (hundreds of them
# made each look cost hundreds of ms). Only a read that returned an environment is kept (one
# caught in its exec reads empty). One known to carry another tree's mark is passed over
# unread: its pid could only be another process's after it left our children (an entry is
# dropped at the first look that misses it), and what such a reuse hid from one ending the
# worker's periodic sweep still finds by its mark; and an entry counts only for the process
# whose create_time it holds. Shared by the threads that end trees: single dict operations only.
_MARKS: dict[int, tuple[float, str | None]] = {}


def _cached_mark(proc: psutil.Process) -> tuple[bool, str | None]:
    """(whether the cache holds this very process, its mark): an entry counts only for the
    process whose create_time it holds; another is a former holder's of the pid."""
    cached = _MARKS.get(proc.pid)
    if cached is not None and abs(cached[0] - _create_time(proc)) <= CREATE_TIME_TOLERANCE:
        return True, cached[1]
    return False, None


def _mark_of(proc: psutil.Process) -> str | None:
    known, marker = _cached_mark(proc)
    if known:
        return marker
    create_time = _create_time(proc)
    try:
        env = environ(proc)
    except (psutil.Error, OSError):
        return None
    if env:
        _MARKS[proc.pid] = (create_time, env.get(MARK_ENV))
    return env.get(MARK_ENV)


def _adopted_marks(
    known: Collection[int], cells: bool = False, mark: str | None = None
) -> tuple[list[tuple[psutil.Process, str | None]], bool]:
    """Our children not in `known` (as subreaper: adopted orphans), each with the mark it
    carries; and whether one of them had exited by the time we read it (gone, or a zombie).
    `cells`: leave out those held in a cgroup cell of ours (that cell's tree: a tree with a
    cell finds its own members there). `mark`: leave out those already known to carry another
    tree's mark, unread (hundreds of another observer's orphans cost a look 100+ ms to read)."""
    children: list[tuple[psutil.Process, str | None]] = []
    churn = False
    pids = _platform.child_pids(os.getpid())
    for pid in _MARKS.keys() - set(pids):
        _MARKS.pop(pid, None)  # gone from our children: a pid seen again is read again
    pids = [pid for pid in pids if pid not in known]
    if cells and pids:  # the cells are read only when there is an adoptee to place
        in_cells = _platform.cell_pids()
        pids = [pid for pid in pids if pid not in in_cells]
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            # Only this process's own entry: with no look between a child's exit and its pid's
            # reuse (pid_max is 32768 here), the entry is a former holder's, and a new adoptee
            # of ours was passed over as another tree's (a CI failure: a lineage that forks
            # and exits went on after its ending).
            cached, marker = _cached_mark(proc)
            if (
                mark is not None
                and cached
                and marker is not None
                and not mark_matches(marker, mark)
            ):
                continue
            if exited(proc):
                churn = True
                continue
        except psutil.Error:
            churn = True
            continue
        children.append((proc, _mark_of(proc)))
    return children, churn


def sweep(
    *,
    mark: str | None = None,
    token: str | None = None,
    exclude: Collection[ProcId] = (),
    grace: float = 1.0,
    kill_wait: float = KILL_WAIT,
    dont_reap: Collection[int] = (),
    since: float | None = None,
) -> list[ProcId]:
    """End every process carrying mark/token that is not a live excluded root or in its tree.

    `exclude` holds the roots of sessions still alive; their children and process groups
    are spared too. `since` (a create_time) skips older processes: cheaper, as each candidate
    costs an environment read. Returns the identities that were ended.
    """
    if not (mark or token):
        return []
    spared = protected_pids()
    for root in exclude:
        if not is_alive(root):
            continue
        spared.add(root.pid)
        spared.update(p.pid for p in descendants(root.pid, group=_platform.group_of(root.pid)))

    def find() -> set[ProcId]:
        """Carrying mark/token now; if nothing, a look at what was born during the scan."""
        return look_or_born(carrying_now, since or 0.0, carrying)

    def carrying_now() -> set[ProcId]:
        found = {i for i in map(of_process, scan(mark=mark, token=token, since=since)) if i}
        return {i for i in found if i.pid not in spared and is_alive(i)}

    def carrying(proc: psutil.Process) -> bool:
        return proc.pid not in spared and carries(proc, mark=mark, token=token)

    targets = find()
    if not targets:
        return []
    for pid_id in targets:
        _platform.send_term(pid_id)
    alive = wait_gone(targets, grace)
    deadline = time.monotonic() + kill_wait
    while time.monotonic() < deadline:
        # What they forked meanwhile carries the mark too: a lineage that forks and exits
        # leaves none of the pids found above alive, yet lives on.
        alive |= find()
        if not alive:
            break
        alive = stop_spreading(alive, find)
        targets |= alive
        for pid_id in alive:
            _platform.send_kill(pid_id)
        alive = wait_gone(alive, 0.5)
    keep = set(dont_reap)
    for pid_id in targets:
        if pid_id.pid not in keep:
            _platform.reap_pid(pid_id.pid)
    return sorted(targets - alive)


def reap_zombies(exclude: Collection[int] = ()) -> list[int]:
    """POSIX: reap exited children of ours (escapees adopted as subreaper) except `exclude`."""
    return _platform.reap_zombies(exclude)
