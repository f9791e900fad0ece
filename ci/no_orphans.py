#!/usr/bin/env python3
"""Assert, inside the CI job, that nothing an earlier step started is still running.

The GitHub runner kills a job's leftover processes when the job ends, which would hide a leak; so
the job looks for them itself. A process belongs to this CI run if its environment carries
LEAKPROOF_CI_RUN (set by .ci/run and by the workflow) with our value, or RUNNER_TRACKING_ID with
ours (the runner's own tag on every step's processes). This script and its ancestors (the step's
shell, tox) are excluded. Survivors are listed (pid, ppid, age, command line), killed, and the
exit status is 1.

Usage: python ci/no_orphans.py   (runs in the tox env `no-orphans`, which has psutil)
"""

from __future__ import annotations

import os
import sys
import time

import psutil

TAGS = ("LEAKPROOF_CI_RUN", "RUNNER_TRACKING_ID")
# Processes still on their way out get this long (seconds; NO_ORPHANS_GRACE_S overrides).
DEADLINE_S = 10.0


def ours(proc: psutil.Process, wanted: dict[str, str]) -> bool:
    try:
        environ = proc.environ()
    except (psutil.Error, OSError):
        return False  # another user's process, or gone
    return any(environ.get(name) == value for name, value in wanted.items())


def running_thread(proc: psutil.Process) -> psutil.Process | None:
    """For a zombie leader: a thread that runs on after the main one exited (Linux), through
    which the process reads; None if it has really ended. (Standalone: this env has only psutil;
    proctree.running_view is the project's own.)"""
    try:
        tids = [t.id for t in proc.threads() if t.id != proc.pid]
        return psutil.Process(tids[0]) if tids else None
    except (psutil.Error, OSError):
        return None


def survivors(wanted: dict[str, str]) -> list[psutil.Process]:
    me = psutil.Process()
    exclude = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["pid"] in exclude:
            continue
        view: psutil.Process | None = proc
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            view = running_thread(proc)
        if view is not None and ours(view, wanted):
            found.append(proc)
    return found


def describe(proc: psutil.Process) -> str:
    try:
        with proc.oneshot():
            age = time.time() - proc.create_time()
            cmd = " ".join((running_thread(proc) or proc).cmdline())[:300]
            return f"{proc.pid:>7} {proc.ppid():>7} {age:>8.1f}s  {cmd}"
    except psutil.Error:
        return f"{proc.pid:>7} (exited while being described)"


def main() -> int:
    wanted = {name: os.environ[name] for name in TAGS if os.environ.get(name)}
    if not wanted:
        print("ci/no_orphans.py: LEAKPROOF_CI_RUN and RUNNER_TRACKING_ID unset", file=sys.stderr)
        return 2
    deadline = time.monotonic() + float(os.environ.get("NO_ORPHANS_GRACE_S", DEADLINE_S))
    while (left := survivors(wanted)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not left:
        print(f"ci/no_orphans.py: no process of this CI run survived ({', '.join(wanted)})")
        return 0
    print(f"ci/no_orphans.py: {len(left)} process(es) of this CI run are still running:")
    print(f"{'PID':>7} {'PPID':>7} {'AGE':>9}  COMMAND")
    for proc in left:
        print(describe(proc))
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)
    return 1


if __name__ == "__main__":
    sys.exit(main())
