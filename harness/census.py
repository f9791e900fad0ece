"""The census: every process of one run, known exactly, sampled in a background thread.

A process belongs to the run iff the fake's ledger says so, its argv carries the run id token
(`--fake-claude-run-id=<RUNID>`), the target names it as spawned for a session (the worker's
registry; checked by identity at the next sample, so one that lived and died between two samples is
still counted, and one found alive must descend from the worker: see _vouch), or (with
`track_descendants`, for a worker all of whose later children are the run's, like ours) it was seen
at a sample as a new descendant of the worker: a child of the worker that is not one of its
helpers, or a child of a process of the run. Such a process is tracked by identity from then on,
also after it is reparented away, and belongs to the session of the process it descended from (the
worker's registry names the observers). So a `claude` that is not the fake (no token, no ledger, a
cleared environment) is still counted. Nothing else is ever counted or touched, even if it is named
`claude`. Identity is (pid, create_time), so a reused PID is a different process.

Each process is classified at every sample:
- expected: alive and one of the sessions it may belong to is still running (or within grace);
- leaked: alive past its session's end plus grace (sticky: once leaked, always reported);
- zombie: exited but not reaped by its parent;
- escaped: alive while not a descendant of the worker (reparented away from it).

Which session a process belongs to comes from the target (e.g. the worker's registry) when it can
say; otherwise from time: the sessions that were running when it was spawned. Either way a process
is judged only once every session it may belong to has ended, so attribution never invents leaks.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import proctree
from harness import runs
from harness.ledger import LedgerTail
from harness.target import SpawnedProcess
from harness.text import printable

CT_TOLERANCE = 0.01  # docs/contracts.md: the fake may compute create_time without psutil
RUN_ID_FLAG = "--fake-claude-run-id="
PARENT_MEMORY = 4096  # sessions of recently forgotten fake mains, for late grandchildren
FULL_TREE_EVERY = 8  # full process-table walk for the worker's own helpers: every 2 s at 4 Hz
MAX_SAMPLES = 4000  # samples are decimated beyond this, so a long soak keeps a flat footprint
# How often at most the run's record on disk is told its live processes (runs.note_processes).
NOTE_INTERVAL_S = 1.0
MID_EXEC_WAIT_S = 1.0  # how long a new process's blank argv is taken for an exec under way
STOPPED_STATES = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


def run_id_token(run_id: str) -> str:
    return RUN_ID_FLAG + run_id


@dataclass
class ProcRecord:
    pid: int
    create_time: float
    spawn_ts: float  # ledger start ts (exact) or first time seen
    cmdline: list[str] = field(default_factory=list)
    role: str | None = None
    scenario: str | None = None
    parent_pid: int | None = None  # the fake main that spawned it (ledger)
    ppid: int | None = None
    session: str | None = None  # attributed by the target
    held_at: float = 0.0  # when a look last found this very process at its pid
    leader: ProcRecord | None = None  # the run's process that leads its POSIX session
    proc: psutil.Process | None = None
    rss: int = 0
    status: str = ""
    exit_ts: float | None = None  # from the ledger's exit event
    exit_code: int | None = None
    exited_at: float | None = None  # exited (gone or zombie) as observed, or ledger exit
    reported_end: float | None = None  # the worker's registry: when it had ended this process
    zombie_since: float | None = None
    reaped: bool = False  # gone from the process table
    escaped: bool = False
    leaked_at: float | None = None
    leak_reason: str = ""
    signals: int = 0
    candidates: tuple[str, ...] | None = None  # sessions running at spawn (time attribution)
    # Known from the target's word alone (attribute) and not yet seen alive: the run's only
    # once a sample finds it descending from the worker (see _vouched).
    claimed: bool = False
    deadline_epoch: int = -1
    deadline_cache: float | None = None

    @property
    def identity(self) -> tuple[int, float]:
        return (self.pid, self.create_time)

    @property
    def alive(self) -> bool:
        return self.exited_at is None

    def command(self) -> str:
        return printable(" ".join(self.cmdline)) if self.cmdline else "?"


@dataclass
class SessionWindow:
    key: str
    start: float
    end: float | None = None
    ok: bool = True
    attributed: bool = False  # the target had its say (or cannot say)
    n_procs: int = 0
    last_exit: float | None = None
    leaked: bool = False


@dataclass
class Sample:
    t: float
    sessions_done: int
    total_rss: int  # worker + every descendant
    worker_rss: int
    descendants: int
    live_run: int  # live processes of the run (descendants or not)
    leaked: int


class Census:
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

    # -- inputs from the soak --------------------------------------------------------------------
    def set_worker(
        self, pid: int, create_time: float, core: tuple[int, float] | None = None
    ) -> None:
        """The worker's root process; `core`, the worker itself inside a wrapper (see
        WorkerHandle.core): the RSS and stopped state that are the worker's own are read there."""
        with self._lock:
            proc = _verified(pid, create_time)
            self.worker, self.worker_pid = proc, pid
            self.worker_core = proc if core is None else _verified(*core)
            self._force_tree = True  # the idle baseline needs the worker's helpers counted
            # What the worker runs before any session (its guardian) is its own, not the run's.
            self._helpers = set()
            self._helper_procs = {}
            self._helper_sigs = set()
            try:
                for child in proc.children(recursive=True):
                    self._helpers.add((child.pid, proctree.create_time(child)))
                    self._helper_procs[child.pid] = child
                    self._helper_sigs.add(_signature(child, _after_exec(child)))
            except psutil.Error:
                pass

    def session_started(self, key: str, ts: float | None = None) -> None:
        with self._lock:
            self.sessions[key] = SessionWindow(key, proctree.now() if ts is None else ts)
            self._active.add(key)

    def session_ended(self, key: str, ok: bool = True, ts: float | None = None) -> None:
        with self._lock:
            s = self.sessions[key]
            s.end = proctree.now() if ts is None else ts
            s.ok = ok
            self._active.discard(key)
            self._ended.append(s)
            self._ended_ts.append(s.end)
            self.sessions_done += 1
            self._epoch += 1

    def attribute(self, key: str, spawned: Iterable[SpawnedProcess]) -> None:
        """The target says these processes were spawned for session `key`.

        One the census has not sampled yet (the ledger lags, or it lived and died between two
        samples) becomes a record now: the next sample checks its identity in the process table,
        so it is counted, judged if it is still there, and never taken on the target's word alone.
        """
        with self._lock:
            for item in spawned:
                rec = self._find(item.pid, item.create_time)
                if rec is None:
                    rec = self._add(
                        ProcRecord(
                            pid=item.pid,
                            create_time=item.create_time,
                            spawn_ts=item.create_time,
                            role="observer",
                            reported_end=item.ended,
                            claimed=True,
                        )
                    )
                    self._seen.pop(item.pid, None)  # have the scan attach a psutil handle
                rec.session = key
                self._inherit(rec)
            s = self.sessions.get(key)
            if s is not None:
                s.attributed = True
            self._epoch += 1

    # -- thread ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.adopt_orphans and self.track_descendants:
            import proctree

            self._own_children = {c.pid for c in psutil.Process().children()}
            # Even with PROCTREE_FALLBACK set (for the worker): a judge that lost its subreaper
            # could not see a daemon that scrubbed both our run id and the worker's mark.
            self.adopting = proctree.enable_subreaper(despite_fallback=True)
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="census", daemon=True)
        self._thread.start()

    def own_children(self) -> set[int]:
        """Children of ours that are not the run's orphans: those we had before adopting, and
        the worker."""
        own = set(self._own_children)
        if self.worker_pid is not None:
            own.add(self.worker_pid)
        return own

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        next_full = time.monotonic() + self.sample_interval
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_full:
                    next_full = time.monotonic() + self.sample_interval
                    self.sample()
                else:
                    self.fast_tick()
            except Exception as exc:  # noqa: BLE001 - reported, never silently dropped
                if len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.fast_interval)

    # -- lookups -----------------------------------------------------------------------------
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

    # -- ledger ------------------------------------------------------------------------------
    def _read_ledger(self) -> None:
        if self._ledger is None:
            return
        for ev in self._ledger.read_new():
            kind, pid = ev.get("event"), ev.get("pid")
            if not isinstance(pid, int):
                continue
            # In this process's terms: the fake may have read the boot time across a step. Its
            # start (and hop) lines say which; its later lines are its pid's.
            if kind in ("start", "hop"):
                shift = proctree.clock_offset(ev.get("boot"))
                if shift is None:
                    continue  # written during another boot: a ledger of an old run
                if shift:
                    self._ledger_shift[pid] = shift
                else:
                    self._ledger_shift.pop(pid, None)
            else:
                shift = self._ledger_shift.get(pid, 0.0)
            raw_ts = ev.get("ts")
            ts = float(raw_ts) + shift if raw_ts else proctree.now()
            if kind == "start" and ev.get("role") == "main":
                self.claude_starts += 1
                argv = ev.get("argv")
                if isinstance(argv, list) and "--strict-mcp-config" in argv:
                    self.strict_mcp_starts += 1
            if kind == "start" and ev.get("role") == "mcp-server":
                self.mcp_server_starts += 1
            if kind == "hop":
                # A new pid of a lineage that forks and exits (the fake's `hop`): the process
                # it forked from is the lineage so far, so it is of the same session and kind.
                ev = {**self._lineage_of(ev, ts), **ev, "event": "start"}
                kind = "start"
            if kind == "start":
                ct = float(ev.get("create_time") or 0.0)
                ct = ct + shift if ct else ct
                rec = self._find(pid, ct)
                if rec is None:
                    rec = self._add(ProcRecord(pid=pid, create_time=ct, spawn_ts=ts))
                    self._seen.pop(pid, None)  # have the scan attach a psutil handle
                rec.spawn_ts = min(rec.spawn_ts, ts)
                rec.candidates = None
                rec.deadline_epoch = -1
                rec.role = ev.get("role") or rec.role
                rec.scenario = ev.get("scenario") or rec.scenario
                pp = ev.get("parent_pid")
                rec.parent_pid = pp if isinstance(pp, int) else rec.parent_pid
                if not rec.cmdline and isinstance(ev.get("argv"), list):
                    rec.cmdline = [str(a) for a in ev["argv"]]
                if rec.ppid is None and isinstance(ev.get("ppid"), int):
                    rec.ppid = ev["ppid"]
            else:
                rec = self._latest(pid, before=ts)
                if rec is None:
                    continue
                if kind == "exit":
                    rec.exit_ts = ts
                    code = ev.get("code")
                    rec.exit_code = code if isinstance(code, int) else rec.exit_code
                elif kind == "signal":
                    rec.signals += 1

    def _lineage_of(self, ev: dict[str, Any], ts: float) -> dict[str, Any]:
        ppid = ev.get("ppid")
        parent = self._latest(ppid, before=ts) if isinstance(ppid, int) else None
        if parent is None:
            return {}
        return {"role": parent.role, "scenario": parent.scenario, "parent_pid": parent.parent_pid}

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
                    rec.rss = _rss(proc) or rec.rss
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

    def fast_tick(self) -> None:
        """Between full samples: notice exits of processes whose session is over, quickly.

        Only those matter for cleanup latency; the rest wait for the next full sample, which keeps
        a run with hundreds of live processes cheap.
        """
        now = proctree.now()
        with self._lock:
            for recs in list(self.records.values()):
                for rec in recs:
                    if rec.alive and rec.proc is not None and self.deadline(rec) is not None:
                        self._check(rec, now)

    def worker_stopped_for(self) -> float:
        """How long the worker has been seen stopped, in seconds (0: it was not, at the last
        sample)."""
        with self._lock:
            since = self._worker_stopped_since
        return 0.0 if since is None else proctree.now() - since

    def continue_worker(self) -> None:
        """SIGCONT to the worker (ours: we started it) if it is stopped, so that it can end
        its observers when asked to stop. By its identity: never another process."""
        if sys.platform == "win32":
            return
        for worker in (self.worker, self.worker_core):
            if worker is None:
                continue
            with contextlib.suppress(psutil.Error):
                if worker.status() in STOPPED_STATES:
                    worker.resume()

    def sample(self) -> Sample:
        """One full census sample: ledger, process table, classification, RSS."""
        t0 = time.perf_counter()
        with self._lock:
            self._read_ledger()
            now = proctree.now()
            pids = set(psutil.pids())
            self._discover(pids, now)
            self._link_leaders()
            self._n_samples += 1
            if self.worker is not None and (
                self._n_samples % FULL_TREE_EVERY == 1 or not self.judging or self._force_tree
            ):
                self._force_tree = False
                self._scan_worker_tree()
            worker_alive = self.worker is not None and self.worker_pid in pids
            self._worker_alive = worker_alive
            for recs in self.records.values():
                for rec in recs:
                    if rec.reaped:
                        continue
                    if rec.proc is None:
                        # Known from the ledger only: present iff its PID holds its identity.
                        known = self._seen.get(rec.pid)
                        if known is None or abs(known[0] - rec.create_time) > CT_TOLERANCE:
                            rec.reaped = True
                            self._mark_exited(rec, now)
                        else:
                            # It is there (the scan may have judged it before its exec carried
                            # the token): the ledger is authoritative, so attach and probe it.
                            self._attach(rec, now)
                        continue
                    if rec.alive:
                        # Processes being judged (their sessions are over) every sample; the
                        # others, whose sessions still run, in rotation (each >= 1 Hz): that keeps
                        # a sample cheap with hundreds of live processes.
                        if rec.pid not in pids:
                            rec.reaped = True
                            self._mark_exited(rec, now)
                        elif (
                            self.deadline(rec) is not None
                            or (rec.pid + self._n_samples) % self._rotation == 0
                        ):
                            self._check(rec, now)
                    elif rec.pid not in pids:
                        rec.reaped = True
                    elif rec.zombie_since is not None and not self._ppid_settled(rec):
                        # Dead under a parent that has exited since (a SIGKILLed worker's
                        # threads die one by one, and a child killed by its parent-death
                        # signal meanwhile reads as the worker's zombie): reparented now,
                        # maybe to us, and then ours to reap.
                        self._probe(rec, now)
            descendants = self._descendants(pids)
            self._classify(now, descendants, worker_alive)
            sample = self._measure(now, descendants, worker_alive)
            self._compact()
            self._note_live()
        self.scan_cost_s.append(time.perf_counter() - t0)
        return sample

    def _note_live(self) -> None:
        """Keep the run's record naming its live processes: a harness killed outright leaves
        them to `harness sweep`, which ends each while that very process holds its pid (those
        of `soak --claude` carry no run token to be found by). At most once a second."""
        mono = time.monotonic()
        if mono - self._noted_at < NOTE_INTERVAL_S:
            return
        live = frozenset(
            (r.pid, r.create_time) for recs in self.records.values() for r in recs if r.alive
        )
        if live != self._noted:
            runs.note_processes(self.run_id, live)
            self._noted, self._noted_at = live, mono

    def _discover(self, pids: set[int], now: float) -> None:
        """Look at PIDs not seen before: is the process there one of the run's?"""
        for pid in [p for p in self._seen if p not in pids]:
            del self._seen[pid]
        for pid in [p for p in self._undecided if p not in pids]:
            del self._undecided[pid]
        fresh: list[tuple[float, int, psutil.Process, int | None]] = []
        track = self.track_descendants and self.worker_pid is not None
        for pid in pids:
            if pid in self._seen:
                continue
            try:
                # No oneshot(): the create time is read with the handle, and ppid() reads its own
                # identity check (a fresh handle) and then the stat file once, so a oneshot() would
                # save no read and cost more than one.
                proc = psutil.Process(pid)
                ct = proctree.create_time(proc)
                ppid = proc.ppid() if track else None
            except psutil.Error:
                continue
            fresh.append((ct, pid, proc, ppid))
        if track:
            fresh = _parents_first(fresh)  # a new chain is judged in one sample
        waiting: set[int] = set()  # undecided in this sample
        for ct, pid, proc, ppid in fresh:
            rec = self._find(pid, ct)
            if rec is not None and rec.claimed:
                rec = self._vouch(rec, proc)
            ours = rec is not None
            cmdline: list[str] = []
            parent: ProcRecord | None = None
            if not ours:
                ours, cmdline = self._is_ours(proc)
                if ours and ppid is not None:
                    # Carrying the token, maybe only as a fork of a process of the run not yet
                    # exec'd (posix_spawn's child reads its parent's argv): still its parent's
                    # child, of its session (a chain's first level had none, nor its levels).
                    parent = self._live_parent(ppid, ct)
            if not ours:
                # A parent judged later (below) or an argv not yet readable: judged at a later
                # sample, or it would be taken for no process of the run's for good (a blanked
                # observer's children were).
                cmdline = cmdline or self._cmdline(proc)
                if ppid in waiting or self._mid_exec(pid, ct, cmdline, proc, now):
                    waiting.add(pid)
                    continue
                if ppid is not None:
                    ours, parent = self._descends(pid, ct, ppid, cmdline, proc)
                    if not ours and ppid == self.worker_pid and pid != self.worker_pid:
                        self._helper_procs[pid] = proc  # a helper of the worker (not the run's)
            self._seen[pid] = (ct, ours)
            if not ours:
                continue
            if rec is None:
                rec = self._add(ProcRecord(pid=pid, create_time=ct, spawn_ts=now))
                if parent is None:
                    self._await_leader(rec)
                else:
                    rec.parent_pid = parent.pid
                    rec.role = rec.role or "descendant"
            if not rec.cmdline:
                # One first seen as a zombie has no argv left to read (a leaked process's child
                # it never reaped): named by its program, not left blank in the report.
                rec.cmdline = proctree.shown_argv(proc, cmdline or self._cmdline(proc))
            if rec.proc is None:
                rec.proc = proc
                self._probe(rec, now)  # know its parent and RSS from the first sample on

    def _vouch(self, rec: ProcRecord, proc: psutil.Process) -> ProcRecord | None:
        """A process the target named (attribute), found alive: the record if it is the run's,
        else None, the record forgotten (neither counted nor ever signalled). The target's
        registry can be wrong, and a root child can write it: a row naming, by its exact
        identity, a process that is not the run's had it counted, judged leaked and SIGKILLed
        by the run's sweep."""
        if self._vouched(proc):
            rec.claimed = False
            return rec
        self.records[rec.pid].remove(rec)
        if not self.records[rec.pid]:
            del self.records[rec.pid]
        self.total_procs -= 1
        self._epoch += 1
        return None

    def _vouched(self, proc: psutil.Process) -> bool:
        """It carries the run's token, or descends from the worker (not through one of its
        helpers), or from an orphan of the run we adopted as subreaper. With no worker set
        there is no lineage to check: the target's word (and the identity) is all there is."""
        if self.worker_pid is None or self._is_ours(proc)[0]:
            return True
        helpers = {pid for pid, _ in self._helpers} | set(self._helper_procs)
        try:
            chain = [proc, *proc.parents()]
        except psutil.Error:
            return False
        for child, parent in zip(chain, chain[1:], strict=False):
            if child.pid in helpers:
                return False
            if parent.pid == self.worker_pid:
                return True
            if parent.pid == self._me:
                return self.adopting and child.pid not in self.own_children()
        return False

    @staticmethod
    def _cmdline(proc: psutil.Process) -> list[str]:
        try:
            return proc.cmdline()
        except psutil.Error:
            return []

    def _mid_exec(
        self, pid: int, ct: float, cmdline: list[str], proc: psutil.Process, now: float
    ) -> bool:
        """A live process whose argv reads blank: caught in its exec (the parent of a vfork,
        and so `subprocess.Popen`, returns before the kernel has set the new program's
        arguments), so whether it carries the run's token, or is the worker's guardian, cannot
        be told yet. For at most MID_EXEC_WAIT_S: a process that blanks its own argv (or a
        kernel thread) is judged then."""
        if any(cmdline):
            self._undecided.pop(pid, None)
            return False
        first = self._undecided.setdefault(pid, (ct, now))
        if abs(first[0] - ct) > CT_TOLERANCE:  # another process under that pid
            first = self._undecided[pid] = (ct, now)
        if now - first[1] >= MID_EXEC_WAIT_S or not _running(proc):
            del self._undecided[pid]
            return False
        return True

    def _descends(
        self, pid: int, ct: float, ppid: int, cmdline: list[str], proc: psutil.Process
    ) -> tuple[bool, ProcRecord | None]:
        """A new process whose parent is the worker (not a helper) or a live process of the run
        is the run's; returns (ours, the parent's record when the parent is of the run)."""
        if pid == self.worker_pid:
            return False, None
        if ppid == self.worker_pid:
            if (pid, ct) in self._helpers or any(
                abs(hct - ct) <= CT_TOLERANCE and hpid == pid for hpid, hct in self._helpers
            ):
                return False, None
            # The worker's guardian (docs: worker/README.md) is its own, also one started later
            # (a replacement): known by its exact argv, which names this worker. A worker with
            # no helper at the start has none to replace, and one replaces its guardian only
            # once it has died, started as the first was (interpreter, environment): any other
            # process with that argv is the run's (an observer's child made to look like it,
            # maybe after killing the guardian; taken for the replacement, it had the real one
            # counted as leaked).
            if (
                self._helpers
                and cmdline[1:] == proctree.guardian_args(self.worker_pid)
                and not any(_running(p) for p in self._helper_procs.values())
                and _signature(proc, cmdline) in self._helper_sigs
            ):
                self._helpers.add((pid, ct))
                return False, None
            worker_ct = proctree.create_time(self.worker) if self.worker is not None else 0.0
            return ct + CT_TOLERANCE >= worker_ct, None
        if ppid == self._me and self.adopting and pid not in self._own_children:
            # An orphan reparented to us (we are a subreaper and spawned only the worker): it
            # came from the worker's tree. Session unknown: judged by time.
            worker_ct = proctree.create_time(self.worker) if self.worker is not None else 0.0
            return ct + CT_TOLERANCE >= worker_ct, None
        parent = self._live_parent(ppid, ct)
        return parent is not None, parent

    def _await_leader(self, rec: ProcRecord) -> None:
        """One first seen with no parent of the run (its parent exited before a sample saw it:
        a fan-out's fork, the middle of a double fork) descends from the leader of its POSIX
        session, unless it started one of its own. The soak's observers lead sessions of their
        own (the fixed worker's, and on the macOS path), so such an orphan is of its observer's
        session, where time alone could not tell which of those running at its birth."""
        sid = proctree.session_of(rec.pid)
        if sid is not None and sid != rec.pid:
            self._unled.append((rec, sid))

    def _link_leaders(self) -> None:
        """Find the leaders of the orphans that wait for one (see _await_leader), also those
        first seen after them. No process joins an existing session, and the leader's pid is no
        other process's while the session has members: a record seen holding that pid after
        the orphan's birth is its leader (exact; a process cannot forge it)."""
        waiting = []
        for rec, sid in self._unled:
            born = rec.create_time + CT_TOLERANCE
            held = [r for r in self.records.get(sid, ()) if r.create_time <= born <= r.held_at]
            if held:
                rec.leader = held[0]
                rec.role = rec.role or "descendant"
                self._epoch += 1
            elif rec.alive:
                waiting.append((rec, sid))
        self._unled = waiting

    def _live_parent(self, ppid: int, ct: float) -> ProcRecord | None:
        """The record of a live process of the run at ppid, if it was there before ct."""
        parent = self._latest(ppid)
        if (
            parent is not None
            and not parent.reaped
            and parent.exited_at is None
            and parent.create_time <= ct + CT_TOLERANCE
        ):
            return parent
        return None

    def _refresh(self, rec: ProcRecord, now: float) -> None:
        if rec.proc is None:
            self._attach(rec, now)
        else:
            self._probe(rec, now)
            # A process first seen between fork and exec (a shell shim, a launcher) has since
            # become what it runs now: name it by that.
            # One that reads blank now (it hid its arguments) is named by its program instead.
            cmdline = self._cmdline(rec.proc) if rec.proc is not None else []
            if (cmdline or not rec.cmdline) and rec.proc is not None:
                rec.cmdline = proctree.shown_argv(rec.proc, cmdline) or rec.cmdline

    def _attach(self, rec: ProcRecord, now: float) -> None:
        try:
            proc = psutil.Process(rec.pid)
            if abs(proctree.create_time(proc) - rec.create_time) > CT_TOLERANCE:
                return
        except psutil.Error:
            return
        rec.proc = proc
        self._seen[rec.pid] = (rec.create_time, True)
        if not rec.cmdline:
            _, rec.cmdline = self._is_ours(proc)
        self._probe(rec, now)

    def _scan_worker_tree(self) -> None:
        """The worker's descendants that are not the run's (helpers of the worker itself).

        A full walk of the process table, so it runs every FULL_TREE_EVERY samples only; the
        run's own processes are placed in the tree at every sample from their ppid.
        """
        assert self.worker is not None
        if self.track_descendants:
            # Every new descendant was judged at discovery: the run's are records, the rest are
            # the helpers seen then; no walk of the whole table (~0.3 s with 600 processes).
            self._desc_other = {pid: p for pid, p in self._helper_procs.items() if _running(p)}
            self._helper_procs = dict(self._desc_other)
            return
        try:
            children = self.worker.children(recursive=True)
        except psutil.Error:
            children = []
        other: dict[int, psutil.Process] = {}
        for child in children:
            known = self._seen.get(child.pid)
            if known is not None and known[1]:
                continue
            if known is None and self._latest(child.pid) is not None:
                continue
            other[child.pid] = child
        self._desc_other = other

    def _descendants(self, pids: set[int]) -> set[int]:
        if self.worker_pid is None:
            return set()
        other = {pid for pid in self._desc_other if pid in pids}
        roots = other | {self.worker_pid}
        live = [
            rec
            for recs in self.records.values()
            for rec in recs
            if not rec.reaped and rec.proc is not None
        ]
        parent: dict[int, int | None] = {rec.pid: rec.ppid for rec in live}
        now = proctree.now()
        for rec in live:
            # A parent that has exited (gone, or a zombie) means this process was reparented
            # since it was last probed: refresh it before calling it escaped.
            if rec.alive and rec.ppid not in roots and not self._ppid_settled(rec):
                self._probe(rec, now)
                parent[rec.pid] = rec.ppid
        memo: dict[int, bool] = {}

        def under(pid: int, depth: int = 0) -> bool:
            if pid in memo:
                return memo[pid]
            ppid = parent.get(pid)
            ok = ppid is not None and (
                ppid in roots or (ppid in parent and depth < 64 and under(ppid, depth + 1))
            )
            memo[pid] = ok
            return ok

        return other | {pid for pid in parent if under(pid)}

    def _classify(self, now: float, descendants: set[int], worker_alive: bool) -> None:
        if not self.judging:
            return
        for recs in self.records.values():
            for rec in recs:
                if rec.reaped and rec.zombie_since is None:
                    continue
                deadline = self.deadline(rec)
                past = deadline is not None and now > deadline
                if rec.alive:
                    if (
                        worker_alive
                        and rec.ppid is not None
                        and rec.pid not in descendants
                        and not rec.escaped
                    ):
                        rec.escaped = True
                        self.escaped[rec.identity] = rec
                    if past and rec.leaked_at is None:
                        self._refresh(rec, now)  # the report names it with current facts
                        if not rec.alive:
                            continue
                        rec.leaked_at = now
                        rec.leak_reason = "alive past its session's end + grace"
                        if self._of_failed_sessions(rec):
                            # The harness stopped waiting, not the worker: worth saying.
                            rec.leak_reason += " (its session failed; the worker may be on it)"
                        self.leaked.append(rec)
                        self._mark_session_leaked(rec)
                elif rec.zombie_since is not None and not rec.reaped and past:
                    self._note_zombie(rec)

    def _of_failed_sessions(self, rec: ProcRecord) -> bool:
        """Whether every session this process may belong to failed (the harness gave up)."""
        key = self.session_of(rec)
        keys = [key] if key is not None else list(self._candidates(rec))
        windows = [self.sessions[k] for k in keys if k in self.sessions]
        return bool(windows) and not any(w.ok for w in windows)

    def _note_zombie(self, rec: ProcRecord) -> None:
        """A zombie past its deadline is the run's fault only if the run holds it: its parent is
        the worker, us, or a live process of the run. One whose parent is outside the run (PID
        1 after an escape, which reaps at its own pace) is dead, not leaked: listed apart."""
        ppid = rec.ppid
        parent = self._latest(ppid) if ppid is not None else None
        ours = (
            ppid is None
            or ppid in (self.worker_pid, self._me)
            or (parent is not None and parent.alive and not parent.reaped)
        )
        if ours:
            self.zombies[rec.identity] = rec
            self.zombies_elsewhere.pop(rec.identity, None)
        else:
            self.zombies_elsewhere[rec.identity] = rec

    def _mark_session_leaked(self, rec: ProcRecord) -> None:
        key = self.session_of(rec)
        keys = [key] if key else list(self._candidates(rec))
        for k in keys:
            s = self.sessions.get(k)
            if s is not None:
                s.leaked = True

    def _measure(self, now: float, descendants: set[int], worker_alive: bool) -> Sample:
        total = worker_rss = 0
        stopped = False
        core = self.worker_core
        if worker_alive and core is not None:
            try:
                with core.oneshot():
                    worker_rss = core.memory_info().rss
                    stopped = core.status() in STOPPED_STATES
            except psutil.Error:
                worker_alive = False
        if not stopped:
            self._worker_stopped_since = None
        elif self._worker_stopped_since is None:
            self._worker_stopped_since = now
        total = worker_rss
        for pid in descendants:
            other = self._desc_other.get(pid)
            if other is not None:
                try:
                    total += other.memory_info().rss
                except psutil.Error:
                    pass
                continue
            rec = self._latest(pid)
            # A zombie holds no memory: its last live RSS is not counted (hundreds of zombies
            # under a subreaper that does not reap read as a gigabyte).
            if rec is not None and not rec.reaped and rec.exited_at is None:
                total += rec.rss
        live_run = sum(1 for recs in self.records.values() for r in recs if r.alive)
        sample = Sample(
            t=now,
            sessions_done=self.sessions_done,
            total_rss=total,
            worker_rss=worker_rss,
            descendants=len(descendants),
            live_run=live_run,
            leaked=len(self.leaked),
        )
        self.last_descendants, self.last_total_rss = len(descendants), total
        self.last_worker_rss = worker_rss
        if self.judging:
            self.peak_descendants = max(self.peak_descendants, len(descendants))
            self.peak_total_rss = max(self.peak_total_rss, total)
            self.peak_worker_rss = max(self.peak_worker_rss, worker_rss)
        self._tick += 1
        if self.worker is not None and self._tick % self._stride == 0:  # a run's series only
            self.samples.append(sample)
            if len(self.samples) > MAX_SAMPLES:
                self.samples = self.samples[::2]
                self._stride *= 2
        return sample

    def _compact(self) -> None:
        """Fold finished, judged processes into their session's figures and forget them."""
        for pid in list(self.records):
            keep = []
            for rec in self.records[pid]:
                if not rec.reaped or rec.leaked_at is not None or rec.identity in self.zombies:
                    keep.append(rec)
                    continue
                key = self.session_of(rec)
                if key is not None:
                    s = self.sessions.get(key)
                    if s is None or s.end is None:
                        keep.append(rec)
                        continue
                    s.n_procs += 1
                    if rec.exited_at is not None:
                        s.last_exit = max(s.last_exit or 0.0, rec.exited_at)
                    continue
                cands = [self.sessions[k] for k in self._candidates(rec)]
                if any(s.end is None or not s.attributed for s in cands):
                    keep.append(rec)  # attribution may still arrive
                    continue
            if keep:
                self.records[pid] = keep
            else:
                del self.records[pid]

    # -- results -----------------------------------------------------------------------------
    def live_records(self) -> list[ProcRecord]:
        """The run's live processes (not those the target named that no sample has vouched
        for yet: see _vouch)."""
        with self._lock:
            return [r for recs in self.records.values() for r in recs if r.alive and not r.claimed]

    def read_ledger(self) -> None:
        """Take in the ledger's new lines now (between samples): a lineage that forks and exits
        writes its newest pid there the moment it is born."""
        with self._lock:
            self._read_ledger()

    def ledger_size(self) -> int:
        """Bytes in the ledger so far: while it grows, some process of the run is at work."""
        if self._ledger is None:
            return 0
        try:
            return self._ledger.path.stat().st_size
        except OSError:
            return 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sessions_done": self.sessions_done,
                "live_descendants": self.last_descendants,
                "live_run": sum(1 for recs in self.records.values() for r in recs if r.alive),
                "leaked": len(self.leaked),
                "total_rss": self.last_total_rss,
                "worker_rss": self.last_worker_rss,
                "processes_seen": self.total_procs,
            }

    def finish(self) -> None:
        """Last judgement: one more sample, then anything still alive is a leak."""
        self._force_tree = True
        self.sample()
        now = proctree.now()
        with self._lock:
            for recs in self.records.values():
                for rec in recs:
                    if rec.alive and rec.leaked_at is None:
                        self._refresh(rec, now)
                        if not rec.alive:
                            continue
                        rec.leaked_at = now
                        rec.leak_reason = "alive at the end of the run"
                        self.leaked.append(rec)
                        self._mark_session_leaked(rec)
                    elif rec.zombie_since is not None and not rec.reaped:
                        self._note_zombie(rec)
            self._compact()
            self.stop_judging()

    def stop_judging(self) -> None:
        if self.judging:
            self.judging = False
            self.judging_stopped_at = proctree.now()

    def ended_sessions(self) -> int:
        with self._lock:
            return sum(1 for s in self.sessions.values() if s.end is not None)

    def session_latencies(self) -> list[float]:
        """Per session: from its end to its last process gone (sessions with known processes),
        gone while the run was judged: not ended by the run's own cleanup (an interrupt)."""
        with self._lock:
            # Fold any record not compacted yet (e.g. leaked ones are excluded below anyway).
            last: dict[str, float] = {}
            for recs in self.records.values():
                for rec in recs:
                    key = self.session_of(rec)
                    if key and rec.exited_at is not None and rec.leaked_at is None:
                        last[key] = max(last.get(key, 0.0), rec.exited_at)
            out = []
            for s in self.sessions.values():
                if s.end is None or s.leaked:
                    continue
                ends = [x for x in (s.last_exit, last.get(s.key)) if x is not None]
                stopped = self.judging_stopped_at
                if ends and (stopped is None or max(ends) <= stopped):
                    out.append(max(0.0, max(ends) - s.end))
            return out


def _verified(pid: int, create_time: float) -> psutil.Process:
    """The worker's process by its identity (proctree's), raising if it is gone or reused."""
    proc = proctree.ProcId(pid, create_time).process()
    if proc is None:
        raise psutil.NoSuchProcess(pid, msg="worker identity changed")
    return proc


def _rss(proc: psutil.Process) -> int:
    """Its RSS; 0 while an exec swaps the address space (the caller keeps its last value).
    A process whose main thread has exited reads 0 through the leader: read a live thread."""
    rss = proc.memory_info().rss
    if not rss and (view := proctree.running_view(proc)) is not None:
        with contextlib.suppress(psutil.Error):
            rss = view.memory_info().rss
    return rss


def _signature(
    proc: psutil.Process, cmdline: list[str]
) -> tuple[tuple[str, ...], frozenset[tuple[str, str]] | None]:
    """How a process was started: its argv and environment (None where it cannot be read)."""
    try:
        env: frozenset[tuple[str, str]] | None = frozenset(proc.environ().items())
    except psutil.Error:
        env = None
    return tuple(cmdline), env


def _after_exec(proc: psutil.Process) -> list[str]:
    """Its argv, waiting up to MID_EXEC_WAIT_S while it reads empty: a helper caught in its
    exec (a worker that has just started its guardian) would otherwise leave an empty
    signature, and its replacement, started alike, would be taken for the run's (a CI
    failure of test_only_the_workers_own_guardian_is_a_helper)."""
    deadline = time.monotonic() + MID_EXEC_WAIT_S
    while True:
        cmdline = Census._cmdline(proc)
        if cmdline or time.monotonic() >= deadline or not _running(proc):
            return cmdline
        time.sleep(0.01)


def _parents_first(
    fresh: list[tuple[float, int, psutil.Process, int | None]],
) -> list[tuple[float, int, psutil.Process, int | None]]:
    """Oldest first, but each process after its parent when both are new: by their links, as
    neither create time (10 ms ticks) nor pid (pids wrap: a child 300 of a parent 32767) can
    order a parent and the child it forked at once."""
    by_pid = {entry[1]: entry for entry in sorted(fresh, key=lambda e: (e[0], e[1]))}
    out: list[tuple[float, int, psutil.Process, int | None]] = []
    placed: set[int] = set()
    for pid in by_pid:
        chain: list[int] = []
        at: int | None = pid
        while at is not None and at in by_pid and at not in placed:
            placed.add(at)  # also ends a loop of links read at different moments
            chain.append(at)
            at = by_pid[at][3]
        out += [by_pid[p] for p in reversed(chain)]
    return out


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and not proctree.exited(proc)
    except psutil.Error:
        return False
