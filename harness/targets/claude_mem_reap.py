"""Time-to-reap: how long a worker's observers outlive the end of their session.

A background thread samples the run's processes (argv carries the run id, docs/contracts.md) every
few hundred ms and remembers when each was first and last seen alive, where it ran (cwd) and when
it was found gone. A process outlived its session only if it was seen alive after the session's
end: one that exits just before the end, noticed gone by a later sample, did not.
Each process is tied to a session by the worker's own layout when it has one (13.x runs an
observer in `observer-sessions/<sessionDbId>`), otherwise to the sessions that were running when it
was first seen; it is judged against the latest end among those, so a process is never timed
from the end of a session it may not belong to. One first seen while no session ran belongs to a
session that had ended: it is judged against the latest end before it appeared.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import PurePath

import psutil

import proctree
from harness.target import SpawnedProcess

SAMPLE_INTERVAL_S = 0.2
MAX_LISTED = 50  # outliving processes named in a report; the counts cover all of them


@dataclass
class _Seen:
    pid: int
    create_time: float
    first_seen: float
    last_seen: float  # a moment it was alive: taken before its facts were read
    cmdline: list[str] = field(default_factory=list)
    cwd: str = ""
    gone_at: float | None = None  # when found gone (it exited between last_seen and this)


@dataclass
class _Window:
    start: float
    end: float | None = None
    db_id: int | None = None


@dataclass
class ReapTracker:
    token: str  # `--fake-claude-run-id=<RUNID>`
    interval: float = SAMPLE_INTERVAL_S
    seen: dict[tuple[int, float], _Seen] = field(default_factory=dict)
    windows: dict[str, _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- sessions ----------------------------------------------------------------------------
    def session_started(self, key: str) -> None:
        with self._lock:
            self.windows.setdefault(key, _Window(start=proctree.now()))

    def session_db_id(self, key: str, db_id: int) -> None:
        with self._lock:
            self.windows.setdefault(key, _Window(start=proctree.now())).db_id = db_id

    def session_ended(self, key: str) -> None:
        with self._lock:
            self.windows.setdefault(key, _Window(start=proctree.now())).end = proctree.now()

    # -- sampling ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="reap-tracker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.sample()  # one last look, so exits during the final interval are not missed

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        live: set[tuple[int, float]] = set()
        procs = psutil.process_iter(["pid", "cmdline", "status"])
        while True:
            # process_iter reads each process's facts as it yields it: a clock read before that
            # is a moment the process was alive at, never one after it.
            before = proctree.now()
            proc = next(procs, None)
            if proc is None:
                break
            info = proc.info
            try:
                cmdline = proctree.listed_cmdline(proc)  # None: it has exited
                if cmdline is None or self.token not in cmdline:
                    continue
                create_time = proctree.create_time(proc)
            except psutil.Error:
                continue
            key = (info["pid"], round(create_time, 2))
            live.add(key)
            rec = self.seen.get(key)
            if rec is not None:
                rec.last_seen = before
                if not rec.cwd:  # unreadable at first sight: a later look may tie it to a session
                    rec.cwd = _cwd(proc)
                continue
            cwd = _cwd(proc)
            with self._lock:
                self.seen[key] = _Seen(info["pid"], create_time, before, before, cmdline[:8], cwd)
        with self._lock:
            missing = [r for k, r in self.seen.items() if r.gone_at is None and k not in live]
        # A scan can miss a live process (cmdline unreadable for a moment): confirm by identity.
        self._confirm(missing)

    def _confirm(self, recs: list[_Seen]) -> None:
        for rec in recs:
            before = proctree.now()
            if _still_running(rec.pid, rec.create_time):
                rec.last_seen = max(rec.last_seen, before)
            else:
                # Stamped when found gone, not when the scan began: a slow scan on a loaded
                # machine must not date an exit before the session end that preceded it.
                with self._lock:
                    rec.gone_at = proctree.now()

    def alive(self) -> int:
        with self._lock:
            return sum(1 for r in self.seen.values() if r.gone_at is None)

    def db_id_sessions(self) -> dict[int, str]:
        with self._lock:
            return {w.db_id: k for k, w in self.windows.items() if w.db_id is not None}

    def processes_of(self, key: str) -> list[SpawnedProcess]:
        """Processes tied to session `key` by the worker's layout (cwd), if it has one."""
        out = []
        by_db = self.db_id_sessions()
        with self._lock:
            for rec in self.seen.values():
                if _session_by_cwd(rec.cwd, by_db) == key:
                    out.append(SpawnedProcess(rec.pid, rec.create_time))
        return out

    # -- figures -----------------------------------------------------------------------------
    def _reference_end(self, rec: _Seen, by_db: dict[int, str]) -> float | None:
        owner = _session_by_cwd(rec.cwd, by_db)
        if owner is not None:
            return self.windows[owner].end
        t = rec.first_seen
        cands = [
            w
            for w in self.windows.values()
            if w.start - self.interval <= t and (w.end is None or t <= w.end + self.interval)
        ]
        if any(w.end is None for w in cands):
            return None
        if not cands:
            # Started when no session ran: after its own ended (a slot-limited observer that a
            # worker starts only once another idles out, as 10.6.3 does after the workload).
            # Timed from the latest end before it appeared, so its age is never overstated.
            ended = [w.end for w in self.windows.values() if w.end is not None and w.end < t]
            return max(ended) if ended else None
        return max(w.end for w in cands if w.end is not None)

    def report(self, grace: float = 5.0) -> dict:
        """Per process alive at its session's end: seconds until it was gone (None if not yet).

        `past_grace` counts those alive longer than `grace` after their session ended, i.e. what
        a census judging at that moment calls leaked, however late the worker ended them.
        """
        by_db = self.db_id_sessions()
        with self._lock:
            unfinished = [r for r in self.seen.values() if r.gone_at is None]
        self._confirm(unfinished)  # alive now, or gone: not "alive" from a look before the end
        now = proctree.now()
        reaped: list[float] = []
        unreaped: list[float] = []  # age past session end of those still alive
        outlived: list[dict] = []
        with self._lock:
            for rec in self.seen.values():
                end = self._reference_end(rec, by_db)
                if end is None or rec.last_seen <= end:
                    continue  # unattributable, or not seen alive after its session ended
                if rec.gone_at is None:
                    unreaped.append(now - end)
                else:
                    # An upper bound: it exited between its last sighting and this.
                    reaped.append(rec.gone_at - end)
                outlived.append(_described(rec, end))
        reaped.sort()
        outlived.sort(key=lambda d: d["gone_s"] if d["gone_s"] is not None else math.inf)
        past_grace = sum(1 for x in reaped if x > grace) + sum(1 for x in unreaped if x > grace)
        return {
            "outlived_session": len(reaped) + len(unreaped),
            "past_grace": past_grace,
            "grace_s": grace,
            "reaped": len(reaped),
            "not_reaped": len(unreaped),
            "time_to_reap_s": {
                "p50": _pct(reaped, 50),
                "p99": _pct(reaped, 99),
                "max": round(reaped[-1], 2) if reaped else None,
            },
            "not_reaped_age_s": round(max(unreaped), 2) if unreaped else None,
            "sample_interval_s": self.interval,
            # Which processes were counted (latest gone first, the alive ones before them).
            "outlived": outlived[::-1][:MAX_LISTED],
        }


def _described(rec: _Seen, end: float) -> dict:
    """A counted process, its times in seconds from its session's end."""

    def since_end(t: float | None) -> float | None:
        return None if t is None else round(t - end, 3)

    return {
        "pid": rec.pid,
        "create_time": rec.create_time,
        "cmdline": " ".join(rec.cmdline)[:200],
        "first_seen_s": since_end(rec.first_seen),
        "last_seen_s": since_end(rec.last_seen),
        "gone_s": since_end(rec.gone_at),
    }


def _cwd(proc: psutil.Process) -> str:
    """Where it runs ("" if unreadable). A process whose leader thread exited while others run
    on (headless) reads as a zombie through the leader: its cwd is read through a live thread."""
    try:
        return proc.cwd()
    except psutil.ZombieProcess:
        view = proctree.running_view(proc)
        if view is None:
            return ""
        try:
            return view.cwd()
        except (psutil.Error, OSError):
            return ""
    except (psutil.Error, OSError):
        return ""


def _still_running(pid: int, create_time: float) -> bool:
    return proctree.is_alive(proctree.ProcId(pid, create_time))


def _session_by_cwd(cwd: str, by_db: dict[int, str]) -> str | None:
    path = PurePath(cwd) if cwd else None
    if path is None or path.parent.name != "observer-sessions":
        return None
    if not (path.name.isascii() and path.name.isdigit()):  # isdigit() alone takes "²"
        return None
    return by_db.get(int(path.name))


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    # Nearest rank, as the soak's cleanup latency percentiles.
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return round(sorted_values[idx], 2)
