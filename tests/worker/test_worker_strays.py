"""The worker's sweep of adopted strays ends a stray's own tree, never a live observer's."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest
from workerkit import wait_until

import proctree
from worker.containment import Containment, worker_mark

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="adopted children: the Linux subreaper path"
)
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _start(mark: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **{proctree.MARK_ENV: mark})
    return subprocess.Popen(SLEEP, env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def test_a_stray_with_the_workers_own_mark_does_not_take_live_observers() -> None:
    """A stray whose mark is the worker's own (not an ended observer's, which is finer) is
    ended by itself: ending it by that mark would match every observer, live ones too."""
    me = psutil.Process()
    containment = Containment(worker_mark(me.pid, me.create_time()), me.create_time())
    observer = _start(containment.observer_mark("live"))
    stray = _start(containment.mark)
    try:
        wait_until(lambda: all(proctree.identify(p.pid) for p in (observer, stray)), what="both")
        ended = containment._end_adopted(
            {observer.pid}, 0.2, {containment.observer_mark("live")}, []
        )
        assert stray.wait(timeout=30) is not None
        assert [e.pid for e in ended] == [stray.pid]
        assert observer.poll() is None, "the sweep of a stray took a live observer"
    finally:
        for p in (observer, stray):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
