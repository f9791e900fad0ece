"""terminate_tree: the escalation ends whole trees, escapees included; nothing else is touched."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import time
from typing import Any

import psutil
import pytest
from proctree_helpers import (
    HOP,
    PROG,
    Runner,
    alive_by_token,
    new_token,
    read_report,
    wait_for,
)

import proctree
from proctree import _platform

GRACE = 0.5
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics are POSIX")


def _all_gone(ids: list[proctree.ProcId]) -> bool:
    return not any(proctree.is_alive(i) for i in ids)


@posix_only
def test_escalation_kills_tree_that_ignores_eof_and_sigterm(mode: str, run: Runner) -> None:
    tree = run.start(mark=run.mark, children=2, grandchildren=2, ignore_term=True, ignore_eof=True)
    everyone = tree.ids()
    assert len(everyone) == 1 + 2 + 4
    res = tree.end(mark=run.mark, grace=GRACE)
    assert res.clean, res
    assert _all_gone(everyone)
    assert res.stdin == [] and res.term == []
    assert set(everyone) <= set(res.kill)
    assert res.stage_seconds["stdin"] >= GRACE  # it waited the grace before escalating
    assert tree.popen.wait(timeout=30) == -9


@posix_only
def test_stages_report_who_went_when(mode: str, run: Runner) -> None:
    # main exits on EOF; its children obey SIGTERM.
    tree = run.start(mark=run.mark, children=2, grandchildren=1)
    # generous: each stage ends as soon as its processes are gone
    res = tree.end(mark=run.mark, grace=30.0)
    assert res.clean, res
    assert res.stdin == [tree.root]
    assert set(tree.ids("child", "grandchild")) <= set(res.term)
    assert res.kill == []
    assert res.elapsed < 30.0
    assert tree.popen.wait(timeout=30) == 0


@posix_only
def test_escapee_in_new_session_is_caught_by_mark(mode: str, run: Runner) -> None:
    mark = run.mark
    tree = run.start(mark=mark, children=1, escape=True, ignore_term=True, ignore_eof=True)
    (escapee,) = tree.ids("escapee")
    try:
        psutil.Process(escapee.pid).environ()
    except psutil.AccessDenied:
        pytest.skip("environ() of our own processes is unreadable here; argv tokens cover it")
    assert psutil.Process(escapee.pid).ppid() != tree.root.pid  # really reparented
    assert escapee in {
        proctree.identify(p.pid) for p in proctree.descendants(tree.root.pid, mark=mark)
    }
    res = proctree.terminate_tree(tree.root, group=tree.containment, mark=mark, grace=GRACE)
    assert res.clean, res
    assert _all_gone(tree.ids())
    assert escapee in res.kill


def test_escapee_without_marker_is_caught_by_token(mode: str, run: Runner) -> None:
    tree = run.start(mark=run.mark, escape=True, scrub_escapee=True, ignore_term=True)
    (escapee,) = tree.ids("escapee")
    res = proctree.terminate_tree(tree.root, group=tree.containment, token=run.token, grace=GRACE)
    assert res.clean, res
    assert _all_gone(tree.ids())
    assert escapee in res.ended


@posix_only  # on Windows the job holds the escapee whatever it does
def test_escapee_leaks_when_nothing_identifies_it(run: Runner) -> None:
    """Negative control: with neither mark nor token, the escapee survives - the tests above
    would fail against a terminate_tree that only followed children and the group."""
    proctree.force_fallback(True)  # no subreaper adoption either
    try:
        tree = run.start(mark=run.mark, escape=True, scrub_escapee=True)
        (escapee,) = tree.ids("escapee")
        res = proctree.terminate_tree(tree.root, group=tree.containment, grace=GRACE)
    finally:
        proctree.force_fallback(False)
    assert not proctree.is_alive(tree.root)
    assert proctree.is_alive(escapee)
    assert escapee not in res.ended


def test_decoy_with_same_program_survives(mode: str, run: Runner, tmp_path) -> None:
    decoy_run = Runner(new_token(), tmp_path)
    try:
        decoy = decoy_run.start(mark=None, children=1, contained=False, ignore_term=True)
        tree = run.start(mark=run.mark, children=1, escape=True, ignore_term=True)
        res = tree.end(mark=run.mark, token=run.token, grace=GRACE)
        assert res.clean and _all_gone(tree.ids())
        assert all(proctree.is_alive(i) for i in decoy.ids())
        assert not set(decoy.ids()) & set(res.ended)
    finally:
        decoy_run.cleanup()


def test_wrong_create_time_is_never_signalled(run: Runner) -> None:
    victim = run.start(mark=None, children=1, contained=True)
    impostor = proctree.ProcId(victim.root.pid, victim.root.create_time - 3.0)
    res = proctree.terminate_tree(impostor, group=victim.containment, grace=GRACE, close_stdin=None)
    assert res.ended == [] and res.survivors == []
    assert all(proctree.is_alive(i) for i in victim.ids())


@posix_only
def test_root_already_gone_group_left_behind(mode: str, run: Runner) -> None:
    mark = run.mark
    tree = run.start(mark=mark, children=2, ignore_term=True)
    tree.popen.stdin.close()  # main exits on EOF, its children stay in the group
    assert tree.popen.wait(timeout=60) == 0
    children = tree.ids("child")
    assert all(proctree.is_alive(c) for c in children)
    res = proctree.terminate_tree(tree.root, group=tree.containment, mark=mark, grace=GRACE)
    assert res.clean, res
    assert set(children) <= set(res.kill)


def test_aterminate_tree_leaves_exit_status_to_asyncio(mode: str, run: Runner) -> None:
    mark = run.mark
    report = run.tmp_path / "async-report.txt"

    async def go() -> tuple[int, proctree.TerminationResult, list[proctree.ProcId]]:
        opts = proctree.spawn_options(mark)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PROG), "--report", str(report), "--token", run.token,
            "--children", "1", "--ignore-term", "--ignore-eof",
            stdin=asyncio.subprocess.PIPE, **opts,
        )  # fmt: skip
        c = proctree.after_spawn(proc.pid, opts)
        try:
            await asyncio.to_thread(
                wait_for, lambda: report.exists() and len(report.read_text().splitlines()) >= 2
            )
            ids = [proctree.identify(int(x.split()[1])) for x in report.read_text().splitlines()]
            assert c.proc_id is not None
            res = await proctree.aterminate_tree(
                c.proc_id, group=c, mark=mark, grace=GRACE, close_stdin=proc.stdin
            )
            code = await asyncio.wait_for(proc.wait(), 60)
        finally:
            c.close()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return code, res, [i for i in ids if i is not None]

    code, res, ids = asyncio.run(go())
    assert res.clean and _all_gone(ids)
    # The root's status went to asyncio, not to us: a stolen status would read 255.
    if sys.platform == "win32":
        assert code != 0
    else:
        assert code == -9


def test_uncontained_tree_still_ended_by_token(run: Runner) -> None:
    tree = run.start(mark=None, children=2, grandchildren=1, contained=False, ignore_term=True)
    res = proctree.terminate_tree(
        tree.root, token=run.token, grace=GRACE, close_stdin=tree.popen.stdin
    )
    assert res.clean and _all_gone(tree.ids())
    tree.popen.wait(timeout=30)


def test_thread_safe_parallel_terminations(run: Runner) -> None:
    import concurrent.futures

    trees = [run.start(mark=f"{run.mark}:{i}", children=1, ignore_term=True) for i in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda t: proctree.terminate_tree(
                    t.root, group=t.containment, mark=t.containment.mark, grace=GRACE,
                    close_stdin=t.popen.stdin,
                ),
                trees,
            )
        )  # fmt: skip
    for tree, res in zip(trees, results, strict=True):
        assert res.clean
        assert set(tree.ids()) <= set(res.ended)
        # Per-session marks: no termination took another session's processes.
        others = {i for t in trees if t is not tree for i in t.ids()}
        assert not others & set(res.ended)


@posix_only
def test_processes_forked_during_termination_are_ended(mode: str, run: Runner) -> None:
    tree = run.start(mark=run.mark, children=3, ignore_term=False, fork_on_term=True)
    res = proctree.terminate_tree(
        tree.root, group=tree.containment, mark=run.mark, grace=GRACE, close_stdin=tree.popen.stdin
    )
    assert res.clean, res
    # Everything that ever reported, including processes started in answer to SIGTERM.
    late = [proctree.identify(pid) for role, pid in read_report(tree.report)]
    assert not [i for i in late if i is not None and proctree.is_alive(i)]
    assert not alive_by_token(run.token)


@posix_only
def test_concurrent_aterminate_does_not_hold_a_thread_per_tree(mode: str, run: Runner) -> None:
    """Endings of stubborn trees overlap: the graces are waited in the event loop, so a burst of
    endings does not queue behind the executor's threads (here: one thread, six trees; held
    for its graces, each tree would take 2 x GRACE in turn, >= 6 s in all)."""
    trees = [run.start(mark=run.mark, ignore_term=True, ignore_eof=True) for _ in range(6)]

    async def go() -> tuple[float, list[proctree.TerminationResult]]:
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=1)
        )
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(
                proctree.aterminate_tree(
                    t.root, group=t.containment, grace=GRACE, close_stdin=t.popen.stdin
                )
                for t in trees
            )
        )
        return time.monotonic() - t0, list(results)

    took, results = asyncio.run(go())
    assert all(r.clean and r.root in r.kill for r in results), results
    assert _all_gone([i for t in trees for i in t.ids()])
    serial_floor = len(trees) * 2 * GRACE
    assert took < 0.6 * serial_floor, f"endings took {took:.2f}s: they waited in turn"


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(*args, **kwargs)


async def _end_asyncio_child(
    run: Runner,
    *flags: str,
    expect: dict[str, int],
    grace: float = 30.0,
    sibling_mark: str | None = None,
) -> tuple[proctree.TerminationResult, dict[str, list[proctree.ProcId]], int]:
    """Spawn tree_prog with asyncio, end it with aterminate_tree told the root's exit; return
    the result, the tree's processes by role, and how many steps went to a thread.
    sibling_mark: also start a child of ours it is not told about, carrying that mark."""
    loop = asyncio.get_running_loop()
    executor = _CountingExecutor(max_workers=2)
    loop.set_default_executor(executor)
    report = run.tmp_path / f"async-{new_token()}.txt"
    others = {c.pid for c in psutil.Process().children()}  # the session's guardian, ...
    if sibling_mark is not None:
        run.start(mark=sibling_mark)
    opts = proctree.spawn_options(run.mark)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PROG), "--report", str(report), "--token", run.token, *flags,
        stdin=asyncio.subprocess.PIPE, **opts,
    )  # fmt: skip
    c = proctree.after_spawn(proc.pid, opts)
    roles: dict[str, list[proctree.ProcId]] = {}
    try:

        def ready() -> bool:
            got = [role for role, _ in read_report(report)] if report.exists() else []
            return all(got.count(role) >= n for role, n in expect.items())

        await asyncio.to_thread(wait_for, ready)
        for role, pid in read_report(report):
            pid_id = proctree.identify(pid)
            if pid_id is not None:
                roles.setdefault(role, []).append(pid_id)
        assert c.proc_id is not None
        before = executor.submitted
        res = await proctree.aterminate_tree(
            c.proc_id, group=c, mark=run.mark, grace=grace, close_stdin=proc.stdin,
            own_child=True, dont_reap=others, root_exited=asyncio.ensure_future(proc.wait()),
        )  # fmt: skip
        return res, roles, executor.submitted - before
    finally:
        c.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        executor.shutdown()


def test_a_root_that_exits_leaving_nothing_ends_without_a_thread(
    subreaper: bool, run: Runner
) -> None:
    """Told the root's exit, a root gone on EOF with its group empty and no child of ours
    unaccounted for is done in the event loop: no scan, no thread (the worker's common case)."""
    res, roles, threaded = asyncio.run(_end_asyncio_child(run, expect={"main": 1}))
    assert res.clean and res.stdin == roles["main"] and not res.term and not res.kill, res
    assert threaded == 0
    assert res.stage_seconds["stdin"] < 30.0


def test_a_child_of_ours_with_another_mark_is_not_the_exited_roots(
    subreaper: bool, run: Runner
) -> None:
    """The worker spawns observers while it ends others: a child it was not told about but
    that carries another tree's mark is not what this root left; it is left alone."""
    res, _, threaded = asyncio.run(
        _end_asyncio_child(run, expect={"main": 1}, sibling_mark=f"another-tree:{run.token}")
    )
    assert res.clean and not res.term and not res.kill, res
    assert threaded == 0
    (sibling,) = run.trees
    assert proctree.is_alive(sibling.root)


@pytest.mark.parametrize(
    ("flags", "left"),
    [(("--children", "1"), "child"), (("--escape",), "escapee")],
    ids=["child-in-its-group", "escapee-in-a-new-session"],
)
def test_what_an_exited_root_leaves_is_still_ended(
    subreaper: bool, run: Runner, flags: tuple[str, ...], left: str
) -> None:
    """The quick check only ever skips work when nothing is left: a child in the root's group,
    or an escapee in its own session (handed to us as subreaper), takes the full escalation."""
    res, roles, threaded = asyncio.run(_end_asyncio_child(run, *flags, expect={"main": 1, left: 1}))
    assert res.clean, res
    assert res.stdin[:1] == roles["main"], res
    assert set(roles[left]) <= set(res.ended), (roles, res)
    assert _all_gone([i for ids in roles.values() for i in ids])
    assert threaded > 0


@posix_only
def test_a_root_that_ignores_eof_gets_one_grace_not_two(mode: str, run: Runner) -> None:
    """The stdin stage waited on the exit future is the whole stage: SIGTERM follows at once."""
    grace = 2.0
    res, roles, _ = asyncio.run(
        _end_asyncio_child(run, "--ignore-eof", expect={"main": 1}, grace=grace)
    )
    assert res.clean and res.term == roles["main"], res
    assert res.stage_seconds["stdin"] >= grace, res
    assert res.elapsed < 2 * grace, res  # a second stdin grace would make it >= 2 x grace


@posix_only
@pytest.mark.parametrize("setsid", [False, True], ids=["in-its-group", "new-session-each-hop"])
@pytest.mark.parametrize("own_child", [False, True], ids=["scan", "as-subreaper"])
def test_a_lineage_that_forks_and_exits_is_ended(
    mode: str,
    run: Runner,
    request: pytest.FixtureRequest,
    setsid: bool,
    own_child: bool,
    stops_growing,
) -> None:
    """A child that forks and exits every 10 ms (the parent always dies, so every pid we find
    is gone a moment later). Same group: one killpg takes it, once the group is proven ours by
    a member that carries our mark. New session at each hop: the mark finds each pid, and
    stopping before killing keeps the next one from being born."""
    if own_child:
        if mode == "fallback":
            pytest.skip("the subreaper path is the native one")
        request.getfixturevalue("subreaper")
    # The root exits at EOF, as claude does, leaving the hopper as the tree's only member.
    tree = run.start(mark=run.mark, children=1, hop=HOP, hop_setsid=setsid)
    res = tree.end(mark=run.mark, grace=GRACE, own_child=own_child)
    assert tree.popen.wait(timeout=30) == 0
    assert stops_growing(tree.report), f"the lineage still hops after {res}"
    # Killed members may wait a while as zombies for init to reap them: none may live.
    assert not [
        pid
        for pid in _platform.group_pids(tree.containment.group)
        if psutil.pid_exists(pid) and _status(pid) not in (None, psutil.STATUS_ZOMBIE)
    ]


def _status(pid: int) -> str | None:
    try:
        return psutil.Process(pid).status()
    except psutil.Error:
        return None


def test_an_adoptee_on_a_reused_pid_is_read_not_taken_for_the_former_holder(
    run: Runner, popens
) -> None:
    """A look skips, unread, an adopted child known to carry another tree's mark. With no look
    between such a child's exit and its pid's reuse (pid_max is 32768 on many machines), the
    entry was its former holder's, and a new adoptee of ours was passed over: a lineage that
    forks and exits went on after its ending (once in CI). Here a stale entry is planted for
    a live child of ours; it must be read and found to carry our mark."""
    import os
    import subprocess

    from proctree import _terminate

    env = {**os.environ, proctree.MARK_ENV: run.mark}
    ready = "import sys, time; print('ready', flush=True); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", ready], env=env, stdout=subprocess.PIPE)
    popens.append(child)
    # Read only once it runs its own program: between fork and exec its environment is ours.
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    created = psutil.Process(child.pid).create_time()
    _terminate._MARKS[child.pid] = (created - 1000.0, "another-tree:x")
    try:
        children, _ = _terminate._adopted_marks(set(), mark=run.mark)
        found = {proc.pid: marker for proc, marker in children}
        assert found.get(child.pid) == run.mark, found
    finally:
        _terminate._MARKS.pop(child.pid, None)
        child.kill()
        child.wait(timeout=30)
