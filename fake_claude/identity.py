"""A process's identity (pid, create_time), matching psutil's Process.create_time()."""

from __future__ import annotations

import os
import sys


def _linux_create_time(pid: int | None) -> float:
    if sys.platform == "win32":  # Linux's /proc; this tells type checkers
        raise NotImplementedError("/proc")
    # Same arithmetic as psutil on Linux: starttime ticks since boot / CLK_TCK + btime.
    with open(f"/proc/{pid or 'self'}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    ticks = int(fields[19])  # field 22 overall; fields here start at field 3
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                btime = float(line.split()[1])
                break
        else:  # pragma: no cover - every Linux /proc/stat has btime
            raise RuntimeError("btime missing from /proc/stat")
    return ticks / os.sysconf("SC_CLK_TCK") + btime


def create_time(pid: int | None = None) -> float | None:
    """Creation time of this process (or of `pid`, a child), or None when it cannot be known
    cheaply or at all."""
    if sys.platform.startswith("linux"):
        try:
            return _linux_create_time(pid)
        except (OSError, ValueError, IndexError):
            pass
    try:
        import psutil  # lazily: costs ~10 ms of start-up
    except ImportError:
        return None
    try:
        return psutil.Process(pid).create_time()
    except Exception:
        return None
