"""kill -9 of the fixed worker: its guardian takes every observer's whole tree with it
(grandchildren and escapees too, native and on the macOS path), a restart on the same data dir
reaps exactly the survivors of a run whose guardian was killed too, a `claude` we started by hand
survives everything, and no committed item is lost or processed twice."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from workerkit import REPO, FakeRun, Worker, wait_until

import proctree
from bootclock import ENV as BOOT_TIME_ENV

STUBBORN = "ignore-eof+ignore-sigterm"
# Grandchildren that ignore SIGTERM and do not exit when their parent's pipe closes: without
# the guardian they outlive a kill -9 of the worker (see the restart test).
LINGERING = "grandchild:n=2,ignore=1,linger=1"
posix_only = pytest.mark.skipif(
    sys.platform == "win32", reason="Windows: the observers' job objects do this, no guardian"
)
# The figure for direct children (parent-death signal); the rest is the guardian's
# work (wake on EOF, one scan of the process table, SIGKILL): generous for a loaded machine.
CHILDREN_DEADLINE = 2.0
TREE_DEADLINE = 5.0


def open_sessions(worker: Worker, n: int, prefix: str) -> list[int]:
    sids = []
    for i in range(n):
        sid = worker.new_session(f"{prefix}-{i}")
        worker.prompt(sid, f"{prefix}-{i}", "go")
        sids.append(sid)
    return sids


def start_decoy(fake_run: FakeRun) -> psutil.Process:
    """A `claude` the user runs by hand, with the observer's very argv but not ours."""
    decoy = fake_run.start_decoy(["--output-format", "stream-json", "--verbose"])
    proc = psutil.Process(decoy.pid)
    wait_until(lambda: proc.is_running(), what="the decoy to run")
    return proc


@posix_only
@pytest.mark.parametrize("fallback", [False, True], ids=["native", "fallback"])
@pytest.mark.parametrize(
    "scenario",
    [f"{STUBBORN}+{LINGERING}", f"{STUBBORN}+{LINGERING}+escape"],
    ids=["grandchildren", "escapees"],
)
def test_kill9_takes_whole_trees(fake_run: FakeRun, workers, scenario: str, fallback: bool) -> None:
    # fallback: no pdeathsig, no subreaper (the macOS path): the guardian alone does it all.
    env = {proctree.FALLBACK_ENV: "1"} if fallback else {}
    worker: Worker = workers(fake_run.shim(scenario), env=env)
    assert worker.guardian is not None and proctree.is_alive(worker.guardian)
    open_sessions(worker, 3, "k9")
    per_tree = 1 + 2 + (1 if "escape" in scenario else 0)
    wait_until(
        lambda: (
            len(fake_run.census()) == 3 * per_tree
            and len(fake_run.alive_from_ledger()) == 3 * per_tree
        ),
        what=f"three observers with {per_tree - 1} descendants each",
    )
    assert worker.stats()["containment"]["guardian"]["watched"] == 3
    cells = worker.stats()["containment"]["cgroups"]  # Linux, where the worker may make them
    assert cells is None or fallback is False
    mains = fake_run.started("main")
    decoy = start_decoy(fake_run)

    worker.kill9()
    killed_at = time.monotonic()
    mains_gone = None
    if not fallback and sys.platform.startswith("linux"):
        # The parent-death signal takes the direct children within the 2 s.
        assert not proctree.wait_gone(mains, CHILDREN_DEADLINE), "observers outlived 2 s"
        mains_gone = time.monotonic() - killed_at
    # Every process of the run, by the run id in argv and by the fake's ledger.
    wait_until(
        lambda: not fake_run.alive(), TREE_DEADLINE, f"the whole run gone within {TREE_DEADLINE} s"
    )
    took = time.monotonic() - killed_at
    observers = "n/a" if mains_gone is None else f"{mains_gone:.3f} s"
    print(
        f"\nkill -9 -> all {3 * per_tree} processes gone in {took:.3f} s"
        f" (observers: {observers}; fallback={fallback}; {scenario})"
    )
    # Its work done, the guardian exits by itself; the user's own claude is untouched.
    assert worker.guardian is not None
    assert not proctree.wait_gone([worker.guardian], 10.0), "the guardian did not exit"
    assert decoy.is_running() and decoy.status() != psutil.STATUS_ZOMBIE
    assert cells is None or not Path(cells).exists(), "the guardian left the worker's cgroups"


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="only a Linux subreaper adopts orphans"
)
def test_kill9_takes_adopted_escapees_without_a_mark(fake_run: FakeRun, workers) -> None:
    """escape:scrub=1: the escapee leaves the observer's group and sheds the worker's mark, and
    no cell holds it (PROCTREE_CGROUPS=0). Its observer, a subreaper, adopts it (before the
    observers were subreapers, the worker did); once the worker is dead the observer dies too
    (parent-death signal), the escapee is init's, and only the guardian's listing of the
    worker's tree still knows it was ours."""
    worker: Worker = workers(
        fake_run.shim(f"{STUBBORN}+escape:scrub=1"), env={"PROCTREE_CGROUPS": "0"}
    )
    assert worker.stats()["containment"]["observer_subreapers"] is True
    open_sessions(worker, 2, "ad")
    wait_until(
        lambda: len(fake_run.census()) == 4 and len(fake_run.alive_from_ledger()) == 4,
        what="two observers with one escapee each",
    )
    escapees = [
        e for e in fake_run.ledger_lines() if e["event"] == "start" and e.get("role") == "escapee"
    ]
    assert len(escapees) == 2
    for e in escapees:
        proc = psutil.Process(e["pid"])
        assert proctree.MARK_ENV not in proc.environ(), "the escapee kept the worker's mark"
        observer = int(e["parent_pid"])
        wait_until(lambda p=proc, o=observer: p.ppid() == o, what="its observer to adopt it")
    # The guardian lists the tree every CHILDREN_POLL_S (0.25 s): one born later is missed
    # (documented). Ten listings' time since the youngest was born, for a loaded machine.
    youngest = max(float(e["create_time"]) for e in escapees)
    wait_until(lambda: time.time() - youngest > 2.5, what="a few of the guardian's listings")

    worker.kill9()
    killed_at = time.monotonic()
    wait_until(lambda: not fake_run.alive(), TREE_DEADLINE, "the whole run gone")
    print(f"\nkill -9 -> adopted escapees gone in {time.monotonic() - killed_at:.3f} s")
    assert worker.guardian is not None
    assert not proctree.wait_gone([worker.guardian], 10.0), "the guardian did not exit"


@posix_only
@pytest.mark.parametrize("fallback", [False, True], ids=["native", "fallback"])
def test_kill9_takes_a_scrubbed_grandchild_its_observer_held(
    fake_run: FakeRun, workers, fallback: bool
) -> None:
    """grandchild:scrub=1: a session of its own, no mark, still its observer's child, and no
    cell (PROCTREE_CGROUPS=0; the cells would hold it). Its observer dies with the worker
    (parent-death signal) or at the guardian's hand (the macOS path); then it is init's, and
    only the guardian's listing of the worker's tree still knows it. Before, that listing had
    the worker's children only (and only as a subreaper): it survived."""
    env = {"PROCTREE_CGROUPS": "0", **({proctree.FALLBACK_ENV: "1"} if fallback else {})}
    scenario = f"{STUBBORN}+grandchild:n=1,ignore=1,linger=1,scrub=1"
    worker: Worker = workers(fake_run.shim(scenario), env=env)
    assert worker.stats()["containment"]["cgroups"] is None
    open_sessions(worker, 2, "sg")
    wait_until(
        lambda: len(fake_run.census()) == 4 and len(fake_run.alive_from_ledger()) == 4,
        what="two observers with one grandchild each",
    )
    grandchildren = [psutil.Process(g.pid) for g in fake_run.started("grandchild")]
    for g in grandchildren:
        assert proctree.MARK_ENV not in g.environ(), "the grandchild kept the worker's mark"
        assert os.getsid(g.pid) == g.pid, "the grandchild is not in a session of its own"
    # The guardian lists the tree every CHILDREN_POLL_S (0.25 s): one born later is missed
    # (documented). Ten listings' time since the youngest was born, for a loaded machine.
    youngest = max(g.create_time() for g in grandchildren)
    wait_until(lambda: time.time() - youngest > 2.5, what="a few of the guardian's listings")

    worker.kill9()
    killed_at = time.monotonic()
    try:
        wait_until(lambda: not fake_run.alive(), TREE_DEADLINE, "the whole run gone")
    except AssertionError as exc:  # say what was left, and where it hung (once seen in CI)
        left = []
        for proc in fake_run.census():
            with contextlib.suppress(psutil.Error):
                age = time.time() - proc.create_time()
                left.append((proc.pid, proc.ppid(), proc.status(), round(age, 2)))
        raise AssertionError(
            f"{exc}: left (pid, ppid, status, age) {left}; {fake_run.alive()}\n{worker.log()}"
        ) from None
    print(f"\nkill -9 -> scrubbed grandchildren gone in {time.monotonic() - killed_at:.3f} s")


@posix_only
def test_a_killed_guardian_is_replaced(fake_run: FakeRun, workers) -> None:
    worker: Worker = workers(fake_run.shim(f"{STUBBORN}+{LINGERING}"))
    open_sessions(worker, 2, "gr")
    wait_until(lambda: len(fake_run.census()) == 6, what="2 observers with 2 grandchildren each")
    first = worker.guardian
    worker.kill_guardian()

    def replaced() -> dict | None:
        g = worker.stats()["containment"]["guardian"]
        return g if g and g["alive"] and g["pid"] != first.pid else None

    g = wait_until(replaced, what="the periodic sweep to start a new guardian")
    worker.guardian = proctree.ProcId(int(g["pid"]), float(g["create_time"]))
    assert g["starts"] == 2 and g["watched"] == 4  # the new one was told about both observers
    # And the new one does the job.
    worker.kill9()
    killed_at = time.monotonic()
    wait_until(lambda: not fake_run.alive(), TREE_DEADLINE, "the whole run gone")
    print(f"\nafter a replaced guardian: run gone in {time.monotonic() - killed_at:.3f} s")
    assert not proctree.wait_gone([worker.guardian], 10.0), "the guardian did not exit"


@pytest.mark.parametrize(
    ("fallback", "clock_set_back"),
    [(False, False), (True, False), (True, True)],
    ids=["native", "fallback", "fallback-clock-set-back"],
)
def test_restart_reaps_survivors_and_spares_the_decoy(
    fake_run: FakeRun, workers, tmp_path: Path, fallback: bool, clock_set_back: bool
) -> None:
    # The guardian leaves no survivors; survivors are what a worker leaves whose guardian was
    # killed as well (an OOM killer or `kill -9` of the whole process group can do that). So:
    # freeze the worker (it would start a new guardian), SIGKILL its guardian by PID, then
    # SIGKILL the worker. fallback: no pdeathsig and no subreaper (the macOS path): the
    # observers themselves survive too and only the restart's registry match ends them.
    # clock_set_back: the wall clock was set 7 s back between the two workers, so the first
    # one's run (which read the boot time before) stored create_times 7 s later than the second
    # computes for the same processes: its registry rows and its mark's age floor must be read
    # in the second's terms, or the survivors are neither matched nor swept.
    env = {proctree.FALLBACK_ENV: "1"} if fallback else {}
    first_env = dict(env)
    if clock_set_back:
        if not sys.platform.startswith("linux"):
            pytest.skip("btime: Linux's clock")
        boot_id, btime = str(proctree.boot_stamp()).split()
        first_env[BOOT_TIME_ENV] = f"{boot_id} {float(btime) + 7.0!r}"
    data = tmp_path / "data"
    claude = fake_run.shim(f"{STUBBORN}+{LINGERING}")
    first: Worker = workers(claude, data_dir=data, env=first_env)
    open_sessions(first, 2, "rs")
    wait_until(lambda: len(fake_run.census()) == 6, what="2 observers with 2 grandchildren each")
    # Both prompts answered: nothing is re-queued at the restart, so the second worker starts
    # no observer of its own and everything of the run alive after it is a survivor.
    wait_until(
        lambda: first.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] == 0,
        what="both prompts answered",
    )
    decoy = start_decoy(fake_run)
    assert (first.guardian is None) == (sys.platform == "win32")
    if first.guardian is not None:
        first.freeze()
        first.kill_guardian()
    first.kill9()
    # The grandchildren (and in fallback the observers too) survive their worker's death.
    survivors = wait_until(
        lambda: (s := fake_run.census()) and len(s) == (6 if fallback else 4) and s,
        timeout=10,
        what="the survivors of the kill -9",
    )
    assert survivors

    second: Worker = workers(claude, data_dir=data, env=env)
    # Reaping happens before worker.json is written: nothing of the old run is left now.
    assert not fake_run.census(), (fake_run.alive(), second.processes())
    fake_run.assert_none_alive(timeout=5)
    assert second.stats()["reaper"]["at_start"] >= len(survivors)
    old_rows = second.processes()  # the second run has no session: every row is the first's
    assert len(old_rows) == 2
    # Observers that outlived their worker were reaped by the restart; on Linux the
    # parent-death signal took them with the worker already.
    want = "reaped" if fallback or not sys.platform.startswith("linux") else "ended"
    assert all(r["state"] == want for r in old_rows), old_rows
    # The decoy outlives the restart and two more periodic sweeps.
    sweeps = second.stats()["reaper"]["sweeps"]
    wait_until(lambda: second.stats()["reaper"]["sweeps"] >= sweeps + 2, what="two sweeps")
    assert decoy.is_running() and decoy.status() != psutil.STATUS_ZOMBIE


def test_nothing_lost_across_kill9(fake_run: FakeRun, workers, tmp_path: Path) -> None:
    data = tmp_path / "data"
    claude = fake_run.shim("slow:first=0.1,latency=0.15,jitter=0")
    first: Worker = workers(claude, data_dir=data)
    sessions = 2
    per_session = 8
    sids = open_sessions(first, sessions, "nl")
    for i in range(per_session):
        for s in range(sessions):
            first.observe(f"nl-{s}", i)
    for s in range(sessions):
        first.summarize(f"nl-{s}")
    # Every item above got a 2xx: it is committed. Kill while most are still queued.
    assert first.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] > 0
    first.kill9()
    turns_before = sum(1 for e in fake_run.ledger_lines() if e["event"] == "turn")

    second: Worker = workers(claude, data_dir=data)
    wait_until(
        lambda: second.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] == 0,
        what="the queue to drain after the restart",
    )
    for sid in sids:
        second.api().ok("POST", f"/sessions/{sid}/complete")
        second.wait_session_done(sid)

    db = sqlite3.connect(f"file:{data / 'worker.db'}?mode=ro", uri=True)
    try:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM pending_messages GROUP BY 1"))
        observations = db.execute("SELECT message_id FROM observations").fetchall()
        summaries = db.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
    finally:
        db.close()
    items = sessions * (1 + per_session + 1)  # prompt + observations + summary
    assert statuses == {"processed": items}
    assert len(observations) == sessions * per_session
    assert len({m for (m,) in observations}) == len(observations)
    assert summaries == sessions
    # Processed items were not sent again: at most the one in flight per session is repeated.
    turns = sum(1 for e in fake_run.ledger_lines() if e["event"] == "turn")
    assert items <= turns <= items + sessions, (turns, turns_before)
    fake_run.assert_none_alive(timeout=10)


@pytest.mark.parametrize("death", ["kill9", "sigterm"])
def test_a_completed_sessions_queue_is_still_processed_after_a_restart(
    fake_run: FakeRun, workers, tmp_path: Path, death: str
) -> None:
    # The Stop hook's summarize, then SessionEnd's complete: the session is no longer active
    # while its queue waits. Before, a restart woke only active sessions, and nothing else would
    # ever wake this one: its accepted observations and summary stayed pending for good.
    data = tmp_path / "data"
    slow = fake_run.shim("slow:latency=0.3,jitter=0,first=0")  # about 1 s per turn
    first: Worker = workers(slow, data_dir=data)
    sid = first.whole_session("done")
    assert first.status(sid)["queueLength"] > 0, "the queue drained before the worker's death"
    if death == "kill9":
        first.kill9()
    else:
        first.stop()
        assert first.wait_exit() == 0
        # An orderly stop leaves no message 'processing': the one being worked on went back.
        db = sqlite3.connect(f"file:{data / 'worker.db'}?mode=ro", uri=True)
        try:
            states = dict(db.execute("SELECT status, COUNT(*) FROM pending_messages GROUP BY 1"))
        finally:
            db.close()
        assert "processing" not in states and states.get("pending"), states
    second: Worker = workers(fake_run.shim("ok"), data_dir=data)
    second.wait_session_done(sid)
    queue = second.stats()["queue"]
    assert queue.get("pending", 0) == 0 and queue.get("processing", 0) == 0, queue
    assert queue.get("failed", 0) == 0 and queue.get("processed", 0) == 5, queue  # 1+3+1
    counts = sqlite3.connect(f"file:{data / 'worker.db'}?mode=ro", uri=True)
    try:
        summaries = counts.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
    finally:
        counts.close()
    assert summaries == 1


@posix_only
def test_a_stopped_guardian_is_replaced_and_the_new_one_ends_the_run(
    fake_run: FakeRun, workers
) -> None:
    # A claude SIGSTOPped the guardian: it stayed "alive", so it was never replaced, and a
    # kill -9 of the worker then left every grandchild and escapee running (and the worker
    # itself hung once the guardian's pipe was full).
    import signal

    worker: Worker = workers(fake_run.shim(f"{STUBBORN}+{LINGERING}"))
    assert worker.guardian is not None
    old = worker.guardian
    open_sessions(worker, 2, "gs")
    wait_until(lambda: len(fake_run.census()) == 6, what="2 observers with 2 grandchildren each")
    os.kill(old.pid, signal.SIGSTOP)

    def replaced() -> dict | None:
        g = worker.stats()["containment"]["guardian"]
        return g if g["pid"] != old.pid and g["starts"] == 2 and not g["problem"] else None

    wait_until(replaced, what="a new guardian in place of the stopped one")
    assert not proctree.is_alive(old), "the stopped guardian was left behind"
    assert "is stopped" in worker.log()
    worker.kill9()
    wait_until(lambda: not fake_run.alive(), TREE_DEADLINE, "the whole run gone after kill -9")


@posix_only
def test_an_unmarked_survivor_in_a_cell_is_ended_by_the_restart(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    # The worker and its guardian both killed: an escapee that shed the worker's mark is known
    # by its cgroup cell alone. The restart's reaping (by registry row and mark) missed it, and
    # it lived on in a cell nobody would remove.
    data = tmp_path / "data"
    claude = fake_run.shim("escape:scrub=1")
    first: Worker = workers(claude, data_dir=data)
    if first.stats()["containment"]["cgroups"] is None:
        pytest.skip("the worker may not create cgroups here (not root, no delegated subtree)")
    open_sessions(first, 1, "cell")
    wait_until(lambda: fake_run.started("escapee"), what="the escapee")
    (escapee,) = fake_run.started("escapee")
    assert first.guardian is not None
    first.freeze()
    first.kill_guardian()
    first.kill9()
    assert proctree.is_alive(escapee) and not proctree.marker_of(escapee.process())
    second: Worker = workers(claude, data_dir=data)
    assert not proctree.is_alive(escapee), "the restart left the unmarked survivor running"
    assert "ended what was left in the cgroup cells of 1 earlier run" in second.log()


def test_an_earlier_crash_is_swept_once_not_at_every_start(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """A run killed outright is never ended; the next start sweeps for its mark, and the starts
    after it do not again (each such walk reads every newer process's environment, and every
    kill -9 or reboot would add one to every later start)."""
    data = tmp_path / "data"
    claude = fake_run.shim("ok")
    workers(claude, data_dir=data).kill9()
    second: Worker = workers(claude, data_dir=data)
    assert second.stats()["reaper"]["earlier_runs_swept"] == 1
    second.stop()
    assert second.wait_exit() == 0
    third: Worker = workers(claude, data_dir=data)
    assert third.stats()["reaper"]["earlier_runs_swept"] == 0
    with contextlib.closing(sqlite3.connect(data / "worker.db")) as db:
        ended, reaped = zip(*db.execute("SELECT ended, reaped FROM runs ORDER BY id"), strict=True)
    # The crashed run: never ended, reaped by the second; the second: ended cleanly.
    assert ended[0] is None and reaped[0] is not None and ended[1] is not None, (ended, reaped)


@posix_only
def test_a_stopped_guardian_of_a_killed_worker_is_ended_by_the_restart(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """The worker kill -9ed while its guardian was stopped (SIGSTOP; the worker, frozen, could
    not replace it): the guardian never read its lifeline's EOF and waited for ever, after
    the restart too, which knew nothing of it. Now the restart resumes it for its last sweep
    and kills it if it does not exit; an unrelated process given its pid would be spared
    (the identity is pid and create_time)."""
    import signal

    data = tmp_path / "data"
    claude = fake_run.shim("ok")
    first: Worker = workers(claude, data_dir=data)
    old = first.guardian
    assert old is not None
    first.freeze()
    os.kill(old.pid, signal.SIGSTOP)
    first.kill9()
    proc = old.process()
    assert proc is not None
    # A signal is delivered when the kernel next schedules the guardian, not at os.kill.
    wait_until(lambda: proc.status() == psutil.STATUS_STOPPED, what="the guardian stopped")
    second: Worker = workers(claude, data_dir=data)
    assert not proctree.is_alive(old), "the earlier run's stopped guardian was left behind"
    assert f"guardian(s) of earlier runs: [{old.pid}]" in second.log()
    assert second.guardian is not None and proctree.is_alive(second.guardian)


@posix_only
def test_a_forged_registry_does_not_make_the_restart_kill_a_stranger(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """An observer runs as the worker's user and may write its database: a row naming a process
    that is not the run's (exact pid and create_time), or a guardian column naming one, had the
    next start kill it (and its whole process group). The restart now wants the run's mark on a
    row's process and the guardian's own argv on a guardian."""
    data = tmp_path / "data"
    claude = fake_run.shim("ok")
    first: Worker = workers(claude, data_dir=data)
    first.freeze()
    first.kill9()  # an unclean run: the next start reaps what its rows name
    env = {k: v for k, v in os.environ.items() if k != proctree.MARK_ENV}
    code = "import time; time.sleep(120)"  # bounded: dies by itself if the test fails hard
    strangers = [
        psutil.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
        for _ in range(2)
    ]
    try:
        row, guardian = (proctree.identify(p.pid) for p in strangers)
        assert row is not None and guardian is not None
        with contextlib.closing(sqlite3.connect(data / "worker.db")) as db, db:
            (run_id,) = db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            db.execute(
                "INSERT INTO processes (run_id, pid, create_time, grp, state, started) "
                "VALUES (?, ?, ?, ?, 'live', ?)",
                (run_id, row.pid, row.create_time, str(row.pid), time.time()),
            )
            db.execute(
                "UPDATE runs SET guardian=? WHERE id=?",
                (f"{guardian.pid} {guardian.create_time!r}", run_id),
            )
        second: Worker = workers(claude, data_dir=data)
        assert second.guardian is not None  # the start-up, with its reaping, is over
        for stranger in strangers:
            assert stranger.is_running() and stranger.status() != psutil.STATUS_ZOMBIE, (
                f"the restart ended pid {stranger.pid}, which only a forged row named"
            )
        assert "guardian(s) of earlier runs" not in second.log()
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait(10)


@posix_only
def test_status_of_a_killed_worker_says_what_waits_and_what_still_runs(
    fake_run: FakeRun, workers, tmp_path: Path
) -> None:
    """Before, `python -m worker status` said of a killed worker only that it is gone: not that
    the work it had accepted waits in its database, nor that its observers still ran (its
    guardian killed too; fallback: no parent-death signal either)."""
    data = tmp_path / "data"
    claude = fake_run.shim(f"{STUBBORN}+slow:first=0,latency=0.5,jitter=0")
    first: Worker = workers(claude, data_dir=data, env={proctree.FALLBACK_ENV: "1"})
    open_sessions(first, 2, "st")
    for i in range(4):
        for s in range(2):
            first.observe(f"st-{s}", i)
    observers = wait_until(
        lambda: len(s := fake_run.started("main")) == 2 and s, what="2 observers"
    )
    first.freeze()
    first.kill_guardian()
    first.kill9()
    assert all(proctree.is_alive(o) for o in observers), "the observers died with their worker"
    db = sqlite3.connect(f"file:{data / 'worker.db'}?mode=ro", uri=True)
    try:
        (queued,) = db.execute(
            "SELECT COUNT(*) FROM pending_messages WHERE status IN ('pending','processing')"
        ).fetchone()
    finally:
        db.close()
    assert queued > 0, "the queue drained before the kill"
    python, python_env = proctree.python_command()
    said = subprocess.run(
        [python, "-m", "worker", "status", "--data-dir", str(data)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, **python_env}, check=False,
    )  # fmt: skip
    assert said.returncode == 3, said
    assert f"queued: {queued} message(s) of 2 session(s)" in said.stdout, said.stdout
    pids = ", ".join(str(o.pid) for o in sorted(observers, key=lambda o: o.pid))
    assert f"still running: 2 observer(s) of earlier runs (pid {pids})" in said.stdout, said.stdout
    # What it said is what the next start does.
    second: Worker = workers(claude, data_dir=data)
    assert not any(proctree.is_alive(o) for o in observers)
    wait_until(
        lambda: second.api().ok("GET", "/api/pending-queue")["queue"]["totalPending"] == 0,
        what="the queue worked by the next start",
    )
