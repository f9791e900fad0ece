"""Signals only reach a verified (pid, create_time): the PID-reuse guard at the lowest level."""

from __future__ import annotations

import subprocess
import sys

import pytest

import proctree
from proctree import _platform

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal paths")


@pytest.mark.parametrize("send", [_platform.send_term, _platform.send_kill], ids=["term", "kill"])
def test_send_refuses_wrong_create_time(popens, send) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(p)
    real = proctree.identify(p.pid)
    assert real is not None
    assert not send(proctree.ProcId(p.pid, real.create_time + 2.0))
    assert proctree.is_alive(real) and p.poll() is None


@posix_only
def test_plain_posix_path_also_verifies(popens) -> None:
    # The non-pidfd path (macOS, old kernels) must refuse the same way.
    from proctree import _posix

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(p)
    real = proctree.identify(p.pid)
    assert real is not None
    assert not _posix.send_verified(proctree.ProcId(p.pid, real.create_time - 2.0), 9)
    assert p.poll() is None
    assert _posix.send_verified(real, 9)
    assert p.wait(timeout=30) == -9


def test_send_kill_to_verified_process(popens) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(p)
    real = proctree.identify(p.pid)
    assert real is not None and _platform.send_kill(real)
    p.wait(timeout=30)
    assert not proctree.is_alive(real)
    assert not _platform.send_kill(real)  # gone: nothing to signal, no error
