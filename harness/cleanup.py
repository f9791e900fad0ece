"""The harness keeps its own house: end every process of a run, and nothing else.

Only processes proven to be the run's are signalled: census records (identity checked by psutil
before each signal) and processes whose argv carries the run id token.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path

import psutil

import proctree
from harness import runs
from harness.census import CT_TOLERANCE, Census, run_id_token
from harness.interrupts import shielded

# The runs under way in this process: what an interrupt that got past a run's own cleanup (which
# leaves no coroutine the time to finish it) must still end synchronously (end_live_runs).
_LIVE_RUNS: dict[str, tuple[Callable[[], None] | None, Path | None, Census | None]] = {}


def live_run(
    run_id: str,
    stop_now: Callable[[], None] | None = None,
    work_dir: Path | None = None,
    census: Census | None = None,
) -> None:
    """Register a run: `stop_now` ends its target at once, `work_dir` is removed with it, and
    what its `census` knows (escapees without the run's token among them) is swept with it.
    Also on disk (runs.record): if this process is killed outright, a later sweep finds it."""
    _LIVE_RUNS[run_id] = (stop_now, work_dir, census)
    runs.record(run_id, work_dir)


def run_over(run_id: str) -> None:
    """The run's own cleanup has finished: nothing is left for end_live_runs."""
    _LIVE_RUNS.pop(run_id, None)
    runs.forget(run_id)


def end_live_runs() -> list[str]:
    """Last resort at an interrupt: stop every registered run's target, sweep its processes,
    remove its work folder; return the run ids so ended. Further interrupts wait for it."""
    with shielded():
        return _end_live_runs()


def _end_live_runs() -> list[str]:
    ended = list(_LIVE_RUNS)
    for run_id in ended:
        stop_now, work_dir, census = _LIVE_RUNS.pop(run_id)
        if stop_now is not None:
            try:
                stop_now()
            except Exception:  # noqa: BLE001 - the sweep below still ends the run's processes
                pass
        sweep_run(run_id, census)
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
        run_over(run_id)  # its record on disk goes too
    return ended


def run_processes(run_id: str, *, skip_zombies: bool = False) -> list[psutil.Process]:
    """Every process whose argv carries this run's token (a fresh scan); zombies too unless
    skip_zombies (a zombie has exited: it waits only for its parent to reap it)."""
    token = run_id_token(run_id)
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = proctree.listed_cmdline(proc)  # None: it has exited
        except psutil.Error:
            continue
        if cmdline is None:
            if skip_zombies:
                continue
            cmdline = proc.info.get("cmdline") or []
        # An exact argv element, never a substring; another user's is theirs (proctree._owner).
        if token in cmdline and not proctree.not_ours(proc):
            out.append(proc)
    return out


def kill_and_wait(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL each (psutil refuses a PID reused since the handle was made) and wait for them."""
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout)


def sweep_run(
    run_id: str,
    census: Census | None = None,
    timeout: float = 15.0,
    recorded: Collection[tuple[int, float]] = (),
) -> list[dict]:
    """SIGKILL every remaining process of the run; return what had to be killed.

    `recorded`: (pid, create_time) of the run's processes as its record names them (a run
    killed outright): each is ended only while that very process holds the pid."""
    token = run_id_token(run_id)
    killed = end_all(
        lambda: run_processes(run_id),
        lambda proc: token in _cmdline(proc) and not proctree.not_ours(proc),
        timeout,
        known=lambda: _known(census, recorded),
        activity=census.ledger_size if census is not None else None,
    )
    if census is not None and census.adopting:
        # `soak --claude`: orphans of the run (its token or not) were handed to us.
        seen = {(k["pid"], k["create_time"]) for k in killed}
        _end_adopted(census.own_children(), timeout, seen, killed)
    return killed


def _known(
    census: Census | None, recorded: Collection[tuple[int, float]] = ()
) -> list[psutil.Process]:
    """Handles of the run's processes known already: those its record names, the census's."""
    handles = [proctree.ProcId(pid, ct).process() for pid, ct in recorded]
    if census is not None:
        census.read_ledger()
        # A record known from the ledger alone has no handle yet: its identity finds it.
        handles += [
            r.proc or proctree.ProcId(r.pid, r.create_time).process() for r in census.live_records()
        ]
    return [p for p in handles if p is not None]


def wait_unjudged_gone(run_id: str, census: Census, timeout: float) -> None:
    """Wait (<= timeout) until no process of the run runs but those the census has judged: a
    worker's stop may leave its observers a moment to die (their parent-death signal). What
    runs after it outlived the stop by more than the run's grace, unseen: a leak all the same,
    which the exit sweep that follows ends and names."""
    deadline = time.monotonic() + timeout
    while True:
        procs = _known(census) + run_processes(run_id, skip_zombies=True)
        if census.adopting:
            procs += proctree.adopted_children(census.own_children())
        left = [p for p in still_running(procs) if not census.reported(p.pid, _create_time(p))]
        remaining = deadline - time.monotonic()
        if not left or remaining <= 0:
            return
        psutil.wait_procs(left, timeout=min(0.2, remaining))


def _create_time(proc: psutil.Process) -> float:
    try:
        return proctree.create_time(proc)
    except psutil.Error:
        return 0.0


def end_all(
    scan: Callable[[], list[psutil.Process]],
    matches: Callable[[psutil.Process], bool],
    timeout: float = 15.0,
    *,
    known: Callable[[], list[psutil.Process]] | None = None,
    activity: Callable[[], int] | None = None,
) -> list[dict]:
    """Stop, then SIGKILL, what `known` (cheap: processes already known) and then `scan` find,
    until QUIET_LOOKS rounds in a row find nothing and `activity` (a counter of the run's
    doings, e.g. its ledger's size) did not move; return what was killed ({pid, create_time},
    each once).

    A process that forks and exits under ever new pids can be gone by the time a scan reads
    it while its lineage lives on: stopped, it forks no more; a scan that finds nothing is
    followed by a look at the processes born during it (those `matches` says are ours); and
    while the run still writes, it is not over, however quiet the scans.
    """
    killed: list[dict] = []
    seen: set[tuple[int, float]] = set()
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < QUIET_LOOKS and time.monotonic() < deadline:
        before = activity() if activity is not None else 0
        listed = set(psutil.pids())
        live = stop_then_kill(still_running(known()), seen, killed) if known is not None else []
        procs = still_running(scan())
        if not procs and not live:
            born, _ = proctree.born_since(listed, 0.0, matches)
            procs = [p for p in (pid_id.process() for pid_id in born) if p is not None]
        live += stop_then_kill(procs, seen, killed)
        busy = activity is not None and activity() != before
        quiet = 0 if live or busy else quiet + 1
        psutil.wait_procs(live, timeout=0.5)
    return killed


# Rounds in a row that must find nothing before a sweep is done (see end_all).
QUIET_LOOKS = 2


def stop_then_kill(
    procs: list[psutil.Process], seen: set[tuple[int, float]], killed: list[dict]
) -> list[psutil.Process]:
    """Stop all, then kill all (psutil refuses a PID reused since the handle was made); the
    ones that were running, each recorded once in `killed`."""
    # Another user's process (a record naming one, edited by hand) is not ours to signal.
    live = [p for p in still_running(procs) if not proctree.not_ours(p)]
    for proc in live:
        try:
            proc.suspend()
        except psutil.Error:
            pass
    done = []
    for proc in live:
        try:
            ident = (proc.pid, proctree.create_time(proc))
            facts = _facts(proc)  # read while it is stopped, for the report
            proc.kill()
        except psutil.Error:
            continue
        done.append(proc)
        _record(ident[0], ident[1], seen, killed, facts)
    return done


def _facts(proc: psutil.Process) -> dict:
    """What a report says of a process the sweep killed: its parent, RSS and argv (each None
    where it cannot be read)."""
    out: dict = {"ppid": None, "rss": None, "cmdline": None}
    with proc.oneshot():
        for key, read in (
            ("ppid", proc.ppid),
            ("rss", lambda: proc.memory_info().rss),
            ("cmdline", lambda: proctree.shown_argv(proc, proctree.cmdline(proc))),
        ):
            with contextlib.suppress(psutil.Error):
                out[key] = read()
    return out


def _record(
    pid: int,
    create_time: float,
    seen: set[tuple[int, float]],
    killed: list[dict],
    facts: dict | None = None,
) -> None:
    if not any(pid == p and abs(create_time - c) <= CT_TOLERANCE for p, c in seen):
        seen.add((pid, create_time))
        killed.append({"pid": pid, "create_time": create_time, **(facts or {})})


def _end_adopted(
    own: set[int], timeout: float, seen: set[tuple[int, float]], killed: list[dict]
) -> None:
    """Stop, then kill, every child of ours but `own` (as subreaper: orphans of the run), until
    QUIET_LOOKS looks in a row find none: stopped, a lineage that forks and exits holds still."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < QUIET_LOOKS and time.monotonic() < deadline:
        proctree.reap_zombies(own)
        done = stop_then_kill(still_running(proctree.adopted_children(own)), seen, killed)
        quiet = 0 if done else quiet + 1
        psutil.wait_procs(done, timeout=0.5)


def still_running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of procs that have not ended (zombies and the gone left out)."""
    out = []
    for proc in procs:
        try:
            if not proctree.exited(proc):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []
