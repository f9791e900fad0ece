"""A guardian: a small process that ends a daemon's process trees when the daemon dies.

pdeathsig only reaches the daemon's direct children (it is cleared on fork) and macOS has no
pdeathsig at all; so after `kill -9` of the daemon, grandchildren and escapees would live on
until the next start. The guardian holds the read end of a pipe (the lifeline) whose write end
only the daemon holds (close-on-exec, never inherited). When the daemon dies - however - the
kernel closes it, the guardian reads EOF, kills what it was told about plus everything carrying
the daemon's mark/token, and exits. The write end can still be opened again by another process
of the daemon's uid (through /proc/<pid>/fd): so the guardian also watches the daemon itself
("watch": [pid, create_time]), and its death ends the wait as EOF does.

Protocol on the guardian's stdin (text lines): first a JSON object {"mark", "token", "since",
"daemon", "cgroup", "watch"} (never argv: a census scanning argv for the token must not count the
guardian), then `group <pgid> <leader create_time>` lines for each contained child, and
`ungroup <pgid> <leader create_time>` once the daemon has ended that child's tree.

With "daemon" ([pid, create_time], start_guardian(children=True)) the guardian also lists the
daemon's children and their descendants every CHILDREN_POLL_S and ends them and their trees
too. That is for what carries neither the mark nor a watched group, and so, once the daemon is
dead and it belongs to init, could not be told from anyone else's process: an orphan a subreaper
adopted (a double fork with setsid and a scrubbed environment), and a grandchild that left its
parent's session and shed its environment while that parent, killed by its parent-death signal
with the daemon, still held it.

With "cgroup" (the daemon's parent cgroup, Linux, enable_cgroups() before start_guardian()) it
also kills every cell in it at once and removes them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import psutil

from . import _cgroup, _platform
from ._identity import CREATE_TIME_TOLERANCE, ProcId, identify
from ._liveness import is_alive
from ._scan import _Table, carries, protected_pids
from ._spawn import MARK_ENV
from ._terminate import group_member, look_or_born, stop_spreading, wait_gone

# Passes of end_all: each ends what the last one found; later ones catch what forked meanwhile.
END_ROUNDS = 5
# How often the daemon's tree is listed (children=True). An orphan adopted, or a grandchild
# started, less than this before the daemon dies is missed; a look costs a few reads of /proc
# per process of the tree (Linux).
CHILDREN_POLL_S = 0.25
# Adoptees named by pid in the log line of one look (the rest are counted).
ADOPTED_NAMED = 10
# The largest pid any of our platforms gives (Linux's PID_MAX_LIMIT; macOS's is 99,998): a
# `group` order beyond it is not the daemon's (killpg raised OverflowError on one, and the
# guardian ended nothing).
PGID_MAX = 2**22


class Guardian:
    """The daemon's side: start with start_guardian(); watch() each contained child."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self._lock = threading.Lock()
        # Set once a line could not be written because the guardian does not read (stopped by
        # a signal, or stuck): the daemon must never block on it (an event loop would hang on
        # a full pipe), and such a guardian is as good as dead (see problem()).
        self.stuck = False
        if popen.stdin is not None and sys.platform != "win32":
            os.set_blocking(popen.stdin.fileno(), False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _send(self, line: str) -> bool:
        with self._lock:
            stdin = self.popen.stdin
            if stdin is None or stdin.closed or self.stuck:
                return False
            data = line.encode() + b"\n"
            try:
                while data:  # a line is shorter than PIPE_BUF: written whole or not at all
                    data = data[os.write(stdin.fileno(), data) :]
                return True
            except BlockingIOError:
                self.stuck = True
                return False
            except (BrokenPipeError, OSError, ValueError):
                return False

    def watch(self, containment: Any) -> bool:
        """Tell the guardian about a contained child's process group (POSIX)."""
        group = getattr(containment, "group", None)
        proc_id = getattr(containment, "proc_id", None)
        if not isinstance(group, int) or proc_id is None:
            return False
        return self._send(f"group {group} {proc_id.create_time!r}")

    def unwatch(self, containment: Any) -> bool:
        """That child's tree has been ended: forget its group, so the list stays as long as
        the live trees (a daemon that runs for weeks spawns without end)."""
        group = getattr(containment, "group", None)
        proc_id = getattr(containment, "proc_id", None)
        if not isinstance(group, int) or proc_id is None:
            return False
        return self._send(f"ungroup {group} {proc_id.create_time!r}")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def problem(self) -> str | None:
        """Why this guardian cannot do its job now, or None: it died, it stopped reading its
        pipe, or it is stopped (SIGSTOP: a kill -9 of the daemon then would leave everything)."""
        if not self.alive():
            return "died"
        if self.stuck:
            return "stopped reading its pipe"
        try:
            status = psutil.Process(self.popen.pid).status()
        except psutil.Error:
            return None  # gone this instant: the next look says died
        if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
            return f"is {status} (a signal stopped it)"
        return None

    def discard(self) -> None:
        """Kill it (our own child, not yet reaped: its pid is still its own) and reap it."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.popen.kill()  # SIGKILL ends a stopped process too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5.0)

    def close(self, timeout: float = 30.0) -> int | None:
        """Cut the lifeline (the guardian sweeps once and exits) and wait for it."""
        with self._lock:
            if self.popen.stdin is not None and not self.popen.stdin.closed:
                try:
                    self.popen.stdin.close()
                except OSError:
                    pass
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def guardian_args(daemon_pid: int) -> list[str]:
    """The guardian's argv after the interpreter's path: exactly this, so that a census can tell
    it from the daemon's other children (an adopted orphan may name the guardian in its argv)."""
    return ["-m", "proctree.guardian", str(daemon_pid)]


def start_guardian(mark: str, *, token: str | None = None, children: bool = False) -> Guardian:
    """Start a guardian for this process's trees. Keep the returned object for our lifetime.

    Only processes created after us are ever considered (nothing older can be ours).
    `children`: also end our own children and their trees when we die; meant for a subreaper,
    whose adopted orphans are its children (see the module's docstring). Every child of ours
    then counts as ours to end, so a daemon with a child meant to outlive it must not ask.
    """
    env = {k: v for k, v in os.environ.items() if k != MARK_ENV}
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        # Its own session: a killpg of our group must not take the guardian with it.
        kwargs["start_new_session"] = True
    popen = subprocess.Popen(
        [sys.executable, *guardian_args(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        close_fds=True,
        **kwargs,
    )
    guardian = Guardian(popen)
    me = identify(os.getpid())
    since = me.create_time if me is not None else None
    daemon = [me.pid, me.create_time] if children and me is not None else None
    jail = _cgroup.jail()  # enable_cgroups() before start_guardian(): its cells die with us
    cgroup = str(jail.parent) if jail is not None else None
    # "watch": the daemon's identity, whose death ends the guardian's wait as EOF does.
    watch = [me.pid, me.create_time] if me is not None else None
    header = {"mark": mark, "token": token, "since": since, "daemon": daemon, "cgroup": cgroup,
              "watch": watch}  # fmt: skip
    guardian._send(json.dumps(header))
    return guardian


def _targets(
    groups: dict[int, float],
    mark: str | None,
    token: str | None,
    since: float | None,
    roots: Collection[ProcId] = (),
) -> set[ProcId]:
    """One pass over the process table: members of our groups, what carries our mark, and the
    trees of `roots` (the daemon's children as last listed) where the same process still is."""
    skip = protected_pids()
    table = _Table()
    leaders_ours = {g for g, ct in groups.items() if is_alive(ProcId(g, ct))}
    floor = None if since is None else since - CREATE_TIME_TOLERANCE
    found: set[ProcId] = set()
    for root in roots:
        if root.pid in table.ctime and root.matches(table.ctime[root.pid]):
            for pid in [root.pid, *table.subtree(root.pid)]:
                if pid not in skip and (floor is None or table.ctime[pid] >= floor):
                    found.add(ProcId(pid, table.ctime[pid]))
    for pid, proc in table.procs.items():
        if pid in skip or pid == 0 or (floor is not None and table.ctime[pid] < floor):
            continue
        pgid = _platform.group_of(pid)
        if pgid in groups and table.ctime[pid] >= groups[pgid] - CREATE_TIME_TOLERANCE:
            # With the leader gone the pgid could in theory be someone else's: then only
            # members that carry our mark/token are taken.
            ours = pgid in leaders_ours or carries(proc, mark=mark, token=token)
        else:
            ours = bool(mark or token) and carries(proc, mark=mark, token=token)
        if ours:
            found.add(ProcId(pid, table.ctime[pid]))
    return found


def end_all(
    groups: dict[int, float],
    mark: str | None,
    token: str | None,
    since: float | None,
    roots: Collection[ProcId] = (),
) -> list[ProcId]:
    """SIGKILL at once (the daemon is gone; nobody is waiting for a graceful end), over again
    to catch what forked meanwhile. A process that forks and exits again and again has a new
    pid by the time its old one is signalled: a group of ours is killed whole (killpg), and
    the rest is stopped (it forks no more) before it is killed."""

    def find() -> set[ProcId]:  # with one look at what was born during the scan
        return look_or_born(
            lambda: {t for t in _targets(groups, mark, token, since, roots) if is_alive(t)},
            since or 0.0,
            lambda p: carries(p, mark=mark, token=token),
            looks=1 if (mark or token) else 0,
        )

    ended: set[ProcId] = set()
    quiet = 0
    for _ in range(END_ROUNDS):
        _kill_our_groups(groups, mark, token)
        targets = find()
        if not targets:
            # A scan can miss a lineage between two pids: done only after two quiet rounds.
            quiet += 1
            if quiet >= 2:
                break
            continue
        quiet = 0
        targets = stop_spreading(targets, find)
        for t in targets:
            if _platform.send_kill(t):
                ended.add(t)
        wait_gone(targets, 5.0)
    return sorted(ended)


def _kill_our_groups(groups: dict[int, float], mark: str | None, token: str | None) -> None:
    """killpg each watched group that still holds a process of ours: its leader (same
    create_time), or any live member carrying our mark/token. Group membership outlasts every
    single pid of a lineage that forks and exits in it; one member found is enough."""
    for pgid, leader_ct in groups.items():
        try:
            if is_alive(ProcId(pgid, leader_ct)) or (
                (mark or token)
                and group_member(pgid, leader_ct, lambda p: carries(p, mark=mark, token=token))
            ):
                _platform.kill_group(pgid)
        except (OSError, ValueError, OverflowError) as exc:  # one bad entry stops no other
            _say(f"could not end group {pgid}: {exc}")


class _DaemonChildren:
    """The daemon's children and their descendants as last listed, kept by a thread while the
    daemon lives.

    Every child counts: an observer as much as an adopted orphan. One that is not the leader
    of a watched group at its second sighting (by then its `group` line has had a poll's time
    to come) is an adoptee, and said so on stderr, which is the daemon's log. The descendants
    are kept by identity: when the daemon dies its children die too (parent-death signal), and
    what they held goes to init. So an entry is dropped only once it is dead, not when a look
    misses it: a look in the instant of the daemon's death (after its children's death and
    before its own: a multi-threaded daemon reads alive until its last thread has exited, 1-60
    ms) found nothing under it, and the grandchildren were lost (a CI failure of the kill -9
    test, 1 run in about 80 under load).
    """

    def __init__(self, daemon: ProcId, since: float | None, groups: dict[int, float]) -> None:
        self.daemon = daemon
        self.floor = (since or 0.0) - CREATE_TIME_TOLERANCE
        self.groups = groups
        self.lock = threading.Lock()  # groups and known: the reading thread changes groups
        self.known: dict[int, ProcId] = {}
        self.below: dict[int, ProcId] = {}  # the children's descendants at the last look
        self.seen_once: set[int] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="daemon-children", daemon=True)

    def _loop(self) -> None:
        while not self.stopped.wait(CHILDREN_POLL_S):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - a look that fails must not end the watch
                print(f"proctree guardian: listing the daemon's children: {exc!r}", file=sys.stderr)

    def poll(self) -> None:
        kids = set(_platform.child_pids(self.daemon.pid)) - {os.getpid()}
        if not is_alive(self.daemon):
            return  # the list may be another process's: keep the last one of the daemon
        adopted = []
        with self.lock:
            # Not listed: it died, or the daemon is dying this very moment (a thread of it still
            # exits, so it reads alive, while its children are already init's). Forget only the
            # dead: a look in that instant must not erase what the last whole look found.
            for pid in [p for p in self.known if p not in kids]:
                if not is_alive(self.known[pid]):
                    del self.known[pid]
            for pid in kids:
                if pid not in self.known:
                    ident = identify(pid)
                    if ident is not None and ident.create_time >= self.floor:
                        self.known[pid] = ident
                        self.seen_once.add(pid)
                elif pid in self.seen_once:
                    self.seen_once.discard(pid)
                    if self.groups.get(pid) is None:
                        adopted.append(pid)
            self.seen_once &= self.known.keys()
            roots = list(self.known)
        if adopted:
            # One line per look: a tree that orphans hundreds at once must not flood the log.
            rest = len(adopted) - ADOPTED_NAMED
            named = ", ".join(map(str, sorted(adopted)[:ADOPTED_NAMED]))
            print(
                f"proctree guardian: the daemon adopted pid {named}"
                f"{f' and {rest} more' if rest > 0 else ''}; ended with the daemon's trees if "
                "the daemon dies",
                file=sys.stderr,
                flush=True,
            )
        below = self._below(roots)
        with self.lock:
            # Likewise below: during the daemon's death its children die by their parent-death
            # signal and nothing is found under them. A descendant still running is kept.
            for pid, ident in self.below.items():
                if pid not in below and is_alive(ident):
                    below[pid] = ident
            self.below = below

    def _below(self, roots: list[int]) -> dict[int, ProcId]:
        """The descendants of roots, by identity (pid, create_time) as they are now."""
        found: dict[int, ProcId] = {}
        todo = [kid for pid in roots for kid in _platform.child_pids(pid)]
        while todo:
            pid = todo.pop()
            if pid in found or pid == os.getpid():
                continue
            ident = identify(pid)
            if ident is None or ident.create_time < self.floor:
                continue
            found[pid] = ident
            todo.extend(_platform.child_pids(pid))
        return found

    def stop(self) -> list[ProcId]:
        self.stopped.set()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=5.0)
        with self.lock:
            return [*self.known.values(), *self.below.values()]


def run(stream: Any) -> int:
    """The guardian's side: read the lifeline until EOF, then end everything of ours."""
    header = stream.readline()
    if not header:
        return 0
    conf = json.loads(header)
    mark, token, since = conf.get("mark"), conf.get("token"), conf.get("since")
    groups: dict[int, float] = {}
    daemon = conf.get("daemon")
    children = None
    if daemon is not None:
        children = _DaemonChildren(ProcId(int(daemon[0]), float(daemon[1])), since, groups)
        children.poll()
        children.thread.start()
    lock = children.lock if children is not None else threading.Lock()

    watched = daemon or conf.get("watch")
    watched_id = None if watched is None else ProcId(int(watched[0]), float(watched[1]))

    own_group: int | None = None  # Windows: no process groups here
    if sys.platform != "win32":
        own_group = os.getpgrp()

    take = _Orders(groups, lock, own_group, watched_id).take

    def read_orders() -> bool:
        """Take orders until EOF (True); False if the pipe can no longer be read, which is no
        EOF: the daemon may live on, and only its death may end its trees."""
        while True:
            try:
                line = stream.readline()
            except (OSError, ValueError) as exc:
                _say(f"the lifeline cannot be read ({exc}); the daemon's life alone decides now")
                return False
            if not line:
                return True
            try:
                take(line)
            except Exception as exc:  # one odd line ends neither the read nor the daemon's trees
                _say(f"ignored a line it could not take ({type(exc).__name__}: {exc})")

    held_open = False
    if watched is None:
        read_orders()
    else:
        assert watched_id is not None
        held_open = _until_eof_or_death(read_orders, watched_id)
    roots = children.stop() if children is not None else []
    cgroup = conf.get("cgroup")
    if cgroup is not None:
        _cgroup.kill(Path(cgroup))  # every cell at once (recursive)
    with lock:  # a copy: the reader may still take lines (the pipe's other holder writes)
        groups = dict(groups)
    end_all(groups, mark, token, since, roots)
    if cgroup is not None:
        _cgroup.remove_tree(Path(cgroup), timeout=5.0)
    if held_open:
        # The reading thread is still blocked in a read of stdin, holding its buffer's lock:
        # the interpreter's shutdown would abort on it ("could not acquire lock").
        sys.stderr.flush()
        os._exit(0)
    return 0


class _Orders:
    """The daemon's orders as the guardian takes them into `groups` (pgid -> leader's
    create_time). Every order is checked first: the pipe's write end can be opened again by
    another process of the daemon's uid (see _until_eof_or_death), and a line of its own taken on
    its word had someone else's group killed (`group`), or a live tree forgotten (`ungroup`)."""

    def __init__(
        self,
        groups: dict[int, float],
        lock: threading.Lock,
        own_group: int | None,
        daemon: ProcId | None,
    ) -> None:
        self.groups = groups
        self.lock = lock
        self.own_group = own_group
        self.daemon = daemon

    def take(self, line: str) -> None:
        parts = line.split()
        if len(parts) != 3:
            return
        try:
            order, pgid, leader_ct = parts[0], int(parts[1]), float(parts[2])
        except ValueError:
            return  # not the daemon's (it writes only well-formed lines)
        if not (1 < pgid <= PGID_MAX and math.isfinite(leader_ct)):
            return  # no process group could have it (killpg would raise on some)
        if order == "group" and pgid == self.own_group:
            # The guardian is the daemon's child and leads its own group, so the leader check
            # below passes: taken, its killpg at the end killed the guardian first, and the
            # groups after it in the list lived on.
            _say(f"ignored `group {pgid}`: the guardian's own group (not the daemon's)")
            return
        if order == "group" and not _daemons_child(ProcId(pgid, leader_ct), self.daemon):
            _say(
                f"ignored `group {pgid}`: its leader is not the daemon's child (another process "
                "wrote into this pipe)"
            )
            return
        if order == "ungroup" and is_alive(ProcId(pgid, leader_ct)):
            # The daemon unwatches a tree only once it has ended it (Guardian.unwatch): its
            # leader is gone, or a zombie not reaped yet. Taken, a forged line had the guardian
            # forget a live tree, which then outlived the daemon's kill -9.
            _say(
                f"ignored `ungroup {pgid}`: its leader still runs (the daemon unwatches only a "
                "tree it has ended; another process wrote into this pipe)"
            )
            return
        with self.lock:
            if order == "group":
                self.groups[pgid] = leader_ct
            elif order == "ungroup" and self.groups.get(pgid) == leader_ct:
                del self.groups[pgid]


def _daemons_child(leader: ProcId, daemon: ProcId | None) -> bool:
    """Whether a `group` order may be taken: its leader is the daemon's child (the daemon
    sends the line right after the spawn, before it could reap it), or it is gone (such a group
    is ended only through what carries the mark). The pipe's write end can be opened again by
    another process (see _until_eof_or_death): taken on its word, a line naming someone else's
    group had that whole group killed when the daemon died."""
    if daemon is None:
        return True
    proc = leader.process()
    if proc is None:
        return True
    try:
        return proc.ppid() == daemon.pid
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _until_eof_or_death(read_orders: Callable[[], bool], daemon: ProcId) -> bool:
    """Run read_orders (to the pipe's EOF) in a thread; return once it has read EOF or the
    daemon has died: True if the daemon died with the reading thread still blocked (the pipe
    held open).

    EOF alone is not enough: another process of the daemon's uid can open the daemon's write
    end again through /proc/<pid>/fd (or take it with pidfd_getfd) and hold it, and then EOF
    never comes when the daemon dies (an observer's grandchild that did so lived on after
    kill -9 of the worker, and so did the guardian). Nor does the reader's end without EOF (the
    pipe could not be read) end anything while the daemon lives."""
    done = threading.Event()
    eof: list[bool] = []

    def reader() -> None:
        try:
            eof.append(read_orders())
        finally:
            done.set()

    def at_eof() -> bool:
        return done.is_set() and bool(eof) and eof[0]

    threading.Thread(target=reader, name="orders", daemon=True).start()
    while True:
        if done.is_set():
            time.sleep(CHILDREN_POLL_S)  # the read broke off: a poll of the daemon's life alone
        else:
            done.wait(CHILDREN_POLL_S)
        if at_eof():
            return False
        if is_alive(daemon):
            continue
        if not done.is_set() and done.wait(0.5) and at_eof():
            return False  # its EOF, read a moment late
        if done.is_set():
            return False  # nothing is blocked reading any more
        _say(
            f"the daemon (pid {daemon.pid}) died, but its end of this pipe is still held open "
            "by another process; ending its trees all the same"
        )
        return True


def _say(text: str) -> None:
    """A line in the daemon's log (the guardian's stderr is the daemon's)."""
    print(f"proctree guardian: {text}", file=sys.stderr, flush=True)


USAGE = """usage: python -m proctree.guardian [DAEMON_PID]  (started by a daemon, not by hand)

It reads its orders on stdin from the daemon that started it (proctree.start_guardian): a
JSON header {"mark", "token", "since", "daemon", "cgroup", "watch"}, then `group PGID
CREATE_TIME` lines (taken only while that leader is the daemon's child, and never for the
guardian's own group) and `ungroup PGID CREATE_TIME` lines (a tree the daemon has ended: taken
only once that leader no longer runs). When stdin closes or the daemon it watches dies, it ends
those groups, the daemon's cells and every process carrying the mark or token.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Its one argument is the daemon's pid, shown in process lists (start_guardian).
    daemon_pid = len(args) == 1 and args[0].isdigit()
    if (args and not daemon_pid) or sys.stdin is None or sys.stdin.isatty():
        # A person at a terminal, not a daemon's pipe: say what this is instead of waiting.
        print(USAGE, file=sys.stderr, end="")
        return 0 if args in (["-h"], ["--help"]) else 2
    # Bytes that are no UTF-8 (another writer's) are replaced, not a UnicodeDecodeError that
    # ends the read.
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]
    return run(sys.stdin)
