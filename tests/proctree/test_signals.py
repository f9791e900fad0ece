"""Signals only reach a verified (pid, create_time): the PID-reuse guard at the lowest level."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from proctree_helpers import wait_for

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


NO_SUCH_PID = 2**22 + 12345  # above Linux's largest pid_max, and macOS's


@posix_only
def test_group_helpers_on_missing_group() -> None:
    from proctree import _posix

    assert _platform.group_of(NO_SUCH_PID) is None
    assert not _platform.kill_group(NO_SUCH_PID)
    assert not _posix.signal_group(NO_SUCH_PID, 15)
    assert not _platform.term_group(NO_SUCH_PID, None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd is Linux-only")
def test_kernel_without_pidfd_falls_back_and_still_verifies(popens, monkeypatch) -> None:
    import errno
    import os

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(p)
    real = proctree.identify(p.pid)
    assert real is not None
    assert not _platform.send_kill(proctree.ProcId(p.pid, real.create_time + 2.0))
    assert p.poll() is None
    assert _platform.send_kill(real)
    assert p.wait(timeout=30) == -9


@posix_only
def test_send_cont_resumes_only_the_verified_process(popens) -> None:
    """`worker stop` resumes a SIGSTOPped worker after its SIGTERM: by identity, as the rest."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    popens.append(p)
    real = proctree.identify(p.pid)
    assert real is not None and proctree.stop(real)
    proc = psutil.Process(p.pid)
    wait_for(lambda: proc.status() == psutil.STATUS_STOPPED, what="the child stopped")
    assert not proctree.send_cont(proctree.ProcId(p.pid, real.create_time + 2.0))
    assert proc.status() == psutil.STATUS_STOPPED
    assert proctree.send_cont(real)
    wait_for(lambda: proc.status() != psutil.STATUS_STOPPED, what="the child resumed")
