"""The guardian: after kill -9 of the daemon, grandchildren and escapees go too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from proctree_helpers import HOP, Runner, read_report, wait_for

import proctree

SPAWNER = Path(__file__).with_name("spawner_prog.py")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Windows uses the job instead")


def _start(run: Runner, *, guardian: bool, fallback: bool) -> tuple[subprocess.Popen[bytes], Path]:
    report = run.tmp_path / f"spawner-{guardian}-{fallback}.txt"
    env = dict(os.environ, PROCTREE_FALLBACK="1" if fallback else "0")
    argv = [sys.executable, str(SPAWNER), str(report), run.token, run.mark, "2"]
    argv += ["--children", "1", "--escape"] + (["--guardian"] if guardian else [])
    spawner = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    run.extra.append(spawner)
    want = {"main": 2, "child": 2, "grandchild": 2, "escapee": 2, "spawner": 1}

    def ready() -> bool:
        roles = [r for r, _ in read_report(report)]
        return all(roles.count(r) >= k for r, k in want.items())

    wait_for(ready, what=f"stand-in worker tree {want}")
    return spawner, report


def _tree(report: Path) -> list[proctree.ProcId]:
    skip = {"spawner", "guardian", "escaper", "main-eof"}
    ids = [proctree.identify(pid) for role, pid in read_report(report) if role not in skip]
    return [i for i in ids if i is not None]


@pytest.mark.parametrize("fallback", [False, True], ids=["native", "fallback"])
def test_guardian_ends_everything_after_kill_9(run: Runner, fallback: bool) -> None:
    spawner, report = _start(run, guardian=True, fallback=fallback)
    tree = _tree(report)
    assert len(tree) == 8 and all(proctree.is_alive(i) for i in tree)
    (guardian_pid,) = [pid for role, pid in read_report(report) if role == "guardian"]
    guardian = proctree.identify(guardian_pid)
    spawner.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    spawner.wait(timeout=30)
    # Generous deadline for a loaded machine; the figure itself is printed.
    left = proctree.wait_gone(tree, timeout=30.0)
    took = time.monotonic() - t0
    print(f"tree of {len(tree)} gone {took:.2f}s after kill -9 (fallback={fallback})")
    assert not left, f"left after {took:.1f}s: {sorted(left)}"
    assert guardian is not None
    assert proctree.wait_gone([guardian], timeout=30.0) == set(), "guardian did not exit"


def test_without_guardian_grandchildren_outlive_kill_9(run: Runner) -> None:
    """Negative control: pdeathsig alone takes the direct children only."""
    spawner, report = _start(run, guardian=False, fallback=False)
    tree = _tree(report)
    spawner.send_signal(signal.SIGKILL)
    spawner.wait(timeout=30)
    roles = dict((pid, role) for role, pid in read_report(report))
    mains = [i for i in tree if roles[i.pid] == "main"]
    rest = [i for i in tree if roles[i.pid] != "main"]
    if proctree.capabilities().has_pdeathsig:
        assert proctree.wait_gone(mains, timeout=10.0) == set()
    assert all(proctree.is_alive(i) for i in rest)


def test_clean_close_sweeps_and_exits(run: Runner) -> None:
    mark = run.mark
    guardian = proctree.start_guardian(mark)
    try:
        tree = run.start(mark=mark, children=1, ignore_term=True)
        assert guardian.watch(tree.containment)
        assert guardian.alive()
    finally:
        code = guardian.close()
    assert code == 0
    assert not [i for i in tree.ids() if proctree.is_alive(i)]
    wait_for(lambda: tree.popen.poll() is not None, what="root reaped")


def _forge(guardian: proctree.Guardian, line: bytes) -> None:
    """Write `line` into the guardian's pipe as another process holding it could."""
    stdin = guardian.popen.stdin
    assert stdin is not None
    os.write(stdin.fileno(), line)


def _zombie_or_reaped(popen: subprocess.Popen[bytes], leader: str) -> None:
    """The ended root as the daemon's unwatch may find it: reaped, or a zombie not yet reaped
    (asyncio collects its exit status a moment later)."""
    if leader == "reaped":
        popen.wait(timeout=30)
    else:
        wait_for(lambda: psutil.Process(popen.pid).status() == psutil.STATUS_ZOMBIE,
                 what="the ended root to read as a zombie")  # fmt: skip


@pytest.mark.parametrize("leader", ["reaped", "zombie"])
def test_unwatch_of_an_ended_tree_is_taken(
    run: Runner, capfd: pytest.CaptureFixture[str], leader: str
) -> None:
    """The daemon's own path: it ends a tree, then unwatches it (its root reaped, or still a
    zombie): the order is taken, not passed over as another writer's, and the watched tree
    left is still ended at the close."""
    guardian = proctree.start_guardian(run.mark)
    try:
        kept = run.start(mark=None, children=1)
        dropped = run.start(mark=None, children=1)
        assert guardian.watch(kept.containment) and guardian.watch(dropped.containment)
        assert not dropped.end(grace=1.0).survivors
        _zombie_or_reaped(dropped.popen, leader)
        assert guardian.unwatch(dropped.containment)
    finally:
        assert guardian.close() == 0
    assert not [i for i in kept.ids() if proctree.is_alive(i)]  # watched: ended
    assert "ignored `ungroup" not in capfd.readouterr().err


@pytest.mark.parametrize("leader", ["reaped", "zombie"])
def test_the_list_follows_the_live_trees(run: Runner, leader: str) -> None:
    """The guardian's list itself (what its reading thread keeps): an `ungroup` of a tree the
    daemon ended removes it, so a daemon that runs for weeks keeps a list as long as its live
    trees; one naming a tree whose root still runs is not the daemon's and keeps it."""
    import threading

    from proctree._guardian import _Orders

    groups: dict[int, float] = {}
    me = proctree.identify(os.getpid())
    orders = _Orders(groups, threading.Lock(), os.getpgrp(), me)
    live = run.start(mark=None, children=1)
    ended = run.start(mark=None, children=1)
    for tree in (live, ended):
        orders.take(f"group {tree.root.pid} {tree.root.create_time!r}")
    assert groups == {t.root.pid: t.root.create_time for t in (live, ended)}
    assert not ended.end(grace=1.0).survivors
    _zombie_or_reaped(ended.popen, leader)
    for tree in (live, ended):
        orders.take(f"ungroup {tree.root.pid} {tree.root.create_time!r}")
    assert groups == {live.root.pid: live.root.create_time}


def test_a_forged_ungroup_of_a_live_tree_is_passed_over(
    run: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    """Another process of the daemon's uid that opened the pipe again (lifeline-forger) wrote
    `ungroup` for a live watched tree: the guardian forgot it, and the tree (unmarked, so only
    its group names it) outlived the daemon. The daemon unwatches only a tree it has ended."""
    guardian = proctree.start_guardian(run.mark)
    try:
        tree = run.start(mark=None, children=1)
        assert guardian.watch(tree.containment)
        _forge(guardian, f"ungroup {tree.root.pid} {tree.root.create_time!r}\n".encode())
    finally:
        assert guardian.close() == 0  # the lifeline's EOF, as at the daemon's death
    assert not [i for i in tree.ids() if proctree.is_alive(i)], "the forged ungroup was taken"
    assert f"ignored `ungroup {tree.root.pid}`" in capfd.readouterr().err


@pytest.mark.parametrize("fallback", [False, True], ids=["native", "fallback"])
@pytest.mark.parametrize("setsid", [False, True], ids=["in-its-group", "new-session-each-hop"])
def test_guardian_ends_lineages_that_fork_and_exit(
    run: Runner, fallback: bool, setsid: bool, stops_growing
) -> None:
    """After kill -9 of the daemon, children that fork and exit every 10 ms (no pid of them
    lives long enough to be signalled twice) are ended too: their group whole, or (a new
    session at each hop) stopped before they are killed."""
    report = run.tmp_path / f"hop-spawner-{fallback}-{setsid}.txt"
    env = dict(os.environ, PROCTREE_FALLBACK="1" if fallback else "0")
    argv = [sys.executable, str(SPAWNER), str(report), run.token, run.mark, "2"]
    argv += ["--children", "1", "--hop", str(HOP), "--guardian"]
    argv += ["--hop-setsid"] if setsid else []
    spawner = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    run.extra.append(spawner)

    def hopping() -> bool:
        roles = [r for r, _ in read_report(report)]
        return roles.count("hop") >= 4 and "spawner" in roles

    wait_for(hopping, what="two hopping lineages and their spawner")
    spawner.send_signal(signal.SIGKILL)
    spawner.wait(timeout=30)
    assert stops_growing(report), "a lineage still hops after the guardian's sweep"


@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["-h"], 0), (["bogus"], 2)])
def test_run_by_hand_it_says_what_it_is(args: list[str], code: int) -> None:
    """Before: `python -m proctree.guardian --help` read stdin and exited 0 without a word."""
    out = subprocess.run(
        [sys.executable, "-m", "proctree.guardian", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == code
    assert out.stderr.startswith("usage: python -m proctree.guardian [DAEMON_PID]")


# A stand-in daemon: one child (an observer) that holds a grandchild in a session of its own
# with an empty environment (no mark, no watched group). Each reports "<role> <pid>".
_HOLDER = """
import os, subprocess, sys, time
report = sys.argv[1]
def say(role):
    with open(report, "a") as f:
        f.write(f"{role} {os.getpid()}\\n")
if sys.argv[2] == "daemon":
    subprocess.Popen([sys.executable, "-c", sys.argv[3], report, "observer", sys.argv[3]])
elif sys.argv[2] == "observer":
    subprocess.Popen([sys.executable, "-c", sys.argv[3], report, "grandchild", sys.argv[3]],
                     start_new_session=True, env={})
say(sys.argv[2])
time.sleep(600)
"""


def _holder_tree(run: Runner) -> tuple[subprocess.Popen[bytes], dict[str, proctree.ProcId]]:
    """Start _HOLDER's daemon; wait for its tree; the identity of each role."""
    report = run.tmp_path / "holder.txt"
    daemon = subprocess.Popen([sys.executable, "-c", _HOLDER, str(report), "daemon", _HOLDER])
    run.extra.append(daemon)
    roles = lambda: dict(read_report(report))  # noqa: E731
    wait_for(lambda: {"daemon", "observer", "grandchild"} <= roles().keys(), what="the tree")
    ids = {role: proctree.identify(pid) for role, pid in roles().items()}
    assert all(ids.values()), ids
    return daemon, {role: ident for role, ident in ids.items() if ident is not None}


def test_the_daemons_grandchild_is_ended_once_orphaned(run: Runner) -> None:
    """A grandchild in its own session, without the mark, held by its parent when the daemon
    dies: the parent dies with the daemon (parent-death signal) and it goes to init. Before,
    the guardian kept only the daemon's children, and so lost it."""
    from proctree._guardian import _DaemonChildren, end_all

    daemon, ids = _holder_tree(run)
    try:
        listing = _DaemonChildren(ids["daemon"], ids["daemon"].create_time, {})
        listing.poll()  # what the guardian's thread does every CHILDREN_POLL_S
        known = listing.stop()
        assert ids["observer"] in known and ids["grandchild"] in known, known
        for role in ("daemon", "observer"):  # the daemon killed, its child by pdeathsig
            os.kill(ids[role].pid, signal.SIGKILL)
        daemon.wait(timeout=30)
        assert proctree.wait_gone([ids["observer"]], timeout=30.0) == set()
        assert proctree.is_alive(ids["grandchild"]), "the grandchild went with its parent"
        end_all({}, None, None, ids["daemon"].create_time, known)
        assert proctree.wait_gone([ids["grandchild"]], timeout=30.0) == set()
    finally:
        for ident in ids.values():
            if ident is not None and proctree.is_alive(ident):
                os.kill(ident.pid, signal.SIGKILL)


def test_a_look_that_misses_a_live_grandchild_keeps_it(run: Runner) -> None:
    """A look during the daemon's death (it reads alive while a thread of it still exits; its
    child is already dead, the grandchild init's) erased the last whole listing, and the
    guardian then ended nothing. Here the child dies alone, so the next look sees the daemon
    alive and the grandchild no longer under it: the same look."""
    from proctree._guardian import _DaemonChildren

    _, ids = _holder_tree(run)
    try:
        listing = _DaemonChildren(ids["daemon"], ids["daemon"].create_time, {})
        listing.poll()
        os.kill(ids["observer"].pid, signal.SIGKILL)
        assert proctree.wait_gone([ids["observer"]], timeout=30.0) == set()
        assert proctree.is_alive(ids["grandchild"])
        listing.poll()
        known = listing.stop()
        assert ids["grandchild"] in known, "the look forgot a live grandchild"
    finally:
        for ident in ids.values():
            if ident is not None and proctree.is_alive(ident):
                os.kill(ident.pid, signal.SIGKILL)


def test_a_guardian_that_stopped_reading_never_blocks_its_daemon() -> None:
    # A claude SIGSTOPped the worker's guardian: its pipe filled (64 KiB, some 54 bytes per
    # session) and the worker's event loop blocked in write() for good at about the 1,200th
    # session. Now the write fails at once, and the guardian says what is wrong with it.
    from types import SimpleNamespace

    # An "ungroup" line for a group nobody has: harmless to a guardian that reads it.
    gone = SimpleNamespace(group=2**22 + 7, proc_id=proctree.ProcId(2**22 + 7, 1.0))
    guardian = proctree.start_guardian(f"test-stuck-{os.getpid()}")
    try:
        os.kill(guardian.pid, signal.SIGSTOP)
        wait_for(lambda: guardian.problem() is not None, what="the guardian to read as stopped")
        assert "stopped" in (guardian.problem() or "")
        sent = 0
        deadline = time.monotonic() + 30
        while guardian.unwatch(gone):  # lines until the pipe is full
            sent += 1
            assert time.monotonic() < deadline, "still writing after 30 s"
        assert guardian.stuck and sent > 100, sent
        assert guardian.problem() == "stopped reading its pipe"
        assert not guardian.unwatch(gone)  # at once, no wait
    finally:
        guardian.discard()
    assert guardian.popen.returncode is not None


@pytest.mark.parametrize(
    "line",
    [
        b"\xff\xfe not UTF-8\n",  # a UnicodeDecodeError in the reading thread
        b"group -5 1.0\n",  # psutil's ValueError on a negative pid
        b"group 99999999999999999999 1.0\n",  # killpg's OverflowError at the end
        b"group 7 nan\n",
    ],
    ids=["not-utf8", "negative", "huge", "nan"],
)
def test_a_line_not_the_daemons_ends_nothing_early_and_stops_nothing_at_the_end(
    run: Runner, monkeypatch: pytest.MonkeyPatch, line: bytes
) -> None:
    """Another process of the daemon's uid can open the guardian's pipe again and write into
    it. Such a line ended the reading thread, which the guardian took for the daemon's death:
    it ended the live daemon's trees at once (or, a huge pgid, raised at the end and ended
    nothing). Now it is passed over: an order after it is still taken (the `group` of a tree
    started after it: unmarked, only that order names it), and the close ends them all."""
    # Strict decoding, as under an ordinary UTF-8 locale (C.UTF-8 would escape the bytes).
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8:strict")
    guardian = proctree.start_guardian(run.mark)
    try:
        early = run.start(mark=None, children=1)
        assert guardian.watch(early.containment)
        _forge(guardian, line)
        late = run.start(mark=None, children=1)
        assert guardian.watch(late.containment)  # read after the odd line: taken
        assert guardian.alive() and all(proctree.is_alive(i) for i in early.ids())
    finally:
        assert guardian.close() == 0
    for tree in (early, late):  # watched: ended at the close
        assert not [i for i in tree.ids() if proctree.is_alive(i)]


def test_an_order_naming_the_guardians_own_group_is_passed_over(run: Runner) -> None:
    """The guardian is the daemon's child and leads a group of its own, so a `group` line
    naming that group passed the leader check. At the end its killpg killed the guardian
    first (SIGKILL), and the watched tree listed after it lived on."""
    guardian = proctree.start_guardian(run.mark)
    try:
        me = proctree.identify(guardian.pid)
        assert me is not None and os.getpgid(guardian.pid) == guardian.pid
        # First in the guardian's list, so it would be killed before the real group.
        _forge(guardian, f"group {guardian.pid} {me.create_time!r}\n".encode())
        tree = run.start(mark=None, children=1)  # unmarked: only its group names it
        assert guardian.watch(tree.containment)
    finally:
        code = guardian.close()  # the lifeline's EOF, as at the daemon's death
    assert code == 0, f"the guardian ended with {code} (it killed its own group)"
    assert not [i for i in tree.ids() if proctree.is_alive(i)]
