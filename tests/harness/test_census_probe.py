"""The census's cheap refresh of known processes (RSS + identity; ppid and status only when they
may have changed) against real processes: a PID reused under a tracked record, a parent that
exits (gone or a zombie) after its child was seen, an exec after first sight.

The PID reuse is genuine: inside a PID namespace of its own (util-linux `unshare`, skipped where
none can be made) the test sets `ns_last_pid`, so the next process gets the PID that a tracked one
just freed, between two samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from soak_helpers import SLEEPER, end_stand_in, wait_for

from harness.census import Census, ProcRecord, run_id_token
from harness.census_procs import read_cmdline
from harness.cleanup import sweep_run
from harness.target import SpawnedProcess
from harness.targets import claude_mem_pidns as pidns

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

ROOT = Path(__file__).resolve().parents[2]

# Run as PID 1 of a new PID namespace: a tracked process dies, its PID goes to a stranger (must
# not be counted, must never be judged a leak, must survive the sweep), then to a new process of
# the run (a new record). argv: ROOT, mode ("token" | "descendants").
_REUSE = r"""
import json, os, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import psutil
from harness.census import Census, run_id_token
from harness.cleanup import sweep_run

MODE = sys.argv[2]
SLEEPER = "import time\nwhile True: time.sleep(1)"
RUN = "abcdef012345"
TOKEN = run_id_token(RUN)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # PID 1 here: reap everything at once


def until(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out: " + what)
        time.sleep(0.02)


def gone(pid):
    return not psutil.pid_exists(pid)


# Plays the worker: starts a sleeper per line on stdin (auto-reaped), prints its PID.
FORKER = (
    "import signal, subprocess, sys\n"
    "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
    "for line in sys.stdin:\n"
    "    argv = [sys.executable, '-c', %r] + line.split()\n"
    "    print(subprocess.Popen(argv, stdin=subprocess.DEVNULL).pid, flush=True)\n" % SLEEPER
)
worker = subprocess.Popen(
    [sys.executable, "-c", FORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)
census = Census(RUN, None, grace=0.3, sample_hz=4, track_descendants=MODE == "descendants")
census.set_worker(worker.pid, psutil.Process(worker.pid).create_time())


def start_run_process():
    if MODE == "token":  # a child of ours carrying the run token
        pid = subprocess.Popen([sys.executable, "-c", SLEEPER, TOKEN]).pid
        # Sampled before its exec it would carry our argv, not the token, and with no ledger to
        # say otherwise the census never looks at that PID again: wait for the exec.
        until(lambda: TOKEN in psutil.Process(pid).cmdline(), "the exec")
        return pid
    worker.stdin.write("\n")  # a new child of the worker, no token
    worker.stdin.flush()
    return int(worker.stdout.readline())


def live(pid):
    return [r for r in census.live_records() if r.pid == pid]


# start() (-> its PID) so that it gets this free PID. The number may become free a moment after
# the process is gone from /proc: a process started too early is killed and tried again.
def start_at(pid, start):
    deadline = time.monotonic() + 30
    while True:
        with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
            fh.write(str(pid - 1))
        got = start()
        if got == pid:
            return got
        os.kill(got, signal.SIGKILL)  # ours, started just now
        until(lambda: gone(got), "a process started at the wrong PID reaped")
        assert time.monotonic() < deadline, "could not start a process at PID %d" % pid


census.session_started("s")
a = start_run_process()
until(lambda: (census.sample(), live(a))[1], "census sees the run's process")
(rec_a,) = live(a)
for _ in range(2 * census._rotation):  # every record refreshed more than once (cheap path)
    census.sample()
assert live(a) == [rec_a] and rec_a.rss > 0, rec_a

os.kill(a, signal.SIGKILL)
until(lambda: gone(a), "the run's process reaped")
strangers = []


def start_stranger():  # not of the run
    strangers.append(subprocess.Popen([sys.executable, "-c", SLEEPER]))
    return strangers[-1].pid


start_at(a, start_stranger)
for _ in range(2 * census._rotation):
    census.sample()
assert rec_a.exited_at is not None and rec_a.reaped, "a reused PID kept a dead record alive"
assert live(a) == [], "a stranger holding a reused PID was counted"

census.session_ended("s")
census.attribute("s", [])
end = time.monotonic()
while time.monotonic() < end + 3 * census.grace:
    census.sample()
    time.sleep(0.05)
assert census.leaked == [], [r.pid for r in census.leaked]

# The PID again, now for a process of the run: a new record, not the old one revived.
census.session_started("t")
os.kill(a, signal.SIGKILL)  # the stranger (ours)
until(lambda: gone(a), "the stranger reaped")
census.sample()  # sees the PID free: a PID that changes hands unseen between two samples is
# not looked at again (the census judges a PID once per owner it sees)
b = start_at(a, start_run_process)
until(lambda: (census.sample(), live(b))[1], "census sees the run's new process at the PID")
(rec_b,) = live(b)
assert rec_b is not rec_a and rec_b.create_time > rec_a.create_time
killed = sweep_run(RUN, census)
assert [k["pid"] for k in killed] == [b], killed
worker.kill()
print(json.dumps({"ok": True, "pid": a}))
"""


@pytest.mark.parametrize("mode", ["token", "descendants"])
def test_pid_reused_under_a_tracked_record(mode: str) -> None:
    prefix, how = pidns.probe()
    if prefix is None:
        pytest.skip(f"no PID namespace can be made here: {how}")
    # --kill-child: whatever is left inside dies with the namespace's PID 1.
    res = subprocess.run(
        [*prefix, sys.executable, "-c", _REUSE, str(ROOT), mode],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["ok"]


# Plays the worker: told to (a line on stdin), starts one middle process, which starts a
# grandchild in a session of its own and prints its PID, then sleeps. The worker reaps its
# children or not (argv[1]).
_MIDDLE = f"""
import subprocess, sys, time
g = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}], start_new_session=True,
                     stdin=subprocess.DEVNULL)
print(g.pid, flush=True)
while True: time.sleep(1)
"""
_WORKER = f"""
import signal, subprocess, sys, time
if sys.argv[1] == "reap": signal.signal(signal.SIGCHLD, signal.SIG_IGN)
sys.stdin.readline()
m = subprocess.Popen([sys.executable, "-c", {_MIDDLE!r}], stdout=sys.stdout)
print(m.pid, flush=True)
while True: time.sleep(1)
"""


@pytest.mark.parametrize("reaped", [True, False], ids=["parent-reaped", "parent-zombie"])
def test_child_of_a_parent_that_exits_after_being_seen_is_escaped(reaped: bool) -> None:
    """The grandchild is seen under its parent (ppid settled: not read again while the parent
    lives); the parent then exits, gone or left a zombie by the worker: the grandchild's ppid
    must be read again, and it is escaped (reparented away from the worker)."""
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, "reap" if reaped else "keep"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ours: list[psutil.Process] = []  # started by our worker: ended by PID, identity checked
    try:
        assert worker.stdin is not None and worker.stdout is not None
        census = Census("0123456789ab", None, grace=60.0, sample_hz=4, track_descendants=True)
        census.set_worker(worker.pid, psutil.Process(worker.pid).create_time())
        census.session_started("s")
        worker.stdin.write("go\n")
        worker.stdin.flush()
        middle = int(worker.stdout.readline())
        ours.append(psutil.Process(middle))
        grandchild = int(worker.stdout.readline())
        ours.append(psutil.Process(grandchild))

        def seen() -> bool:
            census.sample()
            pids = {r.pid: r for r in census.live_records()}
            return middle in pids and grandchild in pids and pids[grandchild].ppid == middle

        wait_for(seen, what="middle and grandchild tracked")
        for _ in range(2 * census._rotation):  # every record refreshed more than once
            census.sample()
        assert census.escaped == {}
        ours[0].kill()
        if not reaped:
            wait_for(lambda: ours[0].status() == psutil.STATUS_ZOMBIE, what="a zombie parent")
        wait_for(lambda: (census.sample(), census.escaped)[1], what="grandchild escaped")
        assert [r.pid for r in census.escaped.values()] == [grandchild]
        (rec,) = [r for r in census.live_records() if r.pid == grandchild]
        assert rec.ppid != middle
    finally:
        end_stand_in(worker, ours)


def test_process_that_execs_after_first_sight_is_named_by_its_current_argv(spawn) -> None:
    """First seen before its exec (as a shell shim is, between fork and exec), tracked through the
    cheap refresh, then leaked: the report names what it runs now."""
    run_id = "fedcba987654"
    marker = f"census-exec-marker-{os.getpid()}"
    code = (
        "import os, sys\n"
        "sys.stdin.readline()\n"
        f"os.execv(sys.executable, [sys.executable, '-c', {SLEEPER!r}, {marker!r}])\n"
    )
    shim = spawn(code, run_id_token(run_id), stdin=subprocess.PIPE)
    # Found by its run token (no ledger here): sampled before its first exec, it would not be.
    wait_for(lambda: run_id_token(run_id) in psutil.Process(shim.pid).cmdline(), what="started")
    census = Census(run_id, None, grace=0.2, sample_hz=4)
    census.session_started("s")
    wait_for(lambda: (census.sample(), census.live_records())[1], what="shim seen")
    (rec,) = census.live_records()
    assert marker not in rec.cmdline
    for _ in range(2 * census._rotation):
        census.sample()
    assert shim.stdin is not None
    shim.stdin.write(b"go\n")
    shim.stdin.flush()
    wait_for(lambda: marker in psutil.Process(shim.pid).cmdline(), what="exec")
    for _ in range(2 * census._rotation):  # refreshed after the exec: still the same process
        census.sample()
    assert census.live_records() == [rec]
    census.session_ended("s")
    census.attribute("s", [])
    wait_for(lambda: (census.sample(), census.leaked)[1], what="leak named")
    assert census.leaked == [rec] and rec.alive
    assert marker in rec.cmdline
    sweep_run(run_id, census)


def test_zombie_is_noticed_while_its_session_still_runs(run_id) -> None:
    """A process of the run that exits and is left unreaped by its parent (here: us) is exited as
    of the first refresh after it, not only once its session is judged."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", run_id_token(run_id)],
        stdin=subprocess.PIPE,
    )
    try:
        wait_for(lambda: run_id_token(run_id) in psutil.Process(child.pid).cmdline(), what="exec")
        census = Census(run_id, None, grace=60.0, sample_hz=4)
        census.session_started("s")
        wait_for(lambda: (census.sample(), census.live_records())[1], what="census sees it")
        (rec,) = census.live_records()
        for _ in range(2 * census._rotation):
            census.sample()
        assert child.stdin is not None
        child.stdin.close()
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, what="zombie")
        for _ in range(census._rotation):  # every live record is refreshed once in a rotation
            census.sample()
        assert census.live_records() == [] and rec.zombie_since is not None and not rec.reaped
        assert census.leaked == [] and census.zombies == {}  # its session still runs
    finally:
        child.wait(timeout=30)


_HELPERS_WORKER = """
import os, subprocess, sys, time
guardian = [sys.executable, "-m", "proctree.guardian", str(os.getpid())]
start = len(sys.argv) > 1  # a guardian from the start, as the fixed worker has one
g = subprocess.Popen(guardian, stdin=subprocess.PIPE) if start else None
print(g.pid if g else 0, flush=True)
sys.stdin.readline()
# A process with the guardian's exact argv while the guardian lives, and one that only names it.
d = subprocess.Popen(guardian, stdin=subprocess.PIPE)
n = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "proctree.guardian"])
print(d.pid, n.pid, flush=True)
sys.stdin.readline()
if g:  # the guardian dies, the worker reaps it and starts a replacement
    g.kill()
    g.wait()
    # First, one that killed it to take its place: its argv, but started otherwise.
    i = subprocess.Popen(guardian, stdin=subprocess.PIPE, env={**os.environ, "IMPOSTOR": "1"})
    r = subprocess.Popen(guardian, stdin=subprocess.PIPE)
    print(i.pid, r.pid, flush=True)
while True: time.sleep(1)
"""


@pytest.mark.parametrize("with_guardian", [True, False], ids=["fixed", "no-guardian"])
def test_only_the_workers_own_guardian_is_a_helper(with_guardian: bool) -> None:
    """A child of the worker is the run's unless it is the worker's guardian: known by its exact
    argv, and only while the worker has no other (one started later replaces a dead one, if
    started as the first was: one that killed the guardian to take its place is not it).
    Before, any argv containing "proctree.guardian" passed for it; then any process with its
    exact argv did, even beside the live guardian or under a worker that never had one (an
    observer's child made to look like it was never counted)."""
    argv = [sys.executable, "-c", _HELPERS_WORKER, *(["guardian"] if with_guardian else [])]
    worker = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ours: list[psutil.Process] = []

    def say(line: bytes) -> list[int]:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(line)
        worker.stdin.flush()
        pids = [int(x) for x in worker.stdout.readline().split()]
        ours.extend(psutil.Process(pid) for pid in pids)
        return pids

    def counted(pid: int) -> bool:
        census.sample()
        return pid in {r.pid for r in census.live_records()}

    try:
        assert worker.stdout is not None
        first = int(worker.stdout.readline())
        if first:
            ours.append(psutil.Process(first))
        census = Census("0123456789ab", None, grace=60.0, sample_hz=4, track_descendants=True)
        census.set_worker(worker.pid, psutil.Process(worker.pid).create_time())
        census.session_started("s")
        look_alike, namer = say(b"go\n")
        wait_for(lambda: counted(look_alike) and counted(namer), what="the look-alikes counted")
        if with_guardian:
            impostor, replacement = say(b"replace\n")
            wait_for(lambda: counted(impostor), what="the impostor counted")
            for _ in range(2 * census._rotation):
                assert not counted(replacement), "the replacement guardian was counted"
            assert not counted(first)
    finally:
        end_stand_in(worker, ours)


def test_a_new_process_with_a_blank_argv_is_judged_within_a_second() -> None:
    """Caught in its exec, a new process's argv reads empty (the replacement guardian was
    counted as the run's about one time in twelve): its judgement waits, but not for ever, or a
    process that blanks its own argv would never be counted."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = psutil.Process(child.pid)
        census = Census("0123456789ab", None, grace=60.0, sample_hz=4, track_descendants=True)
        census.worker_pid = os.getpid()  # as if we were the worker
        ct, now = proc.create_time(), time.time()
        assert census._mid_exec(child.pid, ct, [], proc, now)
        assert census._mid_exec(child.pid, ct, [""], proc, now + 0.5)
        assert not census._mid_exec(child.pid, ct, [], proc, now + 1.0)
        assert not census._mid_exec(child.pid, ct, ["python"], proc, now)
    finally:
        child.kill()
        child.wait()


# Plays the worker: on a line, starts a child that blanks its own argv (prctl PR_SET_MM_MAP with
# an empty argument area: /proc/PID/cmdline reads empty, as in an exec under way) and forks a
# grandchild; prints both pids, or "0 0" where the kernel refuses.
_BLANK_CHILD = """
import ctypes, os, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class Map(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end")] + [
        ("auxv", ctypes.c_void_p), ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]
f = [0, 0, 0] + [int(x) for x in open("/proc/self/stat").read().rsplit(")", 1)[1].split()[1:]]
f.insert(3, 0)  # field 3 (state) is a letter
libc.sbrk.restype = ctypes.c_void_p
m = Map(start_code=f[26], end_code=f[27], start_stack=f[28], start_data=f[45], end_data=f[46],
        start_brk=f[47], brk=libc.sbrk(0), arg_start=f[48], arg_end=f[48], env_start=f[50],
        env_end=f[51], auxv=None, auxv_size=0, exe_fd=0xFFFFFFFF)
ulong = ctypes.c_ulong
libc.prctl.argtypes = [ctypes.c_int, ulong, ctypes.c_void_p, ulong, ulong]
if libc.prctl(35, 14, ctypes.byref(m), ctypes.sizeof(m), 0) != 0:  # PR_SET_MM, PR_SET_MM_MAP
    print(0, 0, flush=True)
    sys.exit()
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(os.getpid(), g.pid, flush=True)
time.sleep(600)
"""
_BLANK_WORKER = f"""
import subprocess, sys
sys.stdin.readline()
subprocess.Popen([sys.executable, "-c", {_BLANK_CHILD!r}])
sys.stdin.readline()
"""


def test_the_child_of_a_worker_child_judged_later_is_judged_with_it() -> None:
    """A worker's child whose argv reads empty (here: blanked by the process itself) is judged a
    moment later (_mid_exec); a child it forked, first seen in the same sample, was judged at
    once, not the run's for want of a parent record, and never looked at again: a leak of it
    was never counted (helper-38's blanked observers: 20 leaked children and a PASS)."""
    worker = subprocess.Popen(
        [sys.executable, "-c", _BLANK_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    ours: list[psutil.Process] = []
    try:
        census = Census("0123456789ab", None, grace=60.0, sample_hz=4, track_descendants=True)
        census.set_worker(worker.pid, psutil.Process(worker.pid).create_time())
        census.session_started("s")
        census.sample()
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(b"go\n")
        worker.stdin.flush()
        child, grandchild = (int(x) for x in worker.stdout.readline().split())
        if not child:
            pytest.skip("this kernel does not let a process blank its argv (PR_SET_MM_MAP)")
        ours += [psutil.Process(child), psutil.Process(grandchild)]
        assert not read_cmdline(psutil.Process(child)), "the child's argv should read empty"

        def counted() -> set[int]:
            census.sample()
            return {r.pid for r in census.live_records()} & {child, grandchild}

        # Both are first seen by one sample; the child is undecided for up to a second.
        wait_for(lambda: counted() == {child, grandchild}, what="both counted as the run's")
    finally:
        end_stand_in(worker, ours)


def test_a_zombie_holds_no_memory_in_the_rss_total(run_id) -> None:
    """Its last live RSS was added to the total until it was reaped: hundreds of zombies under
    an observer that does not reap read as a gigabyte (a false peak-RSS FAIL)."""
    census = Census(run_id, None, grace=60.0, sample_hz=4, track_descendants=True)
    census.set_worker(os.getpid(), psutil.Process().create_time())  # we stand in for the worker
    census.session_started("s")
    code = "b = bytearray(64 << 20); import sys; sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code, run_id_token(run_id)], stdin=subprocess.PIPE
    )
    try:

        def counted() -> float:
            census.sample()
            return census.last_total_rss - census.last_worker_rss

        wait_for(lambda: counted() > 60e6, what="the child's 64 MB counted")
        assert child.stdin is not None
        child.stdin.close()
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, what="zombie")
        wait_for(lambda: counted() < 30e6, what="the zombie's memory no longer counted")
    finally:
        child.wait(timeout=30)


# Plays the harness (a subreaper, as `soak` is on Linux) over a worker whose child of the run
# died unreaped; then the worker is SIGKILLed and its zombie child is handed to us. argv: ROOT,
# run id. Prints what the census made of the child at the end.
_HANDED_ZOMBIE = r"""
import json, os, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import psutil
from harness.census import Census, run_id_token
token = run_id_token(sys.argv[2])
# The worker spawns a child of the run that exits at once, never reaps it, and waits.
code = ("import os, sys, time; os.posix_spawn(sys.executable, [sys.executable, '-c', 'pass', "
        f"{token!r}], os.environ); print(flush=True); time.sleep(600)")
census = Census(sys.argv[2], None, grace=0.2, sample_hz=4, track_descendants=True,
                adopt_orphans=True)
census.start()  # a subreaper from here on
worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
census.set_worker(worker.pid, psutil.Process(worker.pid).create_time())
census.session_started("s")
worker.stdout.readline()
def records():
    with census._lock:  # the census thread samples meanwhile
        return [r for recs in census.records.values() for r in recs]
deadline = time.monotonic() + 60
while not any(r.zombie_since and r.ppid == worker.pid for r in records()):
    assert time.monotonic() < deadline, "the census never saw the worker's zombie child"
    time.sleep(0.05)
(rec,) = records()
worker.send_signal(signal.SIGKILL)
worker.wait()  # the harness reaps its worker; the zombie child is now ours
census.session_ended("s")
census.attribute("s", [])
census.finish()
census.stop()
try:
    mine = psutil.Process(rec.pid).ppid() == os.getpid()
except psutil.NoSuchProcess:
    mine = False
print(json.dumps({"reaped": rec.reaped, "counted": [r.pid for r in census.zombies.values()
                  if not r.reaped], "still_ours_unreaped": mine}))
"""


def test_a_zombie_handed_to_us_by_a_dead_worker_is_reaped_not_counted(run_id) -> None:
    """Seen dead under the worker, then the worker was killed: the zombie is reparented to the
    harness, which reaps it; it is not one the worker left (a CI failure of
    test_a_claude_that_kills_its_worker: the child, killed by its parent-death signal while the
    worker's threads were still exiting, was judged a zombie left unreaped)."""
    done = subprocess.run(
        [sys.executable, "-c", _HANDED_ZOMBIE, str(ROOT), run_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"reaped": True, "counted": [], "still_ours_unreaped": False}, result


# An observer (the run's token in its argv) that forks on a byte read and prints the child's pid;
# the child stays a fork (no exec), so its argv is the observer's, token and all.
_FORKING_OBSERVER = """
import os, time
os.read(0, 1)
pid = os.fork()
if pid == 0:
    time.sleep(120)  # bounded: ends by itself if the test fails hard
    os._exit(0)
print(pid, flush=True)
time.sleep(120)
"""


def test_a_fork_of_an_observer_seen_before_its_exec_is_of_the_observers_session(run_id) -> None:
    """A child caught between fork and exec reads its parent's argv: one of an observer carries
    the run's token, so it was counted by the token without its parent, and it and everything
    below it had no session (a chain's first level, caught inside posix_spawn, left its whole
    line session-less: test_every_level_of_a_deep_chain_is_of_its_observers_session, loaded)."""
    census = Census(run_id, None, grace=60.0, sample_hz=4, track_descendants=True)
    census.set_worker(os.getpid(), psutil.Process().create_time())  # we stand in for the worker
    census.session_started("s")
    observer = subprocess.Popen(
        [sys.executable, "-c", _FORKING_OBSERVER, run_id_token(run_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    ours = [psutil.Process(observer.pid)]
    try:
        census.attribute("s", [SpawnedProcess(observer.pid, ours[0].create_time())])

        def record(pid: int) -> ProcRecord | None:
            census.sample()
            return next((r for r in census.live_records() if r.pid == pid), None)

        wait_for(lambda: record(observer.pid), what="the observer counted")
        assert observer.stdin is not None and observer.stdout is not None
        observer.stdin.write(b"g")
        observer.stdin.flush()
        child = int(observer.stdout.readline())
        ours.append(psutil.Process(child))
        assert run_id_token(run_id) in ours[1].cmdline(), "the fork should read the token"
        rec = wait_for(lambda: record(child), what="the fork counted")
        assert isinstance(rec, ProcRecord)
        assert rec.parent_pid == observer.pid
        assert census.session_of(rec) == "s"
    finally:
        end_stand_in(observer, ours)
