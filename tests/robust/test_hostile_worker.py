"""Hostile `claude` executables (not the fake) against the fixed worker: every session ends, the
worker neither hangs nor crashes, and nothing any hostile child started is left alive."""

from __future__ import annotations

import contextlib
import sys
import time

import psutil
import pytest
from hostile import ROOT_CASES, Hostile, case_params, decoy, runs_on, wait_guardian_listed
from workerkit import Worker, wait_until

import proctree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux subreaper semantics")

GRACE = 0.5
FLAGS = [
    "--grace",
    str(GRACE),
    "--reap-interval",
    "0.5",
    "--turn-timeout",
    "3",
    "--max-attempts",
    "1",
]
# Cells off: what the worker does where it may not make cgroups (not root, no delegation), and
# what a process that left its cell meets. With cells on, these strays die with their cell.
NO_CELLS = {"PROCTREE_CGROUPS": "0"}
# A session's end: the turn timeout, the escalation (2 x grace), plus slack for a loaded machine.
SESSION_DEADLINE = 60.0
GONE_DEADLINE = 20.0

# case -> (params, roles that prove the misbehaviour happened before the session ends)
CASES: dict[str, tuple[dict[str, object], set[str]]] = {
    "holds-stdout": ({}, {"main", "grandchild"}),
    "double-fork-noenv": ({}, {"main", "escapee"}),
    "closed-stdio": ({}, {"main"}),
    "fork-chain": ({"n": 40}, {"main"}),
    "flood": ({}, {"main"}),
    "own-pgid": ({}, {"main", "grandchild0", "grandchild1"}),
    "stops-itself": ({}, {"main", "grandchild"}),
    "zombie-farm": ({}, {"main", "farmer", "farmed"}),
    "deaf": ({}, {"main"}),
    "closes-stdin": ({}, {"main"}),
    "asks-back": ({}, {"main"}),
    "headless": ({}, {"main", "grandchild-headless", "escapee-headless"}),
    # a debugger on the observer swallows its signals; its exit goes to the tracer first
    "tracer": ({}, {"main", "tracing"}),
    # the worker's listening socket, taken (pidfd_getfd) and accepted on without an answer
    "api-thief": ({}, {"main", "api-thief"}),
}


def drive(worker: Worker, hostile: Hostile, roles: set[str], content_id: str) -> int:
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    worker.observe(content_id, 0)
    worker.summarize(content_id)
    wait_until(lambda: roles <= hostile.roles(), SESSION_DEADLINE, f"roles {sorted(roles)}")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    return sid


def assert_all_gone(hostile: Hostile, what: str) -> None:
    try:
        wait_until(lambda: not hostile.processes(), GONE_DEADLINE, f"{what}: all gone")
    except AssertionError as exc:
        left = ", ".join(f"{p.pid}:{role}" for p, role in hostile.processes())
        raise AssertionError(f"{exc}; still alive: {left}") from None


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_worker_ends_everything(case: str, hostiles, workers) -> None:
    params, roles = CASES[case]
    ends_everything(case, roles, hostiles(case, **params), workers)


@pytest.mark.parametrize("cells", ["cells", "no-cells"])
@pytest.mark.parametrize("case", case_params(sorted(ROOT_CASES)))
def test_fixed_worker_ends_what_root_does(case: str, cells: str, hostiles, workers) -> None:
    params, roles = ROOT_CASES[case]
    hostile = hostiles(case, **params)
    env = None if cells == "cells" else NO_CELLS
    worker = ends_everything(case, roles, hostile, workers, env=env)
    if cells == "cells" and case == "cell-exit" and worker.stats()["containment"]["cgroups"]:
        assert "left-cell" in hostile.roles(), hostile.roles()  # else it proved nothing
    if case == "fork-loop":
        assert "looping" in hostile.roles(), hostile.roles()  # it forked while being ended


def ends_everything(
    case: str, roles: set[str], hostile: Hostile, workers, env: dict[str, str] | None = None
) -> Worker:
    worker = workers(hostile.path, flags=FLAGS, env=env)
    # A process with an empty environment that the worker did not start: never its to end.
    with decoy() as other:
        check_session(case, roles, hostile, worker)
        assert other.poll() is None, "the worker ended a process it did not start"
    return worker


def check_session(case: str, roles: set[str], hostile: Hostile, worker: Worker) -> None:
    started = time.monotonic()
    sid = drive(worker, hostile, roles, f"robust-{case}")
    worker.wait_session_done(sid, SESSION_DEADLINE)
    took = time.monotonic() - started
    assert_all_gone(hostile, case)
    # Nothing they left exited unreaped either: as subreaper the worker reaps what it adopts.
    wait_until(lambda: not worker_zombies(worker), GONE_DEADLINE, f"{case}: no zombie children")
    # It still serves, and it did not crash on the way.
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()
    assert worker.api().ok("GET", "/api/health")
    assert took < SESSION_DEADLINE
    if case == "fork-chain":
        # The chain really forked during the escalation (else this case proves nothing).
        assert {"link0", "link1"} <= hostile.roles(), hostile.roles()
    rows = worker.processes()
    assert rows and all(r["state"] == "ended" for r in rows), rows
    # Its own helper, an unmarked child of the worker too, was left alone by the sweeps.
    guardian = worker.stats()["containment"]["guardian"]
    assert guardian["alive"] and guardian["starts"] == 1, guardian


def worker_zombies(worker: Worker) -> list[int]:
    assert worker.proc is not None
    try:
        children = psutil.Process(worker.proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    zombies = []
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            if not runs_on(child):
                zombies.append(child.pid)
    return zombies


def _long_timeout_flags(turn_timeout: float) -> list[str]:
    flags = list(FLAGS)
    flags[flags.index("--turn-timeout") + 1] = str(turn_timeout)
    return flags


def test_root_exit_ends_the_stream_though_a_grandchild_holds_stdout(hostiles, workers) -> None:
    """With the default-like turn timeout (120 s) and three queued items, waiting for EOF on a
    pipe a grandchild holds would take 6 minutes; the root's exit must end each turn at once."""
    hostile = hostiles("holds-stdout")
    worker = workers(hostile.path, flags=_long_timeout_flags(120))
    started = time.monotonic()
    sid = drive(worker, hostile, {"main", "grandchild"}, "robust-holds-120")
    worker.wait_session_done(sid, 40.0)  # well under one 120 s turn timeout
    assert time.monotonic() - started < 40.0
    assert_all_gone(hostile, "the pipe holders")
    errors = " ".join(str(r.get("how")) for r in worker.processes())
    assert "error" in errors, worker.processes()
    assert "holds its stdout" in worker.log(), worker.log()


def test_output_flood_fails_fast_with_bounded_memory(hostiles, workers) -> None:
    """Endless valid lines and no result: the reply is bounded (memory) and the turn fails
    when it passes the bound, not at the turn timeout."""
    import psutil

    hostile = hostiles("flood")
    worker = workers(hostile.path, flags=_long_timeout_flags(60))
    proc = psutil.Process(worker.pid)
    base = proc.memory_info().rss
    peak = base
    started = time.monotonic()
    sid = drive(worker, hostile, {"main"}, "robust-flood")

    def done() -> bool:
        nonlocal peak
        peak = max(peak, proc.memory_info().rss)
        st = worker.status(sid)
        return st["queueLength"] == 0 and not st["observers"] and st["status"] != "active"

    wait_until(done, 50.0, "the flooded session to end")
    assert time.monotonic() - started < 50.0  # under one 60 s turn timeout
    assert peak - base < 150 * 2**20, f"worker grew {(peak - base) / 2**20:.0f} MB"
    assert_all_gone(hostile, "the flooder")
    assert "reply longer than" in worker.log(), worker.log()


def _blocked_writing(pid: int) -> bool:
    """The process sleeps in a write to a full pipe (Linux: /proc/<pid>/wchan)."""
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as f:
            return "pipe_write" in f.read()
    except OSError:
        return False


def test_flood_between_turns_meets_back_pressure(hostiles, workers) -> None:
    """Between turns nobody reads the observer's lines: they must not pile up in the worker
    (256 queued lines of up to --max-line each were 0.8 GB); the child must block instead."""
    import psutil

    hostile = hostiles("flood-idle")
    worker = workers(hostile.path, flags=_long_timeout_flags(60))
    proc = psutil.Process(worker.pid)
    base = proc.memory_info().rss
    content_id = "robust-flood-idle"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")

    def lines() -> int:
        return sum(1 for _, role in hostile.entries() if role.startswith("line"))

    last = [-1]

    def flooded_or_held() -> bool:
        """It wrote everything (the worker took it all in), or it is held: blocked in a write
        to the full pipe with the same number of lines written at two polls in a row."""
        if "flooded" in hostile.roles():
            return True
        mains = [p for p, role in hostile.processes() if role == "main"]
        n = lines()
        held = n >= 1 and n == last[0] and bool(mains) and _blocked_writing(mains[0].pid)
        last[0] = n
        return held

    wait_until(flooded_or_held, SESSION_DEADLINE, "the flood to be written or to be held")
    grown = proc.memory_info().rss - base
    assert "flooded" not in hostile.roles(), "300 MB went into the worker with no turn reading"
    # One line queued, one read and waiting for room, the next in the pipe: 3 MB lines, 4 MB
    # budget (--max-line) -> two lines written at most.
    assert lines() <= 3, f"{lines()} lines of 3 MB taken in with no turn reading"
    assert grown < 150 * 2**20, f"worker grew {grown / 2**20:.0f} MB with nobody reading"
    # The next turn reads through the flood to its result; then the session ends cleanly.
    worker.observe(content_id, 0)
    worker.summarize(content_id)
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid, SESSION_DEADLINE)
    assert_all_gone(hostile, "flood-idle")


def test_strays_with_an_emptied_or_foreign_mark_are_ended(hostiles, workers) -> None:
    """Before: a stray carrying a mark that was not ours (`env VAR=` empties it; a nested tool
    sets its own) was skipped by every sweep and lived until the worker's shutdown."""
    import proctree

    hostile = hostiles("foreign-marks", mark_env=proctree.MARK_ENV)
    worker = workers(hostile.path, flags=FLAGS, env=NO_CELLS)
    sid = drive(worker, hostile, {"main", "emptied", "foreign"}, "robust-foreign-marks")
    worker.wait_session_done(sid, SESSION_DEADLINE)
    assert_all_gone(hostile, "the strays with marks not ours")
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()


def test_a_copied_mark_of_a_live_observer_spares_nothing(hostiles, workers) -> None:
    """Before: a stray carrying the mark of another session's live observer was spared until
    that session ended (180 s idle, or as long as it stays busy). The live observer is a child
    subreaper: nothing it orphans comes to the worker while it lives, so the mark was copied.
    The stray is ended alone: the live observer, which carries that mark, is not touched."""
    import proctree

    hostile = hostiles("forged-mark", mark_env=proctree.MARK_ENV)
    worker = workers(hostile.path, flags=FLAGS, env=NO_CELLS)
    owner_sid = worker.new_session("robust-owner")
    worker.prompt(owner_sid, "robust-owner", "fix the bug")
    wait_until(lambda: "owner" in hostile.roles(), SESSION_DEADLINE, "the owner's mark shared")
    (owner,) = [p for p, role in hostile.processes() if role == "owner"]
    sid = worker.new_session("robust-forger")
    worker.prompt(sid, "robust-forger", "fix the bug")
    wait_until(lambda: "forger" in hostile.roles(), SESSION_DEADLINE, "the forger")
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid, SESSION_DEADLINE)
    forgers = [pid for pid, role in hostile.entries() if role == "forger"]

    def forger_gone() -> bool:
        return not [p for p, role in hostile.processes() if p.pid in forgers]

    wait_until(forger_gone, GONE_DEADLINE, "the stray with a copied mark ended")
    assert owner.is_running() and owner.status() != psutil.STATUS_ZOMBIE, "the owner was ended"
    assert worker.status(owner_sid)["observers"], "the owner's session lost its observer"
    worker.api().ok("POST", f"/sessions/{owner_sid}/complete")
    worker.wait_session_done(owner_sid, SESSION_DEADLINE)
    assert_all_gone(hostile, "forged-mark")


def _written(pid: int) -> int | None:
    """Bytes the process has written so far (Linux: /proc/<pid>/io), None once it is gone."""
    try:
        return psutil.Process(pid).io_counters().write_chars
    except psutil.Error:
        return None


def test_a_flood_of_blank_lines_meets_back_pressure(hostiles, workers) -> None:
    """Before: blank lines were dropped one by one before the back-pressure, so a child
    writing newlines without end kept the worker reading them (77 % of a core for one
    session, 100 % for four; /api/health 80 ms). Now they are bounded like a line: past
    --max-line the stream is failed, nothing more is read, and the writer blocks."""
    hostile = hostiles("blank-flood")
    worker = workers(hostile.path, flags=_long_timeout_flags(60))
    content_id = "robust-blank-flood"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    wait_until(lambda: "flooder" in hostile.roles(), SESSION_DEADLINE, "the flooder")
    (flooder,) = [pid for pid, role in hostile.entries() if role == "flooder"]
    seen: list[int | None] = []

    def held() -> bool:
        """The same byte count at three polls in a row: nobody reads its pipe any more."""
        seen.append(_written(flooder))
        return len(seen) >= 3 and seen[-1] is not None and len(set(seen[-3:])) == 1

    wait_until(held, SESSION_DEADLINE, "the blank flood to be held")
    written = seen[-1] or 0
    assert written >= 4 * 2**20, written  # it did flood past the bound (4 MB) first
    # The next turn fails on the flood; the session then ends cleanly, all of it gone.
    worker.observe(content_id, 0)
    worker.summarize(content_id)
    worker.api().ok("POST", f"/sessions/{sid}/complete")
    worker.wait_session_done(sid, SESSION_DEADLINE)
    assert_all_gone(hostile, "blank-flood")
    assert "bytes of blank lines" in worker.log(), worker.log()


def test_delete_ends_the_observer_though_its_tree_holds_the_store_lock(hostiles, workers) -> None:
    """An observer's grandchild holds the database's write lock (a tool's `sqlite3` on it). The
    store fails, so DELETE could not record the deletion: it answered 503 and ended nothing,
    and the observer and its locker lived on until the generator's store retries ran out, about
    two minutes later (a soak counted them as leaked). Ending the tree frees the lock."""
    hostile = hostiles("db-lock")
    worker = workers(hostile.path, flags=FLAGS)
    content_id = "robust-db-lock"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    wait_until(lambda: {"main", "locker"} <= hostile.roles(), SESSION_DEADLINE, "the locker")
    started = time.monotonic()
    status, body = worker.api().request("DELETE", f"/sessions/{sid}")
    assert status in (200, 503), (status, body)
    assert_all_gone(hostile, "the observer and the lock holder")
    assert time.monotonic() - started < GONE_DEADLINE + 10
    # With the lock gone the store works again: the deletion is recorded at the next asking.
    worker.api().ok("DELETE", f"/sessions/{sid}")
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()


def test_an_escapee_in_another_sessions_cell_ends_with_its_own(hostiles, workers) -> None:
    """Each of two live observers leaves a grandchild that moves itself into the OTHER's cgroup
    cell, then double-forks (a session of its own, no environment, SIGTERM ignored). Ending
    the first session must end its escapee though another observer's live cell holds it (an
    ending passes over what the other cells hold, as theirs)."""
    hostile = hostiles("cell-exit", where="sibling")
    worker = workers(hostile.path, flags=FLAGS)
    if not worker.stats()["containment"]["cgroups"]:
        pytest.skip("the worker has no cgroup cells here")
    sids = [worker.new_session(f"robust-sibling-{i}") for i in range(2)]
    for i, sid in enumerate(sids):
        worker.prompt(sid, f"robust-sibling-{i}", "fix the bug")

    def escaped() -> bool:
        roles = [role for _, role in hostile.entries()]
        return roles.count("left-cell") == 2 and roles.count("escapee") == 2

    wait_until(escaped, SESSION_DEADLINE, "both grandchildren in each other's cell")
    (first,) = worker.status(sids[0])["observers"]
    (second,) = worker.status(sids[1])["observers"]
    # Each escapee is its observer's child (observers are child subreapers).
    owners = {p.pid: p.ppid() for p, role in hostile.processes() if role == "escapee"}
    assert sorted(owners.values()) == sorted([first, second]), (owners, first, second)
    worker.api().ok("POST", f"/sessions/{sids[0]}/complete")
    worker.wait_session_done(sids[0], SESSION_DEADLINE)
    firsts = {first} | {pid for pid, owner in owners.items() if owner == first}

    def first_tree_gone() -> bool:
        return not [p for p, _ in hostile.processes() if p.pid in firsts]

    wait_until(first_tree_gone, GONE_DEADLINE, "the first session's observer and escapee gone")
    assert worker.status(sids[1])["observers"] == [second], "the live session lost its observer"
    worker.api().ok("POST", f"/sessions/{sids[1]}/complete")
    worker.wait_session_done(sids[1], SESSION_DEADLINE)
    assert_all_gone(hostile, "cell-exit into a sibling cell")
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()


@pytest.mark.parametrize("case", case_params(sorted(ROOT_CASES)))
def test_kill9_of_the_worker_leaves_nothing_root_made(case: str, hostiles, workers) -> None:
    """The worker is SIGKILLed while what root's ways out made lives (out of its cell, in a PID
    namespace of its own, as nobody, posing as a kernel thread, its own subreaper): its
    guardian must end all of it, unmarked, out of every cell and reparented to init as it is."""
    params, roles = ROOT_CASES[case]
    hostile = hostiles(case, **params)
    worker = workers(hostile.path, flags=FLAGS)
    content_id = f"robust-kill9-{case}"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    wait_until(lambda: roles <= hostile.roles(), SESSION_DEADLINE, f"roles {sorted(roles)}")
    wait_guardian_listed(hostile, SESSION_DEADLINE)
    worker.kill9()
    assert_all_gone(hostile, f"{case} after kill -9 of the worker")


@pytest.mark.parametrize("cells", ["cells", "no-cells"])
def test_kill9_ends_a_tree_that_holds_the_guardians_pipe(cells: str, hostiles, workers) -> None:
    """A grandchild opens the write end of the guardian's pipe again (/proc/<worker>/fd/N, as
    any process of the worker's uid may) and holds it. The guardian waited for that pipe's EOF
    alone, which then never came: after kill -9 of the worker the grandchild lived on, and so
    did the guardian. Now the guardian also watches the worker's life."""
    hostile = hostiles("lifeline-thief")
    worker = workers(hostile.path, flags=FLAGS, env=None if cells == "cells" else NO_CELLS)
    content_id = f"robust-lifeline-thief-{cells}"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")
    wait_until(lambda: hostile.roles() & {"thief", "no-pipe"}, SESSION_DEADLINE, "the thief")
    assert {"main", "thief"} <= hostile.roles(), hostile.roles()  # else it proved nothing
    guardian = worker.stats()["containment"]["guardian"]
    guardian_id = proctree.ProcId(guardian["pid"], guardian["create_time"])
    wait_guardian_listed(hostile, SESSION_DEADLINE)
    worker.kill9()
    assert_all_gone(hostile, "lifeline-thief after kill -9 of the worker")
    assert not proctree.wait_gone([guardian_id], GONE_DEADLINE), "the guardian did not exit"
    assert "still held open by another process" in worker.log(), worker.log()[-2000:]


def test_a_forged_order_to_the_guardian_ends_nothing_not_the_workers(hostiles, workers) -> None:
    """An observer writes `group PGID CREATE_TIME` into the guardian's pipe (its write end
    opened again through /proc/<worker>/fd), naming a process group the worker never started.
    The guardian took every such line on the pipe's word: after kill -9 of the worker it
    killed that whole group. Now a group is taken only while its leader is the daemon's child
    (a dead leader's group is ended only by what carries the mark, as before)."""
    hostile = hostiles("lifeline-forger")
    worker = workers(hostile.path, flags=FLAGS)
    # Started after the worker (the guardian considers nothing older), a group of its own.
    with decoy(hostile) as other:
        sid = worker.new_session("robust-lifeline-forger")
        worker.prompt(sid, "robust-lifeline-forger", "fix the bug")
        wait_until(lambda: hostile.roles() & {"forged", "no-pipe"}, SESSION_DEADLINE, "forger")
        assert "forged" in hostile.roles(), hostile.roles()  # else it proved nothing
        guardian = worker.stats()["containment"]["guardian"]
        guardian_id = proctree.ProcId(guardian["pid"], guardian["create_time"])
        worker.kill9()
        assert_all_gone(hostile, "lifeline-forger after kill -9 of the worker")
        assert not proctree.wait_gone([guardian_id], GONE_DEADLINE), "the guardian did not exit"
        assert other.poll() is None, "the guardian killed a process group the worker never made"


def test_a_forged_unwatch_of_a_live_tree_is_passed_over(hostiles, workers) -> None:
    """An observer writes `ungroup PGID CREATE_TIME` for its own live group into the guardian's
    pipe (its write end opened again through /proc/<worker>/fd). The guardian took it: it forgot
    that tree, which was then ended at the worker's death only if something else found it (here
    the guardian's listing of the worker's tree does). Now an `ungroup` whose leader still runs
    is passed over and said in the log, while the worker's own, after it has ended a tree, is
    taken. Cells off: the sleeper's cell would end it too."""
    hostile = hostiles("lifeline-unwatcher")
    worker = workers(hostile.path, flags=FLAGS, env=NO_CELLS)
    # A plain session first: the worker ends its tree and unwatches it (the genuine order).
    drive(worker, hostile, {"main"}, "robust-unwatch-genuine")
    (first,) = [pid for pid, role in hostile.entries() if role == "main"]
    wait_until(lambda: not hostile.processes(), SESSION_DEADLINE, "the first observer ended")
    content_id = "robust-unwatch-forged"
    sid = worker.new_session(content_id)
    worker.prompt(sid, content_id, "fix the bug")

    def second() -> int | None:
        mains = [pid for pid, role in hostile.entries() if role == "main" and pid != first]
        return mains[0] if mains else None

    observer = wait_until(second, SESSION_DEADLINE, "the second observer")
    ident = proctree.identify(observer)
    assert ident is not None
    target = hostile.pidfile.parent / "target.txt"
    target.with_suffix(".tmp").write_text(f"{ident.pid} {ident.create_time!r}")
    target.with_suffix(".tmp").rename(target)  # whole at once: the observer may read it now
    worker.observe(content_id, 0)  # a turn that reads target.txt
    wait_until(lambda: hostile.roles() & {"unwatched", "no-pipe", "not-leader"},
               SESSION_DEADLINE, "the unwatcher")  # fmt: skip
    assert {"held", "unwatched"} <= hostile.roles(), hostile.roles()  # else it proved nothing
    wait_guardian_listed(hostile, SESSION_DEADLINE)
    worker.kill9()
    assert_all_gone(hostile, "lifeline-unwatcher after kill -9 of the worker")
    log = worker.log()
    assert f"ignored `ungroup {observer}`" in log, log[-2000:]
    assert f"ignored `ungroup {first}`" not in log, "the worker's own unwatch was passed over"


def test_replies_of_other_shapes_than_the_clis_fail_no_turn(hostiles, workers) -> None:
    """An initialize answer whose `response` was a list (not an object) raised AttributeError
    in the worker: every session failed at its start, logged with a traceback as a bug of the
    worker's ("turn failed"). Such a line is now not the answer; the right one that follows is."""
    hostile = hostiles("odd-shapes")
    worker = workers(hostile.path, flags=FLAGS)
    sid = drive(worker, hostile, {"main"}, "robust-odd-shapes")
    worker.wait_session_done(sid, SESSION_DEADLINE)
    assert_all_gone(hostile, "odd-shapes")
    log = worker.log()
    assert "Traceback" not in log and "turn failed" not in log, log[-3000:]
    assert worker.proc is not None and worker.proc.poll() is None, log
