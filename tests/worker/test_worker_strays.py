"""The worker's sweep of adopted strays ends a stray's own tree, never a live observer's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="adopted children: the Linux subreaper path"
)

# A stand-in worker in a process of its own (the sweep looks at *all* its children, so it
# must not run inside the test runner): one live observer, one stray carrying the worker's
# own mark; it sweeps, reports, and ends what is left.
STAND_IN = """
import json, os, subprocess, sys
import psutil, proctree
from worker.containment import Containment, worker_mark
me = psutil.Process()
c = Containment(worker_mark(me.pid, me.create_time()), me.create_time())
def start(mark):
    env = dict(os.environ, **{proctree.MARK_ENV: mark})
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
observer, stray = start(c.observer_mark("live")), start(c.mark)
while not all(proctree.identify(p.pid) for p in (observer, stray)):
    pass
ended = c._end_adopted({observer.pid}, 0.2, {c.observer_mark("live")}, [])
stray.wait(timeout=30)
print(json.dumps({"ended": [e.pid for e in ended], "stray": stray.pid,
                  "observer_alive": observer.poll() is None}))
observer.kill()
observer.wait()
"""


def test_a_stray_with_the_workers_own_mark_does_not_take_live_observers() -> None:
    """A stray whose mark is the worker's own (not an ended observer's, which is finer) is
    ended by itself: ending it by that mark would match every observer, live ones too."""
    out = subprocess.run(
        [sys.executable, "-c", STAND_IN], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout)
    assert result["ended"] == [result["stray"]], result
    assert result["observer_alive"], "the sweep of a stray took a live observer"
