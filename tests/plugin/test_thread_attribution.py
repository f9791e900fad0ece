"""Which lingering thread forked a leak: only what the kernel says rules a thread out."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from harness.pytest_threads import Lingering, LingeringThreads

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread children: Linux")


@pytest.mark.parametrize("readable", [True, False], ids=["kernel-says", "cannot-read"])
def test_a_thread_is_ruled_out_only_when_its_children_were_read(
    monkeypatch: pytest.MonkeyPatch, readable: bool
) -> None:
    """A child of the main thread beside an idle lingering thread: the kernel's per-thread
    list rules the thread out. Where that list cannot be read (no children file, a sandbox),
    nothing was ruled out; it was said to be (the doubt note then went missing)."""
    import proctree._linux as linux

    monkeypatch.setattr(linux, "is_subreaper", lambda: False)  # as an ordinary pytest
    if not readable:

        def unreadable(pid: int, tid: int) -> list[int]:
            raise FileNotFoundError(f"/proc/{pid}/task/{tid}/children")

        monkeypatch.setattr(linux, "thread_child_pids", unreadable)
    done = threading.Event()
    idle = threading.Thread(target=done.wait, args=(60,), name="idle")
    idle.start()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        thread, certain = LingeringThreads.forked_by([Lingering("earlier", idle)], child.pid)
        assert thread is None
        assert certain is readable
    finally:
        done.set()
        idle.join(10)
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
