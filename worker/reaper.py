"""Fixed mode's reaper: at start, the exact survivors of earlier runs on this data dir;
then every few seconds, anything of ours that outlived its session (escapees included)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

import psutil

import proctree
from worker.containment import Containment, cell_label
from worker.sessions import SessionManager
from worker.store import Store

log = logging.getLogger("worker.reaper")

FULL_SWEEP_EVERY = 10


@dataclass
class ReaperCounters:
    at_start: int = 0
    earlier_runs_swept: int = 0  # at start: unclean earlier runs whose marks were swept
    stranded_woken: int = 0  # sessions with queued work and no generator, started again
    swept: int = 0
    sweeps: int = 0
    zombies: int = 0
    full_sweeps: int = 0


class Reaper:
    def __init__(
        self,
        store: Store,
        containment: Containment,
        sessions: SessionManager,
        run_id: int,
        interval: float,
    ) -> None:
        self.store = store
        self.containment = containment
        self.sessions = sessions
        self.run_id = run_id
        self.interval = interval
        self.counters = ReaperCounters()
        self._recorded_guardian: proctree.ProcId | None = None

    async def at_start(self) -> int:
        """End what earlier runs left: registry rows matching (pid, create_time), and whatever
        carries an earlier run's mark. A process that merely looks like `claude` is not ours."""
        rows = await self.store.open_processes(exclude_run=self.run_id)
        # As this worker computes create_times (an earlier one may have read the boot time
        # before a step of the clock); None: recorded during another boot, so not running.
        roots = {
            int(r["id"]): proctree.recorded(int(r["pid"]), float(r["create_time"]), r["run_boot"])
            for r in rows
        }
        alive_before = {i for i, root in roots.items() if root and proctree.is_alive(root)}
        # A run that shut down cleanly already swept its own mark; only unclean ones can
        # have left anything that no registry row names (grandchildren, escapees).
        unclean = await self.store.unclean_runs(self.run_id)
        await self._end_earlier_guardians(unclean)
        marks = [
            (str(r["mark"]), worker.create_time)
            for r in unclean
            if (worker := proctree.recorded(int(r["pid"]), float(r["create_time"]), r["boot"]))
        ]
        ended = await self.containment.reap_previous(
            [(row, root) for row in rows if (root := roots[int(row["id"])]) is not None], marks
        )
        for row in rows:
            root = roots[int(row["id"])]
            if root is not None and proctree.is_alive(root):
                continue  # not ours after all (its mark did not match): left alone
            if int(row["id"]) in alive_before:
                await self.store.set_process_state(int(row["id"]), "reaped", how="restart")
            else:
                # Gone with its worker (parent-death signal) or by itself.
                await self.store.set_process_state(int(row["id"]), "ended", how="gone-at-restart")
        self.counters.at_start = len(ended)
        if ended:
            log.info("reaped %d survivor(s) of earlier runs: %s", len(ended), ended)
        # What no mark or row names, in the cells of this data dir's earlier workers, gone
        # with their guardians: those cells held their observers' trees alone.
        cells = proctree.end_stale_cells([cell_label(mark) for mark, _ in marks])
        if cells:
            log.info("ended what was left in the cgroup cells of %d earlier run(s)", cells)
        # Once is enough: each walk reads every newer process's environment (17 ms per run
        # with 69 processes here, more with more), and every kill -9 or reboot would
        # otherwise add one to each later start.
        # Registry rows still open are retried at each start all the same.
        await self.store.mark_reaped([int(r["id"]) for r in unclean])
        self.counters.earlier_runs_swept = len(unclean)
        return len(ended)

    async def _end_earlier_guardians(self, unclean: list[Any]) -> None:
        """An unclean run's guardian still alive: stopped (SIGSTOP) when its worker was
        killed, it would wait for ever (before, nothing ended it). Let it go on and do its
        last sweep (SIGCONT), then kill it if it has not exited: the restart reaping below
        does its job all the same."""
        guardians = []
        for run in unclean:
            pid, _, create_time = str(run["guardian"] or "").partition(" ")
            if pid.isdigit() and create_time:
                ident = proctree.recorded(int(pid), float(create_time), run["boot"])
                if ident is not None and (proc := ident.process()) is not None:
                    if _is_guardian_of(proc, int(run["pid"])):
                        guardians.append((ident, proc))
        if guardians:
            await asyncio.to_thread(_end_guardians, guardians)
            log.info("ended %d guardian(s) of earlier runs: %s", len(guardians),
                     [g.pid for g, _ in guardians])  # fmt: skip

    async def record_guardian(self) -> None:
        """Our guardian as now, in our run's row (at start, and after a replacement)."""
        ident = self.containment.guardian_id
        if ident is None or ident == self._recorded_guardian:
            return
        try:
            await self.store.set_run_guardian(self.run_id, ident)
        except sqlite3.Error as exc:  # the next sweep tries again
            log.warning("the guardian's pid could not be recorded: %s", exc)
        else:
            self._recorded_guardian = ident

    async def run(self) -> None:
        soon = self.containment.sweep_soon
        while True:
            # A periodic timer, not a synchronisation: the sweep itself checks real state.
            # Sooner when an observer ended while unmarked strays wait to be told apart.
            try:
                await asyncio.wait_for(soon.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            soon.clear()
            try:
                await self.sweep_once()
            except Exception:
                log.exception("reaper sweep failed")
            try:
                await self.sessions.retry_records()
            except Exception:
                log.exception("writing the registry's late records failed")
            try:
                stranded = await self.sessions.wake_stranded()
            except Exception:  # the store may fail too (locked, disk full): next time
                log.exception("looking for stranded queues failed")
            else:
                if stranded:
                    self.counters.stranded_woken += len(stranded)
                    log.warning("queued work with no generator: woke session(s) %s", stranded)

    async def sweep_once(self, *, full: bool | None = None) -> int:
        if full is None:
            # A full scan reads every process's environment: on a busy machine that is
            # costly, and with the subreaper the cheap sweep already sees every stray.
            full = self.counters.sweeps % FULL_SWEEP_EVERY == 0
        async with self.sessions.spawn_lock:
            owned = self.sessions.owned_pids() | self.containment.helper_pids()
            self.counters.zombies += len(self.containment.reap_zombies(owned))
            live = self.sessions.live_contained()
            self.containment.check_guardian(live)
            ended = await self.containment.sweep(live, owned, full=full)
        await self.record_guardian()  # replaced just now, perhaps
        self.counters.sweeps += 1
        self.counters.full_sweeps += int(full)
        if ended:
            self.counters.swept += len(ended)
            log.warning(
                "reaper ended %d process(es) that outlived their session: %s", len(ended), ended
            )
        return len(ended)


# How long a resumed guardian of an earlier run gets for its last sweep before it is killed.
GUARDIAN_EXIT_S = 5.0


def _is_guardian_of(proc: psutil.Process, worker_pid: int) -> bool:
    """Whether it runs as that worker's guardian (its exact argv): the row is no proof, an
    observer of that run could write the database and name any process there."""
    try:
        return proc.cmdline()[1:] == proctree.guardian_args(worker_pid)
    except psutil.Error:
        return False


def _end_guardians(guardians: list[tuple[proctree.ProcId, psutil.Process]]) -> None:
    for _, proc in guardians:
        try:
            proc.resume()  # psutil checks the identity before it signals
        except psutil.Error:
            pass
    for ident, proc in guardians:
        if proctree.wait_gone([ident], GUARDIAN_EXIT_S):
            try:
                proc.kill()
            except psutil.Error:
                pass
    proctree.wait_gone([ident for ident, _ in guardians], GUARDIAN_EXIT_S)
