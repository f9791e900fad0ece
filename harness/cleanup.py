"""The harness keeps its own house: end every process of a run, and nothing else.

Only processes proven to be the run's are signalled: census records (identity checked by psutil
before each signal) and processes whose argv carries the run id token.
"""

from __future__ import annotations

import time

import psutil

import proctree
from harness.census import CT_TOLERANCE, Census, run_id_token


def run_processes(run_id: str, *, skip_zombies: bool = False) -> list[psutil.Process]:
    """Every process whose argv carries this run's token (a fresh scan); zombies too unless
    skip_zombies (a zombie has exited: it waits only for its parent to reap it)."""
    token = run_id_token(run_id)
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = proc.info.get("cmdline") or []
            status = proc.info.get("status")
        except psutil.Error:
            continue
        if skip_zombies and status == psutil.STATUS_ZOMBIE:
            continue
        if token in cmdline:  # an exact argv element, never a substring
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


def sweep_run(run_id: str, census: Census | None = None, timeout: float = 15.0) -> list[dict]:
    """SIGKILL every remaining process of the run; return what had to be killed."""
    killed = _kill_known(run_id, census, timeout)
    seen = {(k["pid"], k["create_time"]) for k in killed}
    # A process that forks and exits under ever new pids can be gone by the time each scan
    # above reads it, while its lineage lives on. proctree's sweep looks again at what was
    # born during its scan and stops what it finds before SIGKILL.
    ended = proctree.sweep(token=run_id_token(run_id), grace=0.0, kill_wait=timeout)
    if census is not None and census.adopting:
        # `soak --claude`: orphans of the run (its token or not) were handed to us.
        ended += _end_adopted(census.own_children(), timeout)
    for pid_id in ended:
        if (pid_id.pid, pid_id.create_time) not in seen:
            seen.add((pid_id.pid, pid_id.create_time))
            killed.append({"pid": pid_id.pid, "create_time": pid_id.create_time})
    return killed


def _end_adopted(own: set[int], timeout: float, quiet_looks: int = 3) -> list[proctree.ProcId]:
    """Stop, then kill, every child of ours but `own` (as subreaper: orphans of the run), until
    a few looks in a row find none: stopped, a lineage that forks and exits holds still."""
    ended: list[proctree.ProcId] = []
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < quiet_looks and time.monotonic() < deadline:
        proctree.reap_zombies(own)
        procs = [p for p in proctree.adopted_children(own) if _running(p)]
        quiet = 0 if procs else quiet + 1
        for proc in procs:
            try:
                proc.suspend()  # psutil checks the create_time before signalling
            except psutil.Error:
                continue
        for proc in procs:
            pid_id = proctree.identify(proc.pid)
            try:
                proc.kill()
            except psutil.Error:
                continue
            if pid_id is not None:
                ended.append(pid_id)
        psutil.wait_procs(procs, timeout=0.5)
    return ended


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_known(run_id: str, census: Census | None, timeout: float) -> list[dict]:
    """The census's live records and what carries the run's token, killed until none is left."""
    killed: list[dict] = []
    seen: set[tuple[int, float]] = set()
    deadline = time.monotonic() + timeout
    while True:
        procs: list[psutil.Process] = []
        if census is not None:
            for rec in census.live_records():
                if rec.proc is not None:
                    procs.append(rec.proc)
        procs += run_processes(run_id)
        live = []
        for proc in procs:
            try:
                ident = (proc.pid, proc.create_time())
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue  # already dead; its parent (or init) reaps it
                proc.kill()  # psutil refuses if the PID was reused since we saw it
            except psutil.Error:
                continue
            live.append(proc)
            if not any(ident[0] == p and abs(ident[1] - c) <= CT_TOLERANCE for p, c in seen):
                seen.add(ident)
                killed.append({"pid": ident[0], "create_time": ident[1]})
        if not live:
            return killed
        psutil.wait_procs(live, timeout=0.5)
        if time.monotonic() > deadline:
            return killed
