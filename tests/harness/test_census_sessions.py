"""Orphans first seen after their parent exited belong to the session their observer leads.

A stand-in worker (a subreaper, as the fixed worker is) starts observers in sessions of their
own; each observer's child forks a grandchild and exits at once, so the census first sees the
grandchild as the worker's child, with no parent of the run to take its session from. Its POSIX
session says whose it is (a session's members all descend from its leader); one that started
a session of its own says nothing, and stays judged by time.
"""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from soak_helpers import SLEEPER, end_stand_in, wait_for

import proctree
from harness.census import Census
from harness.target import SpawnedProcess

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the stand-in worker is a Linux subreaper"
)

# argv[1]: "same" (the grandchild stays in the observer's session) or "own" (it calls setsid).
_OBSERVER = f"""
import os, signal, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the stand-in worker's SIG_IGN is inherited
middle = os.fork()
if middle == 0:
    grandchild = os.fork()
    if grandchild == 0:
        if sys.argv[1] == "own":
            os.setsid()
        os.execv(sys.executable, [sys.executable, "-c", {SLEEPER!r}])
    print(grandchild, flush=True)
    os._exit(0)
os.waitpid(middle, 0)
while True:
    time.sleep(1)
"""
# A line on stdin names the kind of observer to start; it prints the observer's pid, and the
# observer its grandchild's. Children are reaped at once (SIGCHLD ignored).
_WORKER = f"""
import signal, subprocess, sys
import proctree
proctree.enable_subreaper()
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for line in sys.stdin:
    o = subprocess.Popen([sys.executable, "-c", {_OBSERVER!r}, line.strip()],
                         start_new_session=True, stdin=subprocess.DEVNULL, stdout=sys.stdout)
    print(o.pid, flush=True)
"""


def test_an_orphan_is_of_the_session_its_observer_leads() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    ours: list[psutil.Process] = []  # started for this test: ended by handle (identity checked)
    try:
        assert worker.stdin is not None and worker.stdout is not None
        census = Census("0123456789ab", None, grace=1.0, sample_hz=4, track_descendants=True)
        census.set_worker(worker.pid, proctree.create_time(psutil.Process(worker.pid)))
        kinds = {"s1": "same", "s2": "same", "s3": "own"}
        observers: dict[str, psutil.Process] = {}
        orphans: dict[str, psutil.Process] = {}
        for key, kind in kinds.items():
            census.session_started(key)
            worker.stdin.write(kind + "\n")
            worker.stdin.flush()
            observers[key] = psutil.Process(int(worker.stdout.readline()))
            orphans[key] = psutil.Process(int(worker.stdout.readline()))
            ours += [observers[key], orphans[key]]

        def adopted() -> bool:
            # Reparented to the worker, and born over a clock tick ago: the observers' first
            # look then comes after the orphans' births on create_time's clock.
            return all(
                p.ppid() == worker.pid
                and proctree.create_time(p) + 2 * proctree.CREATE_TIME_TOLERANCE < proctree.now()
                for p in orphans.values()
            )

        wait_for(adopted, what="orphans adopted by the stand-in worker")
        for key, observer in observers.items():
            census.attribute(key, [SpawnedProcess(observer.pid, proctree.create_time(observer))])
        census.sample()
        records = {r.pid: r for r in census.live_records()}
        assert set(records) == {p.pid for p in ours}
        found = {key: census.session_of(records[p.pid]) for key, p in orphans.items()}
        assert found == {"s1": "s1", "s2": "s2", "s3": None}

        # So s1's orphan is judged at s1's end with its observer, while s2 and s3 still run
        # (by time alone it would wait for every session running at its first sight).
        census.session_ended("s1")
        s1 = {observers["s1"].pid, orphans["s1"].pid}
        wait_for(
            lambda: (census.sample(), {r.pid for r in census.leaked} >= s1)[1],
            timeout=30,
            what="s1's observer and orphan judged leaked",
        )
        assert {r.pid for r in census.leaked} == s1
        assert records[orphans["s1"].pid].role == "descendant"
    finally:
        end_stand_in(worker, ours)
