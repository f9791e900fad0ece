"""Owners of processes (a test, a higher-scoped fixture) and which one a process belongs to:
its parent's, the one its environment's token names if that fits the timeline of who was
current, or its session leader's (see harness/pytest_plugin.py's docstring).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from harness.leak_procs import CT_TOLERANCE_S, Identity, Proc, descendants, names_a_helper, now

TOKEN_VAR = "LEAKPROOF_LEAK_CHECK"
# Owner of an xdist worker and its lineage, in the controller: the worker judges them itself.
ELSEWHERE = -2
# Error of a create_time against the owners' timeline (_token_fits): both are on one clock
# (proctree.now()), so only float rounding of epoch seconds and microsecond starts elsewhere.
TIMELINE_SLACK_S = 0.001


@dataclass
class Owner:
    """A test or a higher-scoped fixture whose processes must be gone once it has ended."""

    number: int
    label: str
    started: float  # leak_procs.now() at its start; its processes are created after this
    ended: bool = False
    ended_at: float = math.inf  # leak_procs.now() when it ended
    pids_at_start: frozenset[int] = frozenset()  # any process it starts has a pid not in here


class Attribution:
    """Which owner a process belongs to. It shares the tracker's owners and known processes
    (the same dicts) and is called with the tracker's lock held."""

    def __init__(
        self, owners: dict[int, Owner], known: dict[Identity, int], *, tag: str, root: int
    ) -> None:
        self.owners = owners
        self.known = known  # identity -> owner number
        self.tag = tag
        self.root = root
        self.adopting = False  # pytest is a subreaper: its children may be adopted orphans
        # An environment variable and its value that mark a process as ELSEWHERE's: an xdist
        # worker's child inherits its run's id, and is still its once a subreaper adopts it.
        self.elsewhere: tuple[str, str] | None = None
        # (leak_procs.now(), owner current from then on): who ran when a process was created,
        # on create_time's clock.
        self.timeline: list[tuple[float, int]] = [(0.0, 0)]
        self._helpers: dict[Identity, bool] = {}  # pytest's children: a lifetime helper?
        self._listed_at = -math.inf  # when the last listing of descendants (look) began

    def _owner_from_env(self, pid: int) -> int | None:
        import psutil

        import proctree

        try:  # proctree's: it reads a process whose main thread has exited too
            environ = proctree.environ(psutil.Process(pid))
        except (psutil.Error, OSError):
            return None
        if self.elsewhere is not None and environ.get(self.elsewhere[0]) == self.elsewhere[1]:
            return ELSEWHERE
        tag, _, number = environ.get(TOKEN_VAR, "").partition(".")
        ours = tag == self.tag and number.isascii() and number.isdigit()  # isdigit() takes "²"
        if not ours or int(number) not in self.owners:
            return None  # another pytest process's token (xdist sibling, nested pytester run)
        return int(number)

    def _token_fits(
        self, number: int, create_time: float, *, late: bool, not_before: float = -math.inf
    ) -> bool:
        """Whether a process created at create_time rightly carries owner `number`'s token: that
        owner was current then, or (if `late`) had ended by then, and the process is a late
        fork of its lineage (a daemon, a process that keeps forking). Else the token came in an
        environment copied while that owner was current (a session fixture's
        ``{**os.environ, ...}``) and handed to a process that another owner started."""
        # create_time is cut to a clock tick (0.01 s): the process began within this span.
        early, late_end = create_time - TIMELINE_SLACK_S, create_time + 0.01 + TIMELINE_SLACK_S
        early = min(max(early, not_before), late_end)
        index = bisect.bisect_right(self.timeline, (early, math.inf)) - 1
        for at, current in self.timeline[max(index, 0) :]:
            if at > late_end:
                break
            if current == number:
                return True
        return late and self.owners[number].ended_at <= late_end

    def _owner_at(self, create_time: float) -> int:
        """The owner current when a process was created."""
        index = bisect.bisect_right(self.timeline, (create_time, math.inf)) - 1
        return self.timeline[max(index, 0)][1]

    def look(self, *, fallback: int) -> dict[int, Proc]:
        """List the descendants and give every one not seen yet an owner; returns the listing.

        A process first seen now did not exist when the previous listing began (it descends
        from us since its birth, so that listing would have had it): its start lies after
        that, which a create_time alone (to a clock tick, 10 ms) cannot always tell when one
        test follows another within a tick."""
        began = now()
        tree = descendants(self.root)
        self.absorb(tree, fallback=fallback, not_before=self._listed_at)
        self._listed_at = began
        return tree

    def absorb(self, tree: dict[int, Proc], *, fallback: int, not_before: float) -> None:
        """Give every descendant we have not seen yet an owner (parents before children);
        not_before: a time before which none of them had started."""
        known = self.known
        for proc in sorted(tree.values(), key=lambda item: item.create_time):
            # Its unknown ancestors first: create times tie within a clock tick.
            chain: list[Proc] = []
            link: Proc | None = proc
            while link is not None and link.identity not in known and link not in chain:
                chain.append(link)
                link = tree.get(link.ppid)
            for new in reversed(chain):
                known[new.identity] = self._owner_in_tree(new, tree, fallback, not_before)

    def _owner_in_tree(
        self, proc: Proc, tree: dict[int, Proc], fallback: int, not_before: float
    ) -> int:
        known = self.known
        parent = tree.get(proc.ppid)
        # A forkserver forks on behalf of whoever runs now: its children are as pytest's own
        # (their environment is the forkserver's, with the token of when it started).
        by_helper = parent is not None and self._is_helper(parent)
        if parent is not None and parent.identity in known and not by_helper:
            # Its parent's: the environment may be a copy made while another owner was current,
            # the parent chain is not.
            return known[parent.identity]
        token = self._owner_from_env(proc.pid)
        if token == ELSEWHERE:
            return token
        if token is not None and token != fallback:
            # A child of pytest's own was started by the owner current now (a scan runs at
            # every change of owner), unless pytest, a subreaper, adopted an orphan.
            late = self.adopting if proc.ppid == self.root else not by_helper
            fits = self._token_fits(token, proc.create_time, late=late, not_before=not_before)
            token = token if fits else None
        if token is None:
            token = self._owner_by_leader(proc)
        return fallback if token is None else token

    def _is_helper(self, proc: Proc) -> bool:
        """Whether this is a helper that lives as long as pytest (LIFETIME_HELPERS)."""
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
            self._helpers[proc.identity] = names_a_helper(cmdline)
        return self._helpers[proc.identity]

    def _owner_by_leader(self, proc: Proc) -> int | None:
        """The owner of a known, older process that leads this one's session or group. The
        middle of a double fork calls setsid and exits: its orphan (reparented to pytest, a
        subreaper) has no known parent and no token left, but the middle led its session."""
        import proctree

        leaders = {proctree.session_of(proc.pid), proctree.group_of(proc.pid)} - {proc.pid, None}
        for (pid, create_time), number in self.known.items():
            if pid in leaders and create_time <= proc.create_time + CT_TOLERANCE_S:
                return number
        return None

    def owner_by_token(self, pid: int, create_time: float) -> int | None:
        """The owner of a process that is no descendant of ours, by the token it carries."""
        owner = self._owner_from_env(pid)
        fits = (
            owner is None or owner == ELSEWHERE or self._token_fits(owner, create_time, late=True)
        )
        if not fits:
            owner = self._owner_of_parent(pid)
            if owner is None:  # a copied environment: the owner who started it
                owner = self._owner_at(create_time)
        return owner

    def _owner_of_parent(self, pid: int) -> int | None:
        """The owner of this process's parent, if that is a process we know."""
        import psutil

        import proctree

        try:
            parent = psutil.Process(pid).parent()
            if parent is None:
                return None
            return self.known.get((parent.pid, proctree.create_time(parent)))
        except psutil.Error:
            return None
