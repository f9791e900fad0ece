"""Linux: subreaper adoption, parent-death signal, reaping; and the same with them forced off."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from proctree_helpers import Runner, read_report, wait_for

import proctree

if not sys.platform.startswith("linux"):  # before _linux is imported: it is POSIX-only
    pytest.skip("prctl subreaper/pdeathsig are Linux-only", allow_module_level=True)

from proctree import _launcher, _linux  # noqa: E402
from proctree._launcher import CHOICE_ENV  # noqa: E402

SPAWNER = Path(__file__).with_name("spawner_prog.py")
GRACE = 0.5


def test_subreaper_adopts_escapee_without_mark_or_token(subreaper: bool, run: Runner) -> None:
    tree = run.start(mark=run.mark, escape=True, scrub_escapee=True, ignore_term=True)
    (escapee,) = tree.ids("escapee")
    # The double fork orphaned it; the kernel handed it to us, not to init.
    assert wait_for(lambda: psutil.Process(escapee.pid).ppid() == os.getpid(), what="adoption")
    others = {c.pid for c in psutil.Process().children()} - {escapee.pid}
    assert escapee.pid in {p.pid for p in proctree.adopted_children(others)}
    found = {p.pid for p in proctree.descendants(tree.root.pid, known_children=others)}
    assert escapee.pid in found
    res = proctree.terminate_tree(
        tree.root, group=tree.containment, grace=GRACE, known_children=others
    )
    assert res.clean and escapee in res.kill
    assert escapee.pid in res.reaped  # adopted orphans are ours to reap
    assert not psutil.pid_exists(escapee.pid) or psutil.Process(escapee.pid).ppid() != os.getpid()


def test_without_subreaper_escapee_goes_elsewhere(run: Runner) -> None:
    """Negative control for the test above: no subreaper, the orphan is not our child."""
    proctree.force_fallback(True)
    try:
        assert not proctree.enable_subreaper()
        tree = run.start(mark=run.mark, escape=True, scrub_escapee=True)
    finally:
        proctree.force_fallback(False)
    (escapee,) = tree.ids("escapee")
    if proctree.is_subreaper():
        pytest.skip("this test process was made a subreaper earlier")
    assert psutil.Process(escapee.pid).ppid() != os.getpid()
    others = {c.pid for c in psutil.Process().children()}
    assert escapee.pid not in {p.pid for p in proctree.adopted_children(others - {escapee.pid})}


def _start_spawner(
    run: Runner, n: int, fallback: bool, style: str = "argv", launcher: str = ""
) -> tuple[subprocess.Popen[bytes], Path]:
    report = run.tmp_path / f"spawner-{fallback}-{style}-{launcher}.txt"
    env = dict(os.environ, PROCTREE_FALLBACK="1" if fallback else "0")
    env[CHOICE_ENV] = launcher
    mark = run.mark
    argv = [sys.executable, str(SPAWNER), str(report), run.token, mark, str(n), "--style", style]
    spawner = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    run.extra.append(spawner)
    wait_for(
        lambda: (
            [r for r, _ in read_report(report)].count("main") >= n
            and any(r == "spawner" for r, _ in read_report(report))
        ),
        what="spawner and its children",
    )
    return spawner, report


def _mains(report: Path) -> list[proctree.ProcId]:
    ids = [proctree.identify(pid) for role, pid in read_report(report) if role == "main"]
    return [i for i in ids if i is not None]


@pytest.mark.parametrize(
    ("style", "launcher"), [("argv", "native"), ("argv", "setpriv"), ("kwargs", "preexec")]
)
def test_pdeathsig_takes_children_when_parent_is_sigkilled(
    run: Runner, style: str, launcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way of setting it: proctree's launcher or setpriv wrapping argv, the preexec_fn."""
    if style == "argv":
        # The spawner resolves its launcher as this process does with the same setting.
        monkeypatch.setenv(CHOICE_ENV, launcher)
        _linux.pdeathsig_launcher.cache_clear()
        found = _linux.pdeathsig_launcher()
        _linux.pdeathsig_launcher.cache_clear()
        if found is None or found[0] != launcher:
            pytest.skip(f"no {launcher} launcher on this machine (found {found})")
    spawner, report = _start_spawner(run, n=3, fallback=False, style=style, launcher=launcher)
    mains = _mains(report)
    assert len(mains) == 3 and all(proctree.is_alive(m) for m in mains)
    spawner.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    spawner.wait(timeout=30)
    proctree.wait_gone(mains, timeout=2.0)
    took = time.monotonic() - killed_at
    assert not [m for m in mains if proctree.is_alive(m)], f"children alive {took:.2f}s after"


def test_fallback_children_outlive_sigkilled_parent_until_swept(run: Runner) -> None:
    """Without pdeathsig (macOS's situation) the children survive; the sweep by mark ends them."""
    spawner, report = _start_spawner(run, n=2, fallback=True)
    mains = _mains(report)
    spawner.send_signal(signal.SIGKILL)
    spawner.wait(timeout=30)
    # Nothing ends them on its own: still alive after a deadline pdeathsig easily meets.
    assert proctree.wait_gone(mains, timeout=2.0) == set(mains)
    ended = proctree.sweep(mark=run.mark, grace=GRACE)
    assert set(mains) <= set(ended)
    assert not [m for m in mains if proctree.is_alive(m)]


def test_fallback_sweep_by_token_also_works(run: Runner) -> None:
    spawner, report = _start_spawner(run, n=1, fallback=True)
    mains = _mains(report)
    spawner.send_signal(signal.SIGKILL)
    spawner.wait(timeout=30)
    ended = proctree.sweep(token=run.token, grace=GRACE)
    assert set(mains) <= set(ended)


def test_reap_zombies_spares_excluded_pids(popens) -> None:
    a = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    b = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"])
    popens += [a, b]

    def both_zombies() -> bool:
        try:
            return all(psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE for p in (a, b))
        except psutil.NoSuchProcess:
            return False

    wait_for(both_zombies, what="two zombies")
    # Never touch children this test did not start (other fixtures may wait on them).
    others = {c.pid for c in psutil.Process().children()} - {a.pid, b.pid}
    reaped = proctree.reap_zombies(exclude=others | {a.pid})
    assert b.pid in reaped and a.pid not in reaped
    assert a.wait(timeout=30) == 7  # its owner still gets the real exit status


def test_subreaper_flag_is_really_set(subreaper: bool) -> None:
    assert proctree.is_subreaper()


def test_own_child_tree_is_found_child_by_child(
    subreaper: bool, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's path: as subreaper, a tree it spawned is its subtree plus our adopted
    children carrying its mark (children orphaned when the root exits, the escapee); no scan
    of the process table, and another tree of ours (another mark) is left alone."""
    tree = run.start(mark=run.mark, children=2, grandchildren=1, escape=True)
    other = run.start(mark=run.mark + "-other", children=1)
    (escapee,) = tree.ids("escapee")
    assert wait_for(lambda: psutil.Process(escapee.pid).ppid() == os.getpid(), what="adoption")

    def no_table_scan() -> None:
        raise AssertionError("the process table was scanned")

    monkeypatch.setattr(proctree._scan, "_Table", no_table_scan)
    assert tree.popen.stdin is not None
    res = tree.end(mark=run.mark, grace=GRACE, own_child=True)
    monkeypatch.undo()
    assert res.clean, res
    assert not tree.living(), tree.living()
    assert {escapee, *tree.ids("child", "grandchild")} <= set(res.ended)
    assert other.living() == other.ids()  # untouched


def _native_or_skip() -> str:
    path = _launcher.native_launcher()
    if path is None:
        pytest.skip("no C compiler: proctree's launcher cannot be built here")
    return path


def test_launcher_whose_parent_died_before_the_prctl_kills_itself(tmp_path: Path) -> None:
    """The race setpriv leaves open: the parent is gone by the time the signal is set. The
    launcher sees that its parent is not the one it was told and dies before the command."""
    path = _native_or_skip()
    flag = tmp_path / "ran"
    cmd = [sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"]
    other = os.getppid()  # a live process that is not the launcher's parent
    done = subprocess.run([path, str(other), cmd[0], *cmd], timeout=60)
    assert done.returncode == -signal.SIGKILL and not flag.exists()
    # Control: told its real parent, it runs the command.
    done = subprocess.run([path, str(os.getpid()), cmd[0], *cmd], timeout=60)
    assert done.returncode == 0 and flag.exists()


@pytest.mark.parametrize("build", ["raw", "libc"])
def test_launcher_reports_what_it_cannot_run_and_why(tmp_path: Path, build: str) -> None:
    """Both builds (the system-call stub, used where it exists, and the libc one) say the exec's
    reason, as libc words it: before, only that it could not."""
    import platform

    cc = _launcher._compiler()
    if cc is None:
        pytest.skip("no C compiler: proctree's launcher cannot be built here")
    if build == "raw" and platform.machine().lower() not in _launcher.RAW_MACHINES:
        pytest.skip("no system-call stub for this machine")
    path = tmp_path / f"launcher-{build}"
    assert _launcher._build(cc, path, _launcher.RAW_FLAGS if build == "raw" else [])
    not_executable, garbage = tmp_path / "not-executable", tmp_path / "garbage"
    not_executable.write_text("#!/bin/sh\n")
    garbage.write_bytes(b"\x00\x01 neither a script nor a program")
    garbage.chmod(0o755)
    for program, reason in (
        (tmp_path / "no-such-program", "No such file or directory"),
        (not_executable, "Permission denied"),
        (garbage, "Exec format error"),
    ):
        done = subprocess.run(
            [str(path), str(os.getpid()), str(program), "x"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 127, done
        assert f"cannot execute {program}: {reason}\n" in done.stderr, done.stderr
    done = subprocess.run(
        [str(path), "not-a-pid", "/bin/true", "true"], capture_output=True, timeout=60
    )
    assert done.returncode == 127 and b"usage" in done.stderr


def test_launcher_is_built_into_the_cache_and_a_tampered_one_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _native_or_skip()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = Path(_launcher.native_launcher() or "")
    assert path.parent == tmp_path / "leakproof" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no build leftovers
    built = path.stat().st_ino
    path.chmod(0o777)  # writable by others: not to be run for every spawn
    assert _launcher.native_launcher() == str(path)
    assert path.stat().st_ino != built and not path.stat().st_mode & 0o022
    path.parent.chmod(0o777)  # a directory others can write to: nothing in it is run
    assert _launcher.native_launcher() is None


def test_without_a_compiler_setpriv_or_the_preexec_fn_sets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_launcher, "_compiler", lambda: None)
    assert _launcher.native_launcher() is None
    _linux.pdeathsig_launcher.cache_clear()
    try:
        found = _linux.pdeathsig_launcher()
        argv = ["sleep", "1"]
        opts = proctree.spawn_options("m", argv=argv)
        if found is None:
            assert opts.argv == argv and "preexec_fn" in opts
        else:
            assert found[0] == "setpriv" and opts.argv is not None
            assert opts.argv[:4] == [found[1], "--pdeathsig", "KILL", "--"]
    finally:
        _linux.pdeathsig_launcher.cache_clear()


def test_a_cache_that_cannot_be_written_leaves_setpriv_or_the_preexec_fn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_dir))
    assert _launcher.native_launcher() is None
    _linux.pdeathsig_launcher.cache_clear()
    try:
        method = proctree.pdeathsig_method()
        assert method is not None and not method.startswith("native")
        opts = proctree.spawn_options("m", argv=["true"])
        proc = subprocess.Popen(opts.argv or ["true"], **opts)
        assert proc.wait(timeout=60) == 0
    finally:
        _linux.pdeathsig_launcher.cache_clear()


# Its main thread exits (pthread_exit) while another sleeps on, ignoring SIGTERM: the leader
# reads as a zombie, the process runs.
HEADLESS = """
import ctypes, signal, threading, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
threading.Thread(target=time.sleep, args=(600,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


# Run by another user than root (a CI runner's): it starts the headless process and reads its
# mark through proctree. argv: the mark.
UNPRIVILEGED_READER = """
import os, subprocess, sys, time
import psutil, proctree
child = subprocess.Popen([sys.executable, "-c", os.environ["HEADLESS"]],
                         env={**os.environ, proctree.MARK_ENV: sys.argv[1]})
try:
    proc = psutil.Process(child.pid)
    deadline = time.monotonic() + 60
    while not (proc.status() == psutil.STATUS_ZOMBIE and proc.num_threads() == 2):
        if time.monotonic() > deadline:
            sys.exit("the main thread did not exit")
        time.sleep(0.01)
    print(proctree.marker_of(proc))
finally:
    child.kill()
    child.wait()
"""
NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="as any other user, the test above is this one")
def test_another_user_reads_the_mark_of_a_process_whose_main_thread_exited() -> None:
    """Any user but root gets EACCES, not ESRCH, reading a zombie leader's environment: the mark
    read None, so a headless escapee as a CI runner's user was not found by it."""
    python = "/usr/bin/python3"  # the venv's may live under root's home, which nobody can enter
    site = str(Path(psutil.__file__).parent.parent)
    root = str(Path(proctree.__file__).parent.parent)
    path = os.pathsep.join([root, site])
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": path, "HEADLESS": HEADLESS}
    # cwd "/": a test's own folders may sit under ones only root may enter (pytest's are 0700).
    as_nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "env": env, "cwd": "/"}
    same = f"import psutil, proctree, sys; assert sys.version_info[:2] == {sys.version_info[:2]!r}"
    probe = [python, "-c", same]
    if not os.path.exists(python) or subprocess.run(probe, **as_nobody).returncode != 0:
        pytest.skip(f"{python} of this Python version cannot import psutil and proctree as nobody")
    mark = f"headless-{os.getpid()}"
    argv = [python, "-c", UNPRIVILEGED_READER, mark]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **as_nobody)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mark, done.stdout + done.stderr


def test_a_process_whose_main_thread_exited_runs_until_ended(run: Runner, popens) -> None:
    opts = proctree.spawn_options(run.mark)
    popen = subprocess.Popen([sys.executable, "-c", HEADLESS, run.token], **opts)
    popens.append(popen)
    group = proctree.after_spawn(popen.pid, opts)
    proc = psutil.Process(popen.pid)
    root = proctree.ProcId(popen.pid, proc.create_time())

    def headless() -> bool:
        return proc.status() == psutil.STATUS_ZOMBIE and proc.num_threads() == 2

    wait_for(headless, what="the main thread's exit")
    # psutil sees a zombie; proctree sees what runs, and reads it through the live thread.
    assert not proctree.exited(proc) and proctree.is_alive(root)
    assert proctree.status(proc) in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    assert run.token in proctree.cmdline(proc)
    assert proctree.marker_of(proc) == run.mark
    assert proctree.running_view(proc) is not None
    assert popen.pid in {p.pid for p in proctree.scan(mark=run.mark)}
    assert popen.pid in {p.pid for p in proctree.scan(token=run.token)}
    res = proctree.terminate_tree(root, group=group, mark=run.mark, grace=GRACE)
    group.close()
    assert res.clean and root in res.kill, res
    assert popen.wait(timeout=30) == -signal.SIGKILL


def test_a_zombie_with_no_thread_left_has_exited(popens) -> None:
    """The control: a child that ended and waits to be reaped reads as exited."""
    popen = subprocess.Popen([sys.executable, "-c", "pass"])
    popens.append(popen)
    proc = psutil.Process(popen.pid)
    wait_for(lambda: proc.status() == psutil.STATUS_ZOMBIE, what="the child's exit")
    assert proctree.exited(proc) and proctree.running_view(proc) is None
    assert proctree.cmdline(proc) == []
    assert not proctree.is_alive(proctree.ProcId(popen.pid, proc.create_time()))
    assert popen.wait(timeout=30) == 0


def test_a_cgroup_cell_holds_an_escapee_with_nothing_to_know_it_by(run: Runner) -> None:
    """Without a mark, a token or the subreaper's adoption, a scrubbed escapee in a new session
    is lost to the tree; its cgroup cell still holds it, and the kill stage takes it."""

    def end(tree):
        return proctree.terminate_tree(tree.root, group=tree.containment, grace=GRACE)

    # The control: no cells, so nothing ties the escapee to the tree.
    lost = run.start(mark=None, escape=True, scrub_escapee=True, ignore_term=True)
    (stray,) = lost.ids("escapee")
    assert lost.containment.cgroup is None
    end(lost)
    assert proctree.is_alive(stray), "the control found the escapee without a cell"
    if not proctree.enable_cgroups(f"test-{run.token}"):
        pytest.skip("no cgroup v2 hierarchy this process may create cgroups in")
    try:
        # Through the launcher: in its cell before its exec, so its escapee is born inside.
        held = run.start(
            mark=None, escape=True, scrub_escapee=True, ignore_term=True, launcher=True
        )
        (escapee,) = held.ids("escapee")
        cell = held.containment.cgroup
        assert cell is not None and cell.parent == proctree.cgroups_enabled()
        res = end(held)
        assert res.clean and escapee in res.kill, res
        assert not proctree.is_alive(escapee)
        held.containment.close()
        assert not cell.exists()
    finally:
        parent = proctree.cgroups_enabled()
        proctree.disable_cgroups()
    assert parent is not None and not parent.exists()


def test_the_launcher_puts_the_child_in_its_cell_before_its_first_instruction(
    run: Runner, popens
) -> None:
    """The parent moved each child into its cell after the spawn: what the child forked first
    (a daemon at its first instruction) was outside the cell, and the move blocked the parent
    (~10 ms on a busy machine). Here the child reads its own cgroup and exits before the
    parent does anything after the spawn: it was in its cell all along."""
    from proctree import _cgroup

    if not proctree.enable_cgroups(f"test-{run.token}"):
        pytest.skip("no cgroup v2 hierarchy this process may create cgroups in")
    try:
        if not _linux.native_launcher_in_use():
            pytest.skip("no native launcher here: the parent moves the child (setpriv/preexec)")
        jail = _cgroup.jail()
        assert jail is not None
        opts = proctree.spawn_options(run.mark, argv=["cat", "/proc/self/cgroup"])
        assert opts.cell is not None
        # The same options twice (a pool of one command): a cell each, never a shared one.
        children = [subprocess.Popen(opts.argv, **opts, stdout=subprocess.PIPE) for _ in "ab"]
        popens.extend(children)
        cells = []
        for popen in children:
            out, _ = popen.communicate(timeout=30)
            assert popen.returncode == 0
            cell = opts.cell_of(popen.pid)
            assert cell is not None
            assert f"0::{jail.relative(cell)}" in out.decode().splitlines()
            cells.append(cell)
        handles = [proctree.after_spawn(p.pid, opts) for p in children]
        assert [h.cgroup for h in handles] == cells and all(c.exists() for c in cells)
        for handle in handles:
            handle.close()
        assert not any(c.exists() for c in cells)
        # A cell the launcher cannot make (here: its parent folder is missing) is not
        # entered: the child runs where it was spawned, and the parent's other means hold it.
        cmd = list(opts.argv or [])
        cmd[cmd.index(str(opts.cell))] = str(jail.parent / "missing" / "spawn")
        done = subprocess.run(cmd, **opts, stdout=subprocess.PIPE, timeout=30)
        assert done.returncode == 0
        assert f"0::{_cgroup.cgroup_of('self')}" in done.stdout.decode().splitlines()
    finally:
        proctree.disable_cgroups()


def test_a_parent_removed_under_a_live_daemon_is_made_again(run: Runner, popens) -> None:
    """Another daemon's start removes the empty parents of daemons it takes for gone; taken
    wrongly (its clock read across a step), the live daemon's children got no cell again."""
    from proctree import _cgroup

    if not proctree.enable_cgroups(f"test-{run.token}"):
        pytest.skip("no cgroup v2 hierarchy this process may create cgroups in")
    try:
        parent = proctree.cgroups_enabled()
        assert parent is not None
        parent.rmdir()  # empty: no child of ours in a cell now
        opts = proctree.spawn_options(
            run.mark, argv=[sys.executable, "-c", "import time; time.sleep(600)"]
        )
        child = subprocess.Popen(opts.argv, **opts)
        popens.append(child)
        handle = proctree.after_spawn(child.pid, opts)
        jail = _cgroup.jail()
        assert jail is not None and handle.cgroup is not None
        assert handle.cgroup.parent == parent and parent.exists()
        # The launcher enters its cell just before its exec, and after_spawn does not wait for
        # that: read the child's cgroup once it runs the command (under load, before, it was
        # still the launcher in the cgroup it was spawned in, and the test failed).
        if opts.cell is not None:  # else after_spawn moved it: no launcher, nothing to wait for
            launcher = os.path.realpath(opts.argv[0])
            wait_for(lambda: psutil.Process(child.pid).exe() != launcher, what="the child's exec")
        assert _cgroup.cgroup_of(child.pid) == jail.relative(handle.cgroup)
        handle.close()  # kills what is in the cell
    finally:
        proctree.disable_cgroups()


def test_enabling_cells_removes_the_empty_parents_of_daemons_that_are_gone(run: Runner) -> None:
    if not proctree.enable_cgroups(f"test-{run.token}"):
        pytest.skip("no cgroup v2 hierarchy this process may create cgroups in")
    base = proctree.cgroups_enabled().parent
    proctree.disable_cgroups()
    me = proctree.identify(os.getpid())
    assert me is not None
    gone = base / "leakproof-999999999-1.000"  # no such pid: a daemon killed with its guardian
    alive = base / f"leakproof-{me.pid}-{me.create_time:.3f}"  # ours: its owner lives
    try:
        for parent in (gone, alive):
            (parent / "cell").mkdir(parents=True)
        assert proctree.enable_cgroups(f"test-{run.token}")
        assert not gone.exists() and (alive / "cell").exists()
    finally:
        proctree.disable_cgroups()
        for parent in (gone, alive):
            for path in (parent / "cell", parent):
                with contextlib.suppress(FileNotFoundError):
                    path.rmdir()


def test_cgroups_made_inside_cells_are_seen_killed_and_removed(run: Runner, popens) -> None:
    """A root child can make cgroups inside its own cell and move into them. Their members
    were not the cell's, and the cell could never be removed (rmdir refuses a cgroup with
    children): every such cell and its parent stayed, also after the daemon's end. And the
    populated cells of a daemon killed with its guardian held what no mark names for good."""
    from proctree import _cgroup

    if not proctree.enable_cgroups(f"test-{run.token}"):
        pytest.skip("no cgroup v2 hierarchy this process may create cgroups in")
    jail = _cgroup.jail()
    assert jail is not None
    base = jail.parent.parent
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    try:
        mine = subprocess.Popen(sleeper)
        popens.append(mine)
        cell = jail.cell("nested", mine.pid)
        assert cell is not None
        (cell / "inner").mkdir()
        (cell / "inner" / "cgroup.procs").write_text(str(mine.pid))
        assert [m.pid for m in jail.members(cell)] == [mine.pid]
        jail.close_cell(cell)
        assert mine.wait(timeout=30) == -signal.SIGKILL
        # Removed at once, or by the next tidy() once the killed member has left it.
        wait_for(lambda: jail.tidy() or not cell.exists(), what="the cell and its inner cgroup")
        # A daemon killed with its guardian: its cells' members carry no mark.
        gone = base / "leakproof-999999998-1.000"
        (gone / "cell" / "inner").mkdir(parents=True)
        left = subprocess.Popen(sleeper)
        popens.append(left)
        (gone / "cell" / "inner" / "cgroup.procs").write_text(str(left.pid))
        proctree.disable_cgroups()
        assert proctree.enable_cgroups(f"test-{run.token}")  # its start keeps them for reaping
        assert left.poll() is None and gone.exists()
        assert proctree.end_stale_cells(["999999997-1.000"]) == 0  # another's: left alone
        assert left.poll() is None
        assert proctree.end_stale_cells(["999999998-1.000"]) == 1
        assert left.wait(timeout=30) == -signal.SIGKILL
        assert not gone.exists()
    finally:
        parent = proctree.cgroups_enabled()
        proctree.disable_cgroups()
        for path in (base / "leakproof-999999998-1.000" / "cell" / "inner",
                     base / "leakproof-999999998-1.000" / "cell",
                     base / "leakproof-999999998-1.000"):  # fmt: skip
            with contextlib.suppress(OSError):
                path.rmdir()
    assert parent is None or not parent.exists()


def test_cells_are_off_with_the_switch(monkeypatch: pytest.MonkeyPatch, run: Runner) -> None:
    monkeypatch.setenv("PROCTREE_CGROUPS", "0")
    assert not proctree.enable_cgroups(f"test-{run.token}")
    assert proctree.cgroups_enabled() is None


_DAEMONIZER = """
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:  # a daemon's double fork: the middle process leaves its child orphaned
    os.setsid()
    if os.fork() == 0:
        os.write(w, f"{os.getpid()}\\n".encode())
        time.sleep(60)
        os._exit(0)
    os._exit(0)
os.wait()
print(int(os.read(r, 64)), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("launcher", ["native", "setpriv", "preexec"])
def test_a_subreaper_child_keeps_its_daemons_orphans(
    launcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spawn_options(subreaper=True): the orphan of a double fork is reparented to the child
    itself (kept in its tree), whichever way the spawn is wrapped; setpriv cannot set it, so
    that choice takes the preexec_fn."""
    monkeypatch.setenv(CHOICE_ENV, launcher)
    _linux.pdeathsig_launcher.cache_clear()
    try:
        opts = proctree.spawn_options("m", argv=[sys.executable, "-c", _DAEMONIZER], subreaper=True)
        assert opts.subreaper is True
        wrapped = opts.argv is not None and opts.argv[0] != sys.executable
        assert wrapped == (launcher == "native" and _linux.pdeathsig_launcher() is not None)
        child = subprocess.Popen(opts.argv, **opts, stdout=subprocess.PIPE, text=True)
    finally:
        _linux.pdeathsig_launcher.cache_clear()
    orphan: proctree.ProcId | None = None
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        orphan = proctree.identify(pid)
        assert psutil.Process(pid).ppid() == child.pid
    finally:
        child.kill()
        child.wait()
        if orphan is not None:  # by its identity: its pid may be another's by now
            proctree.terminate_tree(orphan, grace=0.5)


def test_no_subreaper_child_under_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTREE_FALLBACK", "1")
    opts = proctree.spawn_options("m", argv=[sys.executable, "-c", "pass"], subreaper=True)
    assert opts.subreaper is False and "-s" not in (opts.argv or [])
