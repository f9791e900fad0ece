"""A process of an observer's tree that bind-mounts another process's /proc entry over its own
(root: CAP_SYS_ADMIN) makes every read of /proc/<pid> tell of that other process, its
`task/*/children` too. A tree ending that walked the tree child by child (the worker's, as
subreaper: own_child=True) then walked PID 1's whole tree from there and ended what of it was
born after the observer: processes that were never the tree's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import effective_caps

REPO = Path(__file__).resolve().parents[2]
CAP_SYS_ADMIN = 21

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc"),
    pytest.mark.skipif(
        not effective_caps() >> CAP_SYS_ADMIN & 1, reason="a bind mount needs CAP_SYS_ADMIN"
    ),
]

# Runs in a process of its own (it makes itself a subreaper, as the worker is). The root forks
# the masker and says its pid once the mount is done; the bystander is born after the root and
# is none of its tree. Everything it starts dies by itself within a minute (alarm).
SCENARIO = r"""
import json, os, signal, subprocess, sys, psutil, proctree
proctree.enable_subreaper()
ROOT = '''
import ctypes, os, signal, time
signal.alarm(60)
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.alarm(60)
    me = os.getpid()
    rc = ctypes.CDLL(None).mount(b"/proc/1", ("/proc/%d" % me).encode(), None, 4096, None)
    print(me, rc, flush=True)
    while True:
        time.sleep(1)
while True:
    time.sleep(1)
'''
root = subprocess.Popen([sys.executable, "-c", ROOT], stdout=subprocess.PIPE, text=True)
masker, rc = map(int, root.stdout.readline().split())
NAP = "import signal; signal.alarm(60); signal.pause()"
bystander = subprocess.Popen([sys.executable, "-c", NAP])
masked = psutil.Process(masker).ppid() == 0  # it reads as PID 1 now
result = proctree.terminate_tree(proctree.identify(root.pid), grace=0.5, own_child=True)
out = {"mounted": rc == 0 and masked, "bystander_alive": bystander.poll() is None,
       "ended": [p.pid for p in result.ended], "bystander": bystander.pid}
for pid in (masker, bystander.pid):  # ours (a child, or an orphan handed to us): by pid
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
bystander.wait()
proctree.reap_zombies(set())
print(json.dumps(out))
"""


def test_a_masked_proc_entry_leads_no_tree_ending_to_other_processes() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCENARIO], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["mounted"], out  # the misbehaviour happened
    assert out["bystander"] not in out["ended"], out
    assert out["bystander_alive"], out
