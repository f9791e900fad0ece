"""The worker's use of proctree: contained spawn, ending one observer's tree, sweeps.

Marks: the worker's mark is `<worker pid>:<worker create_time>` (contracts.md); each observer
gets a finer mark `<worker mark>:<token>` in the same variable, so ending one observer finds its
own escapees and a worker-wide sweep still finds all of them (proctree.mark_matches).

The guardian (POSIX, fixed mode): a small process started with the worker that holds the read
end of a pipe only the worker writes to. If the worker is kill -9ed it reads EOF and SIGKILLs
every watched observer group and everything carrying the worker's mark - grandchildren and
escapees included, which the parent-death signal (Linux, direct children only) cannot reach
and which macOS has no signal for at all. Windows needs none: each observer's job object is
closed by the kernel when the worker dies, and that kills all it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil

import proctree

log = logging.getLogger("worker.containment")
_R = TypeVar("_R")

# Looks for adopted strays in one sweep: each after the last one's endings (see _end_adopted).
STRAY_ROUNDS = 3
# The longest a stray's SIGTERM is given before SIGKILL: a sweep holds the spawn lock meanwhile.
STRAY_GRACE_S = 1.0
# The sweep's own threads: its work never queues ahead of an ending's steps in the loop's
# default executor. Before, one sweep's 150 stray endings held all six of its threads for
# seconds, and three observers' endings waited past a soak's 5 s grace (a CI failure).
SWEEP_THREADS = 2


def cell_label(mark: str) -> str:
    """The label of a worker's cgroup cells' parent (proctree.enable_cgroups) from its mark."""
    return mark.replace(":", "-")


def worker_mark(pid: int, create_time: float) -> str:
    return f"{pid}:{create_time:.3f}"


@dataclass
class Contained:
    identity: proctree.ProcId
    handle: proctree.Containment
    mark: str
    # A child subreaper (see spawn_plan): what its descendants orphan stays in its tree while
    # it lives, so nothing adopted by us can be its.
    subreaper: bool = False

    @property
    def group_label(self) -> str:
        group = self.handle.group
        return str(group) if isinstance(group, int) else type(group).__name__


@dataclass(frozen=True)
class _Marks:
    """The live observers' marks, and which of them spare our adopted children carrying them:
    an observer that is no subreaper hands us its orphans while it lives, and one whose root
    has exited has handed us its tree, which its ending takes. A child of ours carrying the
    mark of a live subreaper cannot be its (its orphans stay in its tree).

    Whether a subreaper's root lives is asked after our children were listed (`spares`), not
    when the sweep began: one that exited in between had handed us its whole tree, which was
    then taken for strays with a copied mark and ended one by one, each by a scan of the process
    table (150 orphans of one observer stalled every ending of the worker for 7 s and more)."""

    live: frozenset[str]
    spare: frozenset[str]
    subreapers: Mapping[str, proctree.ProcId] = field(default_factory=dict)

    @classmethod
    def of(cls, live: Collection[Contained]) -> _Marks:
        return cls(
            frozenset(c.mark for c in live),
            frozenset(c.mark for c in live if not c.subreaper),
            {c.mark: c.identity for c in live if c.subreaper},
        )

    def spares(self, marker: str, rooted: dict[str, bool]) -> bool:
        """Whether our child carrying `marker` is left to its observer's ending; `rooted`: the
        subreapers' roots found alive so far by the caller, asked once per listing."""
        if marker in self.spare:
            return True
        root = self.subreapers.get(marker)
        if root is None:
            return False
        if marker not in rooted:
            rooted[marker] = proctree.is_alive(root)
        return not rooted[marker]


class _LivePids(Collection[int]):
    """The pids in `sets` but `skip`, read when asked, not when made: an observer spawned while
    another is being ended is ours, not something the ended one left behind.

    While `spawning()` says a spawn is in flight, every child of ours is in too: the new
    observer is a child before it is in `sets`, and its exit status is asyncio's. Before, an
    ending (in a thread) reaped an observer that exited at once (a claude whose exec failed)
    between its fork and its registration: asyncio logged 'exit status already read' and the
    worker recorded exit code 255 for it (12 of 120 in a 6-session soak of such a claude)."""

    def __init__(
        self, *sets: Collection[int], skip: int, spawning: Callable[[], bool] = lambda: False
    ) -> None:
        self.sets = sets
        self.skip = skip
        self.spawning = spawning

    def __contains__(self, pid: object) -> bool:
        if pid == self.skip:
            return False
        return any(pid in s for s in self.sets) or pid in self._spawning_children()

    def __iter__(self) -> Iterator[int]:
        pids = {p for s in self.sets for p in s} | self._spawning_children()
        return iter(pids - {self.skip})

    def _spawning_children(self) -> set[int]:
        """Every child of ours while a spawn is in flight; none otherwise (no read then)."""
        if not self.spawning():
            return set()
        with contextlib.suppress(psutil.Error):
            return {child.pid for child in psutil.Process().children()}
        return set()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Containment:
    def __init__(self, mark: str, create_time: float, grace: float = STRAY_GRACE_S) -> None:
        self.mark = mark
        # What outlived its observer gets no longer than the observer's own stage (--grace):
        # a soak allows 2 x --grace for an ending, and a fixed 1 s outlasted that at 0.5.
        self.stray_grace = min(grace, STRAY_GRACE_S)
        # Nothing carrying our mark can be older than the worker: scans skip older processes
        # without reading their environment.
        self.since = create_time
        self.subreaper = False
        self.observer_subreapers: bool | None = None  # whether the last spawn made one
        self.pdeathsig: str | None = None
        self.guardian: proctree.Guardian | None = None
        self.guardian_id: proctree.ProcId | None = None
        self.guardian_starts = 0
        self.watched = 0
        # Unmarked strays the last sweep had to spare (see _adopted_strays): each observer's
        # end may settle whose they were, so it asks the reaper for a sweep at once.
        self.spared_strays = 0
        self.sweep_soon = asyncio.Event()
        # The birth of the first unmarked stray of those there at each sweep since (see
        # _adopted_strays); None once a sweep finds none.
        self._unmarked_since: float | None = None
        # The observers' environment: ours, read once (copying os.environ decodes every
        # variable, on each spawn otherwise); the worker never changes its own.
        self.env = dict(os.environ)
        self.sweep_threads = ThreadPoolExecutor(SWEEP_THREADS, thread_name_prefix="sweep")

    def start(self) -> None:
        # Linux: orphans of our children (escapees) reparent to us, not to PID 1.
        self.subreaper = proctree.enable_subreaper()
        # Linux, where we may make cgroups: a cell per observer holds all of its tree, so an
        # escapee with nothing to know it by is still its observer's. Before the guardian,
        # which kills the cells if we die.
        if proctree.enable_cgroups(cell_label(self.mark)):
            log.info("cgroup cells under %s", proctree.cgroups_enabled())
        # Now rather than at the first spawn: it may have to build proctree's launcher.
        self.pdeathsig = proctree.pdeathsig_method()
        log.info("parent-death signal: %s", self.pdeathsig or "not available here")
        # Said in worker.json before any spawn: what spawn_plan will make of every observer.
        probe = proctree.spawn_options(
            self.mark, env=self.env, argv=[sys.executable], subreaper=True
        )
        self.observer_subreapers = probe.subreaper
        self.start_guardian([])

    # -- the guardian -------------------------------------------------------------------------
    def start_guardian(self, live: list[Contained]) -> bool:
        """Start a guardian (again, after one died) and tell it about the live observers."""
        if sys.platform == "win32":
            return False  # the kernel closes each observer's job when we die (see above)
        try:
            # What carries neither our mark nor a watched group (setsid and a scrubbed
            # environment: an orphan we adopted as subreaper, or a grandchild still held by its
            # observer) is found by the guardian's own listing of our tree. Every child of ours
            # is an observer or an adoptee: none is meant to outlive us.
            guardian = proctree.start_guardian(self.mark, children=True)
        except OSError as exc:
            log.error("cannot start the guardian (kill -9 would leave grandchildren): %s", exc)
            return False
        self.guardian = guardian
        self.guardian_id = proctree.identify(guardian.pid)
        self.guardian_starts += 1
        for c in live:
            self._watch(c.handle)
        log.info("guardian pid %d watches %d observer(s)", guardian.pid, len(live))
        return True

    def _watch(self, handle: proctree.Containment) -> None:
        if self.guardian is not None and self.guardian.watch(handle):
            self.watched += 1
        elif self.guardian is not None:
            log.warning("the guardian was not told about observer %s", handle.pid)

    def check_guardian(self, live: list[Contained]) -> None:
        """Called by the periodic sweep: a guardian that died (killed by someone), or that
        cannot act (stopped by a signal, or not reading its pipe) is replaced, since without
        one a kill -9 of the worker would leave grandchildren behind. A stopped one is killed
        first: it would otherwise wake one day and find nothing of its own, or hang for ever."""
        if self.guardian is None:
            return
        problem = self.guardian.problem()
        if problem is None:
            return
        log.error("the guardian (pid %d) %s: starting another", self.guardian.pid, problem)
        self.guardian.discard()
        self.start_guardian(live)

    def helper_pids(self) -> set[int]:
        """Our own helper children (the guardian): never swept, reaped only by their Popen."""
        return {self.guardian.pid} if self.guardian is not None else set()

    def close_cgroups(self) -> None:
        """Graceful shutdown, once the observers are ended: remove their (empty) cells."""
        proctree.disable_cgroups()
        self.sweep_threads.shutdown(wait=False)  # the last sweep is over

    def close_guardian(self) -> int | None:
        """Graceful shutdown: cut the lifeline; the guardian sweeps once more and exits."""
        guardian, self.guardian = self.guardian, None
        if guardian is None:
            return None
        code = guardian.close(timeout=10.0)
        log.info("guardian pid %d exited %s", guardian.pid, code)
        return code

    def guardian_info(self) -> dict[str, Any] | None:
        if self.guardian is None or self.guardian_id is None:
            return None
        return {
            "pid": self.guardian_id.pid,
            "create_time": self.guardian_id.create_time,
            "alive": self.guardian.alive(),
            "problem": self.guardian.problem(),  # None, or why the next sweep replaces it
            "starts": self.guardian_starts,
            "watched": self.watched,
        }

    def observer_mark(self, token: str) -> str:
        return f"{self.mark}:{token}"

    def spawn_plan(self, token: str, argv: list[str]) -> proctree.SpawnOptions:
        """How to spawn an observer: run `opts.argv` (maybe wrapped, see
        proctree.SpawnOptions) with `dict(opts)`; `opts.subreaper` says whether the observer
        will be a child subreaper.

        Linux: it is made one (with the parent-death signal, before its exec). A daemon it
        starts (double fork, setsid, its environment shed: nothing left to know it by) is then
        reparented to the observer, not to us, and ends with the observer's tree; without
        that, such an orphan could be anyone's and was spared while any observer older than it
        lived (one long session kept every later one's alive). Cells do not make it needless:
        what a root observer moves out of its cell is outside it, and so is what it forks
        before its move where proctree's own launcher cannot enter the cell for it. The cost:
        orphans of its tree that die stay zombies until it exits (a claude reaps only its own
        children)."""
        opts = proctree.spawn_options(
            self.observer_mark(token), env=self.env, argv=argv, subreaper=True
        )
        self.observer_subreapers = opts.subreaper
        return opts

    def after_spawn(self, pid: int, token: str, opts: proctree.SpawnOptions) -> Contained:
        handle = proctree.after_spawn(pid, opts)
        identity = handle.proc_id or proctree.ProcId(pid, _create_time_or_now(pid))
        self._watch(handle)
        return Contained(identity, handle, self.observer_mark(token), opts.subreaper)

    async def end(
        self,
        contained: Contained,
        *,
        grace: float,
        close_stdin: Any,
        exited: Awaitable[Any] | None = None,
        owned: Collection[int] = (),
        spawning: Callable[[], bool] = lambda: False,
    ) -> str:
        """close stdin -> grace -> terminate tree -> grace -> kill tree; say which stage did it.

        `exited`: resolves at the root's reap (a root that exits leaving nothing is then done
        without a scan); `owned`: the other observers we spawned (asyncio reaps them; not part
        of this tree); `spawning`: whether one is being spawned, not in `owned` yet."""
        try:
            result = await proctree.aterminate_tree(
                contained.identity,
                group=contained.handle,
                # As subreaper, escapees become our own children: proctree finds them among
                # those by this mark; without it, by scanning every process's environment.
                mark=contained.mark,
                grace=grace,
                close_stdin=close_stdin,
                root_exited=exited,
                own_child=True,
                dont_reap=_LivePids(
                    owned, self.helper_pids(), skip=contained.identity.pid, spawning=spawning
                ),
            )
        finally:
            # In a thread: removing a cgroup cell waits for the kernel's cgroup lock, which a
            # child's move into its cell holds for an RCU grace period (7 ms on average under
            # load, measured); in the loop that wait stalled every session.
            await asyncio.to_thread(contained.handle.close)
        if self.guardian is not None and not result.survivors:
            self.guardian.unwatch(contained.handle)
        if self.spared_strays or self._adoptees(owned):
            # What the observer left us (its orphans, reparented at its exit) is swept now,
            # not at the next round.
            self.sweep_soon.set()
        if result.survivors:
            log.error("survivors after ending %s: %s", contained.identity, result.survivors)
            return f"survivors={len(result.survivors)}"
        stages = [s for s in ("stdin", "term", "kill") if getattr(result, s)]
        return stages[-1] if stages else "stdin"

    def _adoptees(self, owned: Collection[int]) -> bool:
        """Whether we have a child that is neither an observer nor a helper of ours."""
        if not self.subreaper:
            return False
        return bool(proctree.adopted_children({*owned, *self.helper_pids()}))

    async def sweep(
        self, live: list[Contained], exclude_pids: set[int], *, full: bool
    ) -> list[proctree.ProcId]:
        """End every process of ours outside the trees of live observers (escapees too).

        As subreaper, whatever left one of our trees has been reparented to us, so our own
        children are enough; `full` also scans every process for the mark (the only way
        without a subreaper, and a cross-check with one).
        """
        # A guardian replaced by this very sweep (check_guardian) is a helper too.
        exclude_pids = exclude_pids | self.helper_pids()
        ended: list[proctree.ProcId] = []
        if self.subreaper:
            ended += await self._end_adopted(
                exclude_pids | {c.identity.pid for c in live},
                self.stray_grace,
                _Marks.of(live),
                # Only an observer that is no subreaper can have handed us an orphan while
                # it lives: the others' unmarked strays are ended at once.
                [c.identity.create_time for c in live if not c.subreaper],
            )
            if not full:
                return ended
        return ended + await self._on_sweep_threads(self._sweep, live, exclude_pids)

    async def _on_sweep_threads(self, fn: Callable[..., _R], *args: Any) -> _R:
        """fn(*args) on the sweep's own threads (see SWEEP_THREADS)."""
        return await asyncio.get_running_loop().run_in_executor(self.sweep_threads, fn, *args)

    async def _end_adopted(
        self,
        exclude_pids: set[int],
        grace: float,
        marks: _Marks,
        live_starts: list[float],
    ) -> list[proctree.ProcId]:
        """End our direct children that are not observers we track (see _adopted_strays).

        All at once: the sweep holds the spawn lock, so strays that ignore SIGTERM, ended one
        after another, would hold every new session back by a grace each. Looked at again
        after each round (at most STRAY_ROUNDS): a lineage that forks and exits hands us its
        newest pid while the one we signalled is given its grace. Newcomers after the first
        round get none: stopped at once, such a lineage forks no more."""
        ended: list[proctree.ProcId] = []
        tried: set[proctree.ProcId] = set()
        for round_no in range(STRAY_ROUNDS):
            # Only newcomers: one that outlived its ending is not tried (nor stopped) again.
            strays = await self._on_sweep_threads(
                self._adopted_strays, exclude_pids, marks, live_starts, round_no > 0, tried
            )
            if not strays:
                break
            tried.update(pid_id for pid_id, _ in strays)
            results = await asyncio.gather(
                *(
                    proctree.aterminate_tree(
                        pid_id,
                        mark=mark,
                        grace=grace if round_no == 0 else 0.0,
                        dont_reap=exclude_pids,
                        # Each a child of ours: its tree found child by child. Scans of the
                        # whole table, one per stray and look, took 7 s of CPU for 150.
                        own_child=True,
                        executor=self.sweep_threads,
                    )
                    for pid_id, mark in _one_per_tree(strays)
                )
            )
            # An ending leaves its root's exit status to the root's owner, which for an
            # adopted stray is us: reaped now, not left a zombie until the next sweep.
            self.reap_zombies(exclude_pids)
            ended += [pid_id for result in results for pid_id in result.ended]
        return sorted(set(ended))

    def _adopted_strays(
        self,
        exclude_pids: set[int],
        marks: _Marks,
        live_starts: list[float],
        freeze: bool = False,
        skip: Collection[proctree.ProcId] = (),
    ) -> list[tuple[proctree.ProcId, str | None]]:
        """Our adopted escapees/orphans but those a live observer may still own (`marks`), each
        with the mark to end its tree by; `freeze`: each stopped the moment it is found (a
        lineage that forks and exits outruns endings that queue for a thread); `skip`: those
        this sweep tried already.

        The kernel reparents to a subreaper only orphans of its own descendants, so a child we
        did not spawn is ours whatever it carries. One carrying our mark says whose it was. One
        carrying no mark, or one not ours (its environment cleared, the variable emptied, set
        by another tool), cannot: it is spared while any observer started before it that is no
        subreaper is still live (`live_starts`; the periodic sweep holds the spawn lock, so no
        observer is between fork and exec), and ended after that. A lineage that forks and
        exits is born again at every step, always after some live observer: so while unmarked
        strays are there sweep after sweep, each counts as born when the first of them was
        (`_unmarked_since`).
        """
        found = []
        for proc in proctree.adopted_children(exclude_pids):
            marker = proctree.marker_of(proc)
            found.append((proc, marker if proctree.mark_matches(marker, self.mark) else None))
        births = {proc.pid: self._birth(proc) for proc, marker in found if marker is None}
        first = min((b for b in births.values() if b is not None), default=None)
        if first is None:
            self._unmarked_since = None
        elif self._unmarked_since is None or first < self._unmarked_since:
            self._unmarked_since = first
        strays: list[tuple[proctree.ProcId, str | None]] = []
        spared = 0
        rooted: dict[str, bool] = {}  # asked after the listing above (see _Marks)
        for proc, marker in found:
            tree_mark = self._tree_mark(marker)
            if marker is None:
                born = births.get(proc.pid)
                if born is None:
                    continue  # a zombie (reap_zombies collects it), gone, or older than us
                born = min(born, self._unmarked_since or born)
                if any(start <= born + proctree.CREATE_TIME_TOLERANCE for start in live_starts):
                    spared += 1
                    continue
            elif marks.spares(marker, rooted):
                continue  # its observer's ending takes it
            elif marker in marks.live:
                # A live subreaper's mark on a child of ours was copied, not inherited: end
                # this one alone, never by that mark (the live observer's tree carries it).
                tree_mark = None
            pid_id = proctree.identify(proc.pid)
            if pid_id is None or pid_id in skip or not proctree.is_alive(pid_id):
                continue
            if freeze:
                proctree.stop(pid_id)
            # With the mark, what this process forks is found even after its own pid is gone
            # (a lineage that forks and exits would otherwise end "cleanly" at every sweep).
            strays.append((pid_id, tree_mark))
        self.spared_strays = spared
        return strays

    def _tree_mark(self, marker: str | None) -> str | None:
        """The mark to end a stray's tree by: an ended observer's own (finer than ours) takes
        its whole tree and only it; ours would take every observer's tree, live ones too."""
        return marker if marker != self.mark else None

    def _birth(self, proc: psutil.Process) -> float | None:
        """An unmarked adopted child's create time; None for a zombie (reap_zombies collects
        it), one gone meanwhile, or one older than us (it cannot descend from us)."""
        try:
            created = proctree.create_time(proc)
            if proctree.exited(proc):
                return None
        except psutil.Error:
            return None
        return None if created + proctree.CREATE_TIME_TOLERANCE < self.since else created

    def _sweep(self, live: list[Contained], exclude_pids: set[int]) -> list[proctree.ProcId]:
        spared = set(exclude_pids)
        live_marks = {c.mark for c in live}
        for c in live:
            if proctree.is_alive(c.identity):
                spared.add(c.identity.pid)
                spared.update(p.pid for p in proctree.descendants(c.identity.pid, group=c.handle))
        ended: list[proctree.ProcId] = []
        for proc in proctree.scan(mark=self.mark, since=self.since):
            if proc.pid in spared or proctree.marker_of(proc) in live_marks:
                continue
            pid_id = proctree.identify(proc.pid)
            if pid_id is None or not proctree.is_alive(pid_id):
                continue
            result = proctree.terminate_tree(
                pid_id,
                mark=self._tree_mark(proctree.marker_of(proc)),
                grace=self.stray_grace,
                dont_reap=exclude_pids,
            )
            ended.extend(result.ended)
        return ended

    def reap_zombies(self, exclude: set[int]) -> list[int]:
        return proctree.reap_zombies(exclude)

    async def reap_previous(
        self, rows: list[tuple[Any, proctree.ProcId]], marks: list[tuple[str, float]]
    ) -> list[proctree.ProcId]:
        """A new worker on this data dir: end what earlier runs left, matched exactly.

        `rows`: (registry row, its process's identity as this worker computes it); `marks`:
        (mark, worker create_time) of each unclean earlier run."""
        return await asyncio.to_thread(self._reap_previous, rows, marks)

    def _reap_previous(
        self, rows: list[tuple[Any, proctree.ProcId]], marks: list[tuple[str, float]]
    ) -> list[proctree.ProcId]:
        ended: list[proctree.ProcId] = []
        for row, root in rows:
            proc = root.process()
            if proc is None or not proctree.is_alive(root):
                continue
            marker = proctree.marker_of(proc)
            if marker is None or not proctree.mark_matches(marker, str(row["mark"])):
                # Same pid and start time, yet not carrying that run's mark: not ours. A row is
                # no proof (an observer of that run could write the database and name anyone);
                # an unmarked survivor of the run is still in its cell, which the restart ends.
                continue
            group = int(row["grp"]) if str(row["grp"] or "").isdigit() else None
            # identity alone is exact (pid + create_time); the mark only widens to its tree.
            result = proctree.terminate_tree(
                root, group=group, mark=row["mark"], grace=self.stray_grace
            )
            ended.extend(result.ended)
        for mark, since in marks:
            ended.extend(proctree.sweep(mark=mark, grace=self.stray_grace, since=since))
        return ended


def _one_per_tree(
    strays: list[tuple[proctree.ProcId, str | None]],
) -> list[tuple[proctree.ProcId, str | None]]:
    """One ending per tree: strays carrying the same mark are one tree, which an ending by that
    mark takes whole (rooted at the oldest: nothing older is taken for its tree); before, each
    of 150 orphans of one observer was ended with the whole of it, and the reaper said 17,092
    ended (worker.bench_strays). Unmarked strays are each a tree of their own."""
    oldest: dict[str, proctree.ProcId] = {}
    alone: list[tuple[proctree.ProcId, str | None]] = []
    for pid_id, mark in strays:
        if mark is None:
            alone.append((pid_id, None))
        elif mark not in oldest or pid_id.create_time < oldest[mark].create_time:
            oldest[mark] = pid_id
    return alone + [(pid_id, mark) for mark, pid_id in oldest.items()]


def _create_time_or_now(pid: int) -> float:
    ident = proctree.identify(pid)
    return ident.create_time if ident else 0.0
