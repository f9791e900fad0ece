"""Windows: job objects (kill-on-close, no breakaway), CTRL_BREAK_EVENT, launcher chains."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from proctree_helpers import Runner, wait_for

import proctree

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="job objects are Windows-only")
GRACE = 1.0


def _job(tree):
    from proctree import _windows

    job = tree.containment.group
    assert isinstance(job, _windows.Job)
    return job


def test_job_holds_children_grandchildren_and_launcher_chain(run: Runner) -> None:
    tree = run.start(mark=run.mark, children=2, grandchildren=1)
    job = _job(tree)
    in_job = set(job.pids())
    for pid_id in tree.ids():
        assert pid_id.pid in in_job, f"{pid_id} not in the job"
    # A venv python.exe is a redirector: the interpreter that reports is its child, and
    # both are in the job. Whatever the depth, every process under the root is in it.
    for p in psutil.Process(tree.popen.pid).children(recursive=True):
        assert p.pid in in_job


def test_terminate_tree_ends_job(run: Runner) -> None:
    tree = run.start(mark=run.mark, children=2, grandchildren=1, ignore_term=True)
    res = proctree.terminate_tree(
        tree.root, group=tree.containment, grace=GRACE, close_stdin=tree.popen.stdin
    )
    assert res.clean
    assert not [i for i in tree.ids() if proctree.is_alive(i)]


def test_closing_the_job_kills_the_tree(run: Runner) -> None:
    tree = run.start(mark=run.mark, children=1, grandchildren=1, ignore_eof=True)
    tree.containment.close()
    assert proctree.wait_gone(tree.ids(), timeout=30) == set()


def test_breakaway_is_refused(run: Runner) -> None:
    # tree_prog's escaper asks for CREATE_BREAKAWAY_FROM_JOB; the job does not allow it.
    tree = run.start(mark=run.mark, escape=True)
    (escapee,) = tree.ids("escapee")
    assert _job(tree).contains(escapee.pid)
    res = proctree.terminate_tree(tree.root, group=tree.containment, grace=GRACE)
    assert res.clean and not proctree.is_alive(escapee)


def test_ctrl_break_reaches_new_process_group_child(run: Runner) -> None:
    tree = run.start(mark=run.mark, ignore_eof=True)
    res = proctree.terminate_tree(tree.root, group=tree.containment, grace=30.0)
    if tree.root in res.kill:
        pytest.skip("no shared console here: CTRL_BREAK_EVENT cannot be delivered")
    assert tree.root in res.term
    wait_for(lambda: tree.popen.poll() is not None, what="exit")


def test_child_starts_suspended_until_after_spawn(popens) -> None:
    opts = proctree.spawn_options("m")
    p = subprocess.Popen([sys.executable, "-c", "pass"], **opts)
    popens.append(p)
    # Created suspended: it cannot run (nor spawn anything) before it is in the job.
    assert psutil.Process(p.pid).status() == psutil.STATUS_STOPPED
    c = proctree.after_spawn(p.pid, opts)
    assert p.wait(timeout=60) == 0
    c.close()


def test_console_script_launcher_chain_is_contained(run: Runner, popens) -> None:
    """A pip-style console-script .exe starts python (a venv redirector, which starts the real
    interpreter): 2-3 processes where one was written. The job holds every level."""
    try:
        from pip._vendor.distlib.scripts import ScriptMaker
    except ImportError:
        pytest.skip("pip's distlib (to build a console-script launcher) is not available")
    import os
    from pathlib import Path

    from proctree_helpers import read_report

    here = Path(__file__).parent
    maker = ScriptMaker(None, str(run.tmp_path))
    maker.executable = sys.executable
    maker.variants = {""}
    (exe,) = [p for p in maker.make("pt-tree = tree_prog:main") if p.endswith(".exe")]
    report = run.tmp_path / "launcher-report.txt"
    env = dict(os.environ, PYTHONPATH=str(here))
    opts = proctree.spawn_options(run.mark, env=env)
    argv = [exe, "--report", str(report), "--token", run.token, "--children", "1"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, **opts)
    popens.append(p)
    c = proctree.after_spawn(p.pid, opts)
    try:
        wait_for(lambda: len(read_report(report)) >= 2, what="launcher tree")
        (main_pid,) = [pid for role, pid in read_report(report) if role == "main"]
        chain = psutil.Process(main_pid).parents()
        assert p.pid in {q.pid for q in chain}  # the interpreter is below the launcher
        assert main_pid != p.pid
        in_job = set(c.group.pids())
        levels = psutil.Process(p.pid).children(recursive=True)
        assert {p.pid, *(q.pid for q in levels)} <= in_job
        ids = [proctree.identify(pid) for _, pid in read_report(report)]
        res = proctree.terminate_tree(c.proc_id, group=c, grace=GRACE, close_stdin=p.stdin)
        assert res.clean
        assert not [i for i in ids if i is not None and proctree.is_alive(i)]
    finally:
        c.close()
