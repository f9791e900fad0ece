"""A step of the wall clock (NTP's first sync, a VM restored from a snapshot, `date -s`) must not
change who a process is. On Linux psutil's create_time adds /proc/stat's btime as read at each
call, and btime moves with every step; proctree's create_time does not.

The step is what /proc/stat would say after it (btime moved), given to psutil in this process:
setting the machine's clock would move it for every other program on the machine too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest
from proctree_helpers import wait_for

import bootclock
import proctree

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="btime: Linux's clock; macOS and Windows keep the start as wall-clock time",
)

SLEEPER = "import time; time.sleep(600)"
# A child that starts a grandchild, says its pid, and sleeps.
PARENT = (
    "import subprocess, sys, time; "
    f"g = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]); "
    "print(g.pid, flush=True); time.sleep(600)"
)


@pytest.fixture
def step_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """step_clock(seconds): from now on /proc/stat's btime reads that much later (a step of
    the wall clock forward; negative: back)."""
    import psutil._pslinux as pslinux

    real = pslinux.boot_time

    def step(seconds: float) -> None:
        monkeypatch.setattr(pslinux, "boot_time", lambda: real() + seconds)
        psutil.process_iter.cache_clear()  # its cached Processes keep their create_time

    try:
        yield step
    finally:
        monkeypatch.undo()
        psutil.process_iter.cache_clear()


@pytest.mark.parametrize("seconds", [5.0, -5.0])
def test_a_tree_is_known_and_ended_after_a_step(popens, step_clock, seconds: float) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE)
    popens.append(parent)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    root = proctree.identify(parent.pid)
    kid = proctree.identify(grandchild)
    assert root is not None and kid is not None
    before = psutil.Process(parent.pid).create_time()

    step_clock(seconds)  # type: ignore[operator]

    # The step reached psutil: its create_time of the same process moved by it.
    assert abs(psutil.Process(parent.pid).create_time() - (before + seconds)) < 0.02
    assert proctree.identify(parent.pid) == root
    assert proctree.is_alive(root) and proctree.is_alive(kid)
    assert grandchild in proctree.subtree_pids(parent.pid)
    proctree.terminate_tree(root, grace=5.0)
    wait_for(lambda: not proctree.is_alive(kid), what="the grandchild ended")
    assert not proctree.is_alive(root)


def _starter_as_seen_by_a_child(boot_time: str) -> tuple[float, float]:
    """The create_time of this process as a child started with LEAKPROOF_BOOT_TIME=boot_time
    computes it: by proctree, and by the fake `claude` (which reads /proc without psutil)."""
    code = (
        "import os, psutil, proctree, fake_claude.identity as fake; "
        "print(proctree.create_time(psutil.Process(os.getppid())), fake.create_time(os.getppid()))"
    )
    env = {**os.environ, bootclock.ENV: boot_time}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    by_proctree, by_fake = (float(x) for x in out.stdout.split())
    return by_proctree, by_fake


def test_the_processes_of_a_run_share_one_boot_time() -> None:
    """A process started after a step computes the same create_time as its starter, which read
    the boot time before the step: the boot time is inherited, not read again."""
    me = proctree.identify(os.getpid())
    assert me is not None
    boot_id, pinned = os.environ[bootclock.ENV].split()  # exported when proctree was imported
    assert boot_id == open("/proc/sys/kernel/random/boot_id").read().strip()

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= proctree.CREATE_TIME_TOLERANCE

    assert all(near(t, me.create_time) for t in _starter_as_seen_by_a_child(f"{boot_id} {pinned}"))
    # Had this process read the boot time 7 s before a step, its children would use that too.
    earlier = f"{boot_id} {float(pinned) - 7.0!r}"
    assert all(near(t, me.create_time - 7.0) for t in _starter_as_seen_by_a_child(earlier))
    # A value from another boot is ignored: the child reads /proc/stat itself (no step here).
    stale = f"not-this-boot {float(pinned) - 7.0!r}"
    assert all(near(t, me.create_time) for t in _starter_as_seen_by_a_child(stale))


def test_a_records_create_times_are_read_in_this_processs_terms() -> None:
    """proctree.recorded: a (pid, create_time) stored beside its writer's boot stamp."""
    stamp = proctree.boot_stamp()
    assert stamp is not None
    boot_id, btime = stamp.split()
    me = proctree.identify(os.getpid())
    assert me is not None
    # Written by a process whose boot time was read 7 s before a step: 7 s earlier for us.
    earlier = f"{boot_id} {float(btime) - 7.0!r}"
    assert proctree.recorded(me.pid, me.create_time - 7.0, earlier) == me
    assert proctree.is_alive(proctree.ProcId(me.pid, me.create_time))
    # No stamp (an older record), or none that can be read: taken as written.
    for unknown in (None, "", "garbage", f"{boot_id} not-a-number"):
        assert proctree.recorded(me.pid, me.create_time, unknown) == me, unknown
    # Another boot: nothing it names runs now.
    assert proctree.recorded(me.pid, me.create_time, f"another-boot {btime}") is None
    assert proctree.clock_offset(f"another-boot {btime}") is None


def test_every_create_time_of_the_project_comes_from_proctree() -> None:
    """psutil's own create_time (a call, or a process_iter attribute) moves with the clock: one
    left anywhere compares a moved value with a fixed one. proctree/_identity.py is where it is
    read; ci/no_orphans.py runs with psutil alone and only prints ages."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    allowed = {root / "proctree" / "_identity.py", root / "ci" / "no_orphans.py"}
    psutils = re.compile(r"(?<!proctree)\.create_time\(\)|process_iter\([^)]*create_time")
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for package in ("proctree", "harness", "worker", "fake_claude", "bootclock", "ci")
        for path in sorted((root / package).rglob("*.py"))
        if path not in allowed
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if psutils.search(line)
    ]
    assert not found, "\n".join(found)
    # The pattern finds both forms (a test of the test).
    assert psutils.search("p.create_time()") and psutils.search('process_iter(["create_time"])')
    assert not psutils.search("proctree.create_time() of it")
