"""A process's identity (pid, create_time), matching proctree.create_time(): on Linux the start in
ticks since boot plus the run's boot time (bootclock), computed here without psutil, which costs
~10 ms of start-up."""

from __future__ import annotations

import os
import sys

import bootclock


def _linux_create_time(pid: int | None) -> float:
    if sys.platform == "win32":  # Linux's /proc; this tells type checkers
        raise NotImplementedError("/proc")
    # Same arithmetic as psutil on Linux: starttime ticks since boot / CLK_TCK + btime.
    with open(f"/proc/{pid or 'self'}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    ticks = int(fields[19])  # field 22 overall; fields here start at field 3
    return ticks / os.sysconf("SC_CLK_TCK") + bootclock.boot_time(_read_btime)


def ledger_fields(pid: int | None = None) -> dict[str, object]:
    """A process's identity as the ledger's start lines carry it: its create_time, and the boot
    time that was computed with (bootclock.stamp; None off Linux), by which a reader that read
    its own boot time across a clock step translates it (proctree.recorded)."""
    boot = bootclock.stamp(_read_btime) if sys.platform.startswith("linux") else None
    return {"create_time": create_time(pid), "boot": boot}


def now() -> float:
    """The time now on create_time's clock (bootclock.now): the ledger's timestamps."""
    return bootclock.now(_read_btime)


def _read_btime() -> float:
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise RuntimeError("btime missing from /proc/stat")  # pragma: no cover - Linux has it


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

        from proctree._identity import create_time as proc_create_time
    except ImportError:
        return None
    try:
        return proc_create_time(psutil.Process(pid))
    except Exception:
        return None
