"""`python -m worker.bench_strays`: what one reaper sweep costs to end N adopted strays.

Linux (the subreaper path). This process stands in for the worker: a subreaper that adopts N
orphans ignoring SIGTERM, unmarked (each a tree of its own) or carrying one ended observer's
mark (one tree), then ends them with the sweep's own code; it prints the wall time, this
process's CPU time and how many processes the sweep said it ended (N when right). Whatever
outlives a round is killed before the next, and before the bench exits, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import subprocess
import sys
import time

import psutil

import proctree
from cliargs import COUNT, NON_NEGATIVE, HelpFormatter
from worker.containment import Containment, _Marks, worker_mark

# Each orphan: its own session, SIGTERM ignored, gone by itself after a minute at most.
PARENT = """
import os, signal, sys, time
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(0.2)
        os._exit(0)
"""


def _orphans(containment: Containment, n: int, marked: bool) -> None:
    env = {proctree.MARK_ENV: containment.observer_mark("ended")} if marked else {}
    subprocess.run([sys.executable, "-c", PARENT, str(n)], env=env, check=True)
    deadline = time.monotonic() + 60
    while len(proctree.adopted_children(set())) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} orphans were not adopted in 60 s")
        time.sleep(0.02)


def _kill_adopted() -> None:
    children = proctree.adopted_children(set())
    for proc in children:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the identity it took: never a reused pid
    psutil.wait_procs(children, timeout=30)  # ours to reap


def _round(
    containment: Containment, n: int, marked: bool, grace: float
) -> tuple[float, float, int]:
    _orphans(containment, n, marked)
    wall, cpu = time.monotonic(), time.process_time()
    nothing = _Marks(frozenset(), frozenset())
    ended = asyncio.run(containment._end_adopted(set(), grace, nothing, []))
    return time.monotonic() - wall, time.process_time() - cpu, len(ended)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m worker.bench_strays", description=__doc__, formatter_class=HelpFormatter
    )
    ap.add_argument("-n", type=COUNT, default=150, help="orphans adopted per round")
    ap.add_argument("--repeat", type=COUNT, default=3, help="rounds per kind (median shown)")
    ap.add_argument("--grace", type=NON_NEGATIVE, default=0.5, help="the sweep's SIGTERM grace, s")
    args = ap.parse_args(argv)
    if not sys.platform.startswith("linux") or not proctree.enable_subreaper():
        print("the sweep of adopted strays needs Linux's subreaper", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_exit)
    me = psutil.Process()
    containment = Containment(
        worker_mark(me.pid, proctree.create_time(me)), proctree.create_time(me), args.grace
    )
    containment.subreaper = True
    print(f"one sweep ending {args.n} adopted strays that ignore SIGTERM (median of {args.repeat})")
    try:
        for kind in ("unmarked", "marked"):
            rounds = []
            for _ in range(args.repeat):
                rounds.append(_round(containment, args.n, kind == "marked", args.grace))
                _kill_adopted()
            wall, cpu, ended = (statistics.median(r[i] for r in rounds) for i in range(3))
            print(f"  {kind:9} {wall:6.2f} s wall  {cpu:6.2f} s CPU  said ended: {ended:g}")
    finally:
        _kill_adopted()
    return 0


if __name__ == "__main__":
    sys.exit(main())
