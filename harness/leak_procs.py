"""Processes as the leak check sees them: identities, descendants, helpers that live as long
as pytest, waits that never reap, and the live objects in this process that own children.

psutil is imported lazily, as in harness/pytest_plugin.py (loaded by every pytest run).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

CT_TOLERANCE_S = 0.01  # create_time comparison tolerance (docs/contracts.md)
# Helpers that live as long as the pytest process itself, by design: not a test's leak.
LIFETIME_HELPERS = (
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
    "loky.backend.resource_tracker",  # joblib's vendored copy too (joblib.externals.loky...)
)

Identity = tuple[int, float]


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    create_time: float

    @property
    def identity(self) -> Identity:
        return (self.pid, self.create_time)


def descendants(root: int) -> dict[int, Proc]:
    """The live descendants of root: pid -> (ppid, create_time).

    Not psutil.process_iter(): it shares cached Process objects whose ``info`` it overwrites, so a
    scan from the sampler thread would corrupt a test's own concurrent process_iter() loop.
    psutil's children() already skips a "child" whose pid was reused before its parent's.
    """
    import psutil

    import proctree

    tree: dict[int, Proc] = {}
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return tree
    for child in children:
        try:
            tree[child.pid] = Proc(child.pid, child.ppid(), proctree.create_time(child))
        except psutil.Error:
            continue  # gone meanwhile
    return tree


def shown_cmdline(proc: psutil.Process) -> str:
    """A process's command line as the reports show it (proctree.shown_argv: `[comm]` for a
    blank argv[0]; a blank argv showed an empty COMMAND cell). AccessDenied gives `[comm]`;
    "?" if nothing can be read."""
    import psutil

    import proctree

    try:
        argv = proctree.cmdline(proc)
    except psutil.AccessDenied:
        argv = []
    shown = " ".join(proctree.shown_argv(proc, argv)).strip() or "?"
    # A fork that did not exec (multiprocessing's fork start method, os.fork) reads as pytest
    # itself, under xdist as `python -u -c import sys;exec(eval(...))`: say what it is.
    return f"{FORK_NOTE} {shown}" if argv and argv == _pytest_argv() else shown


FORK_NOTE = "(a fork of pytest, no exec)"


@functools.cache
def _pytest_argv() -> list[str]:
    """This process's argv (pytest's, or an xdist worker's), read once."""
    import psutil

    try:
        return psutil.Process().cmdline()
    except psutil.Error:
        return []


def names_a_helper(cmdline: str) -> bool:
    """Whether a command line is one of LIFETIME_HELPERS' (or a forkserver's child's)."""
    return any(name in cmdline for name in LIFETIME_HELPERS)


def under(proc: psutil.Process, pids: Collection[int]) -> bool:
    """Whether proc is one of pids or descends from one of them."""
    import psutil

    if not pids:
        return False
    try:
        return proc.pid in pids or any(parent.pid in pids for parent in proc.parents())
    except psutil.Error:
        return False


def is_alive(pid: int, create_time: float) -> bool:
    import psutil

    import proctree

    try:
        return same_time(proctree.create_time(psutil.Process(pid)), create_time)
    except psutil.Error:
        return False


def all_pids() -> set[int]:
    import psutil

    return set(psutil.pids())


def same_time(a: float, b: float) -> bool:
    return abs(a - b) <= CT_TOLERANCE_S


def now() -> float:
    """The time on create_time's clock (proctree.now): the owners' timeline is kept in it, so
    that a process's create_time says who ran when it was created, also after a clock step."""
    import proctree

    return proctree.now()


def wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
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


def terminate_pools_of(pids: Collection[int]) -> int:
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


def held_by_live_objects(pids: Collection[int]) -> dict[int, str]:
    """pid -> class of a live object in this process that owns that child (after gc.collect(),
    so unreachable ones are gone). Killing such a child breaks whoever reuses it: a cache, a
    session-wide object that a function-scoped fixture filled lazily (execnet's suite: a gateway
    started by the first test that needs it; loky's: a reusable executor's workers)."""
    return {
        pid: f"{type(obj).__module__}.{type(obj).__qualname__}"
        for pid, obj in live_holders(pids).items()
    }


def live_holders(pids: Collection[int]) -> dict[int, object]:
    """pid -> a live object in this process that owns that child, if any.

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
    held: dict[int, object] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        if not (kind.__name__.endswith("Popen") or (pty is not None and isinstance(obj, pty))):
            continue
        try:
            pid = object.__getattribute__(obj, "__dict__").get("pid")
        except (AttributeError, TypeError):
            continue
        if type(pid) is int and pid in wanted and id(obj) not in dropped:
            held[pid] = obj
    return held


# Packages whose objects reachable() does not look into: pytest's config, session, nodes and
# fixture requests (and pluggy's plugin manager, and this plugin) lead to every test's objects.
PYTEST_PACKAGES = ("_pytest", "pluggy", "harness.pytest_plugin", "harness.leak_tracker")


def reachable(root: object, wanted: Collection[int], limit: int = 200_000) -> set[int]:
    """The ids in `wanted` of objects that `root` refers to, directly or not (at most `limit`
    objects looked at). Modules, classes and a function's globals are not followed: from them
    every object of the program is reachable, and so everything would be the root's; nor are
    pytest's own objects (PYTEST_PACKAGES): a fixture that holds the config does not hold what
    the tests keep in it."""
    import gc
    import types

    found: set[int] = set()
    seen = {id(root)}
    queue = [root]
    for obj in queue:  # grows as it goes: breadth first
        if id(obj) in wanted:
            found.add(id(obj))
            if len(found) == len(wanted):
                break
            continue
        package = type(obj).__module__ or ""
        if isinstance(obj, (types.ModuleType, type)) or package.startswith(PYTEST_PACKAGES):
            continue
        if isinstance(obj, types.FunctionType):
            refs: list[object] = [obj.__closure__, obj.__defaults__, obj.__kwdefaults__]
        else:
            refs = gc.get_referents(obj)
        for ref in refs:
            if ref is not None and id(ref) not in seen and len(seen) < limit:
                seen.add(id(ref))
                queue.append(ref)
    return found
