"""The census's state of a run: its processes' records, the sessions, and the reads that keep
a record true (see harness/census.py for what the census is)."""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
import threading
from collections import OrderedDict, deque
from pathlib import Path

import psutil

import proctree
from harness.census_procs import rss_of
from harness.census_records import CT_TOLERANCE, ProcRecord, Sample, SessionWindow, run_id_token
from harness.ledger import LedgerTail

PARENT_MEMORY = 4096  # sessions of recently forgotten fake mains, for late grandchildren
# How often at most the run's record on disk is told its live processes (runs.note_processes).
NOTE_INTERVAL_S = 1.0


class CensusState:
    """What the census knows; the sampling and judging are Census's (harness/census.py)."""

    def __init__(
        self,
        run_id: str,
        ledger_path: Path | None,
        grace: float,
        sample_hz: float = 4.0,
        fast_hz: float = 20.0,
        track_descendants: bool = False,
        adopt_orphans: bool = False,
    ) -> None:
        if sample_hz < 2:
            raise ValueError("the census samples at >= 2 Hz")
        self.run_id = run_id
        self.token = run_id_token(run_id)
        self.grace = grace
        self.sample_interval = 1.0 / sample_hz
        self.fast_interval = 1.0 / fast_hz
        self._ledger = LedgerTail(ledger_path, run_id) if ledger_path else None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.records: dict[int, list[ProcRecord]] = {}  # pid -> records (reuse keeps several)
        self._seen: dict[int, tuple[float, bool]] = {}  # pid -> (create_time, ours)
        self._undecided: dict[int, tuple[float, float]] = {}  # see _mid_exec: pid -> (ct, since)
        self._unled: list[tuple[ProcRecord, int]] = []  # (record, its session id): _await_leader
        # pid -> what to add to its ledger lines' times: only for a fake whose boot time was
        # not the run's (bootclock), so empty as a rule.
        self._ledger_shift: dict[int, float] = {}
        self._parent_sessions: OrderedDict[int, tuple[float, str | None]] = OrderedDict()
        self.sessions: dict[str, SessionWindow] = {}
        self._active: set[str] = set()
        self._ended: list[SessionWindow] = []  # in end order
        self._ended_ts: list[float] = []
        self.sessions_done = 0
        self.worker: psutil.Process | None = None
        self.worker_pid: int | None = None
        self.worker_core: psutil.Process | None = None  # see set_worker
        self._desc_other: dict[int, psutil.Process] = {}
        self._n_samples = 0
        self._epoch = 0  # bumped whenever an input of a deadline changes
        self._rotation = max(1, int(sample_hz))
        self._force_tree = False  # next sample walks the whole worker tree
        self.samples: list[Sample] = []
        self._stride = 1
        self._tick = 0
        self.peak_descendants = 0
        self.peak_total_rss = 0
        self.peak_worker_rss = 0
        self.last_descendants = 0
        self.last_total_rss = 0
        self.last_worker_rss = 0
        self.latencies: list[float] = []
        self.leaked: list[ProcRecord] = []
        self.zombies: dict[tuple[int, float], ProcRecord] = {}
        # Zombies whose parent is outside the run (init, after an escape): theirs to reap.
        self.zombies_elsewhere: dict[tuple[int, float], ProcRecord] = {}
        self.escaped: dict[tuple[int, float], ProcRecord] = {}
        self.total_procs = 0
        # Fake `claude` mains that got as far as their ledger's start line: none in a run whose
        # sessions completed means the worker never got one running, so nothing was tested.
        self.claude_starts = 0
        # Of those, the ones told --strict-mcp-config (the user's MCP servers left unloaded, as
        # claude-mem 13.x does), and the stdio MCP servers the fakes started: with --mcp-servers,
        # none started means no MCP server's leak was tested.
        self.strict_mcp_starts = 0
        self.mcp_server_starts = 0
        self.judging = True  # escape/leak judgement stops once the worker is being stopped
        # When it stopped (proctree.now()): what exits after it, the harness's own cleanup or the
        # worker's shutdown ended, not the worker's ending of a finished session.
        self.judging_stopped_at: float | None = None
        self.errors: list[str] = []
        self.scan_cost_s: deque[float] = deque(maxlen=256)
        self.track_descendants = track_descendants
        self._helpers: set[tuple[int, float]] = set()  # the worker's tree when it was set
        self._helper_procs: dict[int, psutil.Process] = {}  # helpers known (tracking only)
        # How the worker's first helpers were started (argv, environment): a replacement is
        # started the same way, a look-alike made by an observer's tree seldom is.
        self._helper_sigs: set[tuple[tuple[str, ...], frozenset[tuple[str, str]] | None]] = set()
        # adopt_orphans (Linux, a harness process of its own, e.g. `soak --claude`): we become a
        # subreaper, so whatever is orphaned in the worker's tree (a worker without a subreaper of
        # its own, a double fork completed between two samples) is reparented to us, not to
        # init: still found, counted and ended. We then reap those orphans ourselves.
        self.adopt_orphans = adopt_orphans
        self._me = os.getpid()
        self._own_children: set[int] = set()
        self.adopting = False
        self._worker_alive = False  # at the last sample
        self._worker_stopped_since: float | None = None  # stopped (SIGSTOP, ptrace) since
        self._noted: frozenset[tuple[int, float]] = frozenset()
        self._noted_at = -NOTE_INTERVAL_S

    # -- lookups -----------------------------------------------------------------------------
    def own_children(self) -> set[int]:
        """Children of ours that are not the run's orphans: those we had before adopting, and
        the worker."""
        own = set(self._own_children)
        if self.worker_pid is not None:
            own.add(self.worker_pid)
        return own

    def _find(self, pid: int, ct: float) -> ProcRecord | None:
        for rec in self.records.get(pid, ()):
            if abs(rec.create_time - ct) <= CT_TOLERANCE:
                return rec
        return None

    def reported(self, pid: int, create_time: float) -> bool:
        """Whether this very process is among the run's leaked, escaped or zombies."""
        with self._lock:
            recs = [*self.leaked, *self.escaped.values(), *self.zombies.values()]
            return any(
                r.pid == pid and abs(r.create_time - create_time) <= CT_TOLERANCE for r in recs
            )

    def _latest(self, pid: int, before: float | None = None) -> ProcRecord | None:
        best = None
        for rec in self.records.get(pid, ()):
            if before is not None and rec.spawn_ts > before + CT_TOLERANCE:
                continue
            if best is None or rec.spawn_ts > best.spawn_ts:
                best = rec
        return best

    def _add(self, rec: ProcRecord) -> ProcRecord:
        self.records.setdefault(rec.pid, []).append(rec)
        self.total_procs += 1
        return rec

    def _inherit(self, parent: ProcRecord) -> None:
        """Grandchildren and escapees belong to their fake main's session."""
        self._epoch += 1
        self._parent_sessions[parent.pid] = (parent.spawn_ts, parent.session)
        while len(self._parent_sessions) > PARENT_MEMORY:
            self._parent_sessions.popitem(last=False)
        for recs in self.records.values():
            for rec in recs:
                if rec.parent_pid == parent.pid and rec.session is None:
                    if rec.spawn_ts + CT_TOLERANCE >= parent.spawn_ts:
                        rec.session = parent.session

    def session_of(self, rec: ProcRecord, depth: int = 0) -> str | None:
        if rec.session is not None:
            return rec.session
        if rec.leader is not None and depth < 64:
            return self.session_of(rec.leader, depth + 1)
        if rec.parent_pid is not None:
            parent = self._latest(rec.parent_pid, before=rec.spawn_ts)
            # Up the whole line of parents (bounded: links read at different moments): a
            # descendant three levels below its observer had no session, so it was judged by
            # time only and its session's figures left it out.
            if parent is not None and parent is not rec and depth < 64:
                key = self.session_of(parent, depth + 1)
                if key is not None:
                    return key
            # The parent may be compacted already: remember recent parents' sessions.
            known = self._parent_sessions.get(rec.parent_pid)
            if known is not None and known[0] <= rec.spawn_ts + CT_TOLERANCE:
                return known[1]
        return None

    def _candidates(self, rec: ProcRecord) -> tuple[str, ...]:
        if rec.candidates is None:
            keys = set(self._active)
            # Sessions that ended after the spawn were running at it (ended deque is in end order).
            i = bisect.bisect_left(self._ended_ts, rec.spawn_ts)
            for j in range(i, len(self._ended)):
                s = self._ended[j]
                if s.start <= rec.spawn_ts:
                    keys.add(s.key)
            rec.candidates = tuple(k for k in keys if self.sessions[k].start <= rec.spawn_ts)
        return rec.candidates

    def deadline(self, rec: ProcRecord) -> float | None:
        """When this process must be gone (its sessions' end plus grace); None = not yet known."""
        # Cached until a session ends or attribution changes (the only inputs that move it).
        if rec.deadline_epoch == self._epoch:
            return rec.deadline_cache
        value = self._compute_deadline(rec)
        rec.deadline_epoch, rec.deadline_cache = self._epoch, value
        return value

    def _compute_deadline(self, rec: ProcRecord) -> float | None:
        key = self.session_of(rec)
        if key is not None:
            s = self.sessions.get(key)
            return None if s is None or s.end is None else s.end + self.grace
        cands = self._candidates(rec)
        if not cands:  # spawned while no session ran: nothing justifies it beyond the grace
            return rec.spawn_ts + self.grace
        ends = [self.sessions[k].end for k in cands]
        if any(e is None for e in ends):
            return None
        return max(e for e in ends if e is not None) + self.grace

    # -- sampling ----------------------------------------------------------------------------
    def _is_ours(self, proc: psutil.Process) -> tuple[bool, list[str]]:
        try:
            cmdline = proctree.cmdline(proc)  # through a live thread if its leader looks dead
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False, []
        # Exact argv element (run ids may share prefixes), in a process we may have started: a
        # run id another user chose too (`--run-id`) names their run, not ours.
        return self.token in cmdline and not proctree.not_ours(proc), cmdline

    def _mark_exited(self, rec: ProcRecord, now: float) -> None:
        if rec.exited_at is None:
            # The ledger's exit time is exact; the observation is at most one tick late. A process
            # never sampled alive was gone by when its worker said it had ended it.
            ends = [rec.exit_ts, rec.reported_end if rec.proc is None else None]
            rec.exited_at = min([now] + [t for t in ends if t])

    def _probe(self, rec: ProcRecord, now: float) -> bool:
        """Refresh one live record from the process table; False once it has exited."""
        proc = rec.proc
        if proc is None:
            return True
        try:
            with proc.oneshot():
                ppid = proc.ppid()  # psutil raises NoSuchProcess if the PID was reused
                # A leak is named with its parent at its judgement: once judging is over, the
                # run's own ending kills its parents, and the orphan's new parent (init, us)
                # would hide which process of the run held it (a deep chain's links).
                if self.judging or rec.leaked_at is None:
                    rec.ppid = ppid
                # A leader that reads as a zombie may run on in another thread (Linux).
                rec.status = proctree.status(proc)
                if rec.status != psutil.STATUS_ZOMBIE:
                    rec.rss = rss_of(proc) or rec.rss
        except psutil.NoSuchProcess:
            self._gone(rec, now)
            return False
        except psutil.AccessDenied:
            return True
        rec.held_at = now
        if rec.status == psutil.STATUS_ZOMBIE:
            self._mark_exited(rec, now)
            # (adopting is Linux's: the platform test is for type checkers)
            mine = ppid == self._me and rec.pid != self.worker_pid
            if sys.platform != "win32" and self.adopting and mine:
                # An orphan adopted by us: ours to reap (its zombie is not the worker's fault).
                with contextlib.suppress(ChildProcessError, OSError):
                    if os.waitpid(rec.pid, os.WNOHANG)[0] == rec.pid:
                        rec.reaped = True
                        self._seen.pop(rec.pid, None)
                        return False
            rec.zombie_since = rec.zombie_since or now
            return False
        return True

    def _gone(self, rec: ProcRecord, now: float) -> None:
        rec.reaped = True
        self._seen.pop(rec.pid, None)  # rediscover whatever holds this PID now
        self._mark_exited(rec, now)

    def _ppid_settled(self, rec: ProcRecord) -> bool:
        """Its parent is known to be alive, so its ppid is as last read: a process is reparented
        only when its parent exits (real parent; ptrace does not change it)."""
        ppid = rec.ppid
        if ppid is None:
            return False
        if ppid == self._me:
            return True
        if ppid == self.worker_pid:
            return self._worker_alive
        parent = self._latest(ppid)
        return (
            parent is not None
            and parent.proc is not None
            and parent.exited_at is None
            and not parent.reaped
            and parent.create_time <= rec.create_time + CT_TOLERANCE
        )

    def _check(self, rec: ProcRecord, now: float) -> bool:
        """`_probe` for a known live record at about half the cost; False once it has exited.

        Two reads instead of three: RSS, then identity (`is_running`: the PID's create time now
        is still the handle's; if it holds after the RSS read, that read was of this process).
        The ppid is read again (full probe) only when the parent may have exited; a zombie has no
        memory map left, so RSS 0 (a zombie, or an exec swapping the address space) also takes
        the full probe, which reads the status.
        """
        proc = rec.proc
        if proc is None:
            return True
        if not self._ppid_settled(rec):
            return self._probe(rec, now)
        try:
            rss = proc.memory_info().rss
        except psutil.ZombieProcess:
            return self._probe(rec, now)
        except psutil.NoSuchProcess:
            rss = 0
        except psutil.AccessDenied:
            return self._probe(rec, now)
        if not proc.is_running():  # gone, or its PID reused by another process
            self._gone(rec, now)
            return False
        rec.held_at = now
        if not rss:
            return self._probe(rec, now)
        rec.rss = rss
        return True
