"""Process identity: (pid, create_time), never a bare PID (PIDs are reused).

create_time here is step-proof (see bootclock): on Linux the start in ticks since boot plus the
run's boot time, read once, not psutil's create_time(), which adds the boot time as it is at each
call and so moves with every step of the wall clock. Every create_time in the project comes from
`create_time()` below.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import psutil

import bootclock

# psutil's create_time has clock-tick resolution on Linux; the contract's tolerance.
CREATE_TIME_TOLERANCE = 0.01


def _kernel_start(proc: psutil.Process) -> float | None:
    """The start as the kernel keeps it (Linux: seconds since boot; macOS: wall-clock time at
    birth), or None. psutil reads it for its own process identity (Process._get_ident) but
    exposes it only on its platform object."""
    try:
        return float(proc._proc.create_time(monotonic=True))  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # an older psutil
        return None


def create_time(proc: psutil.Process) -> float:
    """proc's creation time in seconds since the epoch, the same before and after a step of the
    wall clock. Raises psutil's errors as Process.create_time() does."""
    if sys.platform == "win32":
        return proc.create_time()  # the kernel's creation time, kept as wall-clock time
    start = _kernel_start(proc)
    if sys.platform.startswith("linux"):
        if start is None:  # the same figure, racy against a step between the two reads
            start = proc.create_time() - psutil.boot_time()
        return start + bootclock.boot_time(psutil.boot_time)
    # macOS: psutil's public value is shifted by any step since psutil was imported.
    return proc.create_time() if start is None else start


if sys.platform.startswith("linux"):
    # Pinned and exported at import, before this process starts any other: then the processes
    # of a run (worker, guardian, fakes) share it, even those started after a step.
    bootclock.boot_time(psutil.boot_time)


def now() -> float:
    """The time now on create_time's clock (bootclock.now): what a timestamp compared with
    create_times is taken with. Up to 1 s behind time.time() on Linux (btime is whole seconds)."""
    return bootclock.now(psutil.boot_time)


def boot_stamp() -> str | None:
    """This process's boot time and boot id, to store beside create_times that a process outside
    this run reads later (a registry of runs): see `clock_offset`."""
    return bootclock.stamp(psutil.boot_time)


def clock_offset(stamp: str | None) -> float | None:
    """What to add to create_times stored with `stamp` (boot_stamp) to compare them with ours:
    their writer may have read the boot time on the other side of a clock step. None: stored
    during another boot, so none of those processes can still run."""
    return bootclock.offset(stamp, psutil.boot_time)


def recorded(pid: int, create_time: float, stamp: str | None) -> ProcId | None:
    """A (pid, create_time) that a process outside this run stored beside its boot_stamp, as
    this process computes create_times; None if stored during another boot (it cannot run now)."""
    shift = clock_offset(stamp)
    return None if shift is None else ProcId(pid, create_time + shift)


@dataclass(frozen=True, order=True)
class ProcId:
    """A process as a (pid, create_time) pair."""

    pid: int
    create_time: float

    def matches(self, create_time: float) -> bool:
        return abs(self.create_time - create_time) <= CREATE_TIME_TOLERANCE

    def process(self) -> psutil.Process | None:
        """The live psutil.Process behind this identity, or None if it is gone or reused."""
        try:
            proc = psutil.Process(self.pid)
            if not self.matches(create_time(proc)):
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            return None


def identify(pid: int) -> ProcId | None:
    """The identity of the process currently holding `pid` (zombies included), or None."""
    try:
        return ProcId(pid, create_time(psutil.Process(pid)))
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, ValueError):
        return None


def of_process(proc: psutil.Process) -> ProcId | None:
    try:
        return ProcId(proc.pid, create_time(proc))
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None
