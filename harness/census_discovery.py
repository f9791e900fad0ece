"""Which new processes are the run's, and the worker's tree (see harness/census.py)."""

from __future__ import annotations

import psutil

import proctree
from harness.census_procs import (
    MID_EXEC_WAIT_S,
    parents_first,
    read_cmdline,
    running,
    signature,
)
from harness.census_records import CT_TOLERANCE, ProcRecord
from harness.census_state import CensusState


class CensusDiscovery(CensusState):
    """Discovery at each sample: a new pid's process is the run's by its ledger line, its
    token, the target's word vouched for, or its descent from the worker or the run."""

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
            fresh = parents_first(fresh)  # a new chain is judged in one sample
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
                cmdline = cmdline or read_cmdline(proc)
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
                rec.cmdline = proctree.shown_argv(proc, cmdline or read_cmdline(proc))
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
        if now - first[1] >= MID_EXEC_WAIT_S or not running(proc):
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
                and not any(running(p) for p in self._helper_procs.values())
                and signature(proc, cmdline) in self._helper_sigs
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
            cmdline = read_cmdline(rec.proc) if rec.proc is not None else []
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
            self._desc_other = {pid: p for pid, p in self._helper_procs.items() if running(p)}
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
