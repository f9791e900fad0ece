"""Another user's process that carries our token or mark is not ours to count or end
(proctree._owner): a token is text anyone can put in an argv. Runs as root and as any user."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

import proctree
from proctree._scan import protected_pids

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX users")

NOBODY = 65534


def _foreign_process(
    popens: list[subprocess.Popen[bytes]], token: str
) -> tuple[psutil.Process, str]:
    """A live process of another user, not our ancestor, and an argv element of it. Root starts
    one as nobody carrying `token`; any other user takes the oldest one it finds (root's)."""
    if os.geteuid() == 0:
        # `read` is dash's builtin: one process, alive until its stdin closes (teardown).
        p = subprocess.Popen(
            ["/bin/sh", "-c", "read x", "sh", token],
            stdin=subprocess.PIPE,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd="/",
        )
        popens.append(p)
        proc = psutil.Process(p.pid)
        return proc, token
    skip = protected_pids()
    candidates = []
    for proc in psutil.process_iter(["uids", "cmdline", "create_time"]):
        uids, argv = proc.info["uids"], proc.info["cmdline"]
        if proc.pid in skip or uids is None or uids.real == os.getuid() or not argv:
            continue
        if any(argv):
            candidates.append((proc.info["create_time"], proc, max(argv, key=len)))
    if not candidates:
        pytest.skip("no other user's process with a readable argv runs here")
    _, proc, element = min(candidates, key=lambda c: c[0])
    return proc, element


def test_a_token_in_another_users_argv_makes_it_ours_only_to_root(popens) -> None:
    """Before: an ordinary user's scan took root's process for its own (and tried to end it)."""
    proc, token = _foreign_process(popens, f"--leakproof-owner-test={os.getpid()}")
    found = {p.pid for p in proctree.scan(token=token)}
    assert proc.is_running()
    if os.geteuid() == 0:
        # Root keeps every process it finds: its observers may run as another user.
        assert not proctree.not_ours(proc) and proc.pid in found
    else:
        assert proctree.of_another_user(proc) and proctree.not_ours(proc)
        assert proc.pid not in found, proc
