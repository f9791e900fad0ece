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

import contextlib
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil

import proctree
from harness import runs
from harness.census_discovery import CensusDiscovery
from harness.census_procs import after_exec, signature, verified
from harness.census_records import (
    CT_TOLERANCE,
    RUN_ID_FLAG,
    ProcRecord,
    Sample,
    SessionWindow,
    run_id_token,
)
from harness.census_state import NOTE_INTERVAL_S
from harness.target import SpawnedProcess

__all__ = [
    "CT_TOLERANCE",
    "RUN_ID_FLAG",
    "Census",
    "ProcRecord",
    "Sample",
    "SessionWindow",
    "run_id_token",
]

FULL_TREE_EVERY = 8  # full process-table walk for the worker's own helpers: every 2 s at 4 Hz
MAX_SAMPLES = 4000  # samples are decimated beyond this, so a long soak keeps a flat footprint
STOPPED_STATES = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


class Census(CensusDiscovery):
    """The run's census: records (CensusState), discovery (CensusDiscovery), and here the
    inputs from the soak, the sampling thread, the ledger, the judgement and the figures."""

    # -- inputs from the soak --------------------------------------------------------------------
    def set_worker(
        self, pid: int, create_time: float, core: tuple[int, float] | None = None
    ) -> None:
        """The worker's root process; `core`, the worker itself inside a wrapper (see
        WorkerHandle.core): the RSS and stopped state that are the worker's own are read there."""
        with self._lock:
            proc = verified(pid, create_time)
            self.worker, self.worker_pid = proc, pid
            self.worker_core = proc if core is None else verified(*core)
            self._force_tree = True  # the idle baseline needs the worker's helpers counted
            # What the worker runs before any session (its guardian) is its own, not the run's.
            self._helpers = set()
            self._helper_procs = {}
            self._helper_sigs = set()
            try:
                for child in proc.children(recursive=True):
                    self._helpers.add((child.pid, proctree.create_time(child)))
                    self._helper_procs[child.pid] = child
                    self._helper_sigs.add(signature(child, after_exec(child)))
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
