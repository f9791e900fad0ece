"""pytest plugin: fail a test that leaves processes behind.

Enable it for every test with ``pytest --leak-check``, for one test with
``@pytest.mark.leak_check`` (``@pytest.mark.leak_check(enabled=False)`` opts out), or by requesting
the ``leak_check`` fixture. After the test's teardown, every process the test started that is still
alive (not a zombie) is a leak: the test gets an error at teardown naming each one (pid, age,
command line), and the plugin kills them so the next test starts clean: stopped, then killed, then
looked for again until quiet (a process that forks and exits lives on under new pids). It never
reaps them: a killed child of pytest itself stays a zombie until its owner (a Popen, pexpect,
asyncio) waits.
Before killing, it runs the garbage collector once: a leak that ends then is named as such (its
owner was left unclosed in a reference cycle, and only its finalizer ended it). A leak that a live
object still holds (a ``*Popen``: subprocess's, multiprocessing's, loky's; a ptyprocess: in a cache,
a session-wide object a test filled lazily), and that one's own tree, is reported but killed only
at the session's end, so that the later tests that reuse it do not fail for it.

How a process is tied to a test:
- the parent chain: processes seen as descendants of this pytest process (at every change of
  owner, and by a sampler thread while a test runs) inherit the owner of their parent, keyed by
  identity ``(pid, create_time)``; pytest's own children belong to the owner current then, and
  so do a forkserver's (it forks for whoever runs now, with the environment it started with);
- a token in the environment (``LEAKPROOF_LEAK_CHECK=<session>.<owner>``), set while the test runs
  and inherited by its children; it finds reparented (escaped) descendants. A token is taken only
  if its owner was current when the process was created, or had ended by then (a late fork of
  its lineage): an environment copied while another owner was current (a session fixture's
  ``{**os.environ, ...}``) names that owner, not the test that started the process with it, which
  is then the owner current at the process's creation.
- a thread that a test started and left running may spawn while a later test runs, and the token
  then names the later test: where the kernel still lists the process among that thread's
  children (Linux, the thread alive), the leak is put on the test that left the thread; otherwise
  the report names the threads earlier tests left running that were alive meanwhile
  (harness/pytest_threads.py).
- a daemon (double fork, setsid) started with an empty environment carries no token and is
  no descendant, nor does one that forks without exec (a copy of pytest itself: the kernel shows
  the environment pytest started with, from before the token was set): on Linux,
  ``--leak-check-subreaper`` makes pytest a child subreaper, so such orphans are reparented to
  pytest instead of init and the parent chain finds them.
Processes started while a module/class/session fixture sets up or tears down (within a test's
setup or teardown) belong to that fixture and are only judged after it is torn down. With
``--leak-check``, those of no checked test (a hook's, a thread's after its test's teardown) are
judged at the session's end, once the threads tests left running have had up to the timeout to
end. Under pytest-xdist each worker judges its own descendants
only; the token carries a per-process session tag, so workers never claim each other's processes.

Before failing, the check retries with backoff up to ``--leak-check-timeout`` seconds (goleak-style)
so that a child which is already on its way out is not a false positive.

This module must stay cheap to import (it is loaded by every pytest run): psutil is imported lazily.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import math
import os
import secrets
import sys
import threading
import time
from collections.abc import Collection, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from cliargs import NON_NEGATIVE
from harness.pytest_threads import Lingering, LingeringThreads, doubt
from harness.text import printable

if TYPE_CHECKING:
    import psutil

TOKEN_VAR = "LEAKPROOF_LEAK_CHECK"
SESSION = -1  # owner of what ran before the first checked test (see LeakTracker.begin)
OUTSIDE = "no checked test (at collection, in a hook, or a thread still running after its test)"
DEFAULT_TIMEOUT_S = 2.5
DEFAULT_INTERVAL_S = 1.0  # fallback sampler only: the token does the main work
CT_TOLERANCE_S = 0.01  # create_time comparison tolerance (docs/contracts.md)
TIMELINE_SLACK_S = 0.005  # error of a start time against the owners' timeline (_token_fits)
SWEEP_S = 5.0  # how long killing a leak's lineage may take (LeakTracker._sweep)
ZOMBIE_SETTLE_S = 0.3  # how long a test's zombies keep the check looking (see wait_for_leaks)
# Helpers that live as long as the pytest process itself, by design: not a test's leak.
_LIFETIME_HELPERS = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "loky.backend.resource_tracker",  # joblib's vendored copy too (joblib.externals.loky...)
)

Identity = tuple[int, float]


@dataclass
class Owner:
    """A test or a higher-scoped fixture whose processes must be gone once it has ended."""

    number: int
    label: str
    started: float  # time.time() at its start; its processes are created after this
    ended: bool = False
    ended_at: float = math.inf  # time.time() when it ended
    pids_at_start: frozenset[int] = frozenset()  # any process it starts has a pid not in here


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    create_time: float

    @property
    def identity(self) -> Identity:
        return (self.pid, self.create_time)


@dataclass(frozen=True)
class Leak:
    pid: int
    ppid: int
    create_time: float
    cmdline: str
    owner: str
    number: int = field(default=0, compare=False)  # the owner's (the label may say more)

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.create_time)


@dataclass
class _State:
    owners: dict[int, Owner] = field(default_factory=dict)
    known: dict[Identity, int] = field(default_factory=dict)  # identity -> owner number
    settled: set[Identity] = field(default_factory=set)  # reported, ignored or helper


def _tree(root: int) -> dict[int, Proc]:
    """The live descendants of root: pid -> (ppid, create_time).

    Not psutil.process_iter(): it shares cached Process objects whose ``info`` it overwrites, so a
    scan from the sampler thread would corrupt a test's own concurrent process_iter() loop.
    psutil's children() already skips a "child" whose pid was reused before its parent's.
    """
    import psutil

    tree: dict[int, Proc] = {}
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return tree
    for child in children:
        try:
            tree[child.pid] = Proc(child.pid, child.ppid(), child.create_time())
        except psutil.Error:
            continue  # gone meanwhile
    return tree


def _names_a_helper(cmdline: str) -> bool:
    """Whether a command line is one of _LIFETIME_HELPERS' (or a forkserver's child's)."""
    return any(name in cmdline for name in _LIFETIME_HELPERS)


def _under(proc: psutil.Process, pids: Collection[int]) -> bool:
    """Whether proc is one of pids or descends from one of them."""
    import psutil

    if not pids:
        return False
    try:
        return proc.pid in pids or any(parent.pid in pids for parent in proc.parents())
    except psutil.Error:
        return False


def _alive(pid: int, create_time: float) -> bool:
    import psutil

    try:
        return _same(psutil.Process(pid).create_time(), create_time)
    except psutil.Error:
        return False


def _pids() -> set[int]:
    import psutil

    return set(psutil.pids())


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= CT_TOLERANCE_S


def _create_time_skew() -> float:
    """What psutil's create_time is ahead of time.time() at the process's start. On Linux it adds
    the boot time in whole seconds (/proc/stat's btime) to the start in ticks since boot: up to
    1 s early, which is longer than most tests last. Elsewhere it is the start as such."""
    if sys.platform != "linux":
        return 0.0
    import psutil

    skew = psutil.boot_time() - (time.time() - time.clock_gettime(time.CLOCK_BOOTTIME))
    return skew if -2.0 < skew < 2.0 else 0.0  # a clock set meanwhile: better none than wrong


def _wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process is gone or a zombie; returns those still running at the deadline.

    Never reaps: a killed child of this pytest process stays a zombie for its owner (a Popen, an
    asyncio transport, pexpect) to collect. psutil.wait_procs would waitpid() it, and the owner's
    own wait would then fail with ECHILD or report exit status 0 instead of the kill.
    """
    import psutil

    import proctree

    deadline = time.monotonic() + timeout
    delay = 0.005
    pending = list(procs)
    while True:
        still = []
        for proc in pending:
            try:
                if proc.is_running() and not proctree.exited(proc):
                    still.append(proc)
            except psutil.NoSuchProcess:
                continue
            except psutil.Error:
                still.append(proc)
        pending = still
        now = time.monotonic()
        if not pending or now >= deadline:
            return pending
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.1)


def _terminate_pools_of(pids: Collection[int]) -> int:
    """Terminate the live multiprocessing Pools whose workers are among `pids`; how many.

    Killing such a worker is not enough: the pool's handler thread starts a new one for each
    that dies, and one forked while another thread held a lock may deadlock, holding pytest at
    its exit for ever (a Pool kept in a module global). Pool.terminate() ends the workers and
    the handler threads together. Looked for only at the session's end, among live objects.
    """
    import gc

    pool_class = getattr(sys.modules.get("multiprocessing.pool"), "Pool", None)
    if pool_class is None or not pids:
        return 0
    wanted = set(pids)
    pools = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, pool_class)
        and wanted & {getattr(worker, "pid", None) for worker in getattr(obj, "_pool", ())}
    ]
    for pool in pools:
        try:
            pool.terminate()
        except Exception:  # noqa: BLE001 - its workers are killed below in any case
            pass
    return len(pools)


def _held_by_live_objects(pids: Collection[int]) -> dict[int, str]:
    """pid -> class of a live object in this process that owns that child (after gc.collect(),
    so unreachable ones are gone). Killing such a child breaks whoever reuses it: a cache, a
    session-wide object that a function-scoped fixture filled lazily (execnet's suite: a gateway
    started by the first test that needs it; loky's: a reusable executor's workers).

    Owners are known by their class: a name ending in "Popen" (subprocess's, which asyncio's
    transports hold, and those of multiprocessing, loky, billiard) or ptyprocess's PtyProcess
    (pexpect), with the child's pid as an instance attribute. Other objects are not looked into:
    reading every object's __dict__ would build one for each that has none yet.
    """
    import gc
    import subprocess

    if not pids:
        return {}
    pty = getattr(sys.modules.get("ptyprocess.ptyprocess"), "PtyProcess", None)
    # A Popen dropped while its child ran sits in subprocess._active (POSIX) to be reaped later:
    # nobody holds it any more.
    dropped = {id(proc) for proc in getattr(subprocess, "_active", None) or ()}
    wanted = set(pids)
    held: dict[int, str] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        if not (kind.__name__.endswith("Popen") or (pty is not None and isinstance(obj, pty))):
            continue
        try:
            pid = object.__getattribute__(obj, "__dict__").get("pid")
        except (AttributeError, TypeError):
            continue
        if type(pid) is int and pid in wanted and id(obj) not in dropped:
            held[pid] = f"{kind.__module__}.{kind.__qualname__}"
    return held


class LeakTracker:
    """Process bookkeeping for one pytest process (one xdist worker)."""

    def __init__(self, *, timeout: float, interval: float, kill: bool) -> None:
        self.timeout = timeout
        self.interval = interval
        self.kill = kill
        self.adopting = False  # pytest is a subreaper: its children may be adopted orphans
        self.tag = secrets.token_hex(6)
        self.root = os.getpid()
        self._state = _State(
            owners={0: Owner(0, OUTSIDE, time.time()), SESSION: Owner(SESSION, "the session", 0.0)}
        )
        self._current = 0
        # (time.time(), owner current from then on): who ran when a process was created.
        self._timeline: list[tuple[float, int]] = [(0.0, 0)]
        self._skew: float | None = None  # see _create_time_skew
        self._helpers: dict[Identity, bool] = {}  # pytest's children: a lifetime helper?
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
            self._absorb(_tree(self.root), fallback=self._current)
            if not self._tests_began:
                # What runs before the first checked test (started at configure or collection:
                # a plugin's server, stopped at unconfigure) is the session's own, and so is what
                # it starts later (a pre-fork server's workers): never judged.
                self._tests_began = True
                for identity, number in self._state.known.items():
                    if number == 0:
                        self._state.known[identity] = SESSION
                self._timeline = [(0.0, SESSION)]
            number = max(self._state.owners) + 1
            owner = Owner(number, label, time.time(), pids_at_start=frozenset(_pids()))
            self._state.owners[number] = owner
            previous = self._make_current(number)
        return owner, previous[0], previous[1]

    def _make_current(self, number: int) -> tuple[int, str | None]:
        """Owner `number` is current from now on; returns the owner and token it replaces."""
        previous = (self._current, os.environ.get(TOKEN_VAR))
        self._current = number
        os.environ[TOKEN_VAR] = f"{self.tag}.{number}"
        self._timeline.append((time.time(), number))
        return previous

    def restore(
        self, owner: Owner, current: int, env_value: str | None, *, absorb: bool = True
    ) -> None:
        """Stop owner being current (its processes stay attributed to it)."""
        with self._lock:
            if absorb:
                self._absorb(_tree(self.root), fallback=owner.number)
            self._current = current
            self._timeline.append((time.time(), current))
            if env_value is None:
                os.environ.pop(TOKEN_VAR, None)
            else:
                os.environ[TOKEN_VAR] = env_value

    def resume(self, owner: Owner) -> tuple[int, str | None]:
        """Make an owner current again (a fixture's teardown); returns what to restore()."""
        with self._lock:
            self._absorb(_tree(self.root), fallback=self._current)
            return self._make_current(owner.number)

    def end(self, owner: Owner, label: str | None = None) -> None:
        with self._lock:
            owner.ended = True
            owner.ended_at = min(owner.ended_at, time.time())
            self._just_ended.append(owner)
            if label:
                owner.label = label

    def take_window(self) -> tuple[float, frozenset[int]]:
        """Where to look for tokens: processes started after the earliest of the owners ended
        since the last call (its start time, and the pids that existed then)."""
        with self._lock:
            ended, self._just_ended = self._just_ended, []
        if not ended:
            return time.time(), frozenset(_pids())
        first = min(ended, key=lambda owner: owner.started)
        return first.started, first.pids_at_start

    def ignore(self, pid: int) -> None:
        import psutil

        with self._lock:
            try:
                self._state.settled.add((pid, psutil.Process(pid).create_time()))
            except psutil.NoSuchProcess:
                pass  # gone already: nothing to excuse

    # -- observation ----------------------------------------------------------------------------
    def _owner_from_env(self, pid: int) -> int | None:
        import psutil

        try:
            value = psutil.Process(pid).environ().get(TOKEN_VAR, "")
        except (psutil.Error, OSError):
            return None
        tag, _, number = value.partition(".")
        ours = tag == self.tag and number.isascii() and number.isdigit()  # isdigit() takes "²"
        if not ours or int(number) not in self._state.owners:
            return None  # another pytest process's token (xdist sibling, nested pytester run)
        return int(number)

    def _started_at(self, create_time: float) -> float:
        """A psutil create_time as the time.time() of the process's start (to 0.01 s)."""
        if self._skew is None:
            self._skew = _create_time_skew()
        return create_time - self._skew

    def _token_fits(self, number: int, create_time: float, *, late: bool) -> bool:
        """Whether a process created at create_time rightly carries owner `number`'s token: that
        owner was current then, or (if `late`) had ended by then, and the process is a late
        fork of its lineage (a daemon, a process that keeps forking). Else the token came in an
        environment copied while that owner was current (a session fixture's
        ``{**os.environ, ...}``) and handed to a process that another owner started."""
        start = self._started_at(create_time)
        # psutil's start is cut to a clock tick (0.01 s): the process began within this span.
        early, late_end = start - TIMELINE_SLACK_S, start + 0.01 + TIMELINE_SLACK_S
        index = bisect.bisect_right(self._timeline, (early, math.inf)) - 1
        for at, current in self._timeline[max(index, 0) :]:
            if at > late_end:
                break
            if current == number:
                return True
        return late and self._state.owners[number].ended_at <= late_end

    def _owner_at(self, create_time: float) -> int:
        """The owner current when a process was created."""
        start = self._started_at(create_time)
        index = bisect.bisect_right(self._timeline, (start, math.inf)) - 1
        return self._timeline[max(index, 0)][1]

    def _absorb(self, tree: dict[int, Proc], *, fallback: int) -> None:
        """Give every descendant we have not seen yet an owner (parents before children)."""
        known = self._state.known
        for proc in sorted(tree.values(), key=lambda item: item.create_time):
            # Its unknown ancestors first: create times tie within a clock tick.
            chain: list[Proc] = []
            link: Proc | None = proc
            while link is not None and link.identity not in known and link not in chain:
                chain.append(link)
                link = tree.get(link.ppid)
            for new in reversed(chain):
                known[new.identity] = self._owner_in_tree(new, tree, fallback)

    def _owner_in_tree(self, proc: Proc, tree: dict[int, Proc], fallback: int) -> int:
        known = self._state.known
        parent = tree.get(proc.ppid)
        # A forkserver forks on behalf of whoever runs now: its children are as pytest's own
        # (their environment is the forkserver's, with the token of when it started).
        by_helper = parent is not None and self._is_helper(parent)
        if parent is not None and parent.identity in known and not by_helper:
            # Its parent's: the environment may be a copy made while another owner was current,
            # the parent chain is not.
            return known[parent.identity]
        token = self._owner_from_env(proc.pid)
        if token is not None and token != fallback:
            # A child of pytest's own was started by the owner current now (a scan runs at
            # every change of owner), unless pytest, a subreaper, adopted an orphan.
            late = self.adopting if proc.ppid == self.root else not by_helper
            token = token if self._token_fits(token, proc.create_time, late=late) else None
        if token is None:
            token = self._owner_by_leader(proc)
        return fallback if token is None else token

    def _is_helper(self, proc: Proc) -> bool:
        """Whether this is a helper that lives as long as pytest (_LIFETIME_HELPERS)."""
        import psutil

        import proctree

        if proc.ppid != self.root:
            return False
        if proc.identity not in self._helpers:
            handle = proctree.ProcId(*proc.identity).process()
            try:
                if handle is None:
                    return False
                cmdline = " ".join(proctree.cmdline(handle))
            except psutil.Error:
                return False  # read again next time
            self._helpers[proc.identity] = _names_a_helper(cmdline)
        return self._helpers[proc.identity]

    def _owner_by_leader(self, proc: Proc) -> int | None:
        """The owner of a known, older process that leads this one's session or group. The
        middle of a double fork calls setsid and exits: its orphan (reparented to pytest, a
        subreaper) has no known parent and no token left, but the middle led its session."""
        if sys.platform == "win32":
            return None
        try:
            leaders = {os.getsid(proc.pid), os.getpgid(proc.pid)} - {proc.pid}
        except OSError:
            return None
        for (pid, create_time), number in self._state.known.items():
            if pid in leaders and create_time <= proc.create_time + CT_TOLERANCE_S:
                return number
        return None

    def _owner_by_token(self, pid: int, create_time: float) -> int | None:
        """The owner of a process that is no descendant of ours, by the token it carries."""
        owner = self._owner_from_env(pid)
        if owner is not None and not self._token_fits(owner, create_time, late=True):
            owner = self._owner_of_parent(pid)
            if owner is None:  # a copied environment: the owner who started it
                owner = self._owner_at(create_time)
        return owner

    def _owner_of_parent(self, pid: int) -> int | None:
        """The owner of this process's parent, if that is a process we know."""
        import psutil

        try:
            parent = psutil.Process(pid).parent()
            return (
                None
                if parent is None
                else self._state.known.get((parent.pid, parent.create_time()))
            )
        except psutil.Error:
            return None

    def sample(self) -> None:
        with self._lock:
            if self._active.is_set():  # checked under the lock: deactivate() may have just run
                self._absorb(_tree(self.root), fallback=self._current)

    def _live_known(self, tree: dict[int, Proc]) -> list[tuple[Proc, int]]:
        """Known processes still alive (forgetting the gone), with their owner numbers."""
        out = []
        for identity, number in list(self._state.known.items()):
            pid, ct = identity
            proc = tree.get(pid)
            if proc is not None and _same(proc.create_time, ct):
                out.append((proc, number))
            elif proc is None and _alive(pid, ct):  # reparented away from us
                out.append((Proc(pid, -1, ct), number))
            else:
                del self._state.known[identity]
        return out

    def owned_alive(self, owner: Owner) -> list[Proc]:
        with self._lock:
            tree = _tree(self.root)
            self._absorb(tree, fallback=self._current)
            return [proc for proc, number in self._live_known(tree) if number == owner.number]

    # -- judging --------------------------------------------------------------------------------
    def _candidates(
        self, since: float, baseline: frozenset[int], fallback: int
    ) -> list[tuple[Proc, Owner]]:
        import psutil

        tree = _tree(self.root)
        self._absorb(tree, fallback=fallback)
        state = self._state
        # Reparented processes never seen as descendants: find them by the inherited token,
        # among the processes started since the window opened (pids that did not exist then).
        known_pids = {pid for pid, _ in state.known}
        for pid in _pids() - baseline - tree.keys() - known_pids:
            try:
                create_time = psutil.Process(pid).create_time()
            except psutil.Error:
                continue
            if create_time + 1.0 < since:
                continue
            owner = self._owner_by_token(pid, create_time)
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
            listed = _pids()
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
                        try:
                            cmdline = " ".join(proctree.cmdline(handle)) or handle.name()
                        except psutil.AccessDenied:
                            cmdline = handle.name()
                except psutil.NoSuchProcess:
                    vanished += 1
                    continue
                except psutil.AccessDenied:
                    cmdline = "?"
                # The helper itself is pytest's child; a forkserver's children share its argv.
                if ppid == self.root and _names_a_helper(cmdline):
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
                    )
                )
            if not (leaks or zombies or vanished):
                vanished = len(self._newborn_owners(listed))
        return leaks, zombies, vanished

    def _newborn_owners(self, listed: Collection[int]) -> set[int]:
        """The ended owners of processes born since `listed`: a look that found nothing may have
        fallen between two pids of a lineage that forks and exits (one gone before it was read,
        the next born after the listing)."""
        import proctree

        found: set[int] = set()

        def ours(proc: psutil.Process) -> bool:
            with self._lock:
                owner = self._owner_by_token(proc.pid, proc.create_time())
            if owner is None or not self._state.owners[owner].ended:
                return False
            found.add(owner)
            return True

        proctree.born_since(listed, 0.0, ours)
        return found

    def wait_for_leaks(
        self, window: tuple[float, frozenset[int]], timeout: float, fallback: int = 0
    ) -> tuple[list[Leak], float]:
        """find_leaks, retried with backoff until none are left or timeout has passed."""
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.01
        settle_until = start
        while True:
            leaks, zombies, vanished = self.find_leaks(*window, fallback=fallback)
            now = time.monotonic()
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

        handles: dict[int, psutil.Process] = {}
        for leak in leaks:
            try:
                proc = psutil.Process(leak.pid)
                if _same(proc.create_time(), leak.create_time):
                    handles[leak.pid] = proc
            except psutil.Error:
                continue
        if not handles:
            return [], {}
        listed = _pids()
        gc.collect()
        running = {proc.pid for proc in _wait_ended(list(handles.values()), timeout)}
        collected = [leak for leak in leaks if leak.pid in handles and leak.pid not in running]
        if collected:  # one that forked before it exited lives on: the gc did not end it
            reborn = self._newborn_owners(listed)
            collected = [leak for leak in collected if leak.number not in reborn]
        held = _held_by_live_objects(running)
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
                if not _same(proc.create_time(), leak.create_time):
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
            return still_running([h for h in handles if h is not None and not _under(h, spare)])

        def ours(proc: psutil.Process) -> bool:
            try:
                with self._lock:
                    owner = self._owner_by_token(proc.pid, proc.create_time())
            except psutil.Error:
                return False
            return owner in owners and not _under(proc, spare)

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
            _wait_ended(live, 0.5)
            victims = []
        left = _wait_ended(ended, 1.0) + lineage()
        return [self._as_leak(proc) for proc in left]

    def _as_leak(self, proc: psutil.Process) -> Leak:
        import psutil

        import proctree

        try:
            identity = (proc.pid, proc.create_time())
            ppid, cmdline = proc.ppid(), " ".join(proctree.cmdline(proc)) or proc.name()
        except psutil.Error:
            return Leak(proc.pid, -1, 0.0, "?", "?")
        number = self._state.known.get(identity, 0)
        label = self._state.owners[number].label
        return Leak(proc.pid, ppid, identity[1], printable(cmdline), label, number)

    def end_spared(self) -> list[Leak]:
        """At the session's end, every fixture torn down: kill the spared leaks still running
        (reported at their tests' teardown already); returns them."""
        with self._lock:
            spared, self._spared = self._spared, []
        alive = [leak for leak in spared if _alive(leak.pid, leak.create_time)]
        if alive and self.kill:
            _terminate_pools_of([leak.pid for leak in alive])
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


def format_leaks(leaks: list[Leak], *, header: str, killed: bool, spared: int = 0) -> str:
    lines = [header]
    by_owner: dict[str, list[Leak]] = {}
    for leak in sorted(leaks, key=lambda item: item.create_time):
        by_owner.setdefault(leak.owner, []).append(leak)
    for owner, group in by_owner.items():
        lines.append(f"started by {owner}:")
        lines.append(f"  {'PID':>7} {'PPID':>7} {'AGE':>8}  COMMAND")
        for leak in group:
            cmd = leak.cmdline if len(leak.cmdline) <= 300 else leak.cmdline[:297] + "..."
            lines.append(f"  {leak.pid:>7} {leak.ppid:>7} {leak.age_s:>7.1f}s  {cmd}")
    if spared and killed:
        lines.append("leak-check killed the others.")
    elif not spared or spared < len(leaks):  # all spared: the note that follows says why
        lines.append("leak-check killed them." if killed else "leak-check left them running.")
    return "\n".join(lines)


def held_note(held: dict[int, str]) -> str:
    pids = ", ".join(f"{pid} ({kind})" for pid, kind in sorted(held.items()))
    return (
        f"note: leak-check left {len(held)} of them running: a live object still holds each "
        f"({pids}), so later tests may still use them (a cache, or a session-wide object that "
        "this test filled); they are ended at the session's end"
    )


def survivors_note(survivors: list[Leak]) -> str:
    shown = "; ".join(f"{leak.pid} ({leak.cmdline[:80]})" for leak in survivors[:5])
    more = f" and {len(survivors) - 5} more" if len(survivors) > 5 else ""
    return (
        f"note: {len(survivors)} of them or of their lineage still ran after leak-check's "
        f"sweep ({SWEEP_S:g} s): {shown}{more}"
    )


def gc_note(collected: list[Leak]) -> str:
    pids = ", ".join(str(leak.pid) for leak in collected)
    return (
        f"note: {len(collected)} of them ({pids}) ended only when leak-check ran gc.collect(): "
        "the test left the object that owned them (a pexpect spawn, an asyncio subprocess "
        "transport, ...) unclosed in a reference cycle; close it (or wait for its process) "
        "before the test ends"
    )


class LeakCheckHandle:
    """What the ``leak_check`` fixture gives a test."""

    def __init__(self, tracker: LeakTracker, owner: Owner) -> None:
        self._tracker = tracker
        self._owner = owner

    def processes(self) -> list[psutil.Process]:
        """Live processes attributed to this test so far."""
        import psutil

        out = []
        for proc in self._tracker.owned_alive(self._owner):
            try:
                out.append(psutil.Process(proc.pid))
            except psutil.NoSuchProcess:
                continue
        return out

    def ignore(self, pid: int) -> None:
        """Let this process outlive the test (the test takes care of it)."""
        self._tracker.ignore(pid)


_plugin_key = pytest.StashKey["LeakCheckPlugin"]()
_marker_problem_key = pytest.StashKey[str]()


def _marker_problem(marker: pytest.Mark) -> str | None:
    """What is wrong with a leak_check marker's arguments, if anything."""
    unknown = set(marker.kwargs) - {"enabled", "timeout"}
    if unknown:
        return f"@pytest.mark.leak_check: unknown argument(s) {', '.join(sorted(unknown))}"
    if len(marker.args) > 1 or ("enabled" in marker.kwargs and marker.args):
        return "@pytest.mark.leak_check takes one `enabled` argument at most"
    enabled = marker.kwargs.get("enabled", marker.args[0] if marker.args else True)
    if not isinstance(enabled, bool):
        return f"@pytest.mark.leak_check: enabled must be True or False, not {enabled!r}"
    timeout = marker.kwargs.get("timeout")
    if timeout is None:
        return None
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not (number and math.isfinite(timeout) and timeout >= 0):
        return f"@pytest.mark.leak_check: timeout must be a number of seconds >= 0, not {timeout!r}"
    return None


def _ini_seconds(config: pytest.Config, name: str) -> float:
    """An ini value in seconds (>= 0); a bad one is a usage error, not an INTERNALERROR."""
    raw = config.getini(name)
    try:
        return NON_NEGATIVE(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {name}: {exc}") from None


def _become_subreaper() -> str:
    """--leak-check-subreaper: "on", or why it is off. Orphans in the tree of a subreaper are
    reparented to it rather than to init: a daemon a test started stays our descendant, so the
    parent chain finds it even with its token scrubbed from its environment."""
    if sys.platform != "linux":
        return "off (Linux only)"
    from proctree import enable_subreaper

    return "on" if enable_subreaper(despite_fallback=True) else "off (prctl refused it)"


_owner_key = pytest.StashKey["tuple[Owner, int, str | None]"]()


@dataclass
class _FixtureOwner:
    """A higher-scoped fixture's owner, made current again for its teardown."""

    owner: Owner
    label: str
    previous: tuple[int, str | None] | None = None  # what to restore after its teardown

    def resume(self, tracker: LeakTracker) -> None:
        self.previous = tracker.resume(self.owner)


# The threads alive at a checked test's start, and those earlier tests left running then.
_threads_key = pytest.StashKey["tuple[frozenset[int], list[Lingering]]"]()


class LeakCheckPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.everywhere = bool(config.getoption("leak_check"))
        timeout = config.getoption("leak_check_timeout")
        self.timeout = (
            timeout if timeout is not None else _ini_seconds(config, "leak_check_timeout")
        )
        self.tracker = LeakTracker(
            timeout=self.timeout,
            interval=_ini_seconds(config, "leak_check_interval"),
            kill=not config.getoption("leak_check_keep"),
        )
        # id(fixturedef) -> its owners (one per setup): the owner, its label, and what to
        # restore once its teardown is over (set when the teardown begins).
        self._fixture_owners: dict[int, list[_FixtureOwner]] = {}
        self.checked = 0
        self.leaked: list[Leak] = []
        self._item: pytest.Item | None = None  # the checked test now running, if any
        self._tearing_down: pytest.Item | None = None  # the test tearing down, checked or not
        self.threads = LingeringThreads()
        self.subreaper = _become_subreaper() if config.getoption("leak_check_subreaper") else None
        self.tracker.adopting = self.subreaper == "on"

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        adopting = f", subreaper {self.subreaper}" if self.subreaper else ""
        if not self.everywhere:
            return f"leak-check: marked tests{adopting}" if adopting else None
        kill = "killed" if self.tracker.kill else "kept"
        return f"leak-check: every test, retry up to {self.timeout:g} s, leaks {kill}{adopting}"

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """A marker whose arguments make no sense is a usage error, as the same values given
        on the command line are (a string timeout was a traceback at setup and at teardown)."""
        for item in items:
            for marker in item.iter_markers("leak_check"):
                problem = _marker_problem(marker)
                if problem and hasattr(self.config, "workerinput"):
                    # An xdist worker: a usage error here is an INTERNALERROR of the controller.
                    # The test fails at its setup instead, saying why.
                    item.stash[_marker_problem_key] = problem
                elif problem:
                    raise pytest.UsageError(f"{item.nodeid}: {problem}")

    def enabled_for(self, item: pytest.Item) -> tuple[bool, float]:
        marker = item.get_closest_marker("leak_check")
        timeout = self.timeout
        if marker is not None:
            if marker.kwargs.get("timeout") is not None:
                timeout = float(marker.kwargs["timeout"])
            enabled = marker.kwargs.get("enabled", marker.args[0] if marker.args else True)
            return bool(enabled), timeout
        fixturenames = getattr(item, "fixturenames", ())
        return self.everywhere or "leak_check" in fixturenames, timeout

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        problem = item.stash.get(_marker_problem_key, None)
        if problem:
            result = yield  # pytest's own setup runs (its teardown expects it), then the failure
            pytest.fail(problem, pytrace=False)
            return result
        enabled, _ = self.enabled_for(item)
        if enabled:
            suspects = self.threads.alive_besides(item.nodeid)
            item.stash[_threads_key] = (LingeringThreads.snapshot(), suspects)
            item.stash[_owner_key] = self.tracker.begin(item.nodeid)
            self._item = item
            self.tracker.activate()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        # request.node is the module/class/session node here: use the running test instead.
        if self._item is None or fixturedef.scope == "function":
            return (yield)
        label = f"fixture {fixturedef.argname!r} ({fixturedef.scope})"
        owner, current, env_value = self.tracker.begin(label)
        threads_before = LingeringThreads.snapshot()
        record = _FixtureOwner(owner, label)
        try:
            return (yield)
        finally:
            self.threads.left_by(label, threads_before, by_test=False)
            self.tracker.restore(owner, current, env_value)
            self._fixture_owners.setdefault(id(fixturedef), []).append(record)
            # Finalizers run last in first: this one, added after the fixture's own teardown,
            # runs before it, so that what the teardown starts is the fixture's too, not the
            # test's whose teardown it runs in (pytest_fixture_post_finalizer restores).
            fixturedef.addfinalizer(lambda: record.resume(self.tracker))

    def pytest_fixture_post_finalizer(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        stack = self._fixture_owners.get(id(fixturedef))
        if stack:
            record = stack.pop()
            if record.previous is not None:
                self.tracker.restore(record.owner, *record.previous)
            # The test in whose teardown it ran, checked or not (request.node is the Session
            # for a session fixture: its nodeid is "").
            item = self._item or self._tearing_down
            where = item.nodeid if item is not None else request.node.nodeid or "the session"
            self.tracker.end(record.owner, f"{record.label}, torn down after {where}")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        begun = item.stash.get(_owner_key, None)
        self._tearing_down = item
        try:
            result = yield
        except BaseException as exc:
            self._tearing_down = None
            if begun is not None:
                quick = isinstance(exc, KeyboardInterrupt)
                message = self._judge(item, begun, timeout=0.0 if quick else None)
                if message:
                    item.add_report_section("teardown", "leak-check", message)
            raise
        self._tearing_down = None
        if begun is not None:
            message = self._judge(item, begun)
            if message:
                pytest.fail(message, pytrace=False)
        return result

    def _judge(
        self, item: pytest.Item, begun: tuple[Owner, int, str | None], timeout: float | None = None
    ) -> str | None:
        owner, current, env_value = begun
        self._item = None
        # The first look for leaks absorbs new descendants as this test's: no scan here.
        self.tracker.deactivate()
        self.tracker.restore(owner, current, env_value, absorb=False)
        self.tracker.end(owner)
        self.checked += 1
        if timeout is None:
            timeout = self.enabled_for(item)[1]
        window = self.tracker.take_window()
        leaks, waited = self.tracker.wait_for_leaks(window, timeout, fallback=owner.number)
        item.user_properties.append(("leak_check_wait_s", round(waited, 3)))
        before, suspects = item.stash.get(_threads_key, (frozenset(), []))
        self.threads.left_by(owner.label, before)
        if not leaks:
            return None
        leaks, doubtful = self._blame_threads(leaks, owner.label, suspects)
        collected, held = self.tracker.after_gc(leaks)
        survivors = self.tracker.settle(leaks, spare=held, window=window, fallback=owner.number)
        self.leaked.extend(leaks)
        mine = sum(1 for leak in leaks if leak.owner == owner.label)
        # With a thread of an earlier test alive meanwhile, the token says less (see doubt()).
        ours = "with this test's token" if doubtful else "started by this test"
        header = (
            f"leak-check: {len(leaks)} process(es) still running {waited:.1f} s after the "
            f"teardown of {item.nodeid} ({mine} {ours}, "
            f"{len(leaks) - mine} by earlier tests or fixtures):"
        )
        killed = self.tracker.kill and not survivors and len(held) < len(leaks)
        text = format_leaks(leaks, header=header, killed=killed, spared=len(held))
        notes = [gc_note(collected)] if collected else []
        notes += [held_note(held)] if held and self.tracker.kill else []
        notes += [doubt(doubtful)] if doubtful else []
        notes += [survivors_note(survivors)] if survivors and self.tracker.kill else []
        return "\n".join([text, *notes])

    @staticmethod
    def _blame_threads(
        leaks: list[Leak], label: str, suspects: list[Lingering]
    ) -> tuple[list[Leak], list[Lingering]]:
        """Leaks this test's token names that a thread an earlier test left running forked:
        put on that test where the kernel says so; the suspects, if any leak is left in doubt."""
        if not suspects:
            return leaks, []
        blamed: list[Leak] = []
        doubtful = False
        for leak in leaks:
            thread = LingeringThreads.forked_by(suspects, leak.pid)
            if leak.owner == label and thread is not None:
                by = f"{thread.owner}, by the thread {thread.name!r} it left running"
                leak = dataclasses.replace(leak, owner=by)
            doubtful = doubtful or leak.owner == label
            blamed.append(leak)
        return blamed, suspects if doubtful else []

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, Any, Any]:
        # Runs after the last teardown: on Ctrl-C, the tests' teardowns were skipped, so this is
        # where whatever the interrupted test started gets ended.
        result = yield
        if not self.tracker._tests_began:  # no checked test ever began here
            return result
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        with self.tracker._lock:
            for owner in self.tracker._state.owners.values():
                # Processes of no checked test (started at collection, by a hook, or by a
                # thread after its test's teardown) are judged too when every test is checked:
                # they outlive pytest as surely as a test's. With marked tests only, not ours.
                if owner.number > 0 or (owner.number == 0 and self.everywhere):
                    owner.ended = True
                    owner.ended_at = min(owner.ended_at, time.time())
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        try:
            self._end_session(session, reporter, interrupted)
        except KeyboardInterrupt:
            # A Ctrl-C during the last wait (it looks like a stall): the last look, at once,
            # and the run ends as interrupted (re-raised here, it was a bare traceback).
            self._end_session(session, reporter, interrupted=True)
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        return result

    def _end_session(self, session: pytest.Session, reporter: Any, interrupted: bool) -> None:
        everything = (0.0, frozenset[int]())  # look at every process for our tokens
        spared = self.tracker.end_spared()  # first: their trees go with them
        if spared and reporter is not None:
            verb = "killed" if self.tracker.kill else "left running"
            pids = ", ".join(str(leak.pid) for leak in spared)
            reporter.write_line(
                f"leak-check: {verb} at session end the {len(spared)} process(es) it spared for "
                f"later tests (reported at their tests' teardown): {pids}"
            )
        if not interrupted:
            self.threads.join(self.timeout)  # their late spawns, if any, before the last look
            alive = self.threads.alive_besides("")
            if alive and reporter is not None:
                names = ", ".join(f"{lt.owner} ({lt.name!r})" for lt in alive[:5])
                reporter.write_line(
                    f"leak-check: {len(alive)} thread(s) that tests left running still run at "
                    f"session end; what they start from now on is not checked: {names}"
                )
        leaks, _ = self.tracker.wait_for_leaks(everything, 0.0)
        if leaks and not interrupted and self.timeout > 0:
            if reporter is not None:  # else pytest seems to stall here
                reporter.write_line(
                    f"leak-check: {len(leaks)} process(es) still running at session end: "
                    f"waiting up to {self.timeout:g} s for them to end (Ctrl-C ends them now)"
                )
                reporter.flush()
            leaks, _ = self.tracker.wait_for_leaks(everything, self.timeout)
        if leaks:
            collected, _ = self.tracker.after_gc(leaks)  # nothing is spared any longer
            if self.tracker.kill:
                _terminate_pools_of([leak.pid for leak in leaks])  # before its workers die
            survivors = self.tracker.settle(leaks)
            self.leaked.extend(leaks)
            text = format_leaks(
                leaks,
                header=f"leak-check: {len(leaks)} process(es) still running at session end:",
                killed=self.tracker.kill and not survivors,
            )
            notes = [gc_note(collected)] if collected else []
            notes += [survivors_note(survivors)] if survivors and self.tracker.kill else []
            if reporter is not None:
                reporter.write_line("\n".join([text, *notes]), red=True)
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("leak-check", "fail tests that leave processes behind")
    group.addoption(
        "--leak-check",
        action="store_true",
        default=False,
        help="fail any test that leaves descendant processes running after its teardown",
    )
    group.addoption(
        "--leak-check-timeout",
        type=NON_NEGATIVE,
        default=None,
        help=f"seconds to keep retrying before a survivor counts as leaked "
        f"(default {DEFAULT_TIMEOUT_S})",
    )
    group.addoption(
        "--leak-check-keep",
        action="store_true",
        default=False,
        help="report leaked processes but do not kill them",
    )
    group.addoption(
        "--leak-check-subreaper",
        action="store_true",
        default=False,
        help="Linux: make pytest a child subreaper, so that a daemon a test starts (a double "
        "fork, setsid, a scrubbed environment, or no exec at all) is reparented to pytest and "
        "found; a test's "
        "orphans then become pytest's children (os.wait() may return them; their zombies stay "
        "until pytest exits)",
    )
    parser.addini(
        "leak_check_timeout", "default for --leak-check-timeout", default=str(DEFAULT_TIMEOUT_S)
    )
    parser.addini(
        "leak_check_interval",
        "seconds between descendant samples while a checked test runs (0 = off)",
        default=str(DEFAULT_INTERVAL_S),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leak_check(enabled=True, timeout=None): fail the test if it leaves processes behind",
    )
    plugin = LeakCheckPlugin(config)
    config.stash[_plugin_key] = plugin
    config.pluginmanager.register(plugin, "leak-check-tracker")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(_plugin_key, None)
    if plugin is not None:
        plugin.tracker.close()


@pytest.fixture
def leak_check(request: pytest.FixtureRequest) -> LeakCheckHandle:
    """Turn the leak check on for this test; the handle lists or excuses its processes."""
    plugin = request.config.stash[_plugin_key]
    begun = request.node.stash.get(_owner_key, None)
    if begun is None:  # enabled=False marker wins over the fixture
        pytest.skip("leak_check fixture requested but the check is disabled by a marker")
    return LeakCheckHandle(plugin.tracker, begun[0])
