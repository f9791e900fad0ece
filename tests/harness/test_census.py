"""The census against real processes: exact membership, identity, zombies, escapes, leaks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from soak_helpers import SLEEPER, wait_for

import proctree
from harness.census import Census, run_id_token
from harness.cleanup import sweep_run
from harness.target import SpawnedProcess


def _census(run_id: str, ledger: Path | None = None, grace: float = 1.0) -> Census:
    return Census(run_id, ledger, grace=grace, sample_hz=4)


def _ours(census: Census) -> set[int]:
    return {r.pid for r in census.live_records()}


def test_counts_only_processes_carrying_the_run_token(spawn, run_id, tmp_path):
    mine = spawn(SLEEPER, run_id_token(run_id))
    # Decoys: a different run whose id shares a prefix, the bare id, no token at all.
    other_run = spawn(SLEEPER, run_id_token(run_id + "ab"))
    bare = spawn(SLEEPER, run_id)
    # A decoy whose process *name* is `claude` (script file name becomes comm on Linux).
    claude = tmp_path / "claude"
    claude.write_text(f"#!{sys.executable}\n{SLEEPER}\n")
    claude.chmod(claude.stat().st_mode | stat.S_IEXEC)
    named = subprocess.Popen([str(claude), "--fake-claude-run-id"], stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: psutil.Process(named.pid).name() == "claude", what="decoy named claude")
        census = _census(run_id)
        census.sample()
        assert _ours(census) == {mine.pid}
        # The sweep ends the run's process and nothing else.
        killed = sweep_run(run_id, census)
        assert [k["pid"] for k in killed] == [mine.pid]
        wait_for(lambda: mine.poll() is not None, what="run process killed")
        for decoy in (other_run, bare, named):
            assert decoy.poll() is None, "a process not of the run was touched"
    finally:
        named.kill()
        named.wait()


def test_leak_is_named_only_after_session_end_plus_grace(spawn, run_id):
    census = _census(run_id, grace=2.0)
    census.session_started("s1")
    leaker = spawn(SLEEPER, run_id_token(run_id))
    # Exits when its stdin closes, as a well-behaved observer does at its session's end.
    well_behaved = spawn(
        "import sys; sys.stdin.read()", run_id_token(run_id), stdin=subprocess.PIPE
    )
    wait_for(lambda: (census.sample(), len(_ours(census)) == 2)[1], what="census sees the run")
    census.session_ended("s1")
    census.attribute("s1", [])
    t_end = time.time()
    assert well_behaved.stdin is not None
    well_behaved.stdin.close()
    census.sample()
    assert census.leaked == []  # within grace: not a leak yet
    wait_for(lambda: (census.sample(), census.leaked)[1], timeout=30, what="leak detected")
    assert time.time() >= t_end + census.grace
    assert [r.pid for r in census.leaked] == [leaker.pid]
    assert well_behaved.wait(timeout=30) == 0
    leaked = census.leaked[0]
    assert leaked.leak_reason and run_id_token(run_id) in leaked.cmdline


def test_a_leak_of_a_failed_session_says_so(spawn, run_id):
    """A session the harness gave up on (a drain timeout) is judged like any other, but its
    leak says why the worker may still have been on it."""
    census = _census(run_id, grace=0.5)
    census.session_started("failed-1")
    leaker = spawn(SLEEPER, run_id_token(run_id))
    wait_for(lambda: (census.sample(), _ours(census) == {leaker.pid})[1], what="the census")
    census.session_ended("failed-1", ok=False)
    census.attribute("failed-1", [])
    wait_for(lambda: (census.sample(), census.leaked)[1], timeout=30, what="leak detected")
    assert census.leaked[0].leak_reason == (
        "alive past its session's end + grace (its session failed; the worker may be on it)"
    )


# Reads blank in /proc/PID/cmdline (a NUL first, the argument area's last byte not NUL: the
# kernel then reads it as a setproctitle() title, up to that NUL) as a process caught in its
# exec does, until a line on stdin restores it.
_BLANKS_ITS_ARGV = """
import ctypes, sys, time
fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
start, end = int(fields[45]), int(fields[46])  # fields 48 and 49: arg_start, arg_end
saved = ctypes.string_at(start, end - start)
ctypes.memset(end - 1, ord("x"), 1)
ctypes.memset(start, 0, 1)
print("blank", flush=True)
sys.stdin.readline()
ctypes.memmove(start, saved, len(saved))
print("restored", flush=True)
while True: time.sleep(1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/stat")
def test_a_process_first_seen_with_a_blank_argv_is_looked_at_again(popen, run_id):
    """`Popen` returns before the kernel has set the new program's arguments (vfork), so the
    first look can read no argv at all: that is no judgement of whether it carries the run's
    token (a CI run's census never saw such a process again, and its leak went uncounted)."""
    census = _census(run_id)
    child = popen(
        [sys.executable, "-c", _BLANKS_ITS_ARGV, run_id_token(run_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline() == b"blank\n"
    assert not any(psutil.Process(child.pid).cmdline())
    census.sample()
    assert _ours(census) == set()
    child.stdin.write(b"go\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"restored\n"
    wait_for(lambda: (census.sample(), _ours(census) == {child.pid})[1], timeout=10, what="census")


def test_process_spawned_while_session_runs_is_expected_not_leaked(spawn, run_id):
    census = _census(run_id, grace=0.5)
    census.session_started("long")
    spawn(SLEEPER, run_id_token(run_id))
    deadline = time.time() + 2.0  # several grace periods while the session still runs
    while time.time() < deadline:
        census.sample()
        time.sleep(0.1)
    assert census.leaked == []
    assert len(census.live_records()) == 1


def test_pid_reuse_is_not_mistaken_for_a_run_process(spawn, run_id, tmp_path):
    """A ledger names (pid, create_time); the same PID with another create_time is not ours."""
    stranger = spawn(SLEEPER)  # not of the run
    ps = psutil.Process(stranger.pid)
    ledger = tmp_path / "ledger.jsonl"
    old_ct = ps.create_time() - 120.0  # "our process had this PID two minutes ago"
    ledger.write_text(
        json.dumps(
            {
                "event": "start",
                "ts": time.time() - 120.0,
                "pid": stranger.pid,
                "run_id": run_id,
                "create_time": old_ct,
                "ppid": os.getpid(),
                "argv": ["claude", run_id_token(run_id)],
                "role": "main",
                "scenario": "ok",
            }
        )
        + "\n"
    )
    census = _census(run_id, ledger)
    census.sample()
    assert _ours(census) == set(), "a reused PID was counted as the run's"
    sweep_run(run_id, census)
    assert stranger.poll() is None, "a reused PID's new owner was killed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="btime: Linux's clock")
def test_a_ledger_written_with_another_boot_time_is_read_in_the_census_terms(
    spawn, run_id, tmp_path
):
    """A fake that did not inherit the run's boot time and read it after a step of the clock
    (7 s here) writes its create_time and times 7 s later than the census computes them: its
    start line must still name the process the census samples (not a second one never seen
    alive), and its exit time must be the census's."""
    member = spawn(SLEEPER, run_id_token(run_id))
    me = proctree.identify(member.pid)
    assert me is not None
    boot_id, btime = str(proctree.boot_stamp()).split()
    later = {"boot": f"{boot_id} {float(btime) + 7.0!r}", "pid": member.pid, "run_id": run_id}
    started, exited = proctree.now(), proctree.now() + 0.5
    ledger = tmp_path / "ledger.jsonl"
    lines = [
        {**later, "event": "start", "ts": started + 7.0, "create_time": me.create_time + 7.0,
         "ppid": os.getpid(), "argv": ["claude", run_id_token(run_id)], "role": "main",
         "scenario": "ok"},
        {**later, "event": "exit", "ts": exited + 7.0, "code": 0},
    ]  # fmt: skip
    ledger.write_text("".join(json.dumps(line) + "\n" for line in lines))
    census = _census(run_id, ledger)
    census.sample()
    assert census.total_procs == 1, "the ledger's process was taken for another"
    (rec,) = [r for recs in census.records.values() for r in recs]
    assert me.matches(rec.create_time)
    assert abs(rec.spawn_ts - started) < 0.01 and abs((rec.exit_ts or 0.0) - exited) < 0.01
    sweep_run(run_id, census)


def test_zombie_is_classified_as_zombie_not_leak(run_id):
    code = "import sys; sys.stdin.read()"  # exits when we close its stdin
    child = subprocess.Popen(
        [sys.executable, "-c", code, run_id_token(run_id)], stdin=subprocess.PIPE
    )
    try:
        census = _census(run_id, grace=0.2)
        census.session_started("s")
        wait_for(lambda: (census.sample(), _ours(census))[1], what="census sees the child")
        assert child.stdin is not None
        child.stdin.close()
        # Not reaped: we do not wait() until the end, so it stays a zombie.
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, what="zombie")
        census.session_ended("s")
        census.attribute("s", [])
        wait_for(lambda: (census.sample(), census.zombies)[1], what="zombie classified")
        assert [r.pid for r in census.zombies.values()] == [child.pid]
        assert census.leaked == []
        census.finish()
        assert census.leaked == [], "a zombie is not a live leak"
    finally:
        child.wait(timeout=30)


def test_escaped_process_is_flagged(spawn, run_id):
    """A grandchild that leaves the worker's tree (new session, parent exits) is escaped."""
    fake_worker = spawn(SLEEPER)  # plays the worker: the escapee's parent is not under it
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}, {run_id_token(run_id)!r}],"
        " start_new_session=True, stdin=subprocess.DEVNULL)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", code])
    escapee = None
    try:
        launcher.wait(timeout=30)
        census = _census(run_id)
        census.set_worker(fake_worker.pid, psutil.Process(fake_worker.pid).create_time())
        census.session_started("s")
        wait_for(lambda: (census.sample(), census.escaped)[1], what="escapee flagged")
        (escapee,) = census.escaped.values()
        assert escapee.alive and escapee.ppid != fake_worker.pid
    finally:
        killed = sweep_run(run_id)
        if escapee is not None:
            assert escapee.pid in [k["pid"] for k in killed]


def test_sample_rate_is_at_least_2hz():
    with pytest.raises(ValueError):
        Census("abcdefabcdef", None, grace=1.0, sample_hz=1)


def test_target_names_processes_the_samples_never_saw(spawn, run_id):
    """The worker's registry names an observer that lived and died between two samples, one
    still running (no run token, so no sample would count it), and one whose PID now holds
    another process: counted, the live one judged, the stranger never taken for it."""
    census = _census(run_id, grace=0.3)
    census.session_started("s")
    census.sample()
    brief = spawn("pass")
    brief_ct = psutil.Process(brief.pid).create_time()
    assert brief.wait(timeout=30) == 0
    ended = proctree.now()  # as the worker's registry says it: on create_time's clock
    lingering = spawn(SLEEPER)  # carries no run token
    stranger = spawn(SLEEPER)
    stranger_ct = psutil.Process(stranger.pid).create_time()
    census.sample()
    assert _ours(census) == set(), "nothing carries the token: a sample alone counts nothing"
    census.session_ended("s")
    census.attribute(
        "s",
        [
            SpawnedProcess(brief.pid, brief_ct, ended),
            SpawnedProcess(lingering.pid, psutil.Process(lingering.pid).create_time()),
            # Its PID's earlier holder, ended a minute ago.
            SpawnedProcess(stranger.pid, stranger_ct - 120.0, stranger_ct - 60.0),
        ],
    )
    census.sample()
    assert census.total_procs == 3
    window = census.sessions["s"]
    assert window.n_procs == 2  # the brief one and the earlier holder, folded into the session
    assert window.last_exit == ended, "a process never sampled alive ended when the worker said"
    assert _ours(census) == {lingering.pid}
    wait_for(lambda: (census.sample(), census.leaked)[1], timeout=30, what="leak judged")
    assert [r.pid for r in census.leaked] == [lingering.pid]
    killed = sweep_run(run_id, census)
    assert [k["pid"] for k in killed] == [lingering.pid]
    assert stranger.poll() is None, "a PID's new holder was touched"


def test_new_processes_are_judged_parents_first_also_across_a_pid_wrap():
    """(create time, pid) ordered a parent and the child it forked within one 10 ms tick by
    pid: after a wrap (parent 32767, child 300) the child came first and, no record of its
    parent yet, was taken for no child of the run's for good (helper-38: a leak, and a PASS)."""
    from harness.census_procs import parents_first

    def entry(ct: float, pid: int, ppid: int) -> tuple[float, int, None, int]:
        return (ct, pid, None, ppid)

    fresh = [
        entry(100.0, 301, 300),  # the grandchild
        entry(100.0, 300, 32767),  # the child, a pid after the wrap
        entry(99.0, 5000, 1),  # older, unrelated
        entry(100.0, 32767, 4000),  # the parent (its own parent is not new)
        entry(100.0, 7, 8),  # two whose links read as a loop (pids reused between reads)
        entry(100.0, 8, 7),
    ]
    order = [pid for _, pid, _, _ in parents_first(fresh)]  # type: ignore[arg-type]
    assert sorted(order) == sorted(e[1] for e in fresh)  # each once, the loop too
    assert order.index(32767) < order.index(300) < order.index(301)
    assert order[0] == 5000
