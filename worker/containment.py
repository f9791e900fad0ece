"""The worker's use of proctree: contained spawn, ending one observer's tree, sweeps.

Marks: the worker's mark is `<worker pid>:<worker create_time>` (contracts.md); each observer
gets a finer mark `<worker mark>:<token>` in the same variable, so ending one observer finds its
own escapees and a worker-wide sweep still finds all of them (proctree.mark_matches).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import psutil

import proctree

log = logging.getLogger("worker.containment")


def worker_mark(pid: int, create_time: float) -> str:
    return f"{pid}:{create_time:.3f}"


@dataclass
class Contained:
    identity: proctree.ProcId
    handle: proctree.Containment
    mark: str

    @property
    def group_label(self) -> str:
        group = self.handle.group
        return str(group) if isinstance(group, int) else type(group).__name__


class Containment:
    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.subreaper = False

    def start(self) -> None:
        # Linux: orphans of our children (escapees) reparent to us, not to PID 1.
        self.subreaper = proctree.enable_subreaper()

    def observer_mark(self, token: str) -> str:
        return f"{self.mark}:{token}"

    def spawn_kwargs(self, token: str) -> dict[str, Any]:
        return dict(proctree.spawn_options(self.observer_mark(token)))

    def after_spawn(self, pid: int, token: str) -> Contained:
        handle = proctree.after_spawn(pid)
        identity = handle.proc_id or proctree.ProcId(pid, _create_time_or_now(pid))
        return Contained(identity, handle, self.observer_mark(token))

    async def end(self, contained: Contained, *, grace: float, close_stdin: Any) -> str:
        """close stdin -> grace -> terminate tree -> grace -> kill tree; say which stage did it."""
        try:
            result = await proctree.aterminate_tree(
                contained.identity,
                group=contained.handle,
                # As subreaper, escapees become our own children (found cheaply below); a scan
                # of every process's environment is only needed without it.
                mark=None if self.subreaper else contained.mark,
                grace=grace,
                close_stdin=close_stdin,
            )
        finally:
            contained.handle.close()
        if self.subreaper:
            strays = await asyncio.to_thread(self._end_adopted, {contained.mark}, set(), grace)
            result.kill.extend(strays)
        if result.survivors:
            log.error("survivors after ending %s: %s", contained.identity, result.survivors)
            return f"survivors={len(result.survivors)}"
        stages = [s for s in ("stdin", "term", "kill") if getattr(result, s)]
        return stages[-1] if stages else "stdin"

    async def sweep(
        self, live: list[Contained], exclude_pids: set[int], *, full: bool
    ) -> list[proctree.ProcId]:
        """End every process of ours outside the trees of live observers (escapees too).

        As subreaper, whatever left one of our trees has been reparented to us, so our own
        children are enough; `full` also scans every process for the mark (the only way
        without a subreaper, and a cross-check with one).
        """
        if self.subreaper and not full:
            return await asyncio.to_thread(
                self._end_adopted,
                None,
                exclude_pids | {c.identity.pid for c in live},
                1.0,
                {c.mark for c in live},
            )
        return await asyncio.to_thread(self._sweep, live, exclude_pids)

    def _end_adopted(
        self,
        marks: set[str] | None,
        exclude_pids: set[int],
        grace: float,
        spare_marks: frozenset[str] | set[str] = frozenset(),
    ) -> list[proctree.ProcId]:
        """End our direct children that are not observers we track: adopted escapees/orphans.

        `marks`: only those carrying one of these marks; None: anything carrying ours.
        """
        ended: list[proctree.ProcId] = []
        for proc in proctree.adopted_children(exclude_pids):
            marker = _marker(proc)
            if marker is None or not proctree.mark_matches(marker, self.mark):
                continue
            if marker in spare_marks or (marks is not None and marker not in marks):
                continue
            pid_id = proctree.identify(proc.pid)
            if pid_id is None or not proctree.is_alive(pid_id):
                continue
            result = proctree.terminate_tree(pid_id, grace=grace, dont_reap=exclude_pids)
            ended.extend(result.ended)
        return ended

    def _sweep(self, live: list[Contained], exclude_pids: set[int]) -> list[proctree.ProcId]:
        spared = set(exclude_pids)
        live_marks = {c.mark for c in live}
        for c in live:
            if proctree.is_alive(c.identity):
                spared.add(c.identity.pid)
                spared.update(p.pid for p in proctree.descendants(c.identity.pid, group=c.handle))
        ended: list[proctree.ProcId] = []
        for proc in proctree.scan(mark=self.mark):
            if proc.pid in spared or _marker(proc) in live_marks:
                continue
            pid_id = proctree.identify(proc.pid)
            if pid_id is None or not proctree.is_alive(pid_id):
                continue
            result = proctree.terminate_tree(
                pid_id, mark=_marker(proc), grace=1.0, dont_reap=exclude_pids
            )
            ended.extend(result.ended)
        return ended

    def reap_zombies(self, exclude: set[int]) -> list[int]:
        return proctree.reap_zombies(exclude)

    async def reap_previous(self, rows: list[Any], marks: list[str]) -> list[proctree.ProcId]:
        """A new worker on this data dir: end what earlier runs left, matched exactly."""
        return await asyncio.to_thread(self._reap_previous, rows, marks)

    def _reap_previous(self, rows: list[Any], marks: list[str]) -> list[proctree.ProcId]:
        ended: list[proctree.ProcId] = []
        for row in rows:
            root = proctree.ProcId(int(row["pid"]), float(row["create_time"]))
            proc = root.process()
            if proc is None or not proctree.is_alive(root):
                continue
            marker = _marker(proc)
            if marker is not None and not proctree.mark_matches(marker, str(row["mark"])):
                continue  # same pid and start time, yet not carrying that run's mark: not ours
            group = int(row["grp"]) if str(row["grp"] or "").isdigit() else None
            # identity alone is exact (pid + create_time); the mark only widens to its tree.
            result = proctree.terminate_tree(root, group=group, mark=row["mark"], grace=1.0)
            ended.extend(result.ended)
        for mark in marks:
            ended.extend(proctree.sweep(mark=mark, grace=1.0))
        return ended


def _marker(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get(proctree.MARK_ENV)
    except (psutil.Error, OSError):
        return None


def _create_time_or_now(pid: int) -> float:
    ident = proctree.identify(pid)
    return ident.create_time if ident else 0.0
