"""The harness keeps its own house: end every process of a run, and nothing else.

Only processes proven to be the run's are signalled: census records (identity checked by psutil
before each signal) and processes whose argv carries the run id token.
"""

from __future__ import annotations

import time

import psutil

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
