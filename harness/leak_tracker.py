"""The leak check's bookkeeping for one pytest process: its owners, the leaks of those that
ended, how long to look for them, and the ending of them and their lineage.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.leak_owners import ELSEWHERE, TOKEN_VAR, Attribution, Owner
from harness.leak_procs import (
    Identity,
    Proc,
    all_pids,
    descendants,
    held_by_live_objects,
    is_alive,
    names_a_helper,
    now,
    same_time,
    shown_cmdline,
    terminate_pools_of,
    under,
    wait_ended,
)
from harness.text import printable

if TYPE_CHECKING:
    import psutil

SESSION = -1  # owner of what ran before the first checked test (see LeakTracker.begin)
OUTSIDE = "no checked test (at collection, in a hook, or a thread still running after its test)"
SWEEP_S = 5.0  # how long killing a leak's lineage may take (LeakTracker._sweep)
ZOMBIE_SETTLE_S = 0.3  # how long a test's zombies keep the check looking (see wait_for_leaks)


# psutil's status names of a stopped process (strings: psutil is imported lazily here).
STOPPED = frozenset({"stopped", "tracing-stop"})


@dataclass(frozen=True)
class Leak:
    pid: int
    ppid: int
    create_time: float
    cmdline: str
    owner: str
    number: int = field(default=0, compare=False)  # the owner's (the label may say more)
    # Stopped (SIGSTOP, SIGTSTP, a background read of the terminal: SIGTTIN, a tracer) when
    # judged: why it did not end by itself, which its command line alone does not say.
    stopped: bool = field(default=False, compare=False)

    @property
    def age_s(self) -> float:
        return max(0.0, now() - self.create_time)


@dataclass
class _State:
    owners: dict[int, Owner] = field(default_factory=dict)
    known: dict[Identity, int] = field(default_factory=dict)  # identity -> owner number
    settled: set[Identity] = field(default_factory=set)  # reported, ignored or helper


class LeakTracker:
    """Process bookkeeping for one pytest process (one xdist worker)."""

    def __init__(self, *, timeout: float, interval: float, kill: bool) -> None:
        self.timeout = timeout
        self.interval = interval
        self.kill = kill
        self.tag = secrets.token_hex(6)
        self.root = os.getpid()
        self._state = _State(
            owners={
                # Its start is set once the tests begin (tests_begin): now() imports psutil and
                # proctree (~50 ms), which a run without a checked test must not pay.
                0: Owner(0, OUTSIDE, 0.0),
                SESSION: Owner(SESSION, "the session", 0.0),
                ELSEWHERE: Owner(ELSEWHERE, "an xdist worker (judged by itself)", 0.0),
            }
        )
        self.attribution = Attribution(
            self._state.owners, self._state.known, tag=self.tag, root=self.root
        )
        self._current = 0
        self._tests_began = False
        self._just_ended: list[Owner] = []
        self._spared: list[Leak] = []  # reported, not killed: a live object still held them
        self._lock = threading.RLock()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- owners ---------------------------------------------------------------------------------
    def begin(self, label: str) -> tuple[Owner, int, str | None]:
        """Start an owner; returns it with what to restore() when it stops being current."""
        with self._lock:
            switched = now()  # before tests_begin()'s listing: see _make_current()
            self.tests_begin()
            number = max(self._state.owners) + 1
            owner = Owner(number, label, now(), pids_at_start=frozenset(all_pids()))
            self._state.owners[number] = owner
            previous = self._make_current(number, switched)
        return owner, previous[0], previous[1]

    def tests_begin(self, outside: str | None = None) -> None:
        """The tests begin (here, or in the xdist workers of a controller): what runs before
        (started at configure or collection: a plugin's server, stopped at unconfigure) is the
        session's own, and so is what it starts later (a pre-fork server's workers): never
        judged. What no owner starts from now on is owner 0's, labelled `outside` if given."""
        with self._lock:
            if outside is not None:
                self._state.owners[0].label = outside
            self.look()
            if self._tests_began:
                return
            self._tests_began = True
            self._state.owners[0].started = now()
            for identity, number in self._state.known.items():
                if number == 0:
                    self._state.known[identity] = SESSION
            self.attribution.timeline = [(0.0, SESSION)]

    def hand_over(self, pid: int) -> None:
        """This child of ours and its lineage are judged by another pytest process (an xdist
        worker judges its own): never here, even while it exits after the session."""
        import psutil

        import proctree

        with self._lock:
            try:
                self._state.known[(pid, proctree.create_time(psutil.Process(pid)))] = ELSEWHERE
            except psutil.NoSuchProcess:
                pass  # gone already: nothing of it to tell apart

    def look(self) -> None:
        """Give the descendants seen now their owners (the parent chain, while it is there)."""
        with self._lock:
            self.attribution.look(fallback=self._current)

    def _make_current(self, number: int, switched: float) -> tuple[int, str | None]:
        """Owner `number` is current from now on; returns the owner and token it replaces.

        `switched`, the switch's time on the timeline, is taken before the listing of
        descendants that precedes every switch: what that listing gave the previous owner
        existed then, so a process it missed was started later, by this owner. Timed after the
        listing instead, a process this owner started within a clock tick (create_time's 10 ms)
        of the switch fit the previous owner's token too: a test that set up a session fixture
        and at once ran a process with the fixture's ``{**os.environ}`` had it put on the
        fixture, and reported only at a later test's teardown."""
        previous = (self._current, os.environ.get(TOKEN_VAR))
        self._current = number
        os.environ[TOKEN_VAR] = f"{self.tag}.{number}"
        self.attribution.timeline.append((switched, number))
        return previous

    def restore(
        self, owner: Owner, current: int, env_value: str | None, *, absorb: bool = True
    ) -> None:
        """Stop owner being current (its processes stay attributed to it)."""
        with self._lock:
            switched = now()  # before the listing: see _make_current()
            if absorb:
                self.attribution.look(fallback=owner.number)
            self._current = current
            self.attribution.timeline.append((switched, current))
            if env_value is None:
                os.environ.pop(TOKEN_VAR, None)
            else:
                os.environ[TOKEN_VAR] = env_value

    def resume(self, owner: Owner) -> tuple[int, str | None]:
        """Make an owner current again (a fixture's teardown); returns what to restore()."""
        with self._lock:
            switched = now()  # before the listing: see _make_current()
            self.attribution.look(fallback=self._current)
            return self._make_current(owner.number, switched)

    def end(self, owner: Owner, label: str | None = None) -> None:
        with self._lock:
            owner.ended = True
            owner.ended_at = min(owner.ended_at, now())
            self._just_ended.append(owner)
            if label:
                owner.label = label

    def take_window(self) -> tuple[float, frozenset[int]]:
        """Where to look for tokens: processes started after the earliest of the owners ended
        since the last call (its start time, and the pids that existed then)."""
        with self._lock:
            ended, self._just_ended = self._just_ended, []
        if not ended:
            return now(), frozenset(all_pids())
        first = min(ended, key=lambda owner: owner.started)
        return first.started, first.pids_at_start

    def give(self, pids: Collection[int], number: int) -> set[int]:
        """These processes and their lineage are owner `number`'s from now on (a fixture whose
        object holds them): judged when it ends, not with the owner they had. Returns the pids
        given."""
        import psutil

        import proctree

        given: set[int] = set()
        with self._lock:
            for pid in pids:
                try:
                    proc = psutil.Process(pid)
                    lineage = [proc, *proc.children(recursive=True)]
                except psutil.Error:
                    continue
                for member in lineage:
                    try:
                        self._state.known[(member.pid, proctree.create_time(member))] = number
                    except psutil.Error:
                        continue
                    given.add(member.pid)
        return given

    def ignore(self, pid: int) -> None:
        import psutil

        import proctree

        with self._lock:
            try:
                self._state.settled.add((pid, proctree.create_time(psutil.Process(pid))))
            except psutil.NoSuchProcess:
                pass  # gone already: nothing to excuse

    # -- observation ----------------------------------------------------------------------------
    def sample(self) -> None:
        with self._lock:
            if self._active.is_set():  # checked under the lock: deactivate() may have just run
                self.attribution.look(fallback=self._current)

    def _live_known(self, tree: dict[int, Proc]) -> list[tuple[Proc, int]]:
        """Known processes still alive (forgetting the gone), with their owner numbers."""
        out = []
        for identity, number in list(self._state.known.items()):
            pid, ct = identity
            proc = tree.get(pid)
            if proc is not None and same_time(proc.create_time, ct):
                out.append((proc, number))
            elif proc is None and is_alive(pid, ct):  # reparented away from us
                out.append((Proc(pid, -1, ct), number))
            else:
                del self._state.known[identity]
        return out

    def owned_alive(self, owner: Owner) -> list[Proc]:
        with self._lock:
            tree = self.attribution.look(fallback=self._current)
            return [proc for proc, number in self._live_known(tree) if number == owner.number]

    # -- judging --------------------------------------------------------------------------------
    def _candidates(
        self, since: float, baseline: frozenset[int], fallback: int
    ) -> list[tuple[Proc, Owner]]:
        import psutil

        import proctree

        tree = self.attribution.look(fallback=fallback)
        state = self._state
        # Reparented processes never seen as descendants: find them by the inherited token,
        # among the processes started since the window opened (pids that did not exist then).
        known_pids = {pid for pid, _ in state.known}
        for pid in all_pids() - baseline - tree.keys() - known_pids:
            try:
                create_time = proctree.create_time(psutil.Process(pid))
            except psutil.Error:
                continue
            if create_time + 1.0 < since:
                continue
            owner = self.attribution.owner_by_token(pid, create_time)
            if owner is not None:
                state.known[(pid, create_time)] = owner
        out = []
        for proc, number in self._live_known(tree):
            holder = state.owners[number]
            if holder.ended and proc.identity not in state.settled:
                out.append((proc, holder))  # owner 0 ends only at the session's end, if at all
        return out

    def find_leaks(
        self, since: float, baseline: frozenset[int], fallback: int = 0
    ) -> tuple[list[Leak], int, int]:
        """Leaked processes of ended owners now, and how many zombies were seen for the first
        time (each then settled: a zombie never runs again, and one kept for the session, a
        finished Popen never waited for, kept every later check looking ZOMBIE_SETTLE_S), and
        how many were gone before they could be read (a lineage that forks and exits lives on
        under a new pid: it was missed, passed and outlived pytest)."""
        import psutil

        import proctree

        leaks: list[Leak] = []
        zombies = vanished = 0
        with self._lock:
            listed = all_pids()
            for proc, owner in self._candidates(since, baseline, fallback):
                try:
                    handle = psutil.Process(proc.pid)
                    ppid = proc.ppid
                    with handle.oneshot():
                        ppid = handle.ppid()
                        # A leader that reads as a zombie may run on in another thread.
                        if proctree.exited(handle):
                            zombies += 1
                            self._state.settled.add(proc.identity)
                            continue
                        cmdline = shown_cmdline(handle)
                        stopped = proctree.status(handle) in STOPPED
                except psutil.NoSuchProcess:
                    vanished += 1
                    continue
                except psutil.AccessDenied:
                    cmdline, stopped = "?", False
                # The helper itself is pytest's child; a forkserver's children share its argv.
                if ppid == self.root and names_a_helper(cmdline):
                    self._state.settled.add(proc.identity)
                    continue
                leaks.append(
                    Leak(
                        proc.pid,
                        ppid,
                        proc.create_time,
                        printable(cmdline),
                        owner.label,
                        owner.number,
                        stopped,
                    )
                )
            if not (leaks or zombies or vanished):
                vanished = len(self._newborn_owners(listed))
        return leaks, zombies, vanished

    def _newborn_owners(self, listed: Collection[int], since: float = 0.0) -> set[int]:
        """The ended owners of processes born since `listed` (and since `since`, a create_time):
        a look that found nothing may have fallen between two pids of a lineage that forks and
        exits (one gone before it was read, the next born after the listing). A lifetime helper
        (a resource tracker the test started) is no such newborn."""
        import proctree

        found: set[int] = set()

        def ours(proc: psutil.Process) -> bool:
            with self._lock:
                owner = self.attribution.owner_by_token(proc.pid, proctree.create_time(proc))
            if owner is None or not self._state.owners[owner].ended:
                return False
            if names_a_helper(shown_cmdline(proc)):
                return False
            found.add(owner)
            return True

        proctree.born_since(listed, since, ours)
        return found

    def wait_for_leaks(
        self, window: tuple[float, frozenset[int]], timeout: float, fallback: int = 0
    ) -> tuple[list[Leak], float]:
        """find_leaks, retried with backoff until none are left or timeout has passed."""
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.01
        settle_until = start
        last_seen: list[Leak] = []
        while True:
            leaks, zombies, vanished = self.find_leaks(*window, fallback=fallback)
            now = time.monotonic()
            last_seen = leaks or last_seen
            # A new zombie may be the middle of a double fork whose daemon is not forked yet:
            # looked at again for a moment (it was missed one time in three).
            if zombies:
                settle_until = max(settle_until, start + ZOMBIE_SETTLE_S)
            # One that ended just now may have forked first: its lineage lives on under a pid
            # this look did not read. Looked at again, if need be a moment past the deadline
            # (a process that forks and exits was missed when the last look fell in between).
            ended_now = zombies or vanished
            if vanished:
                settle_until = max(settle_until, now + ZOMBIE_SETTLE_S)
            if leaks and now >= deadline:
                return leaks, now - start
            if not leaks and now >= deadline + ZOMBIE_SETTLE_S and ended_now and last_seen:
                # Still ending at the last look, past the deadline: a lineage that forks and
                # exits faster than a look on a loaded machine runs on (each look found its pid
                # of a moment ago, exited). What was seen of it is reported, and the kill then
                # looks for its owners' processes by their token.
                return last_seen, now - start
            if not leaks and (
                now >= deadline + ZOMBIE_SETTLE_S or (not ended_now and now >= settle_until)
            ):
                return leaks, now - start
            time.sleep(max(0.005, min(delay, deadline - now)))
            delay = min(delay * 2, 0.2)

    def after_gc(
        self, leaks: list[Leak], timeout: float = 0.25
    ) -> tuple[list[Leak], dict[int, str]]:
        """Run the garbage collector once, then: the leaks that ended (an object that owned them,
        a pexpect spawn or an asyncio transport, sat unclosed in a reference cycle, and its
        finalizer ended its child), and those a live object still holds (pid -> its class)."""
        import gc

        import psutil

        import proctree

        handles: dict[int, psutil.Process] = {}
        # The automatic collector is off until our own collection: run in between (at any
        # allocation), it ended such leaks before the tree was read, and the note that the gc
        # ended them was lost (a spawn Pool in a reference cycle).
        automatic = gc.isenabled()
        gc.disable()
        try:
            for leak in leaks:
                try:
                    proc = psutil.Process(leak.pid)
                    if same_time(proctree.create_time(proc), leak.create_time):
                        handles[leak.pid] = proc
                except psutil.Error:
                    continue
            if not handles:
                return [], {}
            # Only what this process owns can end when its objects are collected: its children
            # (a Popen's, a pexpect spawn's) and their trees. An orphan that ended meanwhile (a
            # lineage that forks and exits, under its old pid) did not end by the gc.
            tree = descendants(self.root)
            gc.collect()
        finally:
            if automatic:
                gc.enable()
        running = {proc.pid for proc in wait_ended(list(handles.values()), timeout)}
        collected = [
            leak
            for leak in leaks
            if leak.pid in handles and leak.pid in tree and leak.pid not in running
        ]
        if collected:  # one that forked before it exited lives on: the gc did not end it
            # Any process of theirs but the leaks themselves: on a loaded machine the fork
            # may have come before a listing taken here, and only its parent's exit after.
            # Not a listing: every other process but the leaks would be "born since" (the
            # test's resource tracker, a process it let outlive it): only what was born after
            # the oldest of them can be a fork of theirs.
            oldest = min(leak.create_time for leak in collected)
            reborn = self._newborn_owners(handles.keys(), since=oldest)
            collected = [leak for leak in collected if leak.number not in reborn]
        held = held_by_live_objects(running)
        # A held process's own children are its business (execnet's proxy gateway is the child
        # of the gateway it runs through): spared with it.
        for pid in running - held.keys():
            try:
                above = {parent.pid for parent in handles[pid].parents()}
            except psutil.Error:
                continue
            holder = next((ancestor for ancestor in held if ancestor in above), None)
            if holder is not None:
                held[pid] = f"in the tree of {holder}"
        return collected, held

    def settle(
        self,
        leaks: Iterable[Leak],
        spare: Collection[int] = (),
        *,
        window: tuple[float, frozenset[int]] = (0.0, frozenset()),
        fallback: int = 0,
    ) -> list[Leak]:
        """Mark leaks reported and, if configured, kill them, their trees and whatever of their
        owners' a fresh look at `window` still finds, except the pids in spare (ended at the
        session's end instead: end_spared) and their trees; returns what still runs."""
        import psutil

        import proctree

        leaks = list(leaks)
        with self._lock:
            self._state.settled.update((leak.pid, leak.create_time) for leak in leaks)
            self._spared.extend(leak for leak in leaks if leak.pid in spare)
        if not self.kill:
            return leaks
        victims: list[psutil.Process] = []
        for leak in leaks:
            if leak.pid in spare:
                continue
            try:
                proc = psutil.Process(leak.pid)
                if not same_time(proctree.create_time(proc), leak.create_time):
                    continue  # pid reused since: not ours
                victims.extend(proc.children(recursive=True))
                victims.append(proc)
            except psutil.Error:
                continue
        owners = {leak.number for leak in leaks if leak.pid not in spare}
        return self._sweep(victims, owners, set(spare), window, fallback)

    def _sweep(
        self,
        victims: list[psutil.Process],
        owners: set[int],
        spare: set[int],
        window: tuple[float, frozenset[int]],
        fallback: int,
    ) -> list[Leak]:
        """Stop, then kill, the victims and then what a fresh look finds of these owners', until
        QUIET_LOOKS looks in a row find nothing (harness.cleanup's sweep; its end_all waits
        with psutil.wait_procs, which would reap a child a Popen still owns). A process that
        forks and exits was gone by the time its old pid was killed, and its lineage ran on,
        past pytest, while the report said "killed them". Returns what still runs."""
        import psutil

        import proctree
        from harness.cleanup import QUIET_LOOKS, still_running, stop_then_kill

        def lineage() -> list[psutil.Process]:
            with self._lock:
                found = self._candidates(*window, fallback=fallback)
            mine = [proc for proc, owner in found if owner.number in owners]
            handles = (proctree.ProcId(*proc.identity).process() for proc in mine)
            return still_running([h for h in handles if h is not None and not under(h, spare)])

        def ours(proc: psutil.Process) -> bool:
            try:
                with self._lock:
                    owner = self.attribution.owner_by_token(proc.pid, proctree.create_time(proc))
            except psutil.Error:
                return False
            return owner in owners and not under(proc, spare)

        seen: set[Identity] = set()
        killed: list[dict[str, float]] = []
        ended: list[psutil.Process] = []
        deadline = time.monotonic() + SWEEP_S
        quiet = 0
        while quiet < QUIET_LOOKS and time.monotonic() < deadline:
            listed = set(psutil.pids())
            live = stop_then_kill(victims, seen, killed)
            found = lineage()
            if not found and not live:  # one that forked during the look: born since
                born, _ = proctree.born_since(listed, 0.0, ours)
                found = [proc for proc in (pid_id.process() for pid_id in born) if proc]
            live += stop_then_kill(found, seen, killed)
            ended += live
            quiet = 0 if live else quiet + 1
            wait_ended(live, 0.5)
            victims = []
        left = wait_ended(ended, 1.0) + lineage()
        return [self._as_leak(proc) for proc in left]

    def _as_leak(self, proc: psutil.Process) -> Leak:
        import psutil

        import proctree

        try:
            with proc.oneshot():  # ppid and status from one read of /proc/PID/stat
                identity = (proc.pid, proctree.create_time(proc))
                ppid, cmdline = proc.ppid(), shown_cmdline(proc)
                stopped = proctree.status(proc) in STOPPED
        except psutil.Error:
            return Leak(proc.pid, -1, 0.0, "?", "?")
        number = self._state.known.get(identity, 0)
        label = self._state.owners[number].label
        return Leak(proc.pid, ppid, identity[1], printable(cmdline), label, number, stopped)

    def end_spared(self) -> list[Leak]:
        """At the session's end, every fixture torn down: kill the spared leaks still running
        (reported at their tests' teardown already); returns them."""
        with self._lock:
            spared, self._spared = self._spared, []
        alive = [leak for leak in spared if is_alive(leak.pid, leak.create_time)]
        if alive and self.kill:
            terminate_pools_of([leak.pid for leak in alive])
            self.settle(alive)
        return alive

    # -- sampler --------------------------------------------------------------------------------
    def activate(self) -> None:
        if self.interval <= 0:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="leak-check", daemon=True)
            self._thread.start()
        self._active.set()

    def deactivate(self) -> None:
        with self._lock:
            self._active.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._active.is_set():
                try:
                    self.sample()
                except Exception:  # noqa: BLE001 - the sampler is best effort, never fatal
                    pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
