"""Process identity: (pid, create_time), refusing a wrong create_time, zombies are not alive."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
from proctree_helpers import wait_for

import proctree


def test_identify_self_matches_psutil() -> None:
    me = proctree.identify(os.getpid())
    assert me is not None
    assert me.pid == os.getpid()
    assert me.matches(psutil.Process().create_time())
    assert proctree.is_alive(me)


def test_identify_missing_pid_is_none() -> None:
    # A pid above the kernel's maximum can never exist.
    assert proctree.identify(2**22 + 12345) is None


def test_wrong_create_time_is_refused(popens) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(p)
    real = proctree.identify(p.pid)
    assert real is not None and proctree.is_alive(real)
    for offset in (1.0, -1.0, 0.02):
        impostor = proctree.ProcId(p.pid, real.create_time + offset)
        assert not proctree.is_alive(impostor)
        assert impostor.process() is None
    # Within the contract's 0.01 s tolerance the identity holds.
    assert proctree.is_alive(proctree.ProcId(p.pid, real.create_time + 0.005))


def test_zombie_and_reaped_are_not_alive(popens) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    popens.append(p)
    pid_id = wait_for(lambda: proctree.identify(p.pid), what="identity")
    # Not reaped yet: on POSIX it lingers as a zombie, which must not count as alive.
    wait_for(lambda: not proctree.is_alive(pid_id), what="child exit")
    p.wait(timeout=30)
    assert not proctree.is_alive(pid_id)


def test_procid_is_hashable_and_ordered() -> None:
    a = proctree.ProcId(10, 1.0)
    b = proctree.ProcId(10, 1.0)
    c = proctree.ProcId(11, 0.5)
    assert a == b and len({a, b, c}) == 2
    assert sorted([c, a]) == [a, c]


def test_a_child_older_than_its_parent_is_not_in_its_tree(popens) -> None:
    # Windows keeps a dead parent's pid as the ppid: when that pid is reused, the new process
    # seems the parent of older strangers, whose tree would then be ended as ours. (POSIX never
    # shows this, so the stranger is put into one snapshot by hand.)
    from proctree._scan import _Table

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(child)
    table = _Table()  # Popen returns once the child exists
    me = os.getpid()
    stranger = 2**22 + 4242  # no such pid: only this snapshot knows it
    table.kids.setdefault(me, []).append(stranger)
    table.ctime[stranger] = table.ctime[me] - 60.0
    assert child.pid in table.subtree(me)
    assert stranger not in table.subtree(me)
