"""The lifeline: a child reads EOF once its parent is gone, however the parent went (closed it,
or was killed outright), and no other child of the parent keeps the line alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from proctree_helpers import wait_for

import proctree

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes (Windows: the job)")

# The child: watch the lifeline given as argv[1], say "ready", and "gone" + exit 0 at its end.
WATCHER = textwrap.dedent(
    """
    import asyncio, sys
    import proctree

    async def main(fd):
        gone = asyncio.Event()
        proctree.watch_lifeline(fd, asyncio.get_running_loop(), gone.set)
        print("ready", flush=True)
        await gone.wait()
        print("gone", flush=True)

    asyncio.run(main(int(sys.argv[1])))
    """
)

# The parent: hold a lifeline to a watcher, start a decoy child after it (which must not
# inherit the parent's end), report both pids, then wait to be killed.
HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    import proctree

    line = proctree.Lifeline()
    out = open(sys.argv[2], "w")
    watcher = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(line.child_fd)],
                               pass_fds=line.pass_fds, stdout=out)
    line.spawned()
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             stdin=subprocess.DEVNULL)
    print(watcher.pid, decoy.pid, flush=True)
    time.sleep(600)
    """
)


def _said(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_closing_the_line_is_seen_at_once(tmp_path: Path, popens) -> None:
    out = tmp_path / "watcher.txt"
    line = proctree.Lifeline()
    with open(out, "w") as f:
        watcher = subprocess.Popen(
            [sys.executable, "-c", WATCHER, str(line.child_fd)], pass_fds=line.pass_fds, stdout=f
        )
    popens.append(watcher)
    line.spawned()
    assert line.pass_fds == ()
    wait_for(lambda: _said(out) == ["ready"], what="the watcher to start")
    line.close()
    assert watcher.wait(timeout=60) == 0
    assert _said(out) == ["ready", "gone"]
    line.close()  # twice is harmless


def test_a_parent_killed_outright_cuts_it(tmp_path: Path, popens) -> None:
    out = tmp_path / "watcher.txt"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, WATCHER, str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    popens.append(holder)
    assert holder.stdout is not None
    # Identities taken now: the kill at the end must not hit a recycled pid.
    ids = [proctree.identify(int(p)) for p in holder.stdout.readline().split()]
    try:
        wait_for(lambda: _said(out) == ["ready"], what="the watcher to start")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        # The decoy, started after the watcher, still lives; the watcher saw EOF anyway: the
        # parent's end was never inherited.
        wait_for(lambda: _said(out) == ["ready", "gone"], what="the watcher to see EOF")
        assert ids[1] is not None and proctree.is_alive(ids[1])
    finally:
        for ident in ids:
            if ident is not None and proctree.is_alive(ident):
                os.kill(ident.pid, signal.SIGKILL)


def test_problems_are_named(tmp_path: Path) -> None:
    line = proctree.Lifeline()
    try:
        assert proctree.lifeline_problem(line.child_fd) is None
    finally:
        line.close()
    assert "not open" in (proctree.lifeline_problem(987) or "")
    with open(tmp_path / "f", "w") as f:
        assert "not a pipe" in (proctree.lifeline_problem(f.fileno()) or "")
