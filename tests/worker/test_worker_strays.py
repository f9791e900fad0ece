"""The worker's sweep of adopted strays ends a stray's own tree, never a live observer's."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import psutil
import pytest
from workerkit import wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="adopted children: the Linux subreaper path"
)

# A stand-in worker in a process of its own (the sweep looks at *all* its children, so it
# must not run inside the test runner): one live observer, one stray carrying the worker's
# own mark; it sweeps, reports, and ends what is left.
STAND_IN = """
import asyncio, json, os, subprocess, sys
import psutil, proctree
from worker.containment import Containment, _Marks, worker_mark
me = psutil.Process()
c = Containment(worker_mark(me.pid, proctree.create_time(me)), proctree.create_time(me))
def start(mark):
    env = dict(os.environ, **{proctree.MARK_ENV: mark})
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
observer, stray = start(c.observer_mark("live")), start(c.mark)
while not all(proctree.identify(p.pid) for p in (observer, stray)):
    pass
live = frozenset({c.observer_mark("live")})  # a live observer's, spared
ended = asyncio.run(c._end_adopted({observer.pid}, 0.2, _Marks(live, live), []))
stray.wait(timeout=30)
print(json.dumps({"ended": [e.pid for e in ended], "stray": stray.pid,
                  "observer_alive": observer.poll() is None}))
observer.kill()
observer.wait()
"""


def test_a_stray_with_the_workers_own_mark_does_not_take_live_observers() -> None:
    """A stray whose mark is the worker's own (not an ended observer's, which is finer) is
    ended by itself: ending it by that mark would match every observer, live ones too."""
    out = subprocess.run(
        [sys.executable, "-c", STAND_IN], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout)
    assert result["ended"] == [result["stray"]], result
    assert result["observer_alive"], "the sweep of a stray took a live observer"


# Three strays that ignore SIGTERM and carry no mark, adopted by a stand-in worker (a
# subreaper): each writes the monotonic time at which its SIGTERM came (system-wide on Linux).
STUBBORN_STRAYS = """
import asyncio, json, os, signal, subprocess, sys, time
import psutil, proctree
from worker.containment import Containment, _Marks, worker_mark
me = psutil.Process()
c = Containment(worker_mark(me.pid, proctree.create_time(me)), proctree.create_time(me))
assert proctree.enable_subreaper()
c.subreaper = True
out = sys.argv[1]
STRAY = '''
import os, signal, sys, time
def term(*_):
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()} {time.monotonic()}\\\\n")
signal.signal(signal.SIGTERM, term)
if os.fork():
    os._exit(0)  # the stray is handed to the subreaper
os.setsid()
while True:
    time.sleep(60)
'''
# Unmarked, or all with the mark of one ended observer (its orphans: one tree).
env = {proctree.MARK_ENV: c.observer_mark("ended")} if sys.argv[2] == "marked" else {}
parents = [subprocess.Popen([sys.executable, "-c", STRAY, out], env=env) for _ in range(3)]
for p in parents:
    p.wait()
deadline = time.monotonic() + 60
while len(proctree.adopted_children(set())) < 3:
    assert time.monotonic() < deadline, "the strays were not adopted"
    time.sleep(0.02)
strays = [p.pid for p in proctree.adopted_children(set())]
ended = asyncio.run(c._end_adopted(set(), 2.0, _Marks(frozenset(), frozenset()), []))
zombies = [p for p in strays if psutil.pid_exists(p)]
print(json.dumps({"strays": strays, "ended": [e.pid for e in ended], "left": zombies}))
"""


@pytest.mark.parametrize("marked", ["unmarked", "marked"])
def test_stubborn_strays_are_ended_side_by_side_and_reaped(tmp_path, marked: str) -> None:
    """The sweep holds the spawn lock: ended one after another, N strays that ignore SIGTERM
    held every new session back N graces. All get SIGTERM together, and none is left a
    zombie of the worker afterwards. Each is said ended once: strays with one observer's mark
    were each ended with all the others (a mark takes its whole tree), and 150 of them were
    said to be 16,671 ended processes, after 11 s of CPU."""
    terms = tmp_path / "terms"
    out = subprocess.run(
        [sys.executable, "-c", STUBBORN_STRAYS, str(terms), marked],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert sorted(result["ended"]) == sorted(result["strays"]), result
    assert result["left"] == [], "ended strays were left unreaped"
    times = {
        int(p): float(t)
        for p, t in (line.split() for line in terms.read_text().split("\n") if line)
    }
    assert set(times) == set(result["strays"]), times
    # One after another, each SIGTERM would come a whole grace (2 s) after the one before.
    assert max(times.values()) - min(times.values()) < 1.0, times


# Unmarked lineages that ignore SIGTERM and fork, start a new session and exit every 0.3 s,
# adopted by a stand-in worker (a subreaper); each carries the test's marker in argv (for the
# test, not the worker).
HOP = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as an escapee that means to stay
end = time.monotonic() + 120
if os.fork():
    os._exit(0)  # handed to the subreaper
while time.monotonic() < end:
    time.sleep(0.3)
    if os.fork():
        os._exit(0)  # the lineage goes on in the child
    os.setsid()
"""
HOPPERS = """
import asyncio, subprocess, sys, time
import psutil, proctree
from worker.containment import Containment, _Marks, worker_mark
me = psutil.Process()
c = Containment(worker_mark(me.pid, proctree.create_time(me)), proctree.create_time(me))
assert proctree.enable_subreaper()
c.subreaper = True
for _ in range(4):
    subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], env={}, check=True)
deadline = time.monotonic() + 60
while len(proctree.adopted_children(set())) < 4:
    assert time.monotonic() < deadline, "the lineages were not adopted"
    time.sleep(0.02)
asyncio.run(c._end_adopted(set(), 1.0, _Marks(frozenset(), frozenset()), []))  # one sweep
"""


def _with_marker(marker: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if marker in (p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_one_sweep_ends_unmarked_lineages_that_fork_and_exit() -> None:
    """A lineage with no mark hops away during its SIGTERM's grace, and its next pid is handed to
    the worker: one look per sweep never caught one. The sweep now looks again and stops what
    it finds at once, so one sweep ends them all."""
    marker = f"hopper-{secrets.token_hex(6)}"
    try:
        subprocess.run(
            [sys.executable, "-c", HOPPERS, HOP, marker],
            capture_output=True,
            # Before, the sweep chased each lineage until it stopped by itself (120 s).
            timeout=60,
            check=True,
        )
        # The stand-in has exited; what its one sweep did not end lives on (for up to 120 s).
        wait_until(lambda: not _with_marker(marker), 10.0, "no lineage left after one sweep")
    finally:
        for proc in _with_marker(marker):
            proc.kill()  # psutil checks the identity it took: never a reused pid


# A stand-in worker (a subreaper) with one live observer that is a subreaper too and holds
# N sleeping children carrying its mark. The sweep's view of the observers is taken while the
# observer lives; it then exits (as at its ending's stdin EOF), handing its children to the
# stand-in, before the sweep lists its adopted children.
OBSERVER = """
import ctypes, os, sys, time
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        end = time.monotonic() + 120  # a failed test leaves nothing for long
        while time.monotonic() < end:
            time.sleep(0.2)
        os._exit(0)
print("ready", flush=True)
sys.stdin.read()  # exits at EOF
"""
RACED = """
import contextlib, json, os, subprocess, sys, time
import psutil, proctree
from worker.containment import Contained, Containment, _Marks, worker_mark
me = psutil.Process()
c = Containment(worker_mark(me.pid, proctree.create_time(me)), proctree.create_time(me))
assert proctree.enable_subreaper()
c.subreaper = True
mark = c.observer_mark("ending")
env = dict(os.environ, **{proctree.MARK_ENV: mark})
observer = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1], sys.argv[2]], env=env, text=True,
    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
)
assert observer.stdout.readline().strip() == "ready"
identity = proctree.identify(observer.pid)
marks = _Marks.of([Contained(identity, None, mark, subreaper=True)])  # the observer lives
observer.stdin.close()
observer.wait()
deadline = time.monotonic() + 60
while len(proctree.adopted_children({observer.pid})) < int(sys.argv[2]):
    assert time.monotonic() < deadline, "the observer's children were not handed over"
    time.sleep(0.02)
orphans = proctree.adopted_children({observer.pid})
strays = c._adopted_strays({observer.pid}, marks, [])
print(json.dumps({"orphans": [p.pid for p in orphans], "strays": [s.pid for s, _ in strays]}))
for proc in orphans:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()  # psutil checks the identity it took: never a reused pid
psutil.wait_procs(orphans, timeout=30)  # reaped: children of ours
"""


def test_an_observer_exiting_during_a_sweep_leaves_its_tree_to_its_ending() -> None:
    """The sweep took its view of the observers (a live subreaper's mark on a child of ours is
    a copy) before it listed its children; an observer that exited in between had handed it
    its whole tree, all taken for copies and ended one by one, each by a scan of the process
    table. With 3 observers of 150 orphans each, every ending of the worker stalled past the
    soak's 5 s grace (a CI failure: 450 leaked). Now the observer is asked after the listing:
    its tree is its ending's."""
    out = subprocess.run(
        [sys.executable, "-c", RACED, OBSERVER, "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert len(result["orphans"]) == 5, result
    assert result["strays"] == [], result


def test_the_strays_bench_says_each_stray_ended_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.bench_strays", "-n", "4", "--repeat", "1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(w[0], w[-1]) for w in lines] == [("unmarked", "4"), ("marked", "4")], done.stdout


# A stand-in worker whose loop's default executor (two threads) is all taken, as by endings'
# steps; one adopted stray. The blockers are released once the sweep is over, or after 20 s.
BUSY_EXECUTOR = """
import asyncio, json, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import psutil, proctree
from worker.containment import Containment, _Marks, worker_mark
me = psutil.Process()
c = Containment(worker_mark(me.pid, proctree.create_time(me)), proctree.create_time(me))
assert proctree.enable_subreaper()
c.subreaper = True
ORPHAN = "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(60)\\n"
subprocess.run([sys.executable, "-c", ORPHAN], env={}, check=True)
deadline = time.monotonic() + 60
while not proctree.adopted_children(set()):
    assert time.monotonic() < deadline, "the stray was not adopted"
    time.sleep(0.02)
stray = proctree.adopted_children(set())[0]
released = threading.Event()

async def main():
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(2))
    busy = [loop.run_in_executor(None, released.wait, 20) for _ in range(2)]
    ended = await c._end_adopted(set(), 0.2, _Marks(frozenset(), frozenset()), [])
    released.set()
    return ended, await asyncio.gather(*busy)

ended, waited = asyncio.run(main())
print(json.dumps({"ended": [e.pid for e in ended], "stray": stray.pid, "waited": waited}))
"""


def test_a_sweep_does_not_wait_for_the_loops_default_executor() -> None:
    """The sweep ran its steps in the loop's default executor, as the endings of observers do:
    one sweep's 150 stray endings held all of it for seconds and three observers' endings
    waited past a soak's 5 s grace (a CI failure). It has threads of its own now: it ends its
    stray while every default thread is taken, and so releases them (they waited 20 s)."""
    out = subprocess.run(
        [sys.executable, "-c", BUSY_EXECUTOR],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["ended"] == [result["stray"]], result
    assert result["waited"] == [True, True], "the sweep waited for the default executor"
